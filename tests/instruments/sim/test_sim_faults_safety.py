"""Faults and the safety envelope, through the drivers, judged by what the sim received.

Every fault kind surfaces as a typed error within the configured timeout (no hang) and the
bench is left safe (SMU off at 0 V, AWG off, chuck separated: the sim's own state says so).
A request beyond the envelope never reaches the socket: the sim's record does not hold it.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bruno_lab.errors import BadInputError, EnvelopeError
from instruments.errors import (
    ComplianceHit,
    ConnectionLost,
    GarbledReply,
    InstrumentErrorQueue,
    InstrumentTimeout,
)
from instruments.sim.faults import FaultKind
from instruments.station import open_bench

TIMEOUT_S = 1.0
FECAP_SITE = 0


def _biased_smu(bench, lab, voltage_v: float = 0.5, limit_a: float = 1e-3) -> None:
    """Needles down on a FeCap, SMU on at ``voltage_v``: a state that must be made safe."""
    col, row = lab.wafer.dies[2]
    bench.prober.step_to(col, row, FECAP_SITE)
    bench.prober.contact()
    bench.smu.configure_voltage_source(range_v=2.0, current_limit_a=limit_a)
    bench.smu.source_voltage_v = voltage_v
    bench.smu.output_enabled = True


def _assert_safe(lab) -> None:
    smu = lab.servers["smu"].state
    assert not smu.output_on and smu.source_v == 0.0, smu
    assert not lab.servers["awg"].state.output_on
    assert not lab.servers["prober"].state.contact


FAULTS = [
    (FaultKind.NO_REPLY, InstrumentTimeout),
    (FaultKind.SLOW, InstrumentTimeout),
    (FaultKind.GARBLED, GarbledReply),
    (FaultKind.ERROR, InstrumentErrorQueue),
    (FaultKind.COMPLIANCE, ComplianceHit),
    (FaultKind.SHORT, ComplianceHit),
    (FaultKind.DROP, ConnectionLost),
]


@pytest.mark.parametrize(("kind", "error"), FAULTS, ids=[k.value for k, _ in FAULTS])
def test_every_fault_is_a_typed_error_in_time_and_leaves_the_bench_safe(
    sim_lab_factory, tmp_path, kind, error
) -> None:
    lab = sim_lab_factory(faults={"slow_delay_s": 3 * TIMEOUT_S})
    station = lab.write_station(tmp_path / "station.yaml")
    # The bench's exit (its safe state) is part of what is tested, so it sits inside raises.
    with pytest.raises(error) as raised, open_bench(station, timeout_s=TIMEOUT_S) as bench:
        _biased_smu(bench, lab)
        lab.faults.force("smu", kind)
        start = time.monotonic()
        try:
            if kind is FaultKind.ERROR:
                bench.smu.configure_voltage_source(range_v=2.0, current_limit_a=1e-3)
            else:
                bench.smu.measure_current_a()
        finally:
            elapsed_s = time.monotonic() - start
    assert elapsed_s < TIMEOUT_S + 1.0, elapsed_s
    assert "smu" in str(raised.value)
    assert lab.faults.injected and lab.faults.injected[0][1] is kind
    _assert_safe(lab)  # after a drop too: the bench reconnects to make the SMU safe


@pytest.fixture
def contact_bench(sim_lab, sim_station):
    with open_bench(sim_station, timeout_s=5.0) as bench:
        col, row = sim_lab.wafer.dies[1]
        bench.prober.step_to(col, row, FECAP_SITE)
        bench.prober.contact()
        sim_lab.clear_records()
        yield bench


def test_current_limit_beyond_the_envelope_never_reaches_the_smu(sim_lab, contact_bench) -> None:
    with pytest.raises(EnvelopeError, match="max_current_a"):
        contact_bench.smu.current_limit_a = 0.5
    assert not any("ILIM" in c for c in sim_lab.commands("smu"))


def test_output_on_without_compliance_or_contact_never_reaches_the_smu(
    sim_lab, sim_station
) -> None:
    with open_bench(sim_station, timeout_s=5.0) as bench:
        bench.prober.step_first_die()  # separated
        bench.smu.configure_voltage_source(range_v=2.0, current_limit_a=1e-3)
        with pytest.raises(EnvelopeError):
            bench.smu.output_enabled = True
        assert ":OUTP ON" not in sim_lab.commands("smu")


def test_awg_waveform_beyond_the_envelope_is_never_uploaded(sim_lab, contact_bench) -> None:
    samples_v = np.concatenate([np.zeros(10), 6.0 * np.ones(10), np.zeros(10)])
    with pytest.raises(EnvelopeError, match="max_voltage_v"):
        contact_bench.awg.upload_waveform("toohigh", samples_v, 1e6)
    assert sim_lab.commands("awg") == []


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    amplitude_v=st.floats(-12.0, 12.0, allow_nan=False),
    width_samples=st.integers(1, 400),
    rate_hz=st.sampled_from([1e4, 1e6, 1e8]),
)
def test_random_awg_requests_reach_the_socket_only_inside_the_envelope(
    sim_lab, contact_bench, amplitude_v, width_samples, rate_hz
) -> None:
    limits = contact_bench.guard.limits
    samples_v = np.concatenate([np.zeros(8), np.full(width_samples, amplitude_v), np.zeros(8)])
    before = len(sim_lab.records("awg"))
    try:
        contact_bench.awg.upload_waveform("rnd", samples_v, rate_hz)
    except (EnvelopeError, BadInputError):
        assert len(sim_lab.records("awg")) == before  # refused: nothing was sent
        return
    state = sim_lab.servers["awg"].state
    played_v = state.device_waveform_v()
    assert np.max(np.abs(played_v)) <= limits.max_voltage_v + 1e-3
    pulse_s = width_samples / rate_hz
    # the envelope counts a pulse above the threshold (strictly): exactly at it is no pulse
    assert abs(amplitude_v) <= limits.pulse_threshold_v or pulse_s <= limits.max_pulse_width_s


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    voltages_v=st.lists(st.floats(-8.0, 8.0, allow_nan=False), min_size=1, max_size=6),
    limit_a=st.floats(1e-9, 0.2),
)
def test_random_smu_sweeps_reach_the_socket_only_inside_the_envelope(
    sim_lab, contact_bench, voltages_v, limit_a
) -> None:
    limits = contact_bench.guard.limits
    before = len(sim_lab.records("smu"))
    try:
        contact_bench.smu.sweep_voltage_list(np.array(voltages_v), limit_a, delay_s=0.0)
    except (EnvelopeError, BadInputError):
        assert len(sim_lab.records("smu")) == before
        return
    finally:
        contact_bench.smu.shutdown()
    sent = [r.text for r in sim_lab.records("smu")[before:]]
    lists = [c for c in sent if c.startswith(":SOUR:LIST:VOLT ")]
    assert lists, sent
    values = [float(v) for v in lists[-1].split(" ", 1)[1].split(",")]
    assert max(abs(v) for v in values) <= limits.max_voltage_v
    assert float(sim_lab.servers["smu"].state.current_limit_a) <= limits.max_current_a


@pytest.mark.slow
def test_faults_at_random_rates_never_hang_and_the_bench_ends_safe(sim_lab_factory, tmp_path):
    """A soak: every transport and device fault at a few percent on the SMU, 40 readings.
    Each either returns or raises a typed InstrumentError within the timeout."""
    from instruments.errors import InstrumentError

    rates = {"drop": 0.02, "slow": 0.02, "no_reply": 0.02, "garbled": 0.02, "error": 0.02}
    rates |= {"compliance": 0.05, "short": 0.0}
    faults = {"seed": 9, "slow_delay_s": 2 * TIMEOUT_S, "rates": rates, "roles": ["smu"]}
    lab = sim_lab_factory(faults=faults)
    station = lab.write_station(tmp_path / "station.yaml")
    outcomes: dict[str, int] = {}
    with lab.faults.paused():  # the soak is of readings: connect and bias are not faulted
        bench = open_bench(station, timeout_s=TIMEOUT_S)
    try:
        with lab.faults.paused():
            _biased_smu(bench, lab, voltage_v=0.2)
        for _ in range(40):
            start = time.monotonic()
            try:
                bench.smu.measure_current_a()
                outcome = "ok"
            except InstrumentError as exc:
                outcome = type(exc).__name__
            assert time.monotonic() - start < 3 * TIMEOUT_S + 1.0, outcome
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    finally:
        with lab.faults.paused():  # the safe state itself is not faulted
            try:
                bench.__exit__(None, None, None)
            except InstrumentErrorQueue as exc:  # an injected error no reading asked about
                assert {code for code, _ in exc.entries} == {-310}, exc  # reported at the end
    assert outcomes.get("ok", 0) > 10 and len(outcomes) > 3, outcomes
    _assert_safe(lab)
