"""Recorded protocols: each driver's traffic with the simulated lab, recorded by the sim, is
replayed through ``expected_protocol``; the driver must produce exactly the same bytes again.

This ties the scripted tests to the wire: what a driver sends over a real socket is what its
byte-level script says, pair for pair (binary blocks included).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from instruments.clock import SimulatedClock
from instruments.envelope import Envelope, Limits, SafetyGuard
from instruments.infiniivision import InfiniiVision
from instruments.keithley2450 import Keithley2450
from instruments.keysight33500b import Keysight33500B
from instruments.station import open_instrument
from instruments.testing import expected_protocol
from instruments.velox import VeloxProber


def _pairs(records: list) -> list[tuple[Any, Any]]:
    pairs: list[tuple[Any, Any]] = []
    for record in records:
        sent: Any = record.text
        if record.block is not None:
            prefix = record.text.split("#", 1)[0].encode()
            size = str(len(record.block)).encode()
            sent = prefix + b"#" + str(len(size)).encode() + size + record.block
        pairs.append((sent, record.reply))
    return pairs


def _guard() -> SafetyGuard:
    return SafetyGuard(Envelope(default=Limits(), kinds={}), contact_probe=lambda: True)


def smu_session(smu: Keithley2450) -> None:
    smu.configure_voltage_source(2.0, 1e-4, 1.0)
    smu.source_voltage_v = 0.2
    smu.output_enabled = True
    smu.sweep_voltage_list(np.linspace(0.0, 0.4, 5), 1e-4, 1e-3)
    _ = smu.compliance_tripped
    smu.shutdown()


def awg_session(awg: Keysight33500B) -> None:
    samples_v = np.concatenate([np.zeros(8), np.full(16, 1.2), np.zeros(8), np.full(16, -0.8)])
    awg.upload_waveform("rec", samples_v, 10e6)
    awg.upload_waveform("asc", samples_v, 10e6, binary=False)
    awg.configure_burst(2)
    awg.output_enabled = True
    awg.trigger()
    awg.shutdown()


def scope_session(scope: InfiniiVision) -> None:
    scope.configure(1e-6, {1: (0.5, 0.0), 2: (0.1, 0.0)}, left_edge_s=0.0)
    scope.arm_single()


def prober_session(prober: VeloxProber) -> None:
    prober.step_first_die()
    prober.step_next_die()
    prober.contact()
    prober.position()
    prober.step_to(*prober.step_first_die()[:2], 1)
    prober.separate()


def clock_session(clock: SimulatedClock) -> None:
    clock.wait_s(3600.0)


SESSIONS: list[tuple[str, str, type, Callable[[Any], None]]] = [
    ("smu", "keithley2450", Keithley2450, smu_session),
    ("awg", "keysight33500b", Keysight33500B, awg_session),
    ("scope", "infiniivision", InfiniiVision, scope_session),
    ("prober", "velox", VeloxProber, prober_session),
    ("clock", "sim-clock", SimulatedClock, clock_session),
]


@pytest.mark.parametrize(
    ("role", "model", "cls", "session"), SESSIONS, ids=[s[0] for s in SESSIONS]
)
def test_recorded_traffic_replays_exactly(sim_lab, role, model, cls, session):
    if role == "smu":  # the SMU needs a device under the needles to measure
        prober = open_instrument("velox", sim_lab.resource("prober"), role="prober", guard=_guard())
        prober.step_first_die()
        prober.contact()
        prober.close()
    sim_lab.clear_records()
    live = open_instrument(model, sim_lab.resource(role), role=role, guard=_guard())
    session(live)
    live.close()
    pairs = _pairs(sim_lab.records(role))
    assert pairs and all(record.fault is None for record in sim_lab.records(role))
    if role == "smu":  # the replies vary with noise; the replay uses what was recorded
        assert any(p[0] == ":INIT" for p in pairs)
    with expected_protocol(cls, pairs, role=role, guard=_guard()) as replayed:
        session(replayed)
