"""The simulated instruments' transport through real sockets and pyvisa-py: blocks, error
queues, command records, short/long SCPI forms, and every transport fault."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest
from pyvisa import errors as visa_errors

from instruments.sim.faults import FaultKind
from instruments.sim.server import BlockParser, ieee_block


def test_block_parser_reads_blocks_by_length_even_with_newlines_inside() -> None:
    payload = b"\n\x00#9\n\n"
    stream = b"*IDN?\nDATA:ARB w," + ieee_block(payload) + b"\nOUTP ON\n"
    parser = BlockParser()
    commands = []
    for i in range(len(stream)):  # byte by byte: blocks split across reads
        commands += parser.feed(stream[i : i + 1])
    assert commands == [("*IDN?", None), ("DATA:ARB w,#<6 bytes>", payload), ("OUTP ON", None)]


def test_every_role_answers_its_identity(sim_lab, visa_open) -> None:
    expected = {
        "smu": "KEITHLEY INSTRUMENTS,MODEL 2450,",
        "awg": "Agilent Technologies,33522B,",
        "scope": "KEYSIGHT TECHNOLOGIES,DSOX3024T,",
        "clock": "BRUNO-LAB,SIM-CLOCK,",
    }
    for role, prefix in expected.items():
        assert visa_open(sim_lab.resource(role)).query("*IDN?").startswith(prefix)
    assert visa_open(sim_lab.resource("prober")).query("ReportKernelVersion") == "0: Velox 3.3.0.10"


def test_unknown_header_and_bad_value_go_to_the_error_queue(sim_lab, visa_open) -> None:
    smu = visa_open(sim_lab.resource("smu"))
    smu.write(":SOUR:VOLT:BOGUS 1")
    smu.write(":SOUR:VOLT:ILIM 5")  # beyond the 2450's 1.05 A
    assert smu.query(":SYST:ERR?") == '-113,"Undefined header"'
    assert smu.query(":SYST:ERR?") == '-222,"Data out of range"'
    assert smu.query(":SYST:ERR?") == '0,"No error"'
    awg = visa_open(sim_lab.resource("awg"))
    awg.write("SOUR1:VOLT 30")
    assert awg.query("SYST:ERR?").startswith('-222,"Data out of range')
    assert awg.query("SYST:ERR?") == '+0,"No error"'


def test_long_and_short_forms_and_suffixes_are_one_command(sim_lab, visa_open) -> None:
    smu = visa_open(sim_lab.resource("smu"))
    smu.write(":SOURCE:VOLTAGE:ILIMIT 2e-3")
    assert float(smu.query(":SOUR:VOLT:ILIM?")) == pytest.approx(2e-3)
    awg = visa_open(sim_lab.resource("awg"))
    awg.write("SOURCE1:VOLTAGE:OFFSET 0.5")
    assert float(awg.query("SOUR1:VOLT:OFFS?")) == pytest.approx(0.5)
    awg.write("SOUR3:VOLT 1")  # the 33522B has two channels
    assert awg.query("SYST:ERR?").startswith("-114")


def test_binary_and_ascii_uploads_store_the_same_waveform(sim_lab, visa_open) -> None:
    awg = visa_open(sim_lab.resource("awg"))
    samples = np.linspace(-1, 1, 64, dtype=np.float32)
    awg.write("FORM:BORD SWAP")
    awg.write_binary_values("SOUR1:DATA:ARB wbin,", samples, datatype="f", is_big_endian=False)
    awg.write("SOUR1:DATA:ARB wasc," + ",".join(f"{x:.8f}" for x in samples))
    assert awg.query("SYST:ERR?") == '+0,"No error"'
    state = sim_lab.servers["awg"].state
    np.testing.assert_allclose(state.waveforms["wbin"], state.waveforms["wasc"], atol=1e-4)
    record = sim_lab.records("awg")[1]
    assert record.text == "SOUR1:DATA:ARB wbin,#<256 bytes>"
    assert record.block == struct.pack("<64f", *samples)


def test_upload_out_of_range_or_duplicate_is_refused(sim_lab, visa_open) -> None:
    awg = visa_open(sim_lab.resource("awg"))
    awg.write("SOUR1:DATA:ARB w1," + ",".join(["0.5"] * 7 + ["1.5"]))
    assert awg.query("SYST:ERR?").startswith("-222")
    awg.write("SOUR1:DATA:ARB w1," + ",".join(["0.5"] * 8))
    awg.write("SOUR1:DATA:ARB w1," + ",".join(["0.5"] * 8))
    assert awg.query("SYST:ERR?").startswith("+786")


def test_records_keep_order_timestamps_and_replies(sim_lab, visa_open) -> None:
    clock = visa_open(sim_lab.resource("clock"))
    clock.write(":SYST:TIME:ADV 3600")
    assert float(clock.query(":SYST:TIME?")) == pytest.approx(3600.0)
    records = sim_lab.records("clock")
    assert [r.text for r in records] == [":SYST:TIME:ADV 3600", ":SYST:TIME?"]
    assert records[0].reply is None and float(records[1].reply) == pytest.approx(3600.0)
    assert records[0].wall_s <= records[1].wall_s
    assert records[0].virtual_s == 0.0 and records[1].virtual_s == pytest.approx(3600.0)


def test_prober_refuses_to_step_in_contact_and_ends_the_wafer(sim_lab, visa_open) -> None:
    prober = visa_open(sim_lab.resource("prober"))
    first = prober.query("StepFirstDie")
    assert first.startswith("0: ")
    assert prober.query("MoveChuckContact") == "0:"
    assert prober.query("StepNextDie").startswith("711:")
    assert prober.query("ReadChuckStatus").split()[7] == "C"  # PresetHeight: contact
    assert prober.query("MoveChuckSeparation") == "0:"
    n_dies = sim_lab.station()["wafer"]["n_dies"]
    for _ in range(n_dies - 1):
        assert prober.query("StepNextDie").startswith("0: ")
    assert prober.query("StepNextDie").startswith("703:")
    col, row = sim_lab.wafer.dies[3]
    n_sites = len(sim_lab.truth.sites)
    assert prober.query(f"StepNextDie {col} {row} 2") == f"0: {col} {row} 2 {n_sites}"
    assert prober.query("ReadMapPosition").split()[1:3] == [str(col), str(row)]


@pytest.mark.parametrize("role", ["smu", "awg", "scope", "prober", "clock"])
def test_no_reply_times_out_and_the_next_command_works(sim_lab, visa_open, role) -> None:
    handle = visa_open(sim_lab.resource(role), timeout_ms=300)
    question = "ReportKernelVersion" if role == "prober" else "*OPC?"
    sim_lab.faults.force(role, FaultKind.NO_REPLY)
    start = time.monotonic()
    with pytest.raises(visa_errors.VisaIOError):
        handle.query(question)
    assert time.monotonic() - start < 2.0
    assert handle.query(question)
    assert sim_lab.records(role)[0].fault == "no_reply"


def test_dropped_connection_is_seen_by_the_client(sim_lab, visa_open) -> None:
    smu = visa_open(sim_lab.resource("smu"), timeout_ms=500)
    sim_lab.faults.force("smu", FaultKind.DROP)
    with pytest.raises((visa_errors.VisaIOError, ConnectionResetError)):  # a reset, not a hang
        smu.query("*OPC?")
    assert visa_open(sim_lab.resource("smu")).query("*OPC?") == "1"  # a new session works


def test_slow_reply_arrives_late(sim_lab_factory, visa_open) -> None:
    lab = sim_lab_factory(faults={"slow_delay_s": 0.4})
    smu = visa_open(lab.resource("smu"), timeout_ms=2000)
    lab.faults.force("smu", FaultKind.SLOW)
    start = time.monotonic()
    assert smu.query("*OPC?") == "1"
    assert time.monotonic() - start >= 0.35


def test_garbled_reply_and_injected_error(sim_lab, visa_open) -> None:
    smu = visa_open(sim_lab.resource("smu"))
    sim_lab.faults.force("smu", FaultKind.GARBLED)
    reply = smu.query(":SOUR:VOLT:ILIM?")
    with pytest.raises(ValueError):
        float(reply)
    sim_lab.faults.force("smu", FaultKind.ERROR)
    smu.write(":SENS:CURR:NPLC 1")
    assert smu.query(":SYST:ERR?").startswith("-310")


def test_fault_rates_are_seeded(sim_lab_factory) -> None:
    def pattern(seed: int) -> list[FaultKind | None]:
        lab = sim_lab_factory(faults={"seed": seed, "rates": {"drop": 0.2, "garbled": 0.2}})
        return [lab.faults.decide("smu", ":READ?") for _ in range(50)]

    first = pattern(3)
    assert first == pattern(3)
    assert first != pattern(4)
    assert FaultKind.DROP in first and FaultKind.GARBLED in first and None in first
