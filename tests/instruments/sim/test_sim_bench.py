"""The virtual bench's instruments: ranges, formats, virtual time and per-device state."""

from __future__ import annotations

import numpy as np
import pytest

from instruments.station import open_bench

RRAM_SITE = 2
FELIF_SITE = 3


def _contact(lab, visa_open, site: int, die_index: int = 3):
    prober = visa_open(lab.resource("prober"))
    col, row = lab.wafer.dies[die_index]
    assert prober.query(f"StepNextDie {col} {row} {site}").startswith("0:")
    assert prober.query("MoveChuckContact") == "0:"
    return col, row


def test_smu_fixed_range_overflows_and_autorange_resolves(sim_lab, visa_open) -> None:
    """A 10 Ω short at 0.1 V drives 10 mA: beyond a fixed 1 µA range (9.9E+37)."""
    from instruments.sim.faults import FaultKind

    _contact(sim_lab, visa_open, site=0)
    smu = visa_open(sim_lab.resource("smu"))
    sim_lab.faults.force("smu", FaultKind.SHORT)
    for command in (":SOUR:VOLT:ILIM 0.1", ":SOUR:VOLT 0.1", ":SENS:CURR:RANG 1e-6", ":OUTP ON"):
        smu.write(command)
    assert float(smu.query(":READ?")) == pytest.approx(9.9e37)
    smu.write(":SENS:CURR:RANG:AUTO ON")
    assert float(smu.query(":READ?")) == pytest.approx(0.01, rel=1e-3)
    assert float(smu.query(":SENS:CURR:RANG?")) == pytest.approx(0.01)
    assert smu.query(":SOUR:VOLT:ILIM:TRIP?") == "0"
    smu.write(":SOUR:VOLT:ILIM 1e-3")
    assert float(smu.query(":READ?")) == pytest.approx(1e-3, rel=1e-3)
    assert smu.query(":SOUR:VOLT:ILIM:TRIP?") == "1"
    assert smu.query(":SYST:ERR?") == '0,"No error"'


def test_smu_reading_with_output_off_is_an_error(sim_lab, visa_open) -> None:
    smu = visa_open(sim_lab.resource("smu"))
    assert float(smu.query(":READ?")) > 1e37
    assert smu.query(":SYST:ERR?").startswith("-221,")


def test_scope_formats_agree(sim_lab, visa_open) -> None:
    """BYTE, WORD and ASCII readouts of one acquisition give the same volts."""
    awg = visa_open(sim_lab.resource("awg"))
    scope = visa_open(sim_lab.resource("scope"))
    samples = ",".join(["0"] * 20 + ["1"] * 60 + ["-0.5"] * 20)
    for command in (
        f"SOUR1:DATA:ARB w,{samples}",
        "SOUR1:FUNC:ARB w",
        "SOUR1:FUNC ARB",
        "SOUR1:FUNC:ARB:SRAT 1e8",
        "OUTP1:LOAD INF",
        "SOUR1:VOLT 2",
        "TRIG1:SOUR BUS",
        "SOUR1:BURS:STAT ON",
        "OUTP1 ON",
    ):
        awg.write(command)
    for command in (":TIM:SCAL 1e-7", ":TIM:REF LEFT", ":CHAN1:SCAL 0.5", ":TRIG:SOUR EXT"):
        scope.write(command)
    scope.write(":SING")
    assert scope.query("*OPC?") == "1"
    awg.write("*TRG")
    assert awg.query("*OPC?") == "1"
    assert scope.query(":TER?") == "+1"
    volts = {}
    for fmt, unsigned, datatype in (("WORD", 0, "h"), ("WORD", 1, "H"), ("BYTE", 1, "B")):
        for command in (f":WAV:FORM {fmt}", ":WAV:BYT LSBF", f":WAV:UNS {unsigned}"):
            scope.write(command)
        pre = [float(x) for x in scope.query(":WAV:PRE?").split(",")]
        codes = scope.query_binary_values(":WAV:DATA?", datatype=datatype, container=np.array)
        assert codes.size == int(pre[2])
        volts[(fmt, unsigned)] = (codes - pre[9]) * pre[7] + pre[8]
    scope.write(":WAV:FORM ASC")
    raw = scope.query_binary_values(":WAV:DATA?", datatype="s", container=bytes)
    volts[("ASC", 0)] = np.array([float(x) for x in raw.decode().split(",")])
    reference = volts[("WORD", 0)]
    for key, value in volts.items():
        np.testing.assert_allclose(value, reference, atol=1e-6, err_msg=str(key))
    assert reference.max() == pytest.approx(1.0, abs=0.05)  # offset + 1*Vpp/2 at the device
    assert reference.min() == pytest.approx(-0.5, abs=0.05)
    assert scope.query(":SYST:ERR?") == '+0,"No error"'


def test_rram_state_persists_and_relaxes_in_virtual_time(sim_lab, sim_station) -> None:
    col, row = sim_lab.wafer.dies[6]
    with open_bench(sim_station, timeout_s=30.0) as bench:
        bench.prober.step_to(col, row, RRAM_SITE)
        bench.prober.contact()
        bench.smu.configure_voltage_source(range_v=20.0, current_limit_a=100e-6, nplc=0.1)
        bench.smu.sweep_voltage_list(np.arange(0.0, 3.5, 0.1), 100e-6, 0.01)  # forms, SETs
        device = sim_lab.device((col, row), RRAM_SITE)
        assert bool(device.state.formed[0])
        gap_set_m = float(device.state.gap_m[0])
        _, read1 = bench.smu.sweep_voltage_list(np.array([0.2]), 100e-6, 0.0)
        bench.clock.wait_s(1e6)  # eleven days of retention
        _, read2 = bench.smu.sweep_voltage_list(np.array([0.2]), 100e-6, 0.0)
    gap_later_m = float(device.state.gap_m[0])
    assert gap_later_m != gap_set_m  # the filament drifted over the virtual time
    assert read1[0] > 1e-6 and read2[0] > 1e-7  # still formed and conducting


def test_felif_membrane_charges_under_the_awg_drive(sim_lab, sim_station) -> None:
    col, row = sim_lab.wafer.dies[4]
    rate_hz = 1e6
    samples_v = np.concatenate([np.zeros(10), np.full(480, 1.0), np.zeros(10)])
    with open_bench(sim_station, timeout_s=30.0) as bench:
        bench.prober.step_to(col, row, FELIF_SITE)
        bench.prober.contact()
        bench.awg.upload_waveform("drive", samples_v, rate_hz)
        bench.awg.configure_burst(1)
        bench.awg.output_enabled = True
        bench.scope.configure(5e-5, {1: (0.5, 0.0)}, time_position_s=5e-5)
        bench.scope.arm_single()
        bench.scope.wait_complete()
        bench.awg.trigger()
        bench.scope.wait_acquired(30.0)
        time_s, membrane_v = bench.scope.read_waveform(1, points=1000)
    truth = sim_lab.last_burst()
    assert truth.kind == "felif"
    expected_v = np.interp(time_s, truth.time_s, truth.extra["membrane_v"])
    np.testing.assert_allclose(membrane_v, expected_v, atol=0.05)  # 8-bit ADC at 0.5 V/div
    driven = (time_s > 20e-6) & (time_s < 480e-6)
    assert np.all(np.diff(expected_v[driven]) >= -1e-9)  # charging while driven
    assert expected_v[driven][-1] > 0.3
