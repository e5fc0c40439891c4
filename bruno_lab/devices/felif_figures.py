"""Figures of merit of a FeLIF neuron that set a network's scales: charge to spike, rheobase.

From rest (V = 0, P = -P_s) a spike needs the membrane charge ``C_tot*V_thr`` (1.43 pC at the
design's defaults) plus the polarization switching charge ``A*(P_s - P_0) = 2*A*P_s`` (11 pC):
12.4 pC. It is the integral of the input current to the first spike when switching completes
before V reaches V_thr and leakage is small against the input: at the design's defaults measured
within 1.1 % for constant currents of 1-13 nA (one spike per 1-12 ms), 3 % low at 100 nA
(switching not complete at threshold), above it below ~0.3 nA (leakage); a device with a higher
E_a or thinner HZO switches less before threshold (up to 6 % low at 10 % spread). After a spike
the neuron restarts from V_reset, so each later spike needs ``C_tot*(V_thr - V_reset)`` of
membrane charge instead. Below rest the membrane gives at most ``C_tot*5 V`` (2.9 pC) before its
clip holds it (``clip_charge_c``): inhibition beyond that is discarded, not stored.

The rheobase is the smallest constant current that makes a spike within a horizon: as the
horizon grows it falls to the leakage current at threshold (16 pA at the defaults: below it V
settles under V_thr), for short horizons it approaches ``charge / horizon``. It is found by
bisection on the simulation (``felif_fine_window``: the first spike of a window from rest,
float64, every neuron at once).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bruno_lab.devices import fecap
from bruno_lab.devices.felif import V_CLIP_V, FeLIFParams, FeLIFState, felif_fine_window

F64 = torch.float64


def membrane_charge_c(params: FeLIFParams, v_start_v: float | Tensor = 0.0) -> Tensor:
    """``C_tot*(V_thr - V_start)``: the linear capacitance's charge to threshold, C."""
    return fecap.linear_capacitance_f(params) * (params.v_thr_v - v_start_v)


def switching_charge_c(params: FeLIFParams, p_start_c_m2: float | Tensor | None = None) -> Tensor:
    """``A*(P_s - P_start)``: the charge that full switching to +P_s takes (default from -P_s)."""
    p0 = -params.ps_c_m2 if p_start_c_m2 is None else p_start_c_m2
    return params.area_m2 * (params.ps_c_m2 - p0)


def charge_to_spike_c(
    params: FeLIFParams,
    v_start_v: float | Tensor = 0.0,
    p_start_c_m2: float | Tensor | None = None,
) -> Tensor:
    """Charge (C) an input must deliver for a spike from (V_start, P_start), per neuron;
    default from rest (0 V, -P_s). See the module docstring for where it holds."""
    return membrane_charge_c(params, v_start_v) + switching_charge_c(params, p_start_c_m2)


def threshold_leakage_a(params: FeLIFParams) -> Tensor:
    """Leakage current at V_thr, A: the rheobase of an infinite horizon (a lower bound)."""
    return fecap.leakage_current_a(params.v_thr_v, params)


def _spikes_within(
    current_a: Tensor, params: FeLIFParams, n_steps: int, dt_s: float, state: FeLIFState
) -> Tensor:
    """Bool (n,): neuron i spikes within ``n_steps`` micro-steps under ``current_a[i]``."""
    _, spiked = felif_fine_window(current_a, state, params, n_steps, dt_s)
    return spiked


def rheobase_a(
    params: FeLIFParams,
    horizon_s: float,
    *,
    dt_s: float = 1e-6,
    rel_tol: float = 1e-3,
) -> Tensor:
    """Per neuron, the smallest constant current (A) that spikes within ``horizon_s`` from rest
    (V = 0, P = -P_s), to ``rel_tol``; simulated with micro-steps of ``dt_s``."""
    if not horizon_s > 0 or not dt_s > 0 or not 0 < rel_tol < 1:
        raise ValueError("horizon_s and dt_s must be > 0 and 0 < rel_tol < 1")
    p = params.to(dtype=F64)
    n = p.n_devices
    n_steps = max(1, round(horizon_s / dt_s))
    rest = FeLIFState(torch.zeros(n, dtype=F64), (-p.ps_c_m2).expand(n).clone())
    low = threshold_leakage_a(p).expand(n).clone()  # never spikes at or below (settles under)
    high = (charge_to_spike_c(p) / horizon_s + threshold_leakage_a(p)).expand(n).clone()
    for _ in range(60):  # the upper guess fires except for tiny horizons: widen until it does
        fires = _spikes_within(high, p, n_steps, dt_s, rest)
        if bool(fires.all()):
            break
        high = torch.where(fires, high, 2.0 * high)
    else:
        raise RuntimeError("rheobase: no current up to the search bound spikes in the horizon")
    while bool(((high - low) > rel_tol * high).any()):
        mid = 0.5 * (low + high)
        fires = _spikes_within(mid, p, n_steps, dt_s, rest)
        high = torch.where(fires, mid, high)
        low = torch.where(fires, low, mid)
    return high


def clip_charge_c(params: FeLIFParams) -> Tensor:
    """``C_tot*V_clip``: the charge an inhibitory input can take from a neuron at rest before the
    membrane's -5 V clip holds it (P is already at -P_s, so only the membrane gives charge),
    C. Below it the device discards input charge: no linear integrator does (``nir_export``)."""
    return fecap.linear_capacitance_f(params) * V_CLIP_V
