"""Batched least-squares fitter: every device of a wafer in one optimisation.

Devices are independent, so the joint problem is block diagonal: one Levenberg-Marquardt
iteration solves n small p x p systems at once (``torch.linalg.solve`` over the batch) and one
batched model evaluation serves every device. Parameters are bounded through a smooth transform
(``u = lo + (hi - lo) * sigmoid(z)``, in log space for parameters spanning decades), so the
optimiser works unconstrained in ``z``. The per-device Jacobian comes from forward-mode autograd
(one dual pass over p stacked copies of the batch, each carrying one parameter's tangent); a
model using an op without forward-mode support falls back to forward differences in ``z``
(logged once). An optional Adam warm-up on the summed squared residuals helps from a poor
start. Uncertainties are the Gauss-Newton covariance ``s^2 (J^T J)^-1`` in physical units, with
``s^2`` the reduced chi-square.

A device's result depends only on its own data: converged devices are frozen, damping is per
device, so fitting a chunk of devices gives the same numbers as fitting the whole wafer
(what makes the Dask scale-out reproduce a local run).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

log = logging.getLogger(__name__)

# A model maps physical parameters theta [m, p] of the devices `index` [m] to predictions [m, T].
BatchedModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ParamSpec:
    """One fitted parameter: name (a ``bruno_lab.devices`` field name), bounds in SI units."""

    name: str
    lower: float
    upper: float
    log_scale: bool = False

    def __post_init__(self) -> None:
        if not self.lower < self.upper:
            raise ValueError(f"{self.name}: lower bound {self.lower} must be < upper {self.upper}")
        if self.log_scale and self.lower <= 0:
            raise ValueError(f"{self.name}: log-scale bounds must be positive")


@dataclass(frozen=True)
class FitOptions:
    """Knobs of the optimiser; defaults suit float64 device fits."""

    max_iter: int = 40
    adam_steps: int = 0
    adam_lr: float = 0.05
    ftol: float = 1e-7
    xtol: float = 1e-8
    lambda0: float = 1e-3
    jacobian: str = "auto"  # "forward" (autograd dual numbers), "fd", or "auto" (= forward)
    fd_step: float = 1e-6  # forward-difference step in the bounded z-space (jacobian "fd")
    bad_fit_r2: float = 0.9
    bad_fit_chi2: float | None = None  # absolute chi2_red limit; stages apply a wafer-relative one


@dataclass
class FitResult:
    """Per-device outcome, numpy arrays with one row per device (SI units)."""

    names: list[str]
    params: np.ndarray  # [n, p]
    stderr: np.ndarray  # [n, p], NaN where not identifiable
    rmse: np.ndarray  # [n], residual RMS in data units
    chi2_red: np.ndarray  # [n], sum(((y - f)/sigma)^2) / (T - p)
    r2: np.ndarray  # [n]
    n_iter: np.ndarray  # [n]
    converged: np.ndarray  # [n] bool
    flags: list[list[str]] = field(default_factory=list)

    def param_dict(self, i: int) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.names, self.params[i], strict=True)}

    def stderr_dict(self, i: int) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.names, self.stderr[i], strict=True)}

    def goodness_dict(self, i: int) -> dict[str, float]:
        return {
            "rmse": float(self.rmse[i]),
            "chi2_red": float(self.chi2_red[i]),
            "r2": float(self.r2[i]),
            "n_iter": int(self.n_iter[i]),
            "converged": bool(self.converged[i]),
        }

    @staticmethod
    def concatenate(parts: Sequence[FitResult]) -> FitResult:
        return FitResult(
            names=list(parts[0].names),
            params=np.concatenate([p.params for p in parts]),
            stderr=np.concatenate([p.stderr for p in parts]),
            rmse=np.concatenate([p.rmse for p in parts]),
            chi2_red=np.concatenate([p.chi2_red for p in parts]),
            r2=np.concatenate([p.r2 for p in parts]),
            n_iter=np.concatenate([p.n_iter for p in parts]),
            converged=np.concatenate([p.converged for p in parts]),
            flags=[f for p in parts for f in p.flags],
        )


class _Transform:
    """Bounded physical u <-> unbounded z, per parameter column."""

    def __init__(self, specs: Sequence[ParamSpec], dtype: torch.dtype) -> None:
        lo = [math.log(s.lower) if s.log_scale else s.lower for s in specs]
        hi = [math.log(s.upper) if s.log_scale else s.upper for s in specs]
        self.lo = torch.tensor(lo, dtype=dtype)
        self.width = torch.tensor(hi, dtype=dtype) - self.lo
        self.is_log = torch.tensor([s.log_scale for s in specs])

    def to_u(self, z: torch.Tensor) -> torch.Tensor:
        w = self.lo + self.width * torch.sigmoid(z)
        return torch.where(self.is_log, torch.exp(w), w)

    def to_z(self, u: torch.Tensor) -> torch.Tensor:
        w = torch.where(self.is_log, torch.log(u.clamp_min(1e-300)), u)
        frac = ((w - self.lo) / self.width).clamp(1e-6, 1 - 1e-6)
        return torch.log(frac) - torch.log1p(-frac)

    def du_dz(self, z: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(z)
        dw = self.width * s * (1 - s)
        return torch.where(self.is_log, dw * self.to_u(z), dw)


class _Problem:
    def __init__(
        self,
        model: BatchedModel,
        y: torch.Tensor,
        sigma: torch.Tensor,
        mask: torch.Tensor,
        tr: _Transform,
        jacobian: str,
    ) -> None:
        self.model, self.y, self.sigma, self.mask, self.tr = model, y, sigma, mask, tr
        self.jacobian = jacobian
        self.fd_step = 1e-6

    def residual(self, z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        f = self.model(self.tr.to_u(z), idx)
        r = (f - self.y[idx]) / self.sigma[idx]
        return torch.where(self.mask[idx], r, torch.zeros_like(r))

    def residual_jac(self, z: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Residuals [m, T] and Jacobian d r / d z [m, T, p]."""
        if self.jacobian == "forward":
            try:
                return self._forward_jac(z, idx)
            except (NotImplementedError, RuntimeError) as exc:
                log.warning("forward-mode autograd failed (%s); using finite differences", exc)
                self.jacobian = "fd"
        return self._fd_jac(z, idx)

    def _forward_jac(self, z: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One dual-number pass over p stacked copies of the batch (copy k carries tangent e_k):
        the model's per-call overhead is paid once instead of p times."""
        import torch.autograd.forward_ad as fwad

        m, p = z.shape
        z_rep = z.repeat(p, 1)
        tangent = torch.eye(p, dtype=z.dtype).repeat_interleave(m, dim=0)
        with torch.no_grad(), fwad.dual_level():
            out = self.residual(fwad.make_dual(z_rep, tangent), idx.repeat(p))
            primal, tan = fwad.unpack_dual(out)
        if tan is None:
            tan = torch.zeros_like(primal)
        jac = tan.reshape(p, m, -1).permute(1, 2, 0)
        return primal[:m], jac

    def _fd_jac(
        self, z: torch.Tensor, idx: torch.Tensor, r0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward differences in z (default step 1e-6: truncation ~1e-6 relative, rounding
        ~1e-10 in float64; a model that is piecewise flat on a fine scale needs a larger
        ``FitOptions.fd_step``), all p (+1 without ``r0``) evaluations stacked in one call."""
        m, p = z.shape
        h = self.fd_step
        steps = h * torch.eye(p, dtype=z.dtype)
        if r0 is None:
            steps = torch.cat([torch.zeros(1, p, dtype=z.dtype), steps])
        z_rep = (z.unsqueeze(0) + steps.unsqueeze(1)).reshape(-1, p)
        with torch.no_grad():
            r = self.residual(z_rep, idx.repeat(steps.shape[0])).reshape(steps.shape[0], m, -1)
        if r0 is None:
            r0, r = r[0], r[1:]
        return r0, ((r - r0.unsqueeze(0)) / h).permute(1, 2, 0)


def _adam_warmup(
    prob: _Problem, z: torch.Tensor, idx: torch.Tensor, opts: FitOptions
) -> torch.Tensor:
    z = z.clone().requires_grad_(True)
    optim = torch.optim.Adam([z], lr=opts.adam_lr)
    for _ in range(opts.adam_steps):
        optim.zero_grad()
        loss = prob.residual(z, idx).pow(2).sum()
        loss.backward()
        optim.step()
    return z.detach()


def fit_batched(
    model: BatchedModel,
    specs: Sequence[ParamSpec],
    y: np.ndarray | torch.Tensor,
    initial: np.ndarray | torch.Tensor,
    *,
    sigma: np.ndarray | torch.Tensor | float = 1.0,
    mask: np.ndarray | torch.Tensor | None = None,
    options: FitOptions | None = None,
) -> FitResult:
    """Fit ``model`` to the rows of ``y`` [n, T], one parameter vector per device.

    ``initial`` [n, p] is the start (physical units, e.g. from feature extraction), clipped into
    the bounds. ``sigma`` scales residuals (the measurement noise, data units; scalar or [n, T]
    or [n, 1]); ``mask`` [n, T] marks valid samples of ragged data. Works in float64.
    """
    opts = options or FitOptions()
    dtype = torch.float64
    y_t = torch.as_tensor(np.asarray(y, dtype=np.float64) if not torch.is_tensor(y) else y)
    y_t = y_t.to(dtype)
    n, t_len = y_t.shape
    p = len(specs)
    sig = torch.as_tensor(sigma, dtype=dtype).expand(n, t_len).clone()
    msk = (
        torch.ones(n, t_len, dtype=torch.bool)
        if mask is None
        else torch.as_tensor(np.asarray(mask, dtype=bool))
    )
    msk = msk & torch.isfinite(y_t)
    y_t = torch.where(msk, y_t, torch.zeros_like(y_t))
    tr = _Transform(specs, dtype)
    prob = _Problem(
        model, y_t, sig, msk, tr, "forward" if opts.jacobian == "auto" else opts.jacobian
    )
    prob.fd_step = opts.fd_step
    z = tr.to_z(torch.as_tensor(np.asarray(initial, dtype=np.float64)).to(dtype).reshape(n, p))
    all_idx = torch.arange(n)
    if opts.adam_steps > 0:
        z = _adam_warmup(prob, z, all_idx, opts)

    r, jac = prob.residual_jac(z, all_idx)
    cost = r.pow(2).sum(1)
    lam = torch.full((n,), opts.lambda0, dtype=dtype)
    active = torch.isfinite(cost)
    n_iter = torch.zeros(n, dtype=torch.long)
    eye = torch.eye(p, dtype=dtype)
    for _ in range(opts.max_iter):
        act = torch.nonzero(active).flatten()
        if act.numel() == 0:
            break
        j_a, r_a = jac[act], r[act]
        a_mat = j_a.transpose(1, 2) @ j_a
        g = (j_a.transpose(1, 2) @ r_a.unsqueeze(-1)).squeeze(-1)
        diag = torch.diagonal(a_mat, dim1=1, dim2=2).clamp_min(1e-12)
        damped = a_mat + lam[act, None, None] * torch.diag_embed(diag) + 1e-12 * eye
        step = -torch.linalg.solve(damped, g.unsqueeze(-1)).squeeze(-1)
        step = step.clamp(-4.0, 4.0)
        z_new = z[act] + step
        if prob.jacobian == "fd":  # residuals first; the Jacobian only where the step is taken
            with torch.no_grad():
                r_new = prob.residual(z_new, act)
            j_new = None
        else:
            r_new, j_new = prob.residual_jac(z_new, act)
        cost_new = r_new.pow(2).sum(1)
        ok = torch.isfinite(cost_new) & (cost_new <= cost[act])
        rel = (cost[act] - cost_new) / cost[act].clamp_min(1e-300)
        acc = act[ok]
        if acc.numel():
            if j_new is None:
                jac[acc] = prob._fd_jac(z_new[ok], acc, r_new[ok])[1]
            else:
                jac[acc] = j_new[ok]
        z[acc], r[acc] = z_new[ok], r_new[ok]
        cost[acc] = cost_new[ok]
        lam[act] = torch.where(ok, lam[act] / 3.0, lam[act] * 4.0).clamp(1e-12, 1e12)
        n_iter[act] += 1
        small_step = step.abs().amax(1) < opts.xtol
        done = (ok & (rel < opts.ftol)) | small_step | (lam[act] >= 1e12) | (cost_new == 0)
        active[act[done]] = False
    return _summarise(prob, specs, z, r, jac, n_iter, ~active, opts)


def _summarise(
    prob: _Problem,
    specs: Sequence[ParamSpec],
    z: torch.Tensor,
    r: torch.Tensor,
    jac: torch.Tensor,
    n_iter: torch.Tensor,
    converged: torch.Tensor,
    opts: FitOptions,
) -> FitResult:
    n, p = z.shape
    n_valid = prob.mask.sum(1).to(z.dtype)
    dof = (n_valid - p).clamp_min(1.0)
    chi2 = r.pow(2).sum(1)
    chi2_red = chi2 / dof
    # Physical-unit Jacobian J_u = J_z / (du/dz); covariance s^2 (J_u^T J_u)^-1.
    dudz = prob.tr.du_dz(z)
    j_u = jac / dudz.unsqueeze(1).clamp_min(1e-300)
    a_mat = j_u.transpose(1, 2) @ j_u
    scale = torch.sqrt(torch.diagonal(a_mat, dim1=1, dim2=2)).clamp_min(1e-300)
    a_norm = torch.nan_to_num(a_mat / (scale.unsqueeze(1) * scale.unsqueeze(2)))
    cov_norm = torch.linalg.pinv(a_norm, rtol=1e-12)  # SVD: robust on ill-conditioned blocks
    var = torch.diagonal(cov_norm, dim1=1, dim2=2) / scale**2 * chi2_red.unsqueeze(1)
    stderr = torch.sqrt(var.clamp_min(0.0))
    u = prob.tr.to_u(z)
    resid_data = r * prob.sigma
    rmse = torch.sqrt(resid_data.pow(2).sum(1) / n_valid.clamp_min(1.0))
    y_mean = (prob.y * prob.mask).sum(1) / n_valid.clamp_min(1.0)
    ss_tot = (((prob.y - y_mean.unsqueeze(1)) * prob.mask).pow(2)).sum(1)
    r2 = 1.0 - resid_data.pow(2).sum(1) / ss_tot.clamp_min(1e-300)
    frac = torch.sigmoid(z)
    flags: list[list[str]] = []
    for i in range(n):
        f: list[str] = []
        if not bool(torch.isfinite(chi2[i])):
            f.append("nonfinite")
        if not bool(converged[i]):
            f.append("not_converged")
        chi2_bad = opts.bad_fit_chi2 is not None and float(chi2_red[i]) > opts.bad_fit_chi2
        if float(r2[i]) < opts.bad_fit_r2 or chi2_bad:
            f.append("bad_fit")
        at = [s.name for k, s in enumerate(specs) if not 1e-4 < float(frac[i, k]) < 1 - 1e-4]
        if at:
            f.append("at_bound:" + ",".join(at))
        flags.append(f)
    return FitResult(
        names=[s.name for s in specs],
        params=u.numpy(),
        stderr=stderr.numpy(),
        rmse=rmse.numpy(),
        chi2_red=chi2_red.numpy(),
        r2=r2.numpy(),
        n_iter=n_iter.numpy(),
        converged=converged.numpy(),
        flags=flags,
    )
