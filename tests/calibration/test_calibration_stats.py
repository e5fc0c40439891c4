"""Population statistics on synthetic populations with known distributions."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.stats import (
    LadderData,
    choose_family,
    correlations,
    parameter_stats,
    rram_ladder,
)


def test_family_choice_separates_normal_and_lognormal() -> None:
    rng = np.random.default_rng(0)
    assert choose_family(rng.normal(10.0, 1.0, 2000)) == "normal"
    assert choose_family(rng.lognormal(0.0, 0.5, 2000)) == "lognormal"
    assert choose_family(rng.normal(0.0, 1.0, 100)) == "normal"  # negative values


def test_stats_drop_outliers_and_deconvolve_fit_noise() -> None:
    rng = np.random.default_rng(1)
    true = rng.normal(5.0, 0.5, 4000)
    se = np.full(true.size, 0.4)
    fitted = true + rng.normal(0.0, 0.4, true.size)
    fitted[:10] = 1e3  # failed fits far away
    st = parameter_stats(fitted, "V", stderr=se)
    assert st.n_devices == 3990
    assert abs(st.mean - 5.0) < 0.03
    assert abs(st.std - 0.5) / 0.5 < 0.05
    raw = parameter_stats(fitted, "V", stderr=se, deconvolve=False)
    assert raw.std > 0.6


def test_correlations_recover_a_known_correlation() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(0, 1, 3000)
    b = 0.6 * a + 0.8 * rng.normal(0, 1, 3000)
    c = np.full(3000, 2.0)  # no spread: left out
    corr = correlations({"a": a, "b": b, "c": c})
    assert corr is not None and corr.names == ["a", "b"]
    assert abs(corr.matrix[0][1] - 0.6) < 0.03


def _ladder_data(rng: np.random.Generator, n_cells: int = 300, n_stuck: int = 9) -> tuple:
    targets = np.linspace(6e-6, 242e-6, 8)
    sig_lvl = 1.5e-6
    floor, slope = 2e-7, 0.01
    drift, sig_dec = -0.01, 0.5e-6
    vc, vk, vt, vr, vs = [], [], [], [], []
    rc, rl, rg = [], [], []
    tc, tl, tt, tg = [], [], [], []
    times = np.logspace(0, 4, 5)
    for cell in range(n_cells):
        stuck = cell < n_stuck
        for k, tgt in enumerate(targets):
            g = 3e-6 if stuck else tgt + rng.normal(0, sig_lvl)
            (
                vc.append(cell),
                vk.append(k),
                vt.append(tgt),
                vr.append(g),
                vs.append(0.0 if stuck else 1.0),
            )
            reads = g + rng.normal(0, floor + slope * g, 20)
            rc += [cell] * 20
            rl += [k] * 20
            rg += list(reads)
            d = np.log10(times / times[0])
            gt = g * (1 + drift * d) + rng.normal(0, 1, d.size) * sig_dec * d
            tc += [cell] * d.size
            tl += [k] * d.size
            tt += list(times)
            tg += list(gt)
    arr = np.asarray
    data = LadderData(
        verify_cell=arr(vc),
        verify_level=arr(vk),
        verify_target_siemens=arr(vt),
        verify_reached_siemens=arr(vr),
        verify_success=arr(vs),
        read_cell=arr(rc),
        read_level=arr(rl),
        read_siemens=arr(rg),
        retention_cell=arr(tc),
        retention_level=arr(tl),
        retention_time_s=arr(tt),
        retention_siemens=arr(tg),
        read_voltage_v=0.2,
    )
    return data, targets, sig_lvl, (floor, slope), (drift, sig_dec)


def test_rram_ladder_recovers_levels_noise_relaxation_and_stuck_rate() -> None:
    rng = np.random.default_rng(3)
    data, targets, sig_lvl, (floor, slope), (drift, sig_dec) = _ladder_data(rng)
    lad = rram_ladder(data)
    assert len(lad.levels) == 8
    for lv, tgt in zip(lad.levels, targets, strict=True):
        assert abs(lv.mean_siemens - tgt) / tgt < 0.02
        assert abs(lv.sigma_siemens - sig_lvl) / sig_lvl < 0.15
    assert lad.stuck_fraction == pytest.approx(9 / 300)
    assert lad.stuck_conductance_siemens == pytest.approx(3e-6)
    assert lad.read_noise.slope_rel == pytest.approx(slope, rel=0.1)
    assert lad.read_noise.floor_siemens == pytest.approx(floor, rel=0.5)
    assert lad.relaxation.drift_rel_per_decade == pytest.approx(drift, rel=0.1)
    assert lad.relaxation.sigma_siemens_per_decade == pytest.approx(sig_dec, rel=0.1)
    assert lad.relaxation.t0_s == pytest.approx(1.0)


def test_stuck_cells_reading_noise_around_zero_give_a_zero_conductance() -> None:
    data, *_ = _ladder_data(np.random.default_rng(4), n_cells=40, n_stuck=3)
    stuck = data.verify_cell < 3
    data.verify_reached_siemens[stuck] = -5e-12  # an unformed cell: SMU noise around 0 A
    lad = rram_ladder(data)
    assert lad.stuck_fraction == pytest.approx(3 / 40)
    assert lad.stuck_conductance_siemens == 0.0
