"""FeCap protocols through the drivers against the simulated lab's own (true) traces."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from protocols.base import DeviceFailure, DeviceUnderTest


def _on_device(lab: Any, station: Any, col: int, row: int, site: int) -> tuple[Any, Any]:
    from instruments.station import open_bench

    bench = open_bench(station)
    bench.prober.step_to(col, row, site)
    bench.prober.contact()
    truth = lab.truth_for((col, row), site)
    device = DeviceUnderTest(col, row, f"{col},{row}", site, truth.kind, {"area_m2": truth.area_m2})
    return bench, device


def test_pv_loop_matches_the_true_polarization_loop(
    sim_lab_factory, truth_factory, tmp_path
) -> None:
    """Pr and Vc from the integrated scope current agree with the same features of the sim's
    true charge (switched polarization plus linear charge, loop-centred), within 5 % (Pr) and
    0.1 V (Vc)."""
    from bruno_lab.devices.fecap import linear_capacitance_f
    from bruno_lab.devices.fecap_waveforms import pv_loop_features
    from instruments.sim.physics import params_for
    from protocols.pv_loop import PvLoopParams
    from protocols.pv_loop import run as run_loop

    lab = sim_lab_factory(truth=truth_factory(), seed=31)
    station = lab.write_station(tmp_path / "station.yaml")
    params = PvLoopParams(frequencies_hz=[1e5]).expand()[0]
    bench, device = _on_device(lab, station, 1, 1, 0)
    with bench:
        result = run_loop(bench, device, params)
        burst = lab.last_burst()
    period = 1.0 / params.frequency_hz
    last = (burst.time_s >= 0.25 * period) & (burst.time_s <= 1.25 * period)
    # what a P-V measurement integrates: the switched P plus the linear (dielectric) charge
    c_lin_f = float(linear_capacitance_f(params_for(lab.device((1, 1), 0)))[0])
    pol = burst.polarization_c_m2[last] + c_lin_f * burst.voltage_v[last] / device.area_m2
    pol = pol - 0.5 * (pol.max() + pol.min())
    truth = {k: float(v) for k, v in pv_loop_features(burst.voltage_v[last], pol).items()}
    got = result.scalars
    assert got["pr_pos_c_m2"] == pytest.approx(truth["pr_pos_c_m2"], rel=0.05)
    assert got["pr_neg_c_m2"] == pytest.approx(truth["pr_neg_c_m2"], rel=0.05)
    assert got["vc_pos_v"] == pytest.approx(truth["vc_pos_v"], abs=0.1)
    assert got["vc_neg_v"] == pytest.approx(truth["vc_neg_v"], abs=0.1)
    assert 0.5 < got["vc_pos_v"] < params.amplitude_v and got["pr_pos_c_m2"] > 0.05
    polarization, unit = result.arrays["polarization_c_m2"]
    assert unit == "C/m^2" and polarization.shape == result.arrays["time_s"][0].shape


def test_pund_on_a_shorted_device_is_a_device_failure(
    sim_lab_factory, truth_factory, tmp_path
) -> None:
    from protocols.pund import PundParams
    from protocols.pund import run as run_pund

    lab = sim_lab_factory(truth=truth_factory(), seed=32)
    station = lab.write_station(tmp_path / "station.yaml")
    lab.device((1, 1), 0).shorted = True
    bench, device = _on_device(lab, station, 1, 1, 0)
    with bench, pytest.raises(DeviceFailure, match="short"):
        run_pund(bench, device, PundParams())
    assert not any(c.startswith("SOUR1:DATA:ARB") for c in lab.commands("awg"))


def test_pund_parameters_change_what_is_sent(sim_lab_factory, truth_factory, tmp_path) -> None:
    """The waveform the AWG plays is the one the parameters describe (amplitude, timing)."""
    from protocols.pund import PundParams

    params = PundParams(amplitude_v=2.0, rise_s=5e-7, width_s=2e-6, delay_s=1e-6)
    time_s, voltage_v, windows = params.waveform()
    assert np.max(voltage_v) == pytest.approx(2.0) and np.min(voltage_v) == pytest.approx(-2.0)
    assert len(windows) == 4
    (p0, _), (u0, _) = windows[0], windows[1]
    assert u0 - p0 == pytest.approx(2 * 5e-7 + 2e-6 + 1e-6)
    assert voltage_v[0] == 0.0 and voltage_v[-1] == 0.0
    assert time_s[1] == pytest.approx(1.0 / params.sample_rate_hz())


def test_protocol_refuses_beyond_envelope_before_sending(
    sim_lab_factory, truth_factory, tmp_path
) -> None:
    from bruno_lab.errors import EnvelopeError
    from protocols.pund import PundParams
    from protocols.pund import run as run_pund

    lab = sim_lab_factory(truth=truth_factory(), seed=33)
    station = lab.write_station(tmp_path / "station.yaml")
    bench, device = _on_device(lab, station, 1, 1, 0)
    lab.clear_records()
    with bench, pytest.raises(EnvelopeError, match="max_voltage_v"):
        run_pund(bench, device, PundParams(amplitude_v=6.0))
    sent = lab.commands("awg") + lab.commands("smu")
    assert not any("DATA:ARB" in c or ":OUTP ON" in c for c in sent), sent


@pytest.mark.slow
def test_switching_kinetics_grows_with_width_and_amplitude(
    sim_lab_factory, truth_factory, tmp_path
) -> None:
    """Longer and stronger write pulses switch more; a long strong pulse switches what PUND
    sees as the switchable polarization (2 Pr), within 10 %."""
    from protocols.pund import PundParams
    from protocols.pund import run as run_pund
    from protocols.switching_kinetics import SwitchingKineticsParams
    from protocols.switching_kinetics import run as run_kinetics

    lab = sim_lab_factory(truth=truth_factory(), seed=34)
    station = lab.write_station(tmp_path / "station.yaml")
    params = SwitchingKineticsParams(widths_s=[1e-7, 1e-5], amplitudes_v=[1.5, 3.5])
    bench, device = _on_device(lab, station, 1, 1, 0)
    with bench:
        result = run_kinetics(bench, device, params)
        pund = run_pund(bench, device, PundParams(amplitude_v=3.5))
    widths, _ = result.arrays["width_s"]
    amps, _ = result.arrays["amplitude_v"]
    p_sw, _ = result.arrays["switched_polarization_c_m2"]
    grid = {(w, a): p for w, a, p in zip(widths, amps, p_sw, strict=True)}
    assert grid[(1e-5, 3.5)] > grid[(1e-7, 3.5)] >= 0
    assert grid[(1e-5, 3.5)] > grid[(1e-5, 1.5)]
    assert grid[(1e-5, 3.5)] == pytest.approx(pund.scalars["switched_polarization_c_m2"], rel=0.1)
    assert result.scalars["n_points"] == 4


def test_a_capture_does_not_inherit_the_previous_protocols_scope_record(
    sim_lab_factory, truth_factory, tmp_path
) -> None:
    """A P-V loop after a FeLIF response (which asks the scope for 20,000 points) has the same
    time grid as one before it: every capture sets its record length itself."""
    from protocols.felif_response import FelifResponseParams
    from protocols.felif_response import run as run_felif
    from protocols.pv_loop import PvLoopParams
    from protocols.pv_loop import run as run_loop

    lab = sim_lab_factory(truth=truth_factory(), seed=32)
    station = lab.write_station(tmp_path / "station.yaml")
    loop = PvLoopParams(frequencies_hz=[1e5]).expand()[0]
    felif = FelifResponseParams(input_currents_a=[1e-8], trial_s=2e-3, scope_points=20_000)
    bench, fecap = _on_device(lab, station, 1, 1, 0)
    with bench:
        before = run_loop(bench, fecap, loop).arrays["time_s"][0]
        bench.prober.separate()
        bench.prober.step_to(1, 1, 3)
        bench.prober.contact()
        truth = lab.truth_for((1, 1), 3)
        neuron = DeviceUnderTest(1, 1, "1,1", 3, truth.kind, {"area_m2": truth.area_m2})
        assert run_felif(bench, neuron, felif).arrays["time_s"][0].size == 20_000
        bench.prober.separate()
        bench.prober.step_to(1, 1, 0)
        bench.prober.contact()
        after = run_loop(bench, fecap, loop).arrays["time_s"][0]
    assert after.shape == before.shape
    np.testing.assert_allclose(after, before)
