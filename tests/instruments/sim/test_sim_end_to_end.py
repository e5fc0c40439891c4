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


@pytest.mark.slow
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
