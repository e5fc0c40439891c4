"""Keysight 33500B AWG driver, byte level: upload (binary and ASCII), burst, trigger, safety."""

from __future__ import annotations

import numpy as np
import pytest

from instruments.envelope import Envelope, Limits, SafetyGuard
from instruments.errors import EnvelopeError, SettingRangeError, WrongInstrument
from instruments.keysight33500b import Keysight33500B
from instruments.testing import expected_protocol, ieee_block

IDN = "Agilent Technologies,33522B,MY52400123,3.05-1.19-2.00-52-00"
CONNECT = [("*IDN?", IDN), ("*CLS", None)]
OK = ("SYST:ERR?", '+0,"No error"')


def guard(contact: bool = True, **limits: float) -> SafetyGuard:
    return SafetyGuard(Envelope(default=Limits(**limits), kinds={}), contact_probe=lambda: contact)


def pulse_v(high_v: float = 2.0, low_v: float = -1.0) -> np.ndarray:
    v = np.zeros(16)
    v[2:6] = high_v
    v[9:12] = low_v
    return v


def upload_script(samples_v: np.ndarray, rate: str = "100000000", binary: bool = True) -> list:
    high, low = samples_v.max(), samples_v.min()
    offset, vpp = (high + low) / 2, high - low
    norm = ((samples_v - offset) / (vpp / 2)).astype(np.float32)
    if binary:
        data = b"SOUR1:DATA:ARB pund," + ieee_block(norm, "f")
    else:
        data = "SOUR1:DATA:ARB pund," + ",".join(f"{x:.7g}" for x in norm)
    return [
        ("OUTP1 OFF", None),
        ("SOUR1:DATA:VOL:CLE", None),
        ("FORM:BORD SWAP", None),
        (data, None),
        ("SOUR1:FUNC:ARB pund", None),
        ("SOUR1:FUNC ARB", None),
        (f"SOUR1:FUNC:ARB:SRAT {rate}", None),
        ("OUTP1:LOAD INF", None),
        (f"SOUR1:VOLT {vpp:.9g}", None),
        (f"SOUR1:VOLT:OFFS {offset:.9g}", None),
        ("*OPC?", "1"),
        OK,
    ]


def test_connect_accepts_keysight_and_refuses_other_models():
    with expected_protocol(Keysight33500B, CONNECT) as awg:
        assert "33522B" in awg.name
    with (
        pytest.raises(WrongInstrument),
        expected_protocol(Keysight33500B, [("*IDN?", "Agilent Technologies,33220A,MY1,2.0")]),
    ):
        pass


def test_upload_binary_block_of_normalised_float32_little_endian():
    v = pulse_v()
    with expected_protocol(Keysight33500B, [*CONNECT, *upload_script(v)], guard=guard()) as awg:
        awg.upload_waveform("pund", v, 100e6)
        played, rate = awg.played_waveform_v()
    np.testing.assert_allclose(played, v, atol=1e-6)
    assert rate == 100e6


def test_upload_ascii():
    v = pulse_v()
    script = [*CONNECT, *upload_script(v, binary=False)]
    with expected_protocol(Keysight33500B, script, guard=guard()) as awg:
        awg.upload_waveform("pund", v, 100e6, binary=False)


def test_upload_refuses_bad_names_and_lengths():
    with expected_protocol(Keysight33500B, CONNECT, guard=guard()) as awg:
        with pytest.raises(SettingRangeError, match="arb name"):
            awg.upload_waveform("1bad name", pulse_v(), 1e6)
        with pytest.raises(SettingRangeError, match="points"):
            awg.upload_waveform("short", np.zeros(4), 1e6)
        with pytest.raises(SettingRangeError, match="sample_rate_hz"):
            awg.upload_waveform("fast", pulse_v(), 1e9)


@pytest.mark.parametrize(
    ("samples", "rate", "limits", "match"),
    [
        (pulse_v(6.0), 1e8, {}, "max_voltage_v"),
        (pulse_v(2.0), 1e3, {"max_pulse_width_s": 1e-3}, "max_pulse_width_s"),
        (pulse_v(4.0), 1e5, {"max_pulse_energy_j": 1e-7}, "max_pulse_energy_j"),
        (pulse_v(2.0), 1e8, {"max_ramp_rate_v_per_s": 1e6}, "max_ramp_rate_v_per_s"),
    ],
)
def test_upload_beyond_envelope_is_never_sent(samples, rate, limits, match):
    with (
        expected_protocol(Keysight33500B, CONNECT, guard=guard(**limits)) as awg,
        pytest.raises(EnvelopeError, match=match),
    ):
        awg.upload_waveform("pund", samples, rate)


def test_output_on_needs_an_uploaded_waveform_and_contact():
    v = pulse_v()
    with (
        expected_protocol(Keysight33500B, CONNECT, guard=guard()) as awg,
        pytest.raises(EnvelopeError, match="known_waveform_required"),
    ):
        awg.output_enabled = True
    script = [*CONNECT, *upload_script(v)]
    with expected_protocol(Keysight33500B, script, guard=guard(contact=False)) as awg:
        awg.upload_waveform("pund", v, 100e6)
        with pytest.raises(EnvelopeError, match="require_contact_for_output"):
            awg.output_enabled = True


def test_output_on_get_and_off():
    v = pulse_v()
    script = [*CONNECT, *upload_script(v), ("OUTP1 ON", None), OK, ("OUTP1?", "1")]
    script += [("OUTP1 OFF", None), OK]
    with expected_protocol(Keysight33500B, script, guard=guard()) as awg:
        awg.upload_waveform("pund", v, 100e6)
        awg.output_enabled = True
        assert awg.output_enabled is True
        awg.shutdown()


def test_amplitude_change_on_a_live_output_is_checked_against_the_envelope():
    v = pulse_v()
    script = [*CONNECT, *upload_script(v), ("OUTP1 ON", None), OK, ("SOUR1:VOLT 4", None), OK]
    with expected_protocol(Keysight33500B, script, guard=guard(max_voltage_v=5.0)) as awg:
        awg.upload_waveform("pund", v, 100e6)
        awg.output_enabled = True
        awg.amplitude_vpp = 4.0  # offset 0.5 V + 2 V peak: allowed
        with pytest.raises(EnvelopeError, match="max_voltage_v"):
            awg.amplitude_vpp = 10.0  # 0.5 V + 5 V: refused, not sent
        with pytest.raises(EnvelopeError, match="max_voltage_v"):
            awg.offset_v = 3.5


def test_configure_burst_and_trigger():
    script = [
        *CONNECT,
        ("SOUR1:BURS:MODE TRIG", None),
        ("SOUR1:BURS:NCYC 3", None),
        ("TRIG1:SOUR BUS", None),
        ("SOUR1:BURS:STAT ON", None),
        OK,
        ("*TRG", None),
        ("*OPC?", "1"),
        OK,
    ]
    with expected_protocol(Keysight33500B, script) as awg:
        awg.configure_burst(3)
        awg.trigger()
    with expected_protocol(Keysight33500B, CONNECT) as awg, pytest.raises(SettingRangeError):
        awg.configure_burst(0)


def test_write_only_settings_with_the_output_known_off():
    v = pulse_v()
    script = [*CONNECT, *upload_script(v), ("SOUR1:VOLT:OFFS 0.25", None), OK]
    script += [("SOUR1:FUNC:ARB:SRAT 50000000", None), OK, ("SOUR1:BURS:NCYC 5", None), OK]
    with expected_protocol(Keysight33500B, script, guard=guard()) as awg:
        awg.upload_waveform("pund", v, 100e6)
        awg.offset_v = 0.25
        awg.sample_rate_hz = 50e6
        awg.burst_cycles = 5
        played, rate = awg.played_waveform_v()
        assert rate == 50e6 and played.max() == pytest.approx(0.25 + 1.5)
        with pytest.raises(SettingRangeError):
            awg.sample_rate_hz = 1e9
        with pytest.raises(AttributeError):
            _ = awg.offset_v


def test_settings_of_an_unknown_live_output_need_a_known_waveform():
    with (
        expected_protocol(Keysight33500B, CONNECT, guard=guard()) as awg,
        pytest.raises(EnvelopeError, match="known_waveform_required"),
    ):
        awg.offset_v = 0.1  # the output state is unknown: it may be playing
