"""Feature extraction on synthetic traces whose features are known analytically."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bruno_lab.errors import DataError
from calibration.features import (
    endurance_cycles_to_close,
    firing_rates_hz,
    forming_voltage_v,
    integrate_charge_c,
    iv_switching_voltages,
    pv_loop_features,
)


def _loop(vc_pos: float, vc_neg: float, ps: float = 0.2, w: float = 0.3, periods: int = 2):
    t = np.linspace(0, periods, 4000 * periods, endpoint=False)
    v = 3.0 * (2 / np.pi) * np.arcsin(np.sin(2 * np.pi * t))  # triangle, ±3 V
    rising = np.gradient(v) > 0
    p = np.where(rising, ps * np.tanh((v - vc_pos) / w), ps * np.tanh((v - vc_neg) / w))
    return v, p


def test_pv_loop_features_of_a_shifted_loop() -> None:
    v, p = _loop(1.2, -0.8)
    f = pv_loop_features(v, p)
    assert f["vc_pos_v"] == pytest.approx(1.2, abs=2e-3)
    assert f["vc_neg_v"] == pytest.approx(-0.8, abs=2e-3)
    assert f["imprint_v"] == pytest.approx(0.2, abs=2e-3)
    assert f["pr_pos_c_m2"] == pytest.approx(0.2 * math.tanh(0.8 / 0.3), rel=1e-3)
    assert f["pr_neg_c_m2"] == pytest.approx(-0.2 * math.tanh(1.2 / 0.3), rel=1e-3)


def test_symmetric_loop_has_no_imprint() -> None:
    f = pv_loop_features(*_loop(1.0, -1.0))
    assert abs(f["imprint_v"]) < 1e-3


def test_pv_loop_rejects_corrupt_input() -> None:
    v, p = _loop(1.0, -1.0)
    p[10] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        pv_loop_features(v, p)
    with pytest.raises(DataError, match="differ in length"):
        pv_loop_features(v, np.zeros(v.size - 5))


def test_integrated_charge_of_a_constant_current() -> None:
    t = np.linspace(0, 1e-6, 101)
    q = integrate_charge_c(t, np.full(101, 2e-3))
    assert q[-1] == pytest.approx(2e-9)


def test_firing_rates_and_first_spikes() -> None:
    rates, first = firing_rates_hz(
        np.array([1e-9, 2e-9, 3e-9]),
        np.array([0.01, 0.02, 0.005, 0.004]),
        np.array([1, 1, 2, 2]),
        0.1,
    )
    np.testing.assert_allclose(rates, [0.0, 20.0, 20.0])
    assert math.isnan(first[0]) and first[1] == 0.01 and first[2] == 0.004
    with pytest.raises(DataError, match="out of range"):
        firing_rates_hz(np.array([1e-9]), np.array([0.1]), np.array([3]), 0.1)


def test_forming_voltage_is_the_first_current_jump() -> None:
    v = np.linspace(0, 4, 401)
    i = 1e-9 * (1 + v)
    i[v >= 2.73] = 1e-4
    assert forming_voltage_v(v, i) == pytest.approx(v[v >= 2.73][0])
    assert math.isnan(forming_voltage_v(v, 1e-9 * (1 + v)))


def test_iv_switching_voltages_per_cycle() -> None:
    seg = np.concatenate(
        [np.linspace(0, 1.5, 31), np.linspace(1.5, -1.5, 61), np.linspace(-1.5, 0, 31)]
    )
    v_all, i_all, c_all = [], [], []
    for cyc, (vs, vr) in enumerate([(0.8, -0.9), (1.0, -0.7)]):
        g = np.empty(seg.size)
        state = 1e-6
        for k, vv in enumerate(seg):
            if vv >= vs:
                state = 1e-4
            if vv <= vr:
                state = 1e-6
            g[k] = state
        v_all.append(seg), i_all.append(g * seg), c_all.append(np.full(seg.size, cyc))
    v_set, v_reset = iv_switching_voltages(
        np.concatenate(v_all), np.concatenate(i_all), np.concatenate(c_all)
    )
    np.testing.assert_allclose(v_set, [0.8, 1.0], atol=0.05)
    np.testing.assert_allclose(v_reset, [-0.9, -0.7], atol=0.05)


def test_endurance_window_closes() -> None:
    cyc = np.array([1, 10, 100, 1000, 10000])
    lrs = np.array([1e-4, 1e-4, 8e-5, 3e-5, 2e-5])
    hrs = np.full(5, 1e-5)
    assert endurance_cycles_to_close(cyc, lrs, hrs, 5.0) == 1000
    assert math.isnan(endurance_cycles_to_close(cyc, lrs, hrs, 1.5))


def test_pv_loop_features_survive_a_quantized_voltage() -> None:
    v, p = _loop(1.2, -0.8)
    vq = np.round(v / 0.025) * 0.025  # an 8-bit scope channel: runs of equal samples
    f = pv_loop_features(vq, p)
    assert f["vc_pos_v"] == pytest.approx(1.2, abs=0.02)
    assert f["vc_neg_v"] == pytest.approx(-0.8, abs=0.02)
