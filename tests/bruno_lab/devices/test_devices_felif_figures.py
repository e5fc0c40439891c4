"""Charge to spike and rheobase of FeLIF neurons against the plain Euler loop (the reference
window, torch) and the analytic leakage bound."""

from __future__ import annotations

import pytest
import torch

from bruno_lab.devices import fecap, felif
from bruno_lab.devices.felif_figures import (
    charge_to_spike_c,
    membrane_charge_c,
    rheobase_a,
    switching_charge_c,
    threshold_leakage_a,
)
from bruno_lab.devices.params import sample_population

F64 = torch.float64


def _population(n: int) -> felif.FeLIFParams:
    spread = dict.fromkeys(("area_m2", "ps_c_m2", "t_hzo_m", "e_a_v_m"), 0.1)
    return sample_population(
        felif.FeLIFParams.default(1), spread, n, torch.Generator().manual_seed(4)
    )


def _first_spike_s(
    current_a: torch.Tensor, params: felif.FeLIFParams, horizon_s: float
) -> torch.Tensor:
    """First spike time from rest with the plain Euler loop (1 us steps), inf if none."""
    state = felif.felif_initial_state(params, current_a.shape)
    t = torch.full(current_a.shape, float("inf"), dtype=F64)
    for k in range(round(horizon_s / 1e-6)):
        state = felif.felif_euler_step(current_a, state, params, 1e-6)
        t = torch.where((state.voltage_v >= params.v_thr_v) & torch.isinf(t), (k + 1) * 1e-6, t)
        if k % 256 == 0 and bool(torch.isfinite(t).all()):
            break
    return t


def test_charge_to_spike_is_membrane_plus_switching_charge_at_the_defaults():
    p = felif.FeLIFParams.default(1)
    c_tot = float(fecap.linear_capacitance_f(p))
    assert float(membrane_charge_c(p)) == pytest.approx(c_tot * 2.5)  # 1.43 pC
    assert float(switching_charge_c(p)) == pytest.approx(2 * 25e-12 * 0.22)  # 11 pC
    assert float(charge_to_spike_c(p)) == pytest.approx(12.43e-12, rel=1e-3)
    # from the reset state (V_reset, -P_s) the membrane needs C_tot*(V_thr - V_reset)
    assert float(charge_to_spike_c(p, v_start_v=-1.5)) == pytest.approx(c_tot * 4.0 + 11e-12)


def test_charge_to_spike_is_the_input_charge_to_the_first_spike():
    """Under a constant 1-10 nA the plain loop's first spike from rest comes after I*t = Q:
    within 1.1 % at the design's defaults (leakage, ~16 pA at threshold, and the switching not
    quite complete at threshold are the difference), within 8 % over a population with 10 %
    spread (a device with a higher E_a or thinner HZO has not switched fully at threshold)."""
    current = torch.tensor([[1e-9], [3e-9], [10e-9]], dtype=F64)
    default = felif.FeLIFParams.default(1)
    t = _first_spike_s(current, default, 15e-3)
    assert bool(((current * t / charge_to_spike_c(default)) - 1).abs().max() < 0.011)
    params = _population(4)
    t = _first_spike_s(current[1:].expand(2, 4), params, 12e-3)
    ratio = current[1:] * t / charge_to_spike_c(params)
    assert bool((ratio - 1).abs().max() < 0.08), ratio


def test_rheobase_brackets_the_reference_loop_and_falls_towards_the_leakage_at_threshold():
    params = _population(3)
    horizon = 5e-3
    rb = rheobase_a(params, horizon, rel_tol=1e-3)
    n_steps = round(horizon / 1e-6)
    rest = felif.felif_initial_state(params, (3,))
    _, fires = felif.felif_reference_window(rb * 1.002, rest, params, n_steps, 1e-6)
    _, quiet = felif.felif_reference_window(rb * 0.99, rest, params, n_steps, 1e-6)
    assert bool(fires.all()) and not bool(quiet.any())
    # short horizon: the charge to spike delivered in the horizon, plus the leakage
    expect = charge_to_spike_c(params) / horizon + threshold_leakage_a(params)
    assert torch.allclose(rb, expect, rtol=0.03)
    # longer horizons: lower, never below the leakage at threshold (16 pA at the defaults)
    default = felif.FeLIFParams.default(1)
    leak = float(threshold_leakage_a(default))
    assert leak == pytest.approx(16.2e-12, rel=0.01)
    rb_20, rb_50 = (float(rheobase_a(default, h, rel_tol=1e-2)) for h in (20e-3, 50e-3))
    assert float(rheobase_a(default, horizon)) > rb_20 > rb_50 > leak


def test_rheobase_rejects_bad_arguments():
    with pytest.raises(ValueError, match="horizon"):
        rheobase_a(felif.FeLIFParams.default(1), 0.0)
