"""The simulated InfiniiVision driven by PyMeasure's KeysightDSOX1102G driver (InfiniiVision
X-series command set; QCoDeS ships no InfiniiVision driver, only Infiniium) through pyvisa-py,
and byte by byte: channel settings read back, timebase modes, a forced trigger, :AUToscale to
the last burst, :RUN re-arming after each trigger until :STOP, :DIGitize waiting for the AWG in
NORMal sweep, the AWG's sync output as the EXT trigger, BYTE/WORD/ASCII
records. Each test checks the record against what the bench put on the channel."""

from __future__ import annotations

import time

import numpy as np
import pytest


def _no_errors(lab, *roles: str) -> None:
    for role in roles or ("scope",):
        assert not lab.servers[role].error_queue, (role, list(lab.servers[role].error_queue))


@pytest.fixture
def pymeasure_scope(sim_lab):
    import warnings

    from pymeasure.adapters import VISAAdapter
    from pymeasure.instruments.keysight import KeysightDSOX1102G

    adapter = VISAAdapter(
        sim_lab.resource("scope"), visa_library="@py", read_termination="\n",
        write_termination="\n", timeout=5000,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "not known whether ... SCPI"
        scope = KeysightDSOX1102G(adapter)
    yield scope
    adapter.close()


def _awg_dc(lab, visa_open, level_v: float) -> None:
    """The AWG's channel 1 at a DC level into the (high-Z) device: the idle level the scope
    sees on channel 1."""
    awg = visa_open(lab.resource("awg"))
    awg.write(f"FUNC DC;:VOLT:OFFS {level_v};:OUTP:LOAD INF;:OUTP ON")
    assert awg.query("SYST:ERR?") == '+0,"No error"'


def test_pymeasure_setup_readback_forced_trigger_and_download(
    sim_lab, pymeasure_scope, visa_open
) -> None:
    scope = pymeasure_scope
    assert scope.id.startswith("KEYSIGHT TECHNOLOGIES,DSOX3024T,")
    scope.default_setup()  # :SYSTem:PRESet
    scope.ch1.scale, scope.ch1.offset, scope.ch1.bwlimit, scope.ch1.coupling = 0.5, 1.0, True, "dc"
    scope.ch1.probe_attenuation = 1
    setup = scope.ch1.current_configuration  # parses the :CHANnel1? summary
    assert (setup["RANG"], setup["OFFS"], setup["BWL"], setup["COUP"]) == (4.0, 1.0, True, "DC")
    scope.timebase_scale, scope.timebase_offset = 1e-6, 2e-6
    assert scope.timebase == {"MODE": "MAIN", "REF": "CENT", "MAIN:RANG": 1e-5, "POS": 2e-6}
    _awg_dc(sim_lab, visa_open, 1.25)
    scope.single()
    scope.write(":TRIGger:FORCe")
    data, preamble = scope.download_data(source="channel1", points=1000)
    assert preamble["points"] == len(data) == 1000 and preamble["xorigin"] == pytest.approx(-3e-6)
    assert np.mean(data) == pytest.approx(1.25, abs=0.02)  # the level at the device
    scope.digitize("channel1")  # AUTO sweep: acquires at once
    assert scope.ask(":TER?").strip() == "+1"
    _no_errors(sim_lab, "scope", "awg")


def test_digitize_in_normal_sweep_waits_for_the_awg_burst(sim_lab, visa_open) -> None:
    scope = visa_open(sim_lab.resource("scope"), timeout_ms=5000)
    watcher = visa_open(sim_lab.resource("scope"))  # a second session: the first one blocks
    awg = visa_open(sim_lab.resource("awg"))
    samples = ",".join(["0"] * 10 + ["1"] * 30 + ["0"] * 10)
    awg.write(f"DATA:ARB p,{samples};:FUNC:ARB p;:FUNC ARB;:FUNC:ARB:SRAT 1e8;:OUTP:LOAD INF")
    awg.write("VOLT 2;:VOLT:OFFS 0;:TRIG:SOUR BUS;:BURS:STAT ON;:OUTP ON")
    scope.write(":TIM:SCAL 1e-7;:TIM:REF LEFT;:CHAN1:SCAL 0.5;:TRIG:SWE NORM;:TRIG:SOUR EXT")
    scope.write(":DIGitize CHANnel1")
    deadline = time.monotonic() + 5.0
    while watcher.query(":AER?") != "+1":  # armed (read from the other session)
        assert time.monotonic() < deadline
    assert int(watcher.query(":OPER:COND?")) & 32  # Wait Trig
    watcher.query("*ESR?")  # clear it
    watcher.write("*OPC")  # operation complete: ESR bit 0 once the digitize has finished
    assert int(watcher.query("*ESR?")) & 1 == 0
    awg.write("*TRG")
    assert scope.query("*OPC?") == "1"  # answered only once the acquisition is done
    assert int(watcher.query("*ESR?")) & 1 == 1
    scope.write(":WAV:SOUR CHAN1;:WAV:FORM WORD;:WAV:BYT LSBF;:WAV:UNS 0;:WAV:POIN 1000")
    pre = [float(x) for x in scope.query(":WAV:PRE?").split(",")]
    codes = scope.query_binary_values(":WAV:DATA?", datatype="h", container=np.array)
    volts = (codes - pre[9]) * pre[7] + pre[8]
    time_s = np.arange(codes.size) * pre[4] + pre[5]
    assert np.mean(volts[(time_s > 150e-9) & (time_s < 350e-9)]) == pytest.approx(1.0, abs=0.03)
    assert np.mean(volts[time_s > 500e-9]) == pytest.approx(0.0, abs=0.03)
    _no_errors(sim_lab, "scope", "awg")


def test_ext_trigger_is_the_awg_sync_output(sim_lab, visa_open) -> None:
    scope = visa_open(sim_lab.resource("scope"))
    awg = visa_open(sim_lab.resource("awg"))
    awg.write("DATA:ARB p," + ",".join(["0.5"] * 8) + ";:FUNC:ARB p;:FUNC ARB;:TRIG:SOUR BUS")
    awg.write("BURS:STAT ON;:OUTP:SYNC OFF")
    scope.write(":TRIG:SOUR EXT;:SING")
    awg.write("*TRG")
    assert awg.query("*OPC?") == "1"
    assert scope.query(":TER?") == "+0"  # no sync pulse, no trigger
    awg.write("OUTP:SYNC ON")
    awg.write("*TRG")
    assert awg.query("*OPC?") == "1"
    assert scope.query(":TER?") == "+1"
    _no_errors(sim_lab, "scope", "awg")


def test_channel_and_timebase_settings_read_back_and_reset(sim_lab, visa_open) -> None:
    scope = visa_open(sim_lab.resource("scope"))
    scope.write(":CHAN2:RANG 8;PROB 10;BWL ON;COUP AC;IMP FIFT;DISP ON;INV ON;LAB 'TIA'")
    assert scope.query(":CHAN2:SCAL?;PROB?;BWL?;COUP?;IMP?;DISP?;INV?;LAB?") == (
        '+1.00000000E+00;+1.00000000E+01;1;AC;FIFT;1;1;"TIA"'
    )
    scope.write(":TIM:MODE WIND;:TIM:WIND:SCAL 1e-8;:TIM:RANG 1e-3")
    assert scope.query(":TIM:MODE?;:TIM:WIND:SCAL?;:TIM:SCAL?") == (
        "WIND;+1.00000000E-08;+1.00000000E-04"
    )
    scope.write(":TIM:MODE ROLL;:SING")  # roll mode has no trigger: the record is there at once
    assert scope.query(":TER?") == "+1"
    scope.write("*RST")
    assert scope.query(":CHAN2:PROB?;DISP?;:CHAN1:DISP?;:TIM:MODE?;:TRIG:SWE?;:WAV:FORM?") == (
        "+1.00000000E+00;0;1;MAIN;AUTO;BYTE"
    )
    scope.write(":TRIG:FORC")  # not armed after *RST
    assert scope.query(":SYST:ERR?").startswith("-211,")


def test_byte_word_and_ascii_records_agree(sim_lab, visa_open) -> None:
    scope = visa_open(sim_lab.resource("scope"))
    _awg_dc(sim_lab, visa_open, -0.8)
    scope.write(":CHAN1:SCAL 0.2;:SING;:TRIG:FORC;:WAV:POIN 500")
    means = []
    for fmt, unsigned, datatype in (("WORD", 0, "h"), ("WORD", 1, "H"), ("BYTE", 0, "b")):
        scope.write(f":WAV:FORM {fmt};:WAV:UNS {unsigned};:WAV:BYT MSBF")
        pre = [float(x) for x in scope.query(":WAV:PRE?").split(",")]
        codes = scope.query_binary_values(
            ":WAV:DATA?", datatype=datatype, is_big_endian=True, container=np.array
        )
        means.append(np.mean((codes - pre[9]) * pre[7] + pre[8]))
    scope.write(":WAV:FORM ASC")
    reply = scope.query(":WAV:DATA?")
    assert reply.startswith("#8") and int(reply[2:10]) == len(reply) - 10  # the #8 block header
    means.append(np.mean([float(v) for v in reply[10:].split(",")]))
    np.testing.assert_allclose(means, -0.8, atol=0.01)
    _no_errors(sim_lab, "scope", "awg")


def test_pymeasure_autoscale_run_and_stop_follow_the_awg_burst(
    sim_lab, pymeasure_scope, visa_open
) -> None:
    """Autoscale sizes channel 1 to the last burst the device saw (1-2-5 steps: a 0..2 V pulse
    on about six divisions is 0.5 V/div about 1 V) and runs; in RUN the scope re-arms after every
    trigger (the burst is captured and it still runs); STOP ends it."""
    scope = pymeasure_scope
    awg = visa_open(sim_lab.resource("awg"))
    samples = ",".join(["-1"] * 10 + ["1"] * 30 + ["-1"] * 10)  # 0 V, 2 V, 0 V
    awg.write(f"DATA:ARB p,{samples};:FUNC:ARB p;:FUNC ARB;:FUNC:ARB:SRAT 1e8;:OUTP:LOAD INF")
    awg.write("VOLT 2;:VOLT:OFFS 1;:TRIG:SOUR BUS;:BURS:STAT ON;:OUTP ON")
    awg.write("*TRG")
    assert awg.query("*OPC?") == "1"
    assert np.ptp(sim_lab.last_burst().voltage_v) == pytest.approx(2.0, abs=1e-3)
    scope.autoscale()
    assert (scope.ch1.scale, scope.ch1.offset) == (0.5, pytest.approx(1.0, abs=1e-3))
    assert scope.ch1.display is True and scope.timebase_scale == pytest.approx(50e-9)
    assert int(scope.ask(":OPER:COND?")) & 8  # Run: autoscale leaves the scope running
    scope.ask(":TER?")  # clear the trigger event register
    scope.write(":TRIG:SWE NORM;:TIM:REF LEFT;:TIM:POS 0")
    awg.write("*TRG")
    assert awg.query("*OPC?") == "1"
    assert scope.ask(":TER?").strip() == "+1"
    assert int(scope.ask(":OPER:COND?")) & 8  # re-armed: still running after the trigger
    scope.stop()
    assert int(scope.ask(":OPER:COND?")) & 8 == 0
    data, preamble = scope.download_data(source="channel1", points=500)
    time_s = preamble["xorigin"] + np.arange(len(data)) * preamble["xincrement"]
    assert np.mean(np.asarray(data)[(time_s > 150e-9) & (time_s < 350e-9)]) == pytest.approx(
        2.0, abs=0.05
    )  # the pulse's top (offset 1 V + 2 Vpp / 2) at the high-Z device
    awg.write("*TRG")  # stopped: this burst is not acquired
    assert awg.query("*OPC?") == "1"
    assert scope.ask(":TER?").strip() == "+0"
    _no_errors(sim_lab, "scope", "awg")
