"""The FeLIF fit's search: the full model on a grid per device in the cost valley's coordinates.

The cost has a long, narrow, rough valley where P_s and t_hzo trade off (d log P_s / d log t_hzo
~ 0.6 along it; the charge per spike is pinned tightly across it), on which Levenberg-Marquardt
stopped near its start. So: from the global start, the valley's slope is measured; each device's
grid (s along the valley, w across it) is evaluated in one kernel call per round and re-centred
where its best point is on the edge; a device fitting far worse than the wafer's median is
walked again from the wafer's median fit; the optimum and its uncertainty come from
:mod:`calibration.felif.optimum` under the pooled noise model of :mod:`calibration.felif.noise`.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from calibration.felif.noise import noise_model, precision
from calibration.felif.optimum import device_optimum
from calibration.felif.options import FelifFitOptions
from calibration.felif.records import FelifData
from calibration.felif.spec import FELIF_FIT_SPECS
from calibration.felif.spikes_model import build_felif_spikes
from calibration.felif.start import global_start
from calibration.fitter import BatchedModel, FitResult

log = logging.getLogger(__name__)


def valley_slope(
    model: BatchedModel, data: FelifData, start: np.ndarray, options: FelifFitOptions
) -> float:
    """d log P_s / d log t_hzo along the full model's cost valley: per device, the direction in
    which the predictions change least (forward differences at the start, steps a few times the
    cost's treads), median over the devices."""
    n = start.shape[0]
    ds, dw = options.valley_step_s, options.valley_step_w
    offs = np.array([[0.0, 0.0], [dw, 0.0], [0.0, ds]])
    theta = np.exp(start[:, None, :] + offs[None]).reshape(-1, 2)
    with torch.no_grad():
        f = model(torch.as_tensor(theta), torch.as_tensor(np.repeat(np.arange(n), 3))).numpy()
    f = np.where(data.mask[:, None], f.reshape(n, 3, -1), 0.0)
    d_w = (f[:, 1] - f[:, 0]) / dw
    d_s = (f[:, 2] - f[:, 0]) / ds
    slope = -(d_s * d_w).sum(1) / np.maximum((d_w * d_w).sum(1), 1e-300)
    return float(np.median(slope[np.isfinite(slope)]))


def best_ols(
    data: FelifData, pred: np.ndarray, rows: np.ndarray | None = None, argmin: bool = False
) -> np.ndarray:
    """Per device: the lowest plain sum of squared residuals over its grid (or its index)."""
    rows = np.arange(data.y.shape[0]) if rows is None else rows
    resid = np.where(data.mask[rows, None], pred - data.y[rows, None], 0.0)
    cost = (resid**2).sum(2)
    return np.asarray(cost.argmin(1) if argmin else cost.min(1))


def walk(
    model: BatchedModel,
    data: FelifData,
    start: np.ndarray,
    offs: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    options: FelifFitOptions,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full model on the grid ``centre + offs`` of each device (rows of ``data``; one
    kernel call per round), re-centred on the devices whose best point is on the grid's edge.
    Returns the centres [m, 2], the predictions [m, G, T] and the rounds run [m]."""
    rows = np.arange(data.y.shape[0]) if rows is None else rows
    m, t_len = rows.size, data.y.shape[1]
    ns, nw = options.grid_s_points, options.grid_w_points
    centre = start.copy()
    pred = np.zeros((m, offs.shape[0], t_len))
    rounds = np.zeros(m, dtype=np.int64)
    todo = np.arange(m)
    for r in range(options.grid_rounds):
        logs = np.clip(centre[todo, None, :] + offs[None], lo, hi).reshape(-1, 2)
        idx = np.repeat(rows[todo], offs.shape[0])
        with torch.no_grad():
            f = model(torch.as_tensor(np.exp(logs)), torch.as_tensor(idx)).numpy()
        pred[todo] = f.reshape(todo.size, offs.shape[0], t_len)
        rounds[todo] += 1
        best = best_ols(data, pred[todo], rows=rows[todo], argmin=True)
        ja, jb = np.divmod(best, nw)
        edge = (ja == 0) | (ja == ns - 1) | (jb == 0) | (jb == nw - 1)
        if r == options.grid_rounds - 1 or not edge.any():
            break
        centre[todo[edge]] += offs[best[edge]]
        todo = todo[edge]
    return centre, pred, rounds


def fit_grid(data: FelifData, options: FelifFitOptions) -> FitResult:
    """Global start from the inter-spike table, then the full model on a grid per device in the
    valley's coordinates (all devices x grid points in one kernel call), the cost generalised
    least squares under the pooled noise model, each device's optimum and uncertainty from its
    grid (:func:`calibration.felif.optimum.device_optimum`)."""
    n, _ = data.y.shape
    model = build_felif_spikes(data.inputs)
    start = global_start(data, options)
    slope = valley_slope(model, data, start, options)
    log.info("felif-spikes: valley slope d log P_s / d log t_hzo = %.3f", slope)
    lo = np.log([s.lower for s in FELIF_FIT_SPECS])
    hi = np.log([s.upper for s in FELIF_FIT_SPECS])
    slots = np.asarray(data.shared["slots"])
    cols = np.concatenate([[0], np.cumsum(slots)])
    n_meas = data.per_device["n_meas"]
    has_check = np.zeros_like(n_meas, dtype=bool)
    for k in range(len(slots)):
        rows = np.arange(n)
        has_check[:, k] = data.mask[rows, np.minimum(cols[k] + n_meas[:, k], cols[-1] - 1)] & (
            n_meas[:, k] < slots[k]
        )
    grid_s, grid_w = options.grid_s, options.grid_w
    gs, gw = np.meshgrid(grid_s, grid_w, indexing="ij")
    offs = np.stack([slope * gs.ravel() + gw.ravel(), gs.ravel()], 1)  # [G, 2] log offsets
    centre, pred, rounds = walk(model, data, start, offs, lo, hi, options)
    # a device whose best grid point fits far worse than the wafer's typical one (a wrong
    # basin of the start) is walked again from the wafer's median fit; the better one is kept
    ols = best_ols(data, pred)
    bad = np.flatnonzero(ols > options.retry_cost_factor * np.median(ols))
    if bad.size:
        log_fit = centre + offs[best_ols(data, pred, argmin=True)]
        c2, p2, r2 = walk(model, data, np.tile(np.median(log_fit, 0), (bad.size, 1)), offs,
                          lo, hi, options, rows=bad)  # fmt: skip
        better = best_ols(data, p2, rows=bad) < ols[bad]
        centre[bad[better]], pred[bad[better]] = c2[better], p2[better]
        rounds[bad] += r2
    resid = np.where(data.mask[:, None], pred - data.y[:, None], 0.0)  # [n, G, T], s
    best = (resid**2).sum(2).argmin(1)
    a, b = noise_model(resid[np.arange(n), best], n_meas, cols, data.sigma)
    jac_map = np.array([[slope, 1.0], [1.0, 0.0]])  # (s, w) -> (log P_s, log t_hzo)
    params = np.zeros((n, 2))
    stderr = np.full((n, 2), np.nan)
    chi2 = np.zeros(n)
    rss = np.zeros(n)
    for i in range(n):
        prec = precision(n_meas[i], has_check[i], slots, a, b)
        opt = device_optimum(
            resid[i], pred[i], prec, data.mask[i], centre[i], jac_map, grid_s, grid_w,
            (lo, hi), options.stderr_scale,
        )  # fmt: skip
        params[i], stderr[i], chi2[i], rss[i] = opt.params, opt.stderr, opt.chi2, opt.rss
    n_valid = data.mask.sum(1).astype(np.float64)
    y_mean = (data.y * data.mask).sum(1) / np.maximum(n_valid, 1.0)
    ss_tot = (((data.y - y_mean[:, None]) * data.mask) ** 2).sum(1)
    flags = []
    for i in range(n):
        at = [
            s.name
            for k, s in enumerate(FELIF_FIT_SPECS)
            if not lo[k] + 1e-3 < np.log(params[i, k]) < hi[k] - 1e-3
        ]
        flags.append(["at_bound:" + ",".join(at)] if at else [])
    return FitResult(
        names=[s.name for s in FELIF_FIT_SPECS],
        params=params,
        stderr=stderr,
        rmse=np.sqrt(rss / np.maximum(n_valid, 1.0)),
        chi2_red=chi2 / np.maximum(n_valid - 2, 1.0),
        r2=1.0 - rss / np.maximum(ss_tot, 1e-300),
        n_iter=rounds,
        converged=np.ones(n, dtype=bool),
        flags=flags,
    )
