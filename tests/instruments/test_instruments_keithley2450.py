"""Keithley 2450 driver, byte level: each getter, setter and method against a scripted resource."""

from __future__ import annotations

import numpy as np
import pytest

from instruments.envelope import Envelope, Limits, SafetyGuard
from instruments.errors import (
    ComplianceHit,
    EnvelopeError,
    GarbledReply,
    InstrumentErrorQueue,
    SettingRangeError,
    WrongInstrument,
)
from instruments.keithley2450 import Keithley2450
from instruments.scpi import format_float
from instruments.testing import ProtocolMismatch, expected_protocol

IDN = "KEITHLEY INSTRUMENTS,MODEL 2450,04096331,1.7.3c"
CONNECT = [("*IDN?", IDN), ("*LANG?", "SCPI"), ("*CLS", None)]
OK = (":SYST:ERR?", '0,"No error"')


def guard(contact: bool = True, **limits: float) -> SafetyGuard:
    return SafetyGuard(Envelope(default=Limits(**limits), kinds={}), contact_probe=lambda: contact)


CONFIGURE = [
    (":SOUR:FUNC VOLT", None),
    (":SOUR:VOLT:RANG 20", None),
    (":SOUR:VOLT:ILIM 0.0001", None),
    (':SENS:FUNC "CURR"', None),
    (":SENS:CURR:RANG:AUTO ON", None),
    (":SENS:CURR:NPLC 1", None),
    OK,
]


def test_connect_reads_identity_and_clears_the_queue():
    with expected_protocol(Keithley2450, CONNECT) as smu:
        assert smu.idn == IDN
        assert "smu" in smu.name and "2450" in smu.name


def test_connect_refuses_the_2400_emulation_mode():
    with (
        pytest.raises(WrongInstrument, match="MODEL 2400"),
        expected_protocol(Keithley2450, [("*IDN?", "KEITHLEY INSTRUMENTS INC.,MODEL 2400,1,C32")]),
    ):
        pass


def test_source_voltage_get_and_set():
    with expected_protocol(
        Keithley2450,
        [*CONNECT, (":SOUR:VOLT?", "1.500000E+00"), (":SOUR:VOLT -0.25", None), OK],
        guard=guard(),
    ) as smu:
        assert smu.source_voltage_v == 1.5
        smu.source_voltage_v = -0.25


def test_current_limit_get_and_set():
    with expected_protocol(
        Keithley2450,
        [*CONNECT, (":SOUR:VOLT:ILIM?", "1.050000E-04"), (":SOUR:VOLT:ILIM 1e-05", None), OK],
        guard=guard(),
    ) as smu:
        assert smu.current_limit_a == pytest.approx(1.05e-4)
        smu.current_limit_a = 1e-5


def test_compliance_tripped():
    with expected_protocol(
        Keithley2450, [*CONNECT, (":SOUR:VOLT:ILIM:TRIP?", "1"), (":SOUR:VOLT:ILIM:TRIP?", "0")]
    ) as smu:
        assert smu.compliance_tripped is True
        assert smu.compliance_tripped is False


def test_write_only_settings():
    with expected_protocol(
        Keithley2450,
        [
            *CONNECT,
            (":SOUR:VOLT:RANG 2", None),
            OK,
            (":SENS:CURR:RANG 1e-06", None),
            OK,
            (":SENS:CURR:RANG:AUTO OFF", None),
            OK,
            (":SENS:CURR:NPLC 0.1", None),
            OK,
        ],
    ) as smu:
        smu.source_range_v = 2
        smu.current_range_a = 1e-6
        smu.current_autorange_enabled = False
        smu.nplc = 0.1
        with pytest.raises(AttributeError):
            _ = smu.nplc


def test_configure_voltage_source_sends_the_manual_sequence_then_checks_errors():
    with expected_protocol(Keithley2450, [*CONNECT, *CONFIGURE]) as smu:
        smu.configure_voltage_source(range_v=20, current_limit_a=1e-4, nplc=1)


def test_configure_refuses_everything_when_one_value_is_out_of_range():
    with (
        expected_protocol(Keithley2450, CONNECT) as smu,
        pytest.raises(SettingRangeError, match="nplc"),
    ):
        smu.configure_voltage_source(range_v=20, current_limit_a=1e-4, nplc=50)


def test_instrument_errors_after_configuration_are_raised_with_the_queue():
    script = [*CONNECT, *CONFIGURE[:-1]]
    script += [(":SYST:ERR?", '-222,"Data out of range"'), (":SYST:ERR?", '0,"No error"')]
    with (
        expected_protocol(Keithley2450, script) as smu,
        pytest.raises(InstrumentErrorQueue, match="Data out of range") as info,
    ):
        smu.configure_voltage_source(range_v=20, current_limit_a=1e-4, nplc=1)
    assert info.value.entries == [(-222, "Data out of range")]
    assert ":SENS:CURR:NPLC 1" in str(info.value)


def test_output_on_needs_compliance_first():
    with (
        expected_protocol(Keithley2450, CONNECT, guard=guard()) as smu,
        pytest.raises(EnvelopeError, match="require_compliance_before_output"),
    ):
        smu.output_enabled = True


def test_output_on_after_configure_and_off():
    script = [*CONNECT, *CONFIGURE, (":SOUR:VOLT 0.5", None), OK, (":OUTP ON", None), OK]
    script += [(":OUTP?", "1"), (":OUTP OFF", None), OK]
    with expected_protocol(Keithley2450, script, guard=guard()) as smu:
        smu.configure_voltage_source(range_v=20, current_limit_a=1e-4, nplc=1)
        smu.source_voltage_v = 0.5
        smu.output_enabled = True
        assert smu.output_enabled is True
        smu.output_enabled = False


def test_output_on_reads_an_unknown_source_level_and_refuses_it_if_too_high():
    script = [*CONNECT, *CONFIGURE, (":SOUR:VOLT?", "2.000000E+01")]
    with expected_protocol(Keithley2450, script, guard=guard(max_voltage_v=5.0)) as smu:
        smu.configure_voltage_source(range_v=20, current_limit_a=1e-4, nplc=1)
        with pytest.raises(EnvelopeError, match="max_voltage_v"):
            smu.output_enabled = True


def test_output_on_refused_while_separated():
    script = [*CONNECT, *CONFIGURE, (":SOUR:VOLT 0", None), OK]
    with expected_protocol(Keithley2450, script, guard=guard(contact=False)) as smu:
        smu.configure_voltage_source(range_v=20, current_limit_a=1e-4, nplc=1)
        smu.source_voltage_v = 0
        with pytest.raises(EnvelopeError, match="require_contact_for_output"):
            smu.output_enabled = True


def test_voltage_beyond_envelope_is_never_sent():
    with (
        expected_protocol(Keithley2450, CONNECT, guard=guard(max_voltage_v=3.0)) as smu,
        pytest.raises(EnvelopeError, match=r"source_voltage_v=3\.5.*max_voltage_v=3\.0"),
    ):
        smu.source_voltage_v = 3.5


def test_limit_beyond_envelope_is_never_sent():
    with (
        expected_protocol(Keithley2450, CONNECT, guard=guard(max_current_a=1e-3)) as smu,
        pytest.raises(EnvelopeError, match="current_limit_a"),
    ):
        smu.current_limit_a = 1e-2


def test_measure_current_checks_compliance():
    script = [*CONNECT, (":READ?", "1.234567E-06"), (":SOUR:VOLT:ILIM:TRIP?", "0")]
    script += [(":READ?", "1.000000E-04"), (":SOUR:VOLT:ILIM:TRIP?", "1")]
    script += [(":READ?", "2.0E-06")]
    with expected_protocol(Keithley2450, script) as smu:
        assert smu.measure_current_a() == pytest.approx(1.234567e-6)
        with pytest.raises(ComplianceHit, match="limit"):
            smu.measure_current_a()
        assert smu.measure_current_a(raise_on_compliance=False) == 2e-6


def test_garbled_reading_is_a_typed_error():
    with (
        expected_protocol(Keithley2450, [*CONNECT, (":READ?", "1.2#&E-0")]) as smu,
        pytest.raises(GarbledReply, match=r":READ\?"),
    ):
        smu.measure_current_a(raise_on_compliance=False)


def sweep_script(first: int, n_buffer: int, data: str) -> list:
    return [
        (":SOUR:FUNC VOLT", None),
        (":SOUR:VOLT:ILIM 0.0001", None),
        (":SOUR:LIST:VOLT 0,0.5,1", None),
        (":SOUR:SWE:VOLT:LIST 1,0.001,1,OFF", None),
        OK,
        (":INIT", None),
        ("*WAI", None),
        (':TRAC:ACT? "defbuffer1"', str(n_buffer)),
        (f':TRAC:DATA? {first},{n_buffer},"defbuffer1",SOUR,READ', data),
        OK,
    ]


def test_sweep_voltage_list():
    data = "0,1E-9,0.5,2E-6,1,5E-6"
    with expected_protocol(
        Keithley2450, [*CONNECT, *sweep_script(1, 3, data)], guard=guard()
    ) as smu:
        v, i = smu.sweep_voltage_list(np.array([0.0, 0.5, 1.0]), 1e-4, 1e-3)
    np.testing.assert_allclose(v, [0, 0.5, 1])
    np.testing.assert_allclose(i, [1e-9, 2e-6, 5e-6])


def test_sweep_reads_the_last_readings_of_a_fuller_buffer():
    data = "0,1E-9,0.5,2E-6,1,5E-6"
    script = [*CONNECT, *sweep_script(5, 7, data)]
    with expected_protocol(Keithley2450, script, guard=guard()) as smu:
        v, _ = smu.sweep_voltage_list([0.0, 0.5, 1.0], 1e-4, 1e-3)
    assert v.tolist() == [0, 0.5, 1]


def test_sweep_with_compliance_raise():
    data = "0,1E-9,0.5,2E-6,1,1E-4"
    script = [*CONNECT, *sweep_script(1, 3, data), (":SOUR:VOLT:ILIM:TRIP?", "1")]
    with (
        expected_protocol(Keithley2450, script, guard=guard()) as smu,
        pytest.raises(ComplianceHit),
    ):
        smu.sweep_voltage_list([0.0, 0.5, 1.0], 1e-4, 1e-3, raise_on_compliance=True)


def test_sweep_short_data_is_garbled():
    script = [*CONNECT, *sweep_script(1, 3, "0,1E-9,0.5")[:-1]]
    with (
        expected_protocol(Keithley2450, script, guard=guard()) as smu,
        pytest.raises(GarbledReply, match="values for 3 points"),
    ):
        smu.sweep_voltage_list([0.0, 0.5, 1.0], 1e-4, 1e-3)


@pytest.mark.parametrize(
    ("voltages", "limit_a", "delay_s", "match"),
    [
        ([0.0, 6.0], 1e-4, 1e-3, "max_voltage_v"),
        ([0.0, 1.0], 1e-1, 1e-3, "max_current_a"),
        ([0.0, 4.0], 1e-4, 0.0, "max_ramp_rate_v_per_s"),
    ],
)
def test_sweep_beyond_envelope_is_never_sent(voltages, limit_a, delay_s, match):
    g = guard(max_voltage_v=5.0, max_current_a=1e-3, max_ramp_rate_v_per_s=100.0)
    with (
        expected_protocol(Keithley2450, CONNECT, guard=g) as smu,
        pytest.raises(EnvelopeError, match=match),
    ):
        smu.sweep_voltage_list(voltages, limit_a, delay_s)


def test_shutdown_goes_to_zero_volts_then_off():
    script = [*CONNECT, (":SOUR:VOLT 0", None), (":OUTP OFF", None), OK]
    with expected_protocol(Keithley2450, script) as smu:
        smu.shutdown()
        smu.ensure_safe()  # known safe now: sends nothing


def test_script_mismatch_is_reported():
    with (
        pytest.raises(ProtocolMismatch, match="script expects"),
        expected_protocol(
            Keithley2450, [*CONNECT, (":SOUR:VOLT 1", None), OK], guard=guard()
        ) as smu,
    ):
        smu.source_voltage_v = 2
    with (
        pytest.raises(ProtocolMismatch, match="not used up"),
        expected_protocol(Keithley2450, [*CONNECT, (":OUTP OFF", None)]),
    ):
        pass


def test_snapshot_holds_what_was_sent_without_io():
    with expected_protocol(Keithley2450, [*CONNECT, *CONFIGURE]) as smu:
        smu.configure_voltage_source(range_v=20, current_limit_a=1e-4, nplc=1)
        snap = smu.snapshot()
    assert snap["model"] == "keithley2450" and snap["idn"] == IDN and snap["role"] == "smu"
    assert snap["current_limit_a"] == 1e-4 and snap["nplc"] == 1.0 and snap["source_range_v"] == 20


def test_long_sweep_lists_go_in_commands_of_at_most_100_values():
    v = np.linspace(0.0, 1.0, 250)
    chunks = [",".join(format_float(x) for x in v[i : i + 100]) for i in range(0, 250, 100)]
    data = ",".join(f"{format_float(x)},1E-9" for x in v)
    script = [
        *CONNECT,
        (":SOUR:FUNC VOLT", None),
        (":SOUR:VOLT:ILIM 0.0001", None),
        (":SOUR:LIST:VOLT " + chunks[0], None),
        (":SOUR:LIST:VOLT:APP " + chunks[1], None),
        (":SOUR:LIST:VOLT:APP " + chunks[2], None),
        (":SOUR:SWE:VOLT:LIST 1,0.001,1,OFF", None),
        OK,
        (":INIT", None),
        ("*WAI", None),
        (':TRAC:ACT? "defbuffer1"', "250"),
        (':TRAC:DATA? 1,250,"defbuffer1",SOUR,READ', data),
        OK,
    ]
    with expected_protocol(Keithley2450, script, guard=guard()) as smu:
        volts, _ = smu.sweep_voltage_list(v, 1e-4, 1e-3)
    assert volts.size == 250
