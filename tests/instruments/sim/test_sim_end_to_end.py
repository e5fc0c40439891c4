"""End to end through the drivers: the measured physics matches the simulated device's truth."""

from __future__ import annotations

import numpy as np
import pytest

from instruments.station import open_bench

TIA_GAIN_V_PER_A = 1.0e4  # the sim's default wiring, written to the station file


def _pund_samples(rate_hz: float):
    from bruno_lab.devices.fecap_waveforms import pund_waveform

    time_s, voltage_v, windows = pund_waveform(3.0, width_s=1e-6, rise_s=200e-9, delay_s=1e-6)
    grid_s = np.arange(0.0, float(time_s[-1]), 1.0 / rate_hz)
    samples_v = np.interp(grid_s, time_s.numpy(), voltage_v.numpy())
    # The pulse itself: from its start to the end of its fall (the windows add the delay after).
    pulses = {name: (start, end - 1e-6) for name, (start, end) in windows.items()}
    return samples_v, pulses, float(time_s[-1])


def test_pund_switching_charge_matches_the_devices_switched_polarization(
    sim_lab, sim_station
) -> None:
    station = sim_station
    assert sim_lab.station()["wiring"]["tia_gain_v_per_a"] == TIA_GAIN_V_PER_A
    col, row = sim_lab.wafer.dies[7]
    samples_v, pulses, duration_s = _pund_samples(100e6)
    with open_bench(station, timeout_s=30.0) as bench:
        bench.prober.step_to(col, row, 0)  # site 0: a FeCap
        bench.prober.contact()
        bench.awg.upload_waveform("pund", samples_v, 100e6)
        bench.awg.configure_burst(1)
        bench.awg.output_enabled = True
        scale_s = duration_s / 9.0
        bench.scope.configure(scale_s, {1: (1.0, 0.0), 2: (1.0, 0.0)}, time_position_s=scale_s)
        bench.scope.arm_single()
        bench.scope.wait_complete()  # :SING and *TRG go to two sockets
        bench.awg.trigger()
        bench.scope.wait_acquired(30.0)
        time_s, tia_v = bench.scope.read_waveform(2, points=100_000)
        _, device_v = bench.scope.read_waveform(1, points=100_000)
    current_a = tia_v / TIA_GAIN_V_PER_A

    def charge_c(window: tuple[float, float]) -> float:
        inside = (time_s >= window[0]) & (time_s <= window[1])
        return float(np.trapezoid(current_a[inside], time_s[inside]))

    switched_c = charge_c(pulses["P"]) - charge_c(pulses["U"])
    truth = sim_lab.last_burst()
    start, end = np.searchsorted(truth.time_s, pulses["P"])
    area_m2 = sim_lab.truth_for((col, row), 0).area_m2
    expected_c = (truth.polarization_c_m2[end - 1] - truth.polarization_c_m2[start]) * area_m2
    assert expected_c > 0.5 * 2 * 0.22 * area_m2  # the P pulse did switch the device
    assert switched_c == pytest.approx(expected_c, rel=0.05)
    assert np.max(device_v) == pytest.approx(3.0, abs=0.1)  # the scope saw the PUND's level
    assert not sim_lab.servers["awg"].state.output_on  # the bench left it safe
    assert not sim_lab.servers["prober"].state.contact


RRAM_SITE = 2
SWEEP_DELAY_S = 0.01
SWEEP_NPLC = 0.1
STEP_V = 0.1


def _ramp(stop_v: float) -> np.ndarray:
    """0 -> stop -> 0 in STEP_V steps."""
    n = round(abs(stop_v) / STEP_V)
    up = np.sign(stop_v) * STEP_V * np.arange(n + 1)
    return np.concatenate([up, up[-2::-1]])


def _first(mask: np.ndarray) -> int:
    assert mask.any()
    return int(np.argmax(mask))


def _reference_sweep(voltages_v, state, params, limit_a, dwell_s, seed):
    """The same staircase applied straight to the device model (no instruments): each step
    one sample held for the dwell. Returns (current per step, final state)."""
    import torch

    from bruno_lab.devices.rram import rram_apply_voltage

    generator = torch.Generator().manual_seed(seed)
    currents = []
    for voltage_v in voltages_v:
        step = torch.full((1, 1), float(voltage_v), dtype=torch.float64)
        current, state = rram_apply_voltage(step, dwell_s, state, params, limit_a, generator)
        currents.append(float(current[0, 0]))
    return np.array(currents), state


def test_rram_iv_sweep_shows_forming_set_and_reset_at_the_devices_thresholds(
    sim_lab, sim_station
) -> None:
    from instruments.sim.physics import params_for

    col, row = sim_lab.wafer.dies[4]
    truth = sim_lab.truth_for((col, row), RRAM_SITE)
    assert truth.kind == "rram" and truth.defect is None
    dwell_s = SWEEP_DELAY_S + SWEEP_NPLC / 50.0
    with open_bench(sim_station, timeout_s=60.0) as bench:
        bench.prober.step_to(col, row, RRAM_SITE)
        bench.prober.contact()
        bench.smu.configure_voltage_source(range_v=20.0, current_limit_a=100e-6, nplc=SWEEP_NPLC)
        form_v, form_a = bench.smu.sweep_voltage_list(_ramp(3.5), 100e-6, SWEEP_DELAY_S)
        device = sim_lab.device((col, row), RRAM_SITE)
        formed_state = device.state
        cycle = np.concatenate([_ramp(-2.0), _ramp(1.6)])
        cycle_v, cycle_a = bench.smu.sweep_voltage_list(cycle, 1e-3, SWEEP_DELAY_S)

    # Forming: the pristine cell (nA) breaks down where the breakdown rate
    # exp((V - V_form)/slope)/tau_form reaches 1/dwell, then sits at the compliance.
    params = truth.params
    slope_v = params_for(device).v_form_slope_v.item()
    expected_form_v = params["v_form_v"] + slope_v * np.log(params["tau_form_s"] / dwell_s)
    formed_at = _first(np.abs(form_a) > 1e-6)
    assert np.all(np.abs(form_a[:formed_at]) < 1e-8)  # pristine before
    assert form_v[formed_at] == pytest.approx(expected_form_v, abs=2 * STEP_V + 3 * slope_v)
    assert form_a[formed_at + 1] == pytest.approx(100e-6, rel=1e-3)  # held at compliance

    # RESET (negative branch) and SET (positive branch) where the device model itself,
    # driven directly with the same staircase from the same formed state, switches.
    ref_a, _ = _reference_sweep(cycle, formed_state, params_for(device), 1e-3, dwell_s, seed=7)
    n_neg = _ramp(-2.0).size
    n_out = round(2.0 / STEP_V) + 1  # 0 V down to -2 V

    def reset_index(current_a: np.ndarray) -> int:
        conductance = np.abs(current_a[1:n_out]) / np.abs(cycle[1:n_out])
        return 1 + _first(conductance < 0.5 * conductance[0])

    def set_index(current_a: np.ndarray) -> int:
        return n_neg + _first(np.abs(current_a[n_neg:]) > 0.5e-3)

    assert cycle_v[reset_index(cycle_a)] == pytest.approx(cycle[reset_index(ref_a)], abs=0.21)
    assert cycle_v[set_index(cycle_a)] == pytest.approx(cycle[set_index(ref_a)], abs=0.21)
    assert cycle[reset_index(cycle_a)] < -0.2 and cycle[set_index(cycle_a)] > 0.2
    np.testing.assert_allclose(cycle_v, cycle, atol=1e-9)  # the source read back
