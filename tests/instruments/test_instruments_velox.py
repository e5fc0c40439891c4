"""Velox prober driver, byte level: stepping, contact, position, refusals, safety hooks."""

from __future__ import annotations

import pytest

from instruments.errors import (
    GarbledReply,
    InstrumentErrorQueue,
    SettingRangeError,
    WrongInstrument,
)
from instruments.roles import DiePosition, MapPosition
from instruments.testing import expected_protocol
from instruments.velox import VeloxError, VeloxProber

CONNECT = [("ReportKernelVersion", "0: Velox 3.3.0.10")]
SEPARATED = ("ReadChuckStatus", "0: S 1 0")
CONTACT = ("ReadChuckStatus", "0: C 1 0")


def test_connect_accepts_velox_own_version_reply():
    with expected_protocol(VeloxProber, [("ReportKernelVersion", "0: 3.3 Kernel 3.3.0.10")]) as p:
        assert p.idn == "3.3 Kernel 3.3.0.10"


def test_connect_reads_kernel_version():
    with expected_protocol(VeloxProber, CONNECT) as prober:
        assert prober.idn == "Velox 3.3.0.10"
    with (
        pytest.raises(WrongInstrument),
        expected_protocol(VeloxProber, [("ReportKernelVersion", "0: SENTIO 24.0")]),
    ):
        pass


def test_step_first_and_next_die_and_end_of_wafer():
    script = [*CONNECT, SEPARATED, ("StepFirstDie", "0: 1 0 0"), SEPARATED]
    script += [("StepNextDie", "0: 2 0 0"), SEPARATED, ("StepNextDie", "703: End of wafer")]
    with expected_protocol(VeloxProber, script) as prober:
        assert prober.step_first_die() == DiePosition(1, 0, 0)
        assert prober.step_next_die() == DiePosition(2, 0, 0)
        assert prober.step_next_die() is None


def test_step_to_a_die_and_site_separates_first_if_in_contact():
    script = [*CONNECT, CONTACT, ("MoveChuckSeparation", "0:"), ("StepNextDie 3 4 1", "0: 3 4 1")]
    moves: list = []
    with expected_protocol(VeloxProber, script) as prober:
        prober.before_move.append(lambda: moves.append("sources safe"))
        prober.after_move.append(lambda die, contact: moves.append((die, contact)))
        assert prober.step_to(3, 4, 1) == DiePosition(3, 4, 1)
    assert moves == ["sources safe", (None, False), (DiePosition(3, 4, 1), False)]


def test_step_to_validates_indices():
    with (
        expected_protocol(VeloxProber, CONNECT) as prober,
        pytest.raises(SettingRangeError, match="site"),
    ):
        prober.step_to(1, 1, -1)


def test_refusal_is_raised_with_code_and_message():
    script = [*CONNECT, SEPARATED, ("StepNextDie 9 9 0", "704: Die 9 9 site 0 not on map")]
    with (
        expected_protocol(VeloxProber, script) as prober,
        pytest.raises(VeloxError, match="704: Die 9 9") as info,
    ):
        prober.step_to(9, 9, 0)
    assert isinstance(info.value, InstrumentErrorQueue)
    assert info.value.code == 704


def test_position_in_metres():
    script = [*CONNECT, ("ReadMapPosition", "0: 3 4 -2020.0 3020.5 1 7 12 0 0")]
    with expected_protocol(VeloxProber, script) as prober:
        pos = prober.position()
    assert pos == MapPosition(3, 4, 1, pytest.approx(-2.02e-3), pytest.approx(3.0205e-3))


def test_contact_separate_and_status():
    calls: list[str] = []
    script = [
        *CONNECT,
        ("MoveChuckContact", "0:"),
        CONTACT,
        ("MoveChuckSeparation", "0:"),
        SEPARATED,
    ]
    with expected_protocol(VeloxProber, script) as prober:
        prober.before_move.append(lambda: calls.append("safe"))
        prober.contact()
        assert prober.in_contact is True
        prober.separate()
        assert prober.in_contact is False
    assert calls == ["safe", "safe"]


@pytest.mark.parametrize("reply", ["OK 3 4", "0: 3 four 1", "0: 3"])
def test_garbled_replies(reply):
    with (
        expected_protocol(VeloxProber, [*CONNECT, SEPARATED, ("StepFirstDie", reply)]) as prober,
        pytest.raises(GarbledReply),
    ):
        prober.step_first_die()


@pytest.mark.parametrize(
    ("reply", "in_contact"),
    [
        ("0: C 1 0", True),
        ("0: S 1 0", False),
        ("0: 15 3 0 0 D 1 C 0 0 1 0", True),  # Velox's own field order: PresetHeight 7th
        ("0: 15 3 0 0 D 1 O 0 0 1 0", True),
        ("0: 15 3 0 0 D 1 S 0 0 1 0", False),
        ("0: 15 3 0 0 D 1 A 0 0 1 0", False),
    ],
)
def test_chuck_status_in_both_field_orders(reply, in_contact):
    with expected_protocol(VeloxProber, [*CONNECT, ("ReadChuckStatus", reply)]) as prober:
        assert prober.in_contact is in_contact


def test_chuck_status_without_a_height_is_garbled():
    script = [*CONNECT, ("ReadChuckStatus", "0: 15 3 0")]
    with expected_protocol(VeloxProber, script) as prober, pytest.raises(GarbledReply):
        _ = prober.in_contact
