"""RRAM: the Stanford-PKU I-V, forming, DC SET/RESET with compliance, pulses, program-and-verify
onto 8 levels, read noise, relaxation, population with stuck cells, gradients."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from bruno_lab.devices.rram import (
    RramParams,
    RramState,
    cell_current_a,
    rram_apply_pulse,
    rram_apply_voltage,
    rram_conductance_siemens,
    rram_form,
    rram_initial_state,
    rram_read_current_a,
    rram_relax,
    sample_rram_population,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _with_gap(p: RramParams, gap_nm: list[float]) -> RramState:
    s = rram_initial_state(p, formed=True)
    return s._replace(gap_m=torch.tensor(gap_nm, dtype=torch.float64) * 1e-9)


def test_iv_is_the_published_formula_and_conductance_is_noiseless():
    p = RramParams.default(3)
    s = _with_gap(p, [0.5, 1.0, 1.6])
    for v in (0.1, 0.2, -0.3):
        got = cell_current_a(torch.tensor(v), s.gap_m, p)
        ref = [1e-3 * math.exp(-g / 0.25) * math.sinh(v / 0.25) for g in (0.5, 1.0, 1.6)]
        assert torch.allclose(got, torch.tensor(ref, dtype=torch.float64), rtol=1e-12)
    g = rram_conductance_siemens(s, p, 0.2)
    assert torch.equal(g, rram_conductance_siemens(s, p, 0.2))
    assert 4e-6 < float(g[2]) < 10e-6 and float(g[0]) > 242e-6  # 6..242 µS fits the gap range
    pristine = rram_initial_state(p)
    assert torch.equal(rram_conductance_siemens(pristine, p), p.g_pristine_s)


def test_forming_voltages_follow_the_device_spread_and_stuck_off_never_forms():
    mean = RramParams.default(1)
    p, s = sample_rram_population(mean, {"v_form_v": 0.08}, 120, _gen(1), stuck_off_rate=0.05)
    s, v_form = rram_form(s, p, _gen(2), max_voltage_v=4.0, step_v=0.02)
    off = s.stuck < 0
    assert bool(off.any()) and bool(torch.isnan(v_form[off]).all())
    vf = v_form[~off]
    assert not bool(torch.isnan(vf).any()) and bool(s.formed[~off].all())
    corr = torch.corrcoef(torch.stack([vf, p.v_form_v[~off]]))[0, 1]
    assert float(corr) > 0.8  # the cell's own forming voltage decides
    assert 1.8 < float(vf.mean()) < 2.6 and float(vf.std()) > 0.05
    g = rram_conductance_siemens(s, p)[~off]
    assert float(g.min()) > 10e-6 and float(g.max()) < 1e-3  # compliance-limited filament


def _sweep() -> torch.Tensor:
    up = torch.arange(0, 151, dtype=torch.float64) * 0.01
    return torch.cat([up, up.flip(0), -up, -up.flip(0)])


def test_dc_sweep_sets_under_compliance_and_resets_with_cycle_to_cycle_spread():
    p = RramParams.default(1)
    s = rram_initial_state(p, formed=True)
    v = _sweep()
    n = 151
    limit = torch.where(v > 0, 100e-6, 1e-2)[None]  # SET compliance, RESET unconstrained
    gen = _gen(3)
    v_set, g_hrs = [], []
    for _ in range(6):
        i, s = rram_apply_voltage(v[None], 0.01, s, p, limit, gen)
        assert float(i[0, :n].max()) <= 100e-6 * (1 + 1e-9)
        v_set.append(float(v[int(torch.nonzero(i[0, :n] > 50e-6)[0])]))
        g_hrs.append(float(rram_conductance_siemens(s, p)))
    assert all(0.5 < x < 1.2 for x in v_set)
    assert max(v_set) - min(v_set) > 0.0  # cycle-to-cycle variability
    assert all(g < 12e-6 for g in g_hrs)  # RESET back to the high-resistance state


def test_pulses_depend_smoothly_and_monotonically_on_amplitude_and_width():
    p = RramParams.default(1).replace(sigma_c2c=0.0)
    start = _with_gap(p, [0.74])  # about 240 µS
    g_after = []
    amps = [0.6 + 0.02 * k for k in range(31)]
    for a in amps:
        _, s = rram_apply_voltage(torch.tensor([[-a]]), 100e-9, start, p, None, _gen())
        g_after.append(float(rram_conductance_siemens(s, p)))
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(g_after))
    steps = [a - b for a, b in itertools.pairwise(g_after)]
    assert max(steps) < 40e-6  # no jump across two 22 µS levels per 20 mV of amplitude
    assert g_after[0] > 230e-6 and g_after[-1] < 20e-6
    by_width = []
    for w in (10e-9, 100e-9, 1e-6, 10e-6):
        _, s = rram_apply_voltage(torch.tensor([[-0.8]]), w, start, p, None, _gen())
        by_width.append(float(rram_conductance_siemens(s, p)))
    assert all(b < a for a, b in itertools.pairwise(by_width))


def test_program_and_verify_reaches_eight_levels_from_242_to_6_microsiemens():
    p = RramParams.default(1)
    gen = _gen(4)
    targets = [242e-6 - k * 33.7e-6 for k in range(8)]
    s = rram_initial_state(p, formed=True)
    _, s = rram_apply_voltage(torch.tensor([[2.0]]), 100e-9, s, p, 2e-3, gen)  # strong SET
    amp = 0.5
    for tgt in targets:  # RESET pulses of increasing amplitude, verify after each
        for _ in range(400):
            g_read = float(rram_read_current_a(0.2, s, p, gen)) / 0.2
            if g_read <= tgt + 3e-6:
                break
            _, s = rram_apply_voltage(torch.tensor([[-amp]]), 100e-9, s, p, None, gen)
            amp += 0.002
        g = float(rram_conductance_siemens(s, p))
        assert g == pytest.approx(tgt, abs=8e-6), f"level {tgt * 1e6:.0f} µS"


def test_read_noise_grows_with_conductance():
    p = RramParams.default(3)
    s = _with_gap(p, [1.6, 1.0, 0.75])
    gen = _gen(5)
    reads = torch.stack([rram_read_current_a(0.2, s, p, gen) / 0.2 for _ in range(3000)])
    g = rram_conductance_siemens(s, p)
    assert torch.allclose(reads.mean(0), g, rtol=0.01)
    sd = reads.std(0)
    expected = 0.2e-6 + 0.005 * g
    assert torch.allclose(sd, expected, rtol=0.1)
    assert sd[0] < sd[1] < sd[2]


def test_relaxation_spreads_over_log_time():
    mean = RramParams.default(1)
    p, s = sample_rram_population(mean, {}, 2000, _gen(6), formed=True)
    s = s._replace(gap_m=torch.full_like(s.gap_m, 1.0e-9))
    g0 = rram_conductance_siemens(s, p)
    spreads = []
    for t in (10.0, 1e4):
        g = rram_conductance_siemens(rram_relax(s, p, t, _gen(7)), p)
        spreads.append(float((g - g0).std()))
        assert float(g.mean()) < float(g0.mean())  # programmed state decays on average
    assert spreads[1] > 2.5 * spreads[0]  # log10(1 + 1e4) / log10(11) = 3.8


def test_population_spread_stuck_cells_and_seeding():
    mean = RramParams.default(1)
    sig = {"g0_m": 0.05, "v_form_v": 0.05}
    p1, s1 = sample_rram_population(
        mean, sig, 4000, _gen(8), stuck_on_rate=0.02, stuck_off_rate=0.03
    )
    p2, s2 = sample_rram_population(
        mean, sig, 4000, _gen(8), stuck_on_rate=0.02, stuck_off_rate=0.03
    )
    assert torch.equal(p1.g0_m, p2.g0_m) and torch.equal(s1.stuck, s2.stuck)
    assert float(p1.g0_m.std() / p1.g0_m.mean()) == pytest.approx(0.05, rel=0.1)
    assert float((s1.stuck > 0).double().mean()) == pytest.approx(0.02, abs=0.008)
    assert float((s1.stuck < 0).double().mean()) == pytest.approx(0.03, abs=0.008)
    on = s1.stuck > 0
    v = torch.full((4000, 1), -1.5, dtype=torch.float64)  # a hard RESET for everyone
    _, after = rram_apply_voltage(v, 1e-6, s1, p1, None, _gen(9))
    assert torch.equal(after.gap_m[on], p1.gap_min_m[on])  # stuck-on cells do not move


def test_batch_equals_single_devices_and_gradcheck():
    p = RramParams.default(3).replace(sigma_c2c=0.0)
    s = _with_gap(p, [0.8, 1.2, 1.5])
    v = torch.tensor([[1.0, -0.9, 0.2], [1.2, 0.0, -0.7], [-0.8, 1.3, 0.3]], dtype=torch.float64)
    i_b, s_b = rram_apply_voltage(v, 1e-6, s, p, 300e-6, _gen())
    for k in range(3):
        one = RramState(s.gap_m[k : k + 1], s.formed[k : k + 1], s.stuck[k : k + 1])
        i_1, s_1 = rram_apply_voltage(
            v[k : k + 1], 1e-6, one, p.select(slice(k, k + 1)), 300e-6, _gen()
        )
        assert torch.allclose(i_1[0], i_b[k], rtol=1e-12) and torch.equal(
            s_1.gap_m[0], s_b.gap_m[k]
        )

    def g_of(gap_nm, g0_nm, v0):
        q = p.replace(g0_m=g0_nm * 1e-9, v0_v=v0)
        st = RramState(gap_nm * 1e-9, s.formed, s.stuck)
        return rram_conductance_siemens(st, q) * 1e6

    args = (
        torch.tensor([0.8, 1.2, 1.5], dtype=torch.float64, requires_grad=True),
        torch.tensor([0.25, 0.26, 0.24], dtype=torch.float64, requires_grad=True),
        torch.tensor([0.25, 0.3, 0.2], dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(g_of, args)


def test_stuck_state_ignores_programming():
    from bruno_lab.devices.rram import rram_stuck_state

    p = RramParams.default(2)
    s = rram_stuck_state(rram_initial_state(p), p, torch.tensor([True, False]))
    v = torch.tensor([[-2.0, 2.0], [2.0, -2.0]], dtype=torch.float64)
    _, after = rram_apply_voltage(v, 1e-6, s, p, None, _gen())
    assert torch.equal(after.gap_m, s.gap_m)
    g = rram_conductance_siemens(after, p)
    assert float(g[0]) > 1e-3 and float(g[1]) == pytest.approx(1e-9)


def test_the_same_pulse_switches_differently_from_cycle_to_cycle():
    p = RramParams.default(1)
    start = _with_gap(p, [0.75])
    g = []
    for seed in range(20):
        _, s = rram_apply_voltage(torch.tensor([[-0.85]]), 100e-9, start, p, None, _gen(seed))
        g.append(float(rram_conductance_siemens(s, p)))
    g = torch.tensor(g)
    assert float(g.std()) > 0.02 * float(g.mean())  # cycle-to-cycle spread
    assert float(g.max()) < float(rram_conductance_siemens(start, p))  # always a RESET


def test_a_pulse_without_noise_is_its_segments_applied_in_turn():
    p = RramParams.default(2).replace(sigma_c2c=0.0)
    start = _with_gap(p, [0.74, 1.2])
    volts = [0.0, -0.4, -0.8, -0.8, -0.4, 0.0]
    widths = [5e-9, 20e-9, 50e-9, 50e-9, 20e-9, 5e-9]
    i_pulse, s_pulse = rram_apply_pulse(
        torch.tensor(volts, dtype=torch.float64),
        torch.tensor(widths, dtype=torch.float64),
        start,
        p,
        None,
        _gen(1),
    )
    s = start
    for k, (v, w) in enumerate(zip(volts, widths, strict=True)):
        i, s = rram_apply_voltage(
            torch.full((2, 1), v, dtype=torch.float64), w, s, p, None, _gen(2)
        )
        assert torch.allclose(i_pulse[:, k], i[:, 0], rtol=1e-12, atol=0.0)
    assert torch.allclose(s_pulse.gap_m, s.gap_m, rtol=1e-12, atol=0.0)


def test_cycle_to_cycle_spread_is_per_pulse_whatever_the_time_grid():
    """One RESET pulse's relative spread of gap change is sigma_c2c whether the plateau is one
    segment or ten (a grid-dependent noise would shrink by sqrt(10))."""
    n, sigma = 4000, 0.15
    p = RramParams.default(n).replace(sigma_c2c=sigma)
    start = _with_gap(p, [0.9] * n)
    spreads = []
    for pieces in (1, 10):
        volts = torch.full((pieces,), -0.8)
        widths = torch.full((pieces,), 100e-9 / pieces)
        _, s = rram_apply_pulse(volts, widths, start, p, None, _gen(pieces))
        change = s.gap_m - start.gap_m
        spreads.append(float(change.std() / change.mean()))
    # the standard error of a std estimate over n = 4000 draws is ~1.1 %
    assert spreads[0] == pytest.approx(sigma, rel=0.06)
    assert spreads[1] == pytest.approx(sigma, rel=0.06)


def test_forming_hazard_is_the_published_rate_over_a_held_step():
    """Pristine cells held at V for dt form with probability 1 - exp(-dt*rate), rate =
    exp((V - V_form)/slope)/tau_form (written out here, not taken from the module)."""
    from bruno_lab.devices.rram import forming_rate_per_s

    n, v, dt = 20000, 2.4, 2e-3
    p = RramParams.default(n)
    rate = math.exp((v - 2.5) / 0.05) / 1e-3
    assert float(
        forming_rate_per_s(torch.tensor(v, dtype=torch.float64), 2.5, 0.05, 1e-3)
    ) == pytest.approx(rate)
    s = rram_initial_state(p)
    _, after = rram_apply_voltage(
        torch.full((n, 1), v, dtype=torch.float64), dt, s, p, 1e-4, _gen(8)
    )
    expected = 1.0 - math.exp(-dt * rate)
    sigma = math.sqrt(expected * (1 - expected) / n)
    assert float(after.formed.double().mean()) == pytest.approx(expected, abs=4 * sigma)
