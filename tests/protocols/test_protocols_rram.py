"""RRAM protocols through the drivers on the simulated lab, against the device truth."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from protocols.base import DeviceUnderTest

RRAM_SITE = 2


def _bench_on_rram(lab: Any, tmp_path: Any, col: int = 1, row: int = 1) -> tuple[Any, Any]:
    from instruments.station import open_bench

    bench = open_bench(lab.write_station(tmp_path / "station.yaml"))
    bench.prober.step_to(col, row, RRAM_SITE)
    bench.prober.contact()
    truth = lab.truth_for((col, row), RRAM_SITE)
    device = DeviceUnderTest(
        col, row, f"{col},{row}", RRAM_SITE, "rram", {"area_m2": truth.area_m2}
    )
    return bench, device


def _true_param(lab: Any, col: int, row: int, name: str) -> float:
    from bruno_lab.devices.rram import RramParams

    params = lab.truth_for((col, row), RRAM_SITE).params
    return float(params.get(name, RramParams.specs()[name].default))


def _formed(bench: Any, device: Any) -> None:
    from protocols.rram_forming import RramFormingParams
    from protocols.rram_forming import run as form

    result = form(bench, device, RramFormingParams(max_v=3.5))
    assert result.scalars["formed"] == 1.0


def test_forming_voltage_matches_the_device(sim_lab_factory, truth_factory, tmp_path) -> None:
    from protocols.rram_forming import RramFormingParams
    from protocols.rram_forming import run as form

    lab = sim_lab_factory(truth=truth_factory(), seed=41)
    bench, device = _bench_on_rram(lab, tmp_path)
    with bench:
        result = form(bench, device, RramFormingParams(max_v=3.5, step_v=0.05))
    v_form = _true_param(lab, 1, 1, "v_form_v")
    assert result.scalars["formed"] == 1.0
    assert result.scalars["forming_voltage_v"] == pytest.approx(v_form, abs=0.3)
    voltage_v, _ = result.arrays["voltage_v"]
    assert voltage_v.max() == pytest.approx(3.5) and voltage_v[-1] == pytest.approx(0.0)


@pytest.mark.slow
def test_program_verify_reaches_the_eight_level_ladder(
    sim_lab_factory, truth_factory, tmp_path
) -> None:
    from bruno_lab.devices.rram import rram_conductance_siemens
    from instruments.sim.physics import params_for
    from protocols.rram_program_verify import RramProgramVerifyParams
    from protocols.rram_program_verify import run as program

    lab = sim_lab_factory(truth=truth_factory(), seed=42)
    bench, device = _bench_on_rram(lab, tmp_path)
    params = RramProgramVerifyParams()
    with bench:
        _formed(bench, device)
        result = program(bench, device, params)
    targets, _ = result.arrays["target_conductance_siemens"]
    reached, _ = result.arrays["reached_conductance_siemens"]
    success, _ = result.arrays["success"]
    attempts, _ = result.arrays["attempts"]
    assert targets == pytest.approx(np.linspace(6e-6, 242e-6, 8))
    assert np.array_equal(success == 1, np.abs(reached - targets) <= params.tolerance_siemens)
    assert result.scalars["n_success"] >= 7 and result.scalars["n_levels"] == 8
    assert np.all(attempts >= 0) and result.scalars["mean_attempts"] == pytest.approx(
        attempts.mean()
    )
    # the last level programmed is the lowest target: the device's true conductance is there
    sim_device = lab.device((1, 1), RRAM_SITE)
    g_true = float(rram_conductance_siemens(sim_device.state, params_for(sim_device))[0])
    assert g_true == pytest.approx(reached[0], abs=3 * params.tolerance_siemens)


@pytest.mark.slow
def test_read_noise_grows_with_conductance_as_the_device_says(
    sim_lab_factory, truth_factory, tmp_path
) -> None:
    from protocols.rram_read_noise import RramReadNoiseParams
    from protocols.rram_read_noise import run as read_noise

    lab = sim_lab_factory(truth=truth_factory(), seed=43)
    bench, device = _bench_on_rram(lab, tmp_path)
    params = RramReadNoiseParams(targets_siemens=[20e-6, 200e-6], n_reads=60)
    with bench:
        _formed(bench, device)
        result = read_noise(bench, device, params)
    means, _ = result.arrays["level_mean_siemens"]
    stds, _ = result.arrays["level_std_siemens"]
    floor = _true_param(lab, 1, 1, "read_floor_s")
    rel = _true_param(lab, 1, 1, "read_rel")
    expected = floor + rel * means
    assert stds[1] > stds[0]
    assert stds == pytest.approx(expected, rel=0.5)
    level, _ = result.arrays["level"]
    assert np.bincount(level).tolist() == [60, 60]


@pytest.mark.slow
def test_retention_runs_a_day_of_virtual_time_in_seconds(
    sim_lab_factory, truth_factory, tmp_path
) -> None:
    from protocols.rram_retention import RramRetentionParams
    from protocols.rram_retention import run as retention

    lab = sim_lab_factory(truth=truth_factory(), seed=44)
    bench, device = _bench_on_rram(lab, tmp_path)
    params = RramRetentionParams(
        targets_siemens=[100e-6], first_read_s=1.0, last_read_s=86400.0, n_points=6
    )
    start = time.perf_counter()
    with bench:
        _formed(bench, device)
        t0 = bench.clock.now_s()
        result = retention(bench, device, params)
        virtual_s = bench.clock.now_s() - t0
    assert time.perf_counter() - start < 60
    times, _ = result.arrays["time_s"]
    # read times are differences of virtual clock readings: allow float rounding
    assert times[0] >= 1.0 - 1e-9 and times[-1] >= 86400.0 - 1e-6 and virtual_s >= 86400.0 - 1e-6
    assert np.all(np.diff(times) > 0)
    assert np.isfinite(result.scalars["drift_rel_per_decade"])


@pytest.mark.slow
def test_dc_cycling_and_pulses_switch_the_cell(sim_lab_factory, truth_factory, tmp_path) -> None:
    from protocols.rram_iv import RramIvParams
    from protocols.rram_iv import run as iv
    from protocols.rram_pulsed import RramPulsedParams
    from protocols.rram_pulsed import run as pulsed

    lab = sim_lab_factory(truth=truth_factory(), seed=45)
    bench, device = _bench_on_rram(lab, tmp_path)
    with bench:
        _formed(bench, device)
        cycling = iv(bench, device, RramIvParams(n_cycles=3))
        pulses = pulsed(bench, device, RramPulsedParams(n_repeats=1))
    s = cycling.scalars
    assert 0.3 < s["set_voltage_v"] < 1.5 and -1.8 < s["reset_voltage_v"] < -0.2
    assert s["g_lrs_siemens"] > 3 * s["g_hrs_siemens"]
    cycle_index, _ = cycling.arrays["cycle_index"]
    assert sorted(set(cycle_index.tolist())) == [0, 1, 2]
    g, _ = pulses.arrays["conductance_siemens"]
    polarity, _ = pulses.arrays["polarity"]
    last_set = g[polarity == 1][-1]
    last_reset = g[polarity == -1][-1]
    assert last_set > 2 * last_reset
    assert pulses.scalars["n_pulses"] == len(g) == 9  # 4 SET + 5 RESET amplitudes


def test_endurance_records_the_window_at_checkpoints(
    sim_lab_factory, truth_factory, tmp_path
) -> None:
    from protocols.rram_endurance import RramEnduranceParams
    from protocols.rram_endurance import run as endurance

    lab = sim_lab_factory(truth=truth_factory(), seed=46)
    bench, device = _bench_on_rram(lab, tmp_path)
    params = RramEnduranceParams(max_cycles=100, checkpoints_per_decade=2)
    with bench:
        _formed(bench, device)
        result = endurance(bench, device, params)
    cycles, _ = result.arrays["cycle"]
    lrs, _ = result.arrays["g_lrs_siemens"]
    hrs, _ = result.arrays["g_hrs_siemens"]
    assert cycles.tolist() == params.checkpoints()[: len(cycles)]
    closed = result.scalars["n_cycles_to_close"]
    ratio = lrs / hrs
    if np.isnan(closed):
        assert np.all(ratio >= params.min_window_ratio) and cycles[-1] == 100
    else:
        assert ratio[-1] < params.min_window_ratio and closed == cycles[-1]


def test_single_target_failure_names_the_target_not_no_switching(
    sim_lab_factory, truth_factory, tmp_path
) -> None:
    from protocols.base import DeviceFailure
    from protocols.rram_program_verify import RramProgramVerifyParams
    from protocols.rram_program_verify import run as program_verify

    lab = sim_lab_factory(truth=truth_factory(), seed=46)
    bench, device = _bench_on_rram(lab, tmp_path)
    params = RramProgramVerifyParams(targets_siemens=[100e-6], max_attempts=2)
    with bench, pytest.raises(DeviceFailure, match=r"target 0\.0001 S not reached .* 2 pulses"):
        program_verify(bench, device, params)  # a pristine (unformed) cell cannot reach it
