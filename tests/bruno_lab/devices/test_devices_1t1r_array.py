"""1T1R physics (bruno_lab.devices.one_t_one_r) against independent references: the square-law
and weak-inversion limits of the EKV saturation current, a finite difference of the EKV drain
current for the channel resistance, a scalar root finder for the series read, and the SET
current of a pulse, which the transistor holds at its saturation current."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from bruno_lab.devices.one_t_one_r import (
    TransistorParams,
    gate_voltage_for_current_v,
    on_resistance_ohm,
    one_t_one_r_pulse,
    one_t_one_r_read_siemens,
    pulse_current_limit_a,
    saturation_current_a,
    series_cell_voltage_v,
    specific_current_a,
    thermal_voltage_v,
)
from bruno_lab.devices.params import sample_population
from bruno_lab.devices.rram import RramParams, cell_current_a, rram_initial_state

U_T = 1.380649e-23 * 298.0 / 1.602176634e-19


def _fet(n: int = 1, **values: float) -> TransistorParams:
    return TransistorParams.default(n).replace(**values)


def test_saturation_current_has_the_square_law_and_weak_inversion_limits() -> None:
    fet = _fet(vth_v=0.45, beta_a_v2=0.6e-3, slope_n=1.3)
    assert float(thermal_voltage_v(298.0)) == pytest.approx(U_T, rel=1e-12)
    for v_ov in (0.6, 1.0, 1.8):  # strong inversion: beta/(2n) (V_GS - V_T)^2
        got = float(saturation_current_a(0.45 + v_ov, fet)[0])
        square_law = 0.6e-3 / (2 * 1.3) * v_ov**2
        assert got == pytest.approx(square_law, rel=0.02 * 0.6 / v_ov)
    for v_ov in (-0.6, -0.5):  # weak inversion: I_spec exp((V_GS - V_T)/(n U_T))
        got = float(saturation_current_a(0.45 + v_ov, fet)[0])
        i_spec = 2 * 1.3 * 0.6e-3 * U_T**2
        assert got == pytest.approx(i_spec * math.exp(v_ov / (1.3 * U_T)), rel=2e-3)
    # monotone, and the inverse gives the gate back
    gates = torch.linspace(0.2, 3.0, 57, dtype=torch.float64)
    fet_n = _fet(57)
    current = saturation_current_a(gates, fet_n)
    assert bool((current.diff() > 0).all())
    assert torch.allclose(gate_voltage_for_current_v(current, fet_n), gates, atol=1e-9)


def test_channel_resistance_is_the_slope_of_the_ekv_drain_current_at_zero_drain_voltage() -> None:
    fet = _fet(vth_v=0.5, beta_a_v2=1e-3, slope_n=1.25)
    i_spec = float(specific_current_a(fet)[0])

    def drain_current(v_gs: float, v_ds: float) -> float:  # EKV, source at 0 V, float64 numpy
        x = (v_gs - 0.5) / (2 * 1.25 * U_T)
        f = lambda u: np.logaddexp(0.0, u) ** 2  # noqa: E731
        return i_spec * (f(x) - f(x - v_ds / (2 * U_T)))

    for v_gs in (0.8, 1.5, 3.3):
        h = 1e-7
        slope = (drain_current(v_gs, h) - drain_current(v_gs, -h)) / (2 * h)
        assert float(on_resistance_ohm(v_gs, fet)[0]) == pytest.approx(1.0 / slope, rel=1e-5)
    # strong inversion: 1 / (beta (V_GS - V_T))
    assert float(on_resistance_ohm(3.3, fet)[0]) == pytest.approx(1 / (1e-3 * 2.8), rel=2e-3)


def test_series_read_solves_the_nonlinear_divider() -> None:
    p = RramParams.default(4)
    gap = torch.tensor([0.3e-9, 0.8e-9, 1.2e-9, 1.6e-9], dtype=torch.float64)
    r = torch.tensor([50.0, 600.0, 2000.0, 1e4], dtype=torch.float64)
    v_cell = series_cell_voltage_v(torch.full((4,), 0.3, dtype=torch.float64), gap, p, r)
    for k in range(4):
        scale = 1e-3 * math.exp(-float(gap[k]) / 0.25e-9)
        ref = brentq(
            lambda x, k=k, s=scale: x + float(r[k]) * s * math.sinh(x / 0.25) - 0.3, 0, 0.3
        )
        assert float(v_cell[k]) == pytest.approx(ref, abs=1e-12)


def test_the_transistor_holds_the_set_current_at_its_saturation_current() -> None:
    n = 64
    gen = torch.Generator().manual_seed(3)
    cells = sample_population(RramParams.default(1), {"i0_a": 0.1, "gap_max_m": 0.03}, n, gen)
    fet = sample_population(TransistorParams.default(1), {"vth_v": 0.03, "beta_a_v2": 0.05}, n, gen)
    state = rram_initial_state(cells, formed=True)  # HRS
    gates = torch.linspace(1.1, 2.2, n, dtype=torch.float64)
    current, new = one_t_one_r_pulse(
        torch.full((n,), 1.8), torch.zeros(n), gates, 1e-6, state, cells, fet, gen
    )
    # the independent reference: the square law at each cell's own V_T and beta
    square_law = fet.beta_a_v2 / (2 * fet.slope_n) * (gates - fet.vth_v) ** 2
    assert torch.allclose(current, square_law, rtol=0.03)
    assert torch.allclose(current, saturation_current_a(gates, fet), rtol=1e-6)
    # and the level the filament settles at rises with the gate voltage (compliance-limited:
    # a few pulses at one gate creep up to it, with cycle-to-cycle spread on each)
    for _ in range(3):
        _, new = one_t_one_r_pulse(
            torch.full((n,), 1.8), torch.zeros(n), gates, 1e-6, new, cells, fet, gen
        )
    g = one_t_one_r_read_siemens(0.2, 3.3, new, cells, fet)
    ranks = np.argsort(np.argsort(g.numpy()))
    assert float(np.corrcoef(np.arange(n), ranks)[0, 1]) > 0.9
    assert 5e-6 < float(g[0]) < 40e-6 and 200e-6 < float(g[-1]) < 600e-6
    # without a transistor (no limit) the same pulse runs the cell to a far lower resistance
    unlimited = cell_current_a(torch.tensor(1.8, dtype=torch.float64), new.gap_m, cells)
    assert bool((unlimited > current).all())


def test_reads_see_the_channel_in_series_and_noise_only_on_formed_cells() -> None:
    cells = RramParams.default(3)
    fet = TransistorParams.default(3)
    state = rram_initial_state(cells, formed=True)._replace(
        gap_m=torch.tensor([0.6e-9, 1.0e-9, 1.0e-9], dtype=torch.float64),
        formed=torch.tensor([True, True, False]),
    )
    g = one_t_one_r_read_siemens(0.2, 3.3, state, cells, fet)
    g_cell = cell_current_a(torch.tensor(0.2, dtype=torch.float64), state.gap_m, cells) / 0.2
    assert float(g[0]) < float(g_cell[0])  # the channel's R_on lowers what a read sees
    assert float(g[2]) == pytest.approx(1e-9)  # pristine: g_pristine_s
    noisy = torch.stack(
        [one_t_one_r_read_siemens(0.2, 3.3, state, cells, fet, torch.Generator().manual_seed(k))
         for k in range(400)]
    )  # fmt: skip
    sigma = noisy.std(0)
    assert float(sigma[2]) == 0.0
    expected = 0.2e-6 + 0.005 * g[0]
    assert float(sigma[0]) == pytest.approx(float(expected), rel=0.15)


def test_saturation_current_is_differentiable_in_its_parameters() -> None:
    fet = _fet(1)
    vth = fet.vth_v.clone().requires_grad_(True)
    beta = fet.beta_a_v2.clone().requires_grad_(True)

    def f(vth: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        return saturation_current_a(torch.tensor([1.4], dtype=torch.float64),
                                    fet.replace(vth_v=vth, beta_a_v2=beta))  # fmt: skip

    assert torch.autograd.gradcheck(f, (vth, beta))


def test_the_reset_limit_is_the_channel_current_at_the_cells_operating_point() -> None:
    """A RESET's limit is ``I_sat(V_G - V_BL - V_x)`` where the cell's current meets it (source
    degeneration): against a scalar root finder per cell, and the full amplitude where the
    cell alone draws less than the channel allows."""
    n = 200
    gen = torch.Generator().manual_seed(11)
    cells = sample_population(RramParams.default(1), {"i0_a": 0.2, "v0_v": 0.1}, n, gen)
    fet = sample_population(TransistorParams.default(1), {"vth_v": 0.05, "beta_a_v2": 0.1}, n, gen)
    uniform = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)  # noqa: E731
    gap = uniform(0.1e-9, 1.7e-9)
    source = uniform(0.3, 2.0)
    gate = uniform(0.8, 3.3)
    bit = torch.zeros(n, dtype=torch.float64)
    got = pulse_current_limit_a(bit, source, gate, fet, cells, gap).numpy()
    limited = 0
    for k in range(n):
        scale = float(cells.i0_a[k]) * math.exp(-float(gap[k]) / float(cells.g0_m[k]))
        v0, amplitude = float(cells.v0_v[k]), float(source[k])
        sub = fet.select(torch.tensor([k]))

        def channel(v_x: float, k: int = k, sub: TransistorParams = sub) -> float:
            return float(saturation_current_a(float(gate[k]) - v_x, sub)[0])

        excess = lambda v_x, s=scale, v0=v0, ch=channel: s * math.sinh(v_x / v0) - ch(v_x)  # noqa: E731
        if excess(amplitude) <= 0:  # the cell alone draws less: the channel does not limit
            expected = channel(amplitude)
        else:
            limited += 1
            expected = channel(brentq(excess, 0.0, amplitude, xtol=1e-15, rtol=1e-15))
        assert got[k] == pytest.approx(expected, rel=1e-9), k
    assert 20 < limited < n  # both cases occur
    # a SET's limit is the channel's at V_G - V_SL whatever the cell
    set_limit = pulse_current_limit_a(source, bit, gate, fet, cells, gap)
    assert torch.allclose(set_limit, saturation_current_a(gate, fet), rtol=1e-12)
