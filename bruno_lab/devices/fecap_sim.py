"""A measured FeCap under any voltage waveform: multi-domain switching, linear response, leakage.

Multi-domain (nucleation-limited) switching: the capacitor is K equal-weight domains whose
activation fields are log-normally spread around ``e_a_v_m``, ``E_a,k = E_a*exp(s*z_k)`` with
``s = e_a_spread_rel`` and ``z_k`` the standard-normal quantiles at ``(k + 1/2)/K``. Each domain
obeys the lumped equations of ``fecap.py`` under the common field ``E = (V - V_imp)*k_c -
P*k_d`` (P the mean polarization). At K = 1, ``z = 0`` and the model is exactly the lumped model.

The lab's current is ``I = Ctot*dV/dt + A*dP/dt + I_leak(V)`` (the design's charge ``Ctot*V +
A*P`` differentiated), so the FeLIF membrane and this capacitor share one electrostatics. The
current at a sample is the rate over the sub-step ending there (the instantaneous current a scope
samples); ``charge_c`` is exact (Q(t) - Q(t0) plus the trapezoid-integrated leakage), so charge
per pulse should be read from ``charge_c`` rather than from a coarse integral of the current.

Integration (stable for fast edges): the voltage is linear between the given samples; each sample
interval is cut into sub-steps with at most ``max_dv_substep_v`` of voltage change, and after an
edge (a fast change followed by a slower one, e.g. a pulse's rise into its plateau, or at the
start) a geometric ladder of sub-steps from ``min_substep_s`` doubling up to the
interval's end resolves the switching transient in log time. In each sub-step the field is held
and every domain relaxes exactly (exponential integrator): ``P_k -> P_t + (P_k - P_t)*exp(-h/tau)``,
which can neither overshoot ±P_s nor go unstable however short tau is. The sub-step schedule
depends only on the waveform, so the result is differentiable in every parameter.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from bruno_lab.devices import fecap
from bruno_lab.errors import BadInputError

DEFAULT_DOMAINS = 16


class FeCapTrace(NamedTuple):
    """What a lab records, per device and sample: current (A), polarization P (C/m²), charge (C)
    delivered by the source since the first sample (switching + linear + leakage)."""

    current_a: Tensor
    polarization_c_m2: Tensor
    charge_c: Tensor


def domain_activation_fields(p: fecap.FeCapParams, n_domains: int) -> Tensor:
    """E_a of each domain, V/m, shape ``(n, K)``: log-normal quantiles around ``e_a_v_m``."""
    k = torch.arange(n_domains, dtype=p.e_a_v_m.dtype, device=p.e_a_v_m.device)
    z = math.sqrt(2.0) * torch.erfinv(2.0 * (k + 0.5) / n_domains - 1.0)
    return p.e_a_v_m[:, None] * torch.exp(p.e_a_spread_rel[:, None] * z[None, :])


class _Schedule(NamedTuple):
    """Sub-steps: duration (s), enclosing sample interval, fraction of it at the sub-step's end,
    and whether the sub-step ends on a sample (the last one of its interval)."""

    h_s: list[float]
    interval: Tensor
    frac: Tensor
    ends_sample: list[bool]


def _schedule(time_s: Tensor, voltage_v: Tensor, max_dv: float, min_h: float) -> _Schedule:
    """The sub-steps of every sample interval, built in float64 from the waveform alone."""
    t = time_s.detach().to(torch.float64).cpu().tolist()
    dv = (voltage_v.detach()[:, 1:] - voltage_v.detach()[:, :-1]).abs().amax(0).double().tolist()
    h_s: list[float] = []
    interval: list[int] = []
    frac: list[float] = []
    ends_sample: list[bool] = []
    edge_before = True
    for j in range(len(t) - 1):
        span = t[j + 1] - t[j]
        n_v = max(1, math.ceil(dv[j] / max_dv))
        fr = {i / n_v for i in range(1, n_v)}
        if edge_before and span > 2 * min_h:
            h = min_h
            while h < span:
                fr.add(h / span)
                h *= 2.0
        pts = [*sorted(f for f in fr if 0.0 < f < 1.0), 1.0]
        prev = 0.0
        for f in pts:
            h_s.append((f - prev) * span)
            interval.append(j)
            frac.append(f)
            ends_sample.append(f == 1.0)
            prev = f
        nxt = dv[j + 1] if j + 1 < len(dv) else 0.0
        edge_before = dv[j] > max_dv and nxt < 0.5 * dv[j]  # V stops changing
    return _Schedule(
        h_s,
        torch.tensor(interval, dtype=torch.int64),
        torch.tensor(frac, dtype=torch.float64),
        ends_sample,
    )


def fecap_simulate(
    time_s: Tensor,
    voltage_v: Tensor,
    params: fecap.FeCapParams,
    n_domains: int = DEFAULT_DOMAINS,
    initial_polarization_c_m2: Tensor | float | None = None,
    max_dv_substep_v: float = 0.01,
    min_substep_s: float = 1e-10,
) -> FeCapTrace:
    """Current, P and charge of ``n`` capacitors driven by ``voltage_v`` ([n, T] or [T], V) at
    ``time_s`` ([T], s, increasing). ``initial_polarization_c_m2``: P at the first sample, one value
    for all domains (scalar or ``[n]``) or per domain ``[n, K]``; default -P_s (negatively poled).
    Differentiable in the parameters."""
    dtype = params.e_a_v_m.dtype
    time_s = torch.as_tensor(time_s, dtype=dtype)
    voltage_v = torch.as_tensor(voltage_v, dtype=dtype)
    n = params.n_devices
    if voltage_v.ndim == 1:
        voltage_v = voltage_v.expand(n, -1)
    if time_s.ndim != 1 or voltage_v.shape[-1] != time_s.numel() or time_s.numel() < 2:
        raise BadInputError(
            f"fecap_simulate: time_s [T >= 2] and voltage_v [n, T] must agree; got "
            f"{tuple(time_s.shape)} and {tuple(voltage_v.shape)}"
        )
    if bool((torch.diff(time_s) <= 0).any()):
        raise BadInputError("fecap_simulate: time_s must be strictly increasing")
    ps = params.ps_c_m2[:, None]
    e_a = domain_activation_fields(params, n_domains)
    if initial_polarization_c_m2 is None:
        pol = (-ps).expand(n, n_domains)
    else:
        p0 = torch.as_tensor(initial_polarization_c_m2, dtype=dtype)
        p0 = p0 if p0.shape == (n, n_domains) else p0.reshape(-1, 1).expand(n, n_domains)
        pol = torch.minimum(torch.maximum(p0, -ps), ps)
    sched = _schedule(time_s, voltage_v, max_dv_substep_v, min_substep_s)
    # voltage at each sub-step end: linear within its sample interval
    w = sched.frac.to(dtype=dtype, device=voltage_v.device)
    j = sched.interval.to(voltage_v.device)
    v_end = voltage_v[:, j] * (1 - w) + voltage_v[:, j + 1] * w
    k_c, k_d = fecap.field_coefficients(params)
    sub = _Sub(params, e_a, ps, k_c[:, None], k_d[:, None])
    samples = [pol.mean(1)]
    rates: list[tuple[Tensor, Tensor]] = []  # (dP/dt, dV/dt) over the last sub-step of a sample
    v_prev = voltage_v[:, 0]
    for s, h in enumerate(sched.h_s):
        p_before = samples[-1] if s == 0 else pol.mean(1)
        pol = sub.step(pol, v_end[:, s : s + 1], h)
        if sched.ends_sample[s]:
            p_now = pol.mean(1)
            samples.append(p_now)
            rates.append(((p_now - p_before) / h, (v_end[:, s] - v_prev) / h))
        v_prev = v_end[:, s]
    p_mean = torch.stack(samples, dim=1)
    dp_dt = torch.stack([rates[0][0], *[r[0] for r in rates]], dim=1)
    dv_dt = torch.stack([rates[0][1], *[r[1] for r in rates]], dim=1)
    return _trace(time_s, voltage_v, p_mean, dp_dt, dv_dt, params)


class _Sub:
    """One exponential-integrator sub-step of all domains under a held field."""

    def __init__(self, p: fecap.FeCapParams, e_a: Tensor, ps: Tensor, k_c: Tensor, k_d: Tensor):
        self.p, self.e_a, self.ps, self.k_c, self.k_d = p, e_a, ps, k_c, k_d
        self.view = _ColumnView(p)

    def step(self, pol: Tensor, v: Tensor, h_s: float) -> Tensor:
        p_mean = pol.mean(1, keepdim=True)
        field = (v - self.view.imprint_v) * self.k_c - p_mean * self.k_d
        rate = fecap.switching_rate_per_s(field, self.view, self.e_a)
        target = torch.sign(field) * self.ps
        return target + (pol - target) * torch.exp(-rate * h_s)


class _ColumnView:
    """The parameters as ``(n, 1)`` columns, so they broadcast over the domain dim."""

    imprint_v: Tensor  # one of the columns set below, the one read here by name

    def __init__(self, p: fecap.FeCapParams):
        for name in p.specs():
            setattr(self, name, getattr(p, name)[:, None])


def _trace(
    time_s: Tensor,
    v: Tensor,
    p_mean: Tensor,
    dp_dt: Tensor,
    dv_dt: Tensor,
    params: fecap.FeCapParams,
) -> FeCapTrace:
    """Current at each sample: the rates over the sub-step ending there (left derivative; the
    first sample takes the first sub-step's), so a scope sees the instantaneous current."""
    ctot = fecap.linear_capacitance_f(params)[:, None]
    area = params.area_m2[:, None]
    q_disp = ctot * v + area * p_mean
    i_leak = fecap.leakage_current_a(v, _ColumnView(params))
    dt = torch.diff(time_s)
    leak_charge = torch.cumsum(0.5 * (i_leak[:, 1:] + i_leak[:, :-1]) * dt, dim=1)
    leak_charge = torch.cat([torch.zeros_like(leak_charge[:, :1]), leak_charge], dim=1)
    charge = q_disp - q_disp[:, :1] + leak_charge
    return FeCapTrace(ctot * dv_dt + area * dp_dt + i_leak, p_mean, charge)
