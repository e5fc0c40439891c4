"""The drivers against the simulated lab through real sockets (pyvisa-py, TCPIP SOCKET).

Checks what the instruments received (the sim's command record) and what came back; requests
beyond the envelope, generated at random, never reach the socket.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instruments.errors import EnvelopeError
from instruments.roles import DiePosition
from instruments.station import open_bench

SLOW_FIXTURE = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def bench(sim_station):
    with open_bench(sim_station, timeout_s=5.0) as opened:
        yield opened


def test_bench_opens_every_role_with_its_identity(bench):
    assert set(bench.instruments()) == {
        "smu", "awg", "scope", "prober", "clock", "array_tester", "switch_matrix",
    }  # fmt: skip
    assert "MODEL 2450" in bench.smu.idn and "33522B" in bench.awg.idn
    assert "AT-1T1R" in bench.array_tester.idn and "707B" in bench.switch_matrix.idn
    assert "DSOX3024T" in bench.scope.idn and "Velox" in bench.prober.idn


def test_prober_steps_the_map_and_reports_position(bench, sim_lab):
    first = bench.prober.step_first_die()
    second = bench.prober.step_next_die()
    assert second != first and second.site == 0
    target = DiePosition(first.column, first.row, 1)
    assert bench.prober.step_to(*target) == target
    pos = bench.prober.position()
    assert (pos.column, pos.row, pos.site) == tuple(target)
    assert bench.guard.device_kind == bench.wafer["sites"][1]["kind"]
    bench.prober.contact()
    assert bench.prober.in_contact
    bench.prober.step_to(first.column, first.row, 0)  # separates first: the prober would refuse
    assert not bench.prober.in_contact
    received = sim_lab.commands("prober")
    assert received.index("MoveChuckSeparation") < len(received) - 1


def test_prober_walks_to_the_end_of_the_wafer(bench):
    dies = [bench.prober.step_first_die()]
    while (die := bench.prober.step_next_die()) is not None:
        dies.append(die)
    assert len(dies) == bench.wafer["n_dies"] == len(set(dies))


def test_virtual_time_advances_through_the_clock(bench):
    start_s = bench.clock.now_s()
    bench.clock.wait_s(86_400.0)
    assert bench.clock.now_s() - start_s == pytest.approx(86_400.0, rel=1e-9)


@pytest.mark.parametrize("binary", [True, False])
def test_uploaded_waveform_reaches_the_awg_as_the_device_should_see_it(bench, sim_lab, binary):
    samples_v = np.concatenate([np.zeros(20), np.full(40, 1.5), np.zeros(20), np.full(40, -0.5)])
    sim_lab.clear_records()
    bench.awg.upload_waveform("pund", samples_v, 50e6, binary=binary)
    records = sim_lab.records("awg")
    upload = next(r for r in records if r.text.startswith("SOUR1:DATA:ARB"))
    if binary:
        normalized = np.frombuffer(upload.block, dtype="<f4")
    else:
        normalized = np.array([float(x) for x in upload.text.split(",")[1:]])
    vpp = float(next(r.text.split()[1] for r in records if r.text.startswith("SOUR1:VOLT ")))
    offset = float(next(r.text.split()[1] for r in records if r.text.startswith("SOUR1:VOLT:OFFS")))
    np.testing.assert_allclose(offset + normalized * vpp / 2, samples_v, atol=1e-6)
    texts = [r.text for r in records]
    assert texts[0] == "OUTP1 OFF" and "OUTP1:LOAD INF" in texts
    assert texts.index("OUTP1:LOAD INF") < texts.index(f"SOUR1:VOLT {vpp:.9g}")


def test_output_on_waits_for_contact_and_compliance_precedes_output(bench, sim_lab):
    bench.prober.step_first_die()
    bench.smu.configure_voltage_source(2.0, 1e-4, 1.0)
    sim_lab.clear_records()
    with pytest.raises(EnvelopeError, match="require_contact_for_output"):
        bench.smu.output_enabled = True
    assert sim_lab.commands("smu") == []
    bench.prober.contact()
    bench.smu.output_enabled = True
    bench.prober.separate()  # the SMU is made safe before the needles lift
    smu_cmds = sim_lab.commands("smu")
    assert smu_cmds[:2] == [":OUTP ON", ":SYST:ERR?"]
    assert smu_cmds[2:4] == [":SOUR:VOLT 0", ":OUTP OFF"]
    assert sim_lab.records("smu")[3].wall_s <= sim_lab.records("prober")[-1].wall_s
    assert not bench.smu.output_enabled


def test_instrument_error_from_the_sim_is_raised_with_its_queue(bench):
    from instruments.errors import InstrumentErrorQueue

    with pytest.raises(InstrumentErrorQueue, match="Undefined header") as info:
        bench.smu.configure_settings(":SOUR:VOLT:BOGUS 1")
    assert info.value.entries and info.value.entries[0][0] == -113


@SLOW_FIXTURE
@given(
    voltage_v=st.floats(5.0 + 1e-6, 200.0).map(lambda x: x * (1 if int(x * 1e6) % 2 else -1)),
    current_a=st.floats(1.01e-2, 1.0),
    pulse_v=st.floats(5.0 + 1e-6, 10.0),
)
def test_random_requests_beyond_the_envelope_never_reach_the_socket(
    bench, sim_lab, voltage_v, current_a, pulse_v
):
    sim_lab.clear_records()
    with pytest.raises(EnvelopeError):
        bench.smu.source_voltage_v = voltage_v
    with pytest.raises(EnvelopeError):
        bench.smu.configure_voltage_source(20.0, current_a, 1.0)
    with pytest.raises(EnvelopeError):
        bench.smu.sweep_voltage_list([0.0, 0.1, voltage_v], 1e-4, 1e-2)
    samples_v = np.zeros(64)
    samples_v[10:20] = pulse_v
    with pytest.raises(EnvelopeError):
        bench.awg.upload_waveform("bad", samples_v, 1e6)
    assert sim_lab.commands("smu") == [] and sim_lab.commands("awg") == []


def test_scope_captures_the_awg_waveform_at_the_device(bench):
    rate_hz, n = 100e6, 1000
    samples_v = np.zeros(n)
    samples_v[100:300] = 1.0
    samples_v[500:700] = -1.0
    bench.prober.step_first_die()
    bench.prober.contact()
    bench.awg.upload_waveform("sq", samples_v, rate_hz)
    bench.awg.configure_burst(1)
    duration_s = n / rate_hz
    bench.scope.configure(duration_s / 10, {1: (0.3, 0.0)}, left_edge_s=0.0)
    bench.awg.output_enabled = True
    bench.scope.arm_single()
    bench.awg.trigger()
    bench.scope.wait_acquired(5.0)
    bench.awg.output_enabled = False
    time_s, volts = bench.scope.read_waveform(1)
    assert time_s[0] == pytest.approx(0.0, abs=duration_s / time_s.size)
    assert time_s[-1] == pytest.approx(duration_s, rel=0.02)
    expected_v = np.interp(time_s, np.arange(n) / rate_hz, samples_v)
    inside = np.abs(np.diff(expected_v, prepend=0.0)) == 0  # away from the edges
    lsb_v = 8 * 0.3 / 65536
    noise_v = np.std(volts[inside] - expected_v[inside])
    assert noise_v < 0.05 and abs(np.mean(volts[inside] - expected_v[inside])) < 10 * lsb_v + 0.01


def test_smu_list_sweep_returns_the_programmed_voltages_and_a_current_per_point(bench, sim_lab):
    bench.prober.step_first_die()
    bench.prober.contact()
    voltages_v = np.linspace(0.0, 1.0, 21)
    bench.smu.configure_voltage_source(2.0, 1e-4, 1.0)
    v, i = bench.smu.sweep_voltage_list(voltages_v, 1e-4, 1e-3)
    np.testing.assert_allclose(v, voltages_v, atol=1e-3)
    assert i.shape == voltages_v.shape and np.all(np.isfinite(i)) and np.all(np.abs(i) < 1e-4)
    assert bench.smu.output_enabled  # as the 2450 leaves it after a sweep
    cmds = sim_lab.commands("smu")
    assert cmds.index(":SOUR:VOLT:ILIM 0.0001") < cmds.index(":INIT")
    bench.smu.shutdown()
    assert not bench.smu.output_enabled
