"""InfiniiVision scope driver, byte level: configure, arm, wait, WORD waveform with preamble."""

from __future__ import annotations

import numpy as np
import pytest

from instruments.errors import GarbledReply, InstrumentTimeout, SettingRangeError, WrongInstrument
from instruments.infiniivision import InfiniiVision
from instruments.testing import expected_protocol, ieee_block

IDN = "KEYSIGHT TECHNOLOGIES,DSOX3024T,MY58100123,07.50.2021102830"
CONNECT = [("*IDN?", IDN), ("*CLS", None)]
OK = (":SYST:ERR?", '+0,"No error"')
WAVE_SETUP = [
    (":WAV:SOUR CHAN2", None),
    (":WAV:FORM WORD", None),
    (":WAV:BYT LSBF", None),
    (":WAV:UNS 0", None),
    (":WAV:POIN:MODE RAW", None),
]


def test_connect_identity():
    with expected_protocol(InfiniiVision, CONNECT) as scope:
        assert "DSOX3024T" in scope.name
    with (
        pytest.raises(WrongInstrument),
        expected_protocol(InfiniiVision, [("*IDN?", "TEKTRONIX,MSO44,C0,1")]),
    ):
        pass


def test_configure_sends_timebase_channels_and_trigger():
    script = [
        *CONNECT,
        (":TIM:REF LEFT", None),
        (":TIM:SCAL 1e-06", None),
        (":TIM:POS 0", None),
        (":CHAN1:DISP ON", None),
        (":CHAN1:SCAL 0.5", None),
        (":CHAN1:OFFS 0", None),
        (":CHAN2:DISP ON", None),
        (":CHAN2:SCAL 0.2", None),
        (":CHAN2:OFFS -0.1", None),
        (":TRIG:SOUR EXT", None),
        (":ACQ:TYPE NORM", None),
        OK,
    ]
    with expected_protocol(InfiniiVision, script) as scope:
        scope.configure(1e-6, {2: (0.2, -0.1), 1: (0.5, 0.0)})


def test_configure_validates_before_sending():
    with expected_protocol(InfiniiVision, CONNECT) as scope:
        with pytest.raises(SettingRangeError, match="channel"):
            scope.configure(1e-6, {5: (0.1, 0.0)})
        with pytest.raises(SettingRangeError, match="V/div"):
            scope.configure(1e-6, {1: (100.0, 0.0)})
        with pytest.raises(SettingRangeError, match="time_scale"):
            scope.configure(1e-12, {1: (0.1, 0.0)})


def test_arm_single_clears_the_trigger_flag_arms_and_waits_until_armed():
    script = [*CONNECT, (":TER?", "+1"), (":SING", None), (":AER?", "+0"), (":AER?", "+1")]
    with expected_protocol(InfiniiVision, script) as scope:
        scope.arm_single()


def test_arm_single_times_out_if_never_armed():
    script = [*CONNECT, (":TER?", "+0"), (":SING", None), (":AER?", "+0")]
    with expected_protocol(InfiniiVision, script) as scope, pytest.raises(InstrumentTimeout):
        scope.arm_single(timeout_s=0.0)


def test_wait_acquired_polls_until_done():
    script = [*CONNECT, (":TER?", "+0"), (":TER?", "+0"), (":TER?", "+1")]
    with expected_protocol(InfiniiVision, script) as scope:
        scope.wait_acquired(5.0)


def test_wait_acquired_times_out_with_a_typed_error():
    script = [*CONNECT, (":TER?", "+0")]
    with (
        expected_protocol(InfiniiVision, script) as scope,
        pytest.raises(InstrumentTimeout, match="acquisition"),
    ):
        scope.wait_acquired(0.0)


def test_read_waveform_scales_word_codes_with_the_preamble():
    codes = np.array([-32768, -100, 0, 100, 32767], dtype=np.int16)
    preamble = "+1,+0,+5,+1,+2.0E-09,-1.0E-08,+0,+1.0E-05,+5.0E-02,+0"
    script = [
        *CONNECT,
        *WAVE_SETUP,
        OK,
        (":WAV:PRE?", preamble),
        (":WAV:DATA?", ieee_block(codes, "h")),
    ]
    with expected_protocol(InfiniiVision, script) as scope:
        t_s, volts = scope.read_waveform(2)
    np.testing.assert_allclose(t_s, -1e-8 + 2e-9 * np.arange(5))
    np.testing.assert_allclose(volts, codes * 1e-5 + 0.05)


def test_read_waveform_with_points():
    codes = np.zeros(100, dtype=np.int16)
    preamble = "+1,+0,+100,+1,+1.0E-09,+0,+0,+1.0E-05,+0,+0"
    script = [*CONNECT, *WAVE_SETUP, (":WAV:POIN 100", None), OK, (":WAV:PRE?", preamble)]
    script += [(":WAV:DATA?", ieee_block(codes, "h"))]
    with expected_protocol(InfiniiVision, script) as scope:
        t_s, _ = scope.read_waveform(2, points=100)
    assert t_s.size == 100


@pytest.mark.parametrize(
    ("preamble", "block", "match"),
    [
        ("+0,+0,+5,+1,+2.0E-09,0,0,+1.0E-05,0,0", None, "format"),
        ("+1,+0,+6,+1,+2.0E-09,0,0,+1.0E-05,0,0", None, "preamble says 6"),
        ("+1,+0,+5,+1,+2.0E-09", None, "preamble fields"),
        ("+1,+0,+5,+1,+2.0E-09,0,0,+1.0E-05,0,0", b"#9000000010\x00\x01", "block"),
    ],
)
def test_garbled_waveform_replies_are_typed(preamble, block, match):
    codes = np.zeros(5, dtype=np.int16)
    script = [*CONNECT, *WAVE_SETUP, OK, (":WAV:PRE?", preamble)]
    if "format" not in match and "fields" not in match:
        script.append((":WAV:DATA?", block if block is not None else ieee_block(codes, "h")))
    with (
        expected_protocol(InfiniiVision, script) as scope,
        pytest.raises(GarbledReply, match=match),
    ):
        scope.read_waveform(2)


def test_configure_left_edge_at_the_trigger_sets_the_position_one_division_later():
    script = [
        *CONNECT,
        (":TIM:REF LEFT", None),
        (":TIM:SCAL 2e-06", None),
        (":TIM:POS 2e-06", None),
    ]
    script += [(":CHAN1:DISP ON", None), (":CHAN1:SCAL 0.1", None), (":CHAN1:OFFS 0", None)]
    script += [(":TRIG:SOUR EXT", None), (":ACQ:TYPE NORM", None), OK]
    with expected_protocol(InfiniiVision, script) as scope:
        scope.configure(2e-6, {1: (0.1, 0.0)}, left_edge_s=0.0)


def test_single_settings():
    script = [*CONNECT, (":TRIG:SOUR CHAN1", None), OK, (":TIM:SCAL 0.001", None), OK]
    script += [(":TIM:POS -0.0001", None), OK]
    with expected_protocol(InfiniiVision, script) as scope:
        scope.trigger_source = "CHAN1"
        scope.time_scale_s_per_div = 1e-3
        scope.time_position_s = -1e-4
        with pytest.raises(SettingRangeError):
            scope.trigger_source = "LINE"
