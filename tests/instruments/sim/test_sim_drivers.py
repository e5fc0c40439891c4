"""Each driver against the simulated lab through real sockets (pyvisa-py), via ``open_bench``.

The sim is the instrument here: what the driver sends must be valid in the sim's dialect (no
entry in any error queue), and what the sim replies must come back through the driver intact.
"""

from __future__ import annotations

import numpy as np
import pytest

from instruments.station import open_bench


@pytest.fixture
def bench(sim_station):
    with open_bench(sim_station, timeout_s=2.0) as opened:
        yield opened


def _assert_no_instrument_errors(lab, prober_codes: tuple[str, ...] = ("0:",)) -> None:
    for role in ("smu", "awg", "scope", "clock"):
        server = lab.servers[role]
        assert not server.error_queue, (role, list(server.error_queue))
        for record in lab.records(role):
            if record.text.upper().lstrip(":").startswith("SYST:ERR"):
                assert record.reply.lstrip("+").startswith("0,"), (role, record)
    for record in lab.records("prober"):
        assert record.reply is not None and record.reply.startswith(prober_codes), record


def test_open_bench_checks_every_identity(sim_lab, bench) -> None:
    for role in ("smu", "awg", "scope", "clock"):
        assert sim_lab.commands(role)[0] in ("*IDN?", ":SYST:TIME?"), role
    assert sim_lab.commands("prober")[0] == "ReportKernelVersion"
    _assert_no_instrument_errors(sim_lab)


def test_awg_binary_and_ascii_uploads_reach_the_device_as_asked(sim_lab, bench) -> None:
    samples_v = np.concatenate([np.zeros(16), np.linspace(0.0, 2.5, 32), -1.0 * np.ones(16)])
    state = sim_lab.servers["awg"].state
    for binary in (True, False):
        bench.awg.upload_waveform("wave", samples_v, 50e6, binary=binary)
        at_device_v = state.device_waveform_v()
        np.testing.assert_allclose(at_device_v, samples_v, atol=3.5 * 2 / 32767)  # 16-bit DAC
        assert state.srate_sa_s == pytest.approx(50e6)
    uploads = [c for c in sim_lab.commands("awg") if c.startswith("SOUR1:DATA:ARB")]
    assert uploads[0] == f"SOUR1:DATA:ARB wave,#<{4 * samples_v.size} bytes>"
    assert uploads[1].count(",") == samples_v.size
    _assert_no_instrument_errors(sim_lab)


def test_scope_reads_back_the_awg_pulse_with_its_timing(sim_lab, bench) -> None:
    rate_hz = 100e6
    samples_v = np.concatenate([np.zeros(20), 2.0 * np.ones(50), np.zeros(30)])  # 500 ns at 2 V
    bench.prober.step_first_die()  # separated: the AWG drives nothing, the scope sees its output
    bench.awg.upload_waveform("pulse", samples_v, rate_hz)
    bench.awg.configure_burst(1)
    bench.scope.configure(100e-9, {1: (0.5, 1.0), 2: (0.01, 0.0)}, time_position_s=100e-9)
    sim_lab.servers["awg"].state.output_on = True  # the envelope wants contact for output on
    bench.scope.arm_single()
    bench.scope.wait_complete()  # :SING and *TRG go to two sockets: sync before triggering
    bench.awg.trigger()
    bench.scope.wait_acquired(2.0)
    time_s, volts = bench.scope.read_waveform(1, points=5000)
    assert time_s.size == volts.size >= 1000
    high = volts[(time_s > 250e-9) & (time_s < 650e-9)]
    low = volts[(time_s > 750e-9)]
    assert np.mean(high) == pytest.approx(2.0, abs=0.02)
    assert np.mean(low) == pytest.approx(0.0, abs=0.02)
    rise_s = time_s[np.argmax(volts > 1.0)]
    assert rise_s == pytest.approx(200e-9, abs=5e-9)
    _, current_v = bench.scope.read_waveform(2)
    assert np.max(np.abs(current_v)) < 0.01  # separated: no device current
    _assert_no_instrument_errors(sim_lab)


def test_prober_steps_the_wafer_map(sim_lab, bench) -> None:
    first = bench.prober.step_first_die()
    assert (first.column, first.row) == sim_lab.wafer.dies[0] and first.site == 0
    col, row = sim_lab.wafer.dies[5]
    die = bench.prober.step_to(col, row, 2)
    assert (die.column, die.row, die.site) == (col, row, 2)
    position = bench.prober.position()
    x_um, y_um = sim_lab.wafer.die_position_um(col, row)
    site = sim_lab.truth.sites[2]
    assert position.x_m == pytest.approx((x_um + site.x_um) * 1e-6)
    assert position.y_m == pytest.approx((y_um + site.y_um) * 1e-6)
    bench.prober.contact()
    assert bench.prober.in_contact
    assert sim_lab.servers["prober"].state.contact
    bench.prober.step_to(*sim_lab.wafer.dies[-1], 0)  # separates first, as a prober must
    assert not sim_lab.servers["prober"].state.contact
    assert bench.prober.step_next_die() is None  # end of wafer
    _assert_no_instrument_errors(sim_lab, prober_codes=("0:", "703:"))


def test_clock_driver_moves_virtual_time(sim_lab, bench) -> None:
    start_s = bench.clock.now_s()
    bench.clock.wait_s(86_400.0)
    assert bench.clock.now_s() - start_s == pytest.approx(86_400.0)
    assert sim_lab.clock.now_s() == pytest.approx(start_s + 86_400.0)


def test_smu_source_and_read_on_a_short_gives_ohms_law(sim_lab, bench) -> None:
    """A shorted device (injected) makes the physics trivial: I = V/R, limited by ILIM."""
    from instruments.sim.faults import FaultKind

    bench.prober.step_first_die()
    bench.prober.contact()
    sim_lab.faults.force("smu", FaultKind.SHORT)
    bench.smu.configure_voltage_source(range_v=2.0, current_limit_a=1e-2)
    bench.smu.source_voltage_v = 0.05
    bench.smu.output_enabled = True
    current_a = bench.smu.measure_current_a()
    assert current_a == pytest.approx(0.05 / sim_lab.truth.short_resistance_ohm, rel=1e-3)
    _assert_no_instrument_errors(sim_lab)
    commands = sim_lab.commands("smu")
    assert commands.index(":SOUR:VOLT:ILIM 0.01") < commands.index(":OUTP ON")
