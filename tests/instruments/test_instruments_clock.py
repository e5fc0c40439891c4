"""Clock drivers: the sim's virtual time (byte level) and wall time."""

from __future__ import annotations

import pytest

from instruments.clock import SimulatedClock, WallClock
from instruments.errors import SettingRangeError, WrongInstrument
from instruments.testing import expected_protocol

CONNECT = [(":SYST:TIME?", "0.000000000000E+00")]


def test_simulated_clock_reads_and_advances_virtual_time():
    script = [*CONNECT, (":SYST:TIME?", "1.5E+00"), (":SYST:TIME:ADV 3600", None)]
    script += [(":SYST:TIME?", "3.6015E+03")]
    with expected_protocol(SimulatedClock, script) as clock:
        assert clock.now_s() == 1.5
        clock.wait_s(3600)
        clock.wait_s(0)  # nothing to do: nothing sent


def test_simulated_clock_refuses_negative_waits_and_non_clocks():
    with expected_protocol(SimulatedClock, CONNECT) as clock, pytest.raises(SettingRangeError):
        clock.wait_s(-1.0)
    with (
        pytest.raises(WrongInstrument),
        expected_protocol(SimulatedClock, [(":SYST:TIME?", '-113,"Undefined header"')]),
    ):
        pass


def test_wall_clock_waits_in_wall_time():
    clock = WallClock()
    start = clock.now_s()
    clock.wait_s(0.02)
    assert clock.now_s() - start >= 0.02
