"""The simulated 33522B driven by third-party drivers (PyMeasure's Agilent33500, QCoDeS'
Keysight33522B) through pyvisa-py, and byte by byte: two independent channels, arb uploads with
and without the optional ``SOURce1:`` node, DAC and float blocks in both byte orders, levels
and units, bursts on a bus trigger. The device under the needles is shorted (I = V / R_short),
so the bench's record shows what the device saw."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

_names = itertools.count()


def _shorted_device_in_contact(lab) -> float:
    prober = lab.servers["prober"]
    with lab.lock:
        prober.state.die_index, prober.state.site, prober.state.contact = 0, 0, True
        prober.state.height = "C"
        lab.device(0, 0).shorted = True
    return lab.truth.short_resistance_ohm


def _no_errors(lab) -> None:
    assert not lab.servers["awg"].error_queue, list(lab.servers["awg"].error_queue)


@pytest.fixture
def pymeasure_awg(sim_lab):
    from pymeasure.adapters import VISAAdapter
    from pymeasure.instruments.agilent import Agilent33500

    adapter = VISAAdapter(
        sim_lab.resource("awg"), visa_library="@py", read_termination="\n",
        write_termination="\n", timeout=5000,
    )  # fmt: skip
    awg = Agilent33500(adapter)
    yield awg
    adapter.close()


def test_pymeasure_channels_levels_arb_upload_and_burst(sim_lab, pymeasure_awg) -> None:
    r_short = _shorted_device_in_contact(sim_lab)
    awg = pymeasure_awg
    assert awg.id.startswith("Agilent Technologies,33522B,")
    awg.reset()
    awg.ch_1.shape, awg.ch_1.frequency, awg.ch_1.amplitude, awg.ch_1.offset = "SIN", 1e5, 1.0, 0.1
    awg.ch_2.shape, awg.ch_2.frequency = "SQU", 2e3
    assert (awg.ch_1.shape, awg.ch_2.shape) == ("SIN", "SQU")
    assert (awg.ch_1.frequency, awg.ch_2.frequency) == (1e5, 2e3)  # channel 2 is its own
    assert (awg.ch_1.voltage_high, awg.ch_1.voltage_low) == pytest.approx((0.6, -0.4))
    awg.ch_1.amplitude_unit = "VRMS"
    assert awg.ch_1.amplitude == pytest.approx(1.0 / (2 * math.sqrt(2)))
    awg.ch_1.amplitude_unit = "VPP"
    awg.ch_1.data_volatile_clear()
    codes = [-32767, -16384, 0, 16384, 32767, 16384, 0, -16384]
    awg.ch_1.data_arb("tri8", codes, data_format="DAC")  # "DATA:ARB:DAC tri8, -32767, ..."
    awg.ch_1.arb_file = "tri8"
    awg.ch_1.shape = "ARB"
    awg.ch_1.arb_srate = 1e6
    awg.ch_1.output_load = "INF"
    awg.ch_1.burst_state, awg.ch_1.burst_mode, awg.ch_1.burst_ncycles = True, "TRIGGERED", 3
    awg.trigger_source = "BUS"
    awg.ch_1.output = True
    awg.trigger()  # "*TRG;*WAI"
    assert awg.check_errors() == []
    burst = sim_lab.last_burst()
    inside = (burst.time_s >= 0.0) & (burst.time_s <= 24e-6)  # 3 periods of 8 samples at 1 MSa/s
    expected_v = 0.1 + np.array(codes) / 32767 * 0.5  # offset + sample * Vpp/2 into high Z
    assert burst.voltage_v[inside].max() == pytest.approx(expected_v.max(), abs=1e-6)
    assert burst.voltage_v[inside].min() == pytest.approx(expected_v.min(), abs=1e-6)
    np.testing.assert_allclose(burst.current_a, burst.voltage_v / r_short)  # the device saw it
    assert sim_lab.servers["awg"].state.channels[2].bursts_played == 0
    _no_errors(sim_lab)


def test_qcodes_two_independent_channels_sync_and_forced_trigger(sim_lab) -> None:
    from qcodes.instrument_drivers.Keysight import Keysight33522B

    _shorted_device_in_contact(sim_lab)
    awg = Keysight33522B(f"awg{next(_names)}", sim_lab.resource("awg"), visalib="@py")
    try:
        awg.ch2.function_type("RAMP")
        awg.ch2.frequency(5e3)
        awg.ch2.amplitude(2.0)
        awg.ch2.offset(0.5)
        awg.ch1.function_type("PULS")
        awg.ch1.pulse_width(2e-6)
        awg.ch1.amplitude(1.0)
        awg.ch1.burst_ncycles(2)
        awg.ch1.burst_state("ON")
        awg.ch1.trigger_source("BUS")
        awg.ch1.output("ON")
        awg.sync.output("OFF")
        awg.sync.source(2)
        snapshot = awg.snapshot(update=True)
        assert snapshot["submodules"]["ch1"]["parameters"]["function_type"]["value"] == "PULS"
        assert awg.ch2.function_type() == "RAMP" and awg.ch2.frequency() == 5e3
        assert awg.ch1.frequency() == 1e3 and awg.ch1.offset() == 0.0  # no aliasing of ch2
        assert awg.sync.output() == "OFF" and awg.sync.source() == 2
        awg.force_trigger()  # *TRG
        assert awg.ask("*OPC?") == "1"  # the burst has played (virtual time)
        awg.ch1.output("OFF")
    finally:
        awg.close()
    burst = sim_lab.last_burst()
    high = burst.voltage_v > 0.9  # 1 Vpp about 0 V into 50 ohm: 1 V at the high-Z device
    assert high.any() and burst.time_s[high].max() < 1.0e-3 + 2.2e-6  # two 1 ms periods
    assert sim_lab.servers["awg"].state.channels[1].bursts_played == 1
    _no_errors(sim_lab)


def test_arb_upload_without_the_optional_source_node_and_both_byte_orders(
    sim_lab, visa_open
) -> None:
    awg = visa_open(sim_lab.resource("awg"))
    ramp = np.linspace(-1, 1, 16, dtype=np.float32)
    awg.write_binary_values("DATA:ARB big,", ramp, datatype="f", is_big_endian=True)  # NORM
    awg.write("FORM:BORD SWAP")
    awg.write_binary_values("DATA:ARB little,", ramp, datatype="f", is_big_endian=False)
    codes = (ramp * 32767).astype(np.int16)
    awg.write_binary_values("SOUR2:DATA:ARB:DAC dac,", codes, datatype="h", is_big_endian=False)
    awg.write("DATA:ARB asc, " + ", ".join(f"{x:.6f}" for x in ramp))
    assert awg.query("FORM:BORD?") == "SWAP"
    assert awg.query("DATA:VOL:CAT?") == '"big","little","asc"'
    assert awg.query("SOUR2:DATA:VOL:CAT?") == '"dac"'  # each channel has its own memory
    channels = sim_lab.servers["awg"].state.channels
    for name in ("big", "little", "asc"):
        np.testing.assert_allclose(channels[1].waveforms[name], ramp, atol=1e-4)
    np.testing.assert_allclose(channels[2].waveforms["dac"], ramp, atol=1e-4)
    awg.write("FUNC:ARB little;:FUNC ARB;:SOUR2:FUNC:ARB dac")
    assert awg.query("FUNC:ARB?;:SOUR2:FUNC:ARB?;:SOUR2:DATA:ATTR:POIN?") == '"little";"dac";+16'
    _no_errors(sim_lab)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("DATA:ARB w, 0.5, 0.5, 0.5", -222), ("DATA:ARB 9bad, " + ", ".join(["0"] * 8), -224),
        ("SOUR1:VOLT 11", -222), ("VOLT:OFFS 4.99", -222), ("FUNC:ARB nothere", 785),
        ("OUTP3 ON", -114), ("FUNC TRIANGLEX", -224), ("VOLT:HIGH -1", -221), ("*TRG", -211),
        ("VOLT:UNIT DBM;:OUTP:LOAD INF;:VOLT:UNIT DBM", -221),
    ],
)  # fmt: skip
def test_refused_awg_commands_give_the_instrument_errors(sim_lab, visa_open, message, code):
    awg = visa_open(sim_lab.resource("awg"))
    awg.write(message)
    assert awg.query("SYST:ERR?").startswith(f"{code:+d},")


def test_levels_units_and_limits_follow_the_load(sim_lab, visa_open) -> None:
    awg = visa_open(sim_lab.resource("awg"))
    awg.write("VOLT:HIGH 2;LOW -1")  # the path rule: LOW is under VOLT:
    assert awg.query("VOLT?;VOLT:OFFS?") == "+3.000000000000000E+00;+5.000000000000000E-01"
    assert awg.query("VOLT? MAX;VOLT? MIN") == "+9.000000000000000E+00;+1.000000000000000E-03"
    awg.write("VOLT:UNIT DBM;:VOLT 10")  # 10 dBm into 50 ohm: 0.7071 Vrms, 2 Vpp for a sine
    awg.write("VOLT:UNIT VPP")
    assert float(awg.query("VOLT?")) == pytest.approx(2.0, rel=1e-6)
    awg.write("OUTP1:LOAD INF;:VOLT 12;:VOLT:OFFS 4")
    assert awg.query("OUTP1:LOAD?") == "+9.900000000000000E+37"
    assert float(awg.query("VOLT?")) == pytest.approx(12.0)
    awg.write("VOLT MAX")  # the largest amplitude the offset leaves: 2 * (10 - 4)
    assert float(awg.query("VOLT?")) == pytest.approx(12.0)
    _no_errors(sim_lab)


def test_pymeasure_burst_start_phase_and_modes_reach_the_device(sim_lab, pymeasure_awg) -> None:
    """A one-cycle 1 kHz sine burst starts at BURS:PHAS (90 deg: at its positive peak, -90 deg:
    at its negative one) at the device; PHAS and BURS:MODE read back per channel."""
    r_short = _shorted_device_in_contact(sim_lab)
    awg = pymeasure_awg
    awg.reset()
    ch1 = awg.ch_1
    ch1.shape, ch1.frequency, ch1.amplitude, ch1.offset = "SIN", 1e3, 2.0, 0.0
    ch1.output_load = "INF"
    ch1.phase = 45.0
    awg.ch_2.phase = -30.0
    assert (ch1.phase, awg.ch_2.phase) == (45.0, -30.0)
    ch1.burst_state, ch1.burst_mode, ch1.burst_ncycles = True, "GATED", 1
    assert (ch1.burst_mode, awg.ch_2.burst_mode) == ("GAT", "TRIG")
    ch1.burst_mode = "TRIGGERED"
    awg.trigger_source = "BUS"
    ch1.output = True
    peaks = {}
    for start_deg in (90.0, -90.0):
        awg.write(f"SOUR1:BURS:PHAS {start_deg:g}")
        awg.trigger()  # "*TRG;*WAI": no reply, so ask before reading the bench
        assert awg.ask("*OPC?").strip() == "1"
        burst = sim_lab.last_burst()
        at = {t: float(np.interp(t, burst.time_s, burst.voltage_v)) for t in (0.0, 250e-6, 5e-4)}
        peaks[start_deg] = at
        np.testing.assert_allclose(burst.current_a, burst.voltage_v / r_short)
    assert peaks[90.0][0.0] == pytest.approx(1.0, abs=0.01)  # cos: +1 V at the start
    assert peaks[90.0][250e-6] == pytest.approx(0.0, abs=0.02)
    assert peaks[90.0][5e-4] == pytest.approx(-1.0, abs=0.01)
    assert peaks[-90.0][0.0] == pytest.approx(-1.0, abs=0.01)
    assert peaks[-90.0][5e-4] == pytest.approx(1.0, abs=0.01)
    assert awg.check_errors() == []
    _no_errors(sim_lab)
