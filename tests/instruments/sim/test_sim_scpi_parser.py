"""The SCPI / IEEE 488.2 message layer of the sim, byte by byte: a toy instrument declared in a
table (two channels, a four-channel scope-like node), driven through real sockets and directly.

Covers compound messages with the path rule, optional nodes and suffixes, every abbreviation,
MIN/MAX/DEF/UP/DOWN, unit suffixes, strings, definite and indefinite blocks, the status system,
and the error number of each kind of malformed message.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from types import SimpleNamespace
from typing import ClassVar

import pytest

from instruments.sim.scpi_message import Block, Expression, Quoted, split_message
from instruments.sim.scpi_params import (
    BlockData,
    Boolean,
    ChannelList,
    Choice,
    Number,
    String,
    nr3,
)
from instruments.sim.scpi_server import Call, TableServer, Values
from instruments.sim.scpi_table import action, compile_header, query, setting


class Toy(TableServer):
    role = "toy"
    IDN = "BRUNO-LAB,TOY,0,1.0"
    ERROR_NONE = '+0,"No error"'
    SUFFIX_RANGES: ClassVar[dict[str, Sequence[int]]] = {"n": range(1, 5)}
    COMMANDS = (
        setting("[SOURce[1|2]:]VOLTage[:LEVel][:IMMediate][:AMPLitude]",
                Number(-10, 10, default=0.0, unit="V", step=0.5), "volt_v", per_unit=True),
        setting("[SOURce[1|2]:]VOLTage:OFFSet", Number(-5, 5, default=0.0, unit="V"),
                "offset_v", per_unit=True),
        setting("[SOURce[1|2]:]FREQuency[:CW]", Number(1e-3, 30e6, default=1e3, unit="HZ"),
                "freq_hz", per_unit=True),
        setting("OUTPut[1|2][:STATe]", Boolean(), "on", reset=False, per_unit=True),
        setting("[SOURce[1|2]:]FUNCtion[:SHAPe]", Choice("SINusoid", "SQUare", "ARBitrary"),
                "shape", reset="SIN", per_unit=True),
        setting(":SENSe:FUNCtion", Choice("CURRent[:DC]", "VOLTage[:DC]", quoted=True,
                                          reply=lambda v: f'"{v}"'), "sense", reset="CURR:DC"),
        setting(":DISPlay:TEXT", String(), "text", reset=""),
        setting(":COUNt", Number(1, 1e6, default=1, integer=True, fmt=lambda v: str(int(v))),
                "count", reset=1),
        action("[SOURce[1|2]:]DATA:ARBitrary", "_arb", String(bare=True), BlockData(),
               per_unit=True),
        action(":DATA:LIST", "_list", Values()),
        action(":ROUTe:CLOSe", "_close", ChannelList()),
        query(":ROUTe:CLOSe", "_closed"),
        setting(":CHANnel<n>:SCALe", Number(1e-3, 5, default=1.0, unit="V"), "scale",
                per_unit=True),
        action(":TRIGger", "_trigger"),
    )  # fmt: skip

    def new_state(self) -> SimpleNamespace:
        self.channels = {n: SimpleNamespace() for n in range(1, 5)}
        self.arbs: dict[tuple[int, str], bytes] = {}
        self.lists: list[list[str]] = []
        self.closed = ""
        return SimpleNamespace()

    def unit(self, number: int) -> SimpleNamespace:
        return self.channels[number]

    def units(self) -> list[SimpleNamespace]:
        return list(self.channels.values())

    def _arb(self, call: Call, name: str, data: bytes) -> None:
        self.arbs[(call.suffixes[0], name)] = data

    def _list(self, call: Call, values: list) -> None:
        self.lists.append(values)

    def _close(self, call: Call, channels: str) -> None:
        self.closed = channels

    def _closed(self, call: Call) -> str:
        return f"(@{self.closed})"

    def _trigger(self, call: Call) -> None:
        self.begin_operation("trigger")


@pytest.fixture
def toy() -> Toy:
    return Toy(threading.RLock(), lambda: 0.0)


def ask(server: Toy, message: str, block: bytes | None = None) -> str | bytes | None:
    return server.handle(message, block)


def errors(server: Toy) -> list[int]:
    codes = []
    while server.error_queue:
        codes.append(server.error_queue.popleft()[0])
    return codes


# ----- headers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "SOUR:VOLT", "SOURCE:VOLTAGE", "sour1:volt:lev",
        "SOURce1:VOLTage:LEVel:IMMediate:AMPLitude", "VOLT", "VOLT:IMM", "volt:ampl",
        ":SOUR:VOLT:LEV:IMM", "VOLTAGE:LEVEL:AMPLITUDE",
    ],
)  # fmt: skip
def test_every_spelling_of_an_optional_node_header_is_one_command(toy, header) -> None:
    assert ask(toy, f"{header} 2.5") is None
    assert float(ask(toy, f"{header}?")) == 2.5
    assert toy.channels[1].volt_v == 2.5 and errors(toy) == []


@pytest.mark.parametrize("header", ["VOLTA", "VOL", "SOURC:VOLT", "SOUR:VOLT:LEVE", "VOLTAGEX"])
def test_a_header_that_is_neither_short_nor_long_is_undefined(toy, header) -> None:
    ask(toy, f"{header} 1")
    assert errors(toy) == [-113]


def test_numeric_suffixes_select_the_channel_and_default_to_one(toy) -> None:
    ask(toy, "SOUR2:VOLT 3;:VOLT 1;:OUTP2 ON")
    assert toy.channels[2].volt_v == 3.0 and toy.channels[1].volt_v == 1.0
    assert toy.channels[2].on and not toy.channels[1].on
    assert ask(toy, "OUTP2?;:OUTP1:STAT?;:OUTP?") == "1;0;0"
    ask(toy, "SOUR3:VOLT 1")
    ask(toy, ":CHAN5:SCAL 1")
    assert errors(toy) == [-114, -114]
    ask(toy, ":CHAN4:SCAL 0.5;:CHAN:SCAL 2")
    assert toy.channels[4].scale == 0.5 and toy.channels[1].scale == 2.0


def test_compile_header_reads_the_manual_notation() -> None:
    nodes = compile_header("[SOURce[1|2]:]VOLTage[:LEVel][:IMMediate][:AMPLitude]", {})
    assert [(n.short, n.long, n.optional, n.suffixes) for n in nodes] == [
        ("SOUR", "SOURCE", True, (1, 2)),
        ("VOLT", "VOLTAGE", False, None),
        ("LEV", "LEVEL", True, None),
        ("IMM", "IMMEDIATE", True, None),
        ("AMPL", "AMPLITUDE", True, None),
    ]


# ----- compound messages and the path rule ------------------------------------------------------


def test_path_rule_continues_in_the_subsystem_and_a_colon_returns_to_the_root(toy) -> None:
    ask(toy, "SOUR2:VOLT:LEV 4;OFFS 1.5")  # OFFS continues under SOUR2:VOLT
    assert toy.channels[2].offset_v == 1.5 and errors(toy) == []
    ask(toy, "SOUR:VOLT 1;FREQ 10")  # the path is SOUR: (the header less its last node)
    assert toy.channels[1].freq_hz == 10.0 and errors(toy) == []
    ask(toy, "SOUR:VOLT:LEV 1;FREQ 20")  # now the path is SOUR:VOLT:, which has no FREQ
    assert toy.channels[1].freq_hz == 10.0 and errors(toy) == [-113]
    ask(toy, "SOUR:VOLT 1;:FREQ 10;:OUTP ON")
    assert toy.channels[1].freq_hz == 10.0 and toy.channels[1].on and errors(toy) == []


def test_common_commands_do_not_change_the_path(toy) -> None:
    assert ask(toy, "SOUR:VOLT:OFFS 1;*CLS;OFFS?;*OPC?") == "+1.00000000E+00;1"
    assert ask(toy, "*RST;:STAT:PRES;*CLS") is None
    assert ask(toy, "*RST;:stat:pres;:*CLS;") is None  # as PyMeasure sends it
    assert errors(toy) == []


def test_several_queries_answer_in_one_message_joined_by_semicolons(toy) -> None:
    assert ask(toy, "*IDN?;VOLT?;:OUTP?;:SENS:FUNC?") == (
        'BRUNO-LAB,TOY,0,1.0;+0.00000000E+00;0;"CURR:DC"'
    )


def test_a_command_error_discards_the_rest_of_the_message_an_execution_error_does_not(toy):
    ask(toy, "VOLT 1;BOGUS 2;VOLT 3")
    assert toy.channels[1].volt_v == 1.0 and errors(toy) == [-113]
    ask(toy, "VOLT 20;VOLT 3")  # -222 is an execution error: the next unit runs
    assert toy.channels[1].volt_v == 3.0 and errors(toy) == [-222]


# ----- data -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "volts"),
    [("1", 1.0), ("+1.5", 1.5), ("-.5", -0.5), ("2.5E-1", 0.25), ("25e-1", 2.5),
     ("1.5 V", 1.5), ("1500mV", 1.5), ("1500 MV", 1.5), ("2000uv", 0.002), ("0.001KV", 1.0),
     ("MIN", -10.0), ("minimum", -10.0), ("MAX", 10.0), ("DEF", 0.0), ("default", 0.0)],
)  # fmt: skip
def test_numbers_in_nr1_nr2_nr3_with_units_and_min_max_def(toy, text, volts) -> None:
    ask(toy, f"VOLT {text}")
    assert toy.channels[1].volt_v == pytest.approx(volts) and errors(toy) == []


def test_up_down_step_and_query_of_the_bounds(toy) -> None:
    ask(toy, "VOLT 1;VOLT UP;VOLT UP;VOLT DOWN")
    assert toy.channels[1].volt_v == 1.5
    assert ask(toy, "VOLT? MIN;VOLT? MAX;VOLT? DEF") == (
        "-1.00000000E+01;+1.00000000E+01;+0.00000000E+00"
    )
    ask(toy, "FREQ 1 MHZ")  # SCPI: MHZ is mega
    assert toy.channels[1].freq_hz == 1e6 and errors(toy) == []


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("VOLT 11", -222), ("VOLT -1E3", -222), ("VOLT ON", -104), ("VOLT 1.5 A", -131),
        ("COUN 5 V", -138), ("VOLT 1.2.3", -121), ("VOLT", -109), ("VOLT 1,2", -108),
        ("VOLT 1,", -103), ("VOLT? 3", -108), ("OUTP MAYBE", -224), ("FUNC TRIangle", -224),
        ("FUNC SINU", -224), ("FUNC 'SIN'", -104), (":DISP:TEXT hello", -104),
        (':DISP:TEXT "open', -151), ("VOLT 1 2", -121), ("VO$LT 1", -101), ("SOUR::VOLT 1", -102),
        (";", -102), ("SOUR1:DATA:ARB w,#9abc", -161), ("SOUR1:DATA:ARB w,#15ab", -161),
        ("SOUR1:DATA:ARB w,1", -104), (":ROUT:CLOS 1", -104), (":ROUT:CLOS (@1", -171),
        ("OUTP3 ON", -114), ("*ESE 256", -222), ("*IDN", -113), ("*BOGUS?", -113),
    ],
)  # fmt: skip
def test_malformed_messages_give_the_right_error_number(toy, message, code) -> None:
    assert ask(toy, message) is None
    assert errors(toy) == [code]


@pytest.mark.parametrize("message", ["", " ", "\t \r", "*CLS;", " *CLS ; "])
def test_an_empty_message_or_a_trailing_separator_is_no_error(toy, message) -> None:
    assert ask(toy, message) is None
    assert errors(toy) == []


def test_strings_in_either_quote_with_doubled_quotes(toy) -> None:
    ask(toy, ':DISP:TEXT "say ""hi"""')
    assert toy.state.text == 'say "hi"'
    assert ask(toy, ":DISP:TEXT?") == '"say ""hi"""'
    ask(toy, ":DISP:TEXT 'it''s; fine'")
    assert toy.state.text == "it's; fine"
    ask(toy, ":SENS:FUNC 'VOLT';:SENS:FUNC?")
    assert toy.state.sense == "VOLT:DC"
    ask(toy, ":SENS:FUNC CURR")
    assert toy.state.sense == "CURR:DC" and errors(toy) == []


def test_integer_parameters_round_and_take_non_decimal_forms(toy) -> None:
    ask(toy, ":COUN 2.6")
    assert toy.state.count == 3
    for text, value in (("#H1F", 31), ("#Q17", 15), ("#B101", 5)):
        ask(toy, f":COUN {text}")
        assert toy.state.count == value
    assert errors(toy) == []


def test_channel_lists_and_value_lists(toy) -> None:
    ask(toy, ":ROUT:CLOS (@1!2,3!4);:ROUT:CLOS?")
    assert toy.closed == "1!2,3!4"
    assert ask(toy, ":ROUT:CLOS?") == "(@1!2,3!4)"
    ask(toy, ":DATA:LIST 1, 2,3")
    assert toy.lists == [["1", "2", "3"]] and errors(toy) == []


def test_split_message_types_every_element() -> None:
    units = split_message("A:B 1,'x',(@1),#15hello;C? MAX;*OPC", None)
    assert [u.header for u in units] == ["A:B", "C?", "*OPC"]
    data = units[0].data
    assert data == ["1", "x", "@1", b"hello"]
    assert [type(d) for d in data] == [str, Quoted, Expression, Block]


def test_blocks_definite_from_the_transport_inline_and_indefinite(toy) -> None:
    ask(toy, "SOUR2:DATA:ARB one,#<5 bytes>;:OUTP2 ON", b"a\nb;c")
    assert toy.arbs[(2, "one")] == b"a\nb;c" and toy.channels[2].on
    ask(toy, "DATA:ARB two,#14ab;c")
    assert toy.arbs[(1, "two")] == b"ab;c"
    ask(toy, "DATA:ARB three,#0raw;data,\x00")
    assert toy.arbs[(1, "three")] == b"raw;data,\x00" and errors(toy) == []


# ----- reset and status -------------------------------------------------------------------------


def test_rst_sets_every_setting_of_every_unit_to_its_table_value(toy) -> None:
    ask(toy, "SOUR2:VOLT 3;:SOUR2:FUNC SQU;:OUTP2 ON;:SENS:FUNC 'VOLT';:COUN 7;:CHAN3:SCAL 2")
    ask(toy, "*RST")
    assert ask(toy, "SOUR2:VOLT?;:SOUR2:FUNC?;:OUTP2?;:SENS:FUNC?;:COUN?;:CHAN3:SCAL?") == (
        '+0.00000000E+00;SIN;0;"CURR:DC";1;+1.00000000E+00'
    )


def test_error_queue_overflow_keeps_the_oldest_and_ends_with_minus_350(toy) -> None:
    for _ in range(15):
        ask(toy, "BOGUS")
    assert ask(toy, ":SYST:ERR:COUN?") == "+10"
    replies = [ask(toy, "SYST:ERR?") for _ in range(11)]
    assert replies[:9] == ['-113,"Undefined header"'] * 9
    assert replies[9] == '-350,"Queue overflow"' and replies[10] == '+0,"No error"'


def test_event_status_register_enable_and_status_byte(toy) -> None:
    assert int(ask(toy, "*ESR?")) == 128  # power on
    assert int(ask(toy, "*ESR?")) == 0  # read clears it
    ask(toy, "BOGUS")
    ask(toy, "VOLT 99")
    ask(toy, "*ESE 48;*SRE 32")
    assert int(ask(toy, "*STB?")) == 4 | 32 | 64  # EAV, ESB and MSS
    assert int(ask(toy, "*ESR?")) == 32 | 16  # CME and EXE
    ask(toy, "*CLS")
    assert int(ask(toy, "*STB?")) == 0 and int(ask(toy, "*ESE?")) == 48


def test_opc_completes_when_the_pending_operation_ends(toy) -> None:
    ask(toy, "*ESR?")
    ask(toy, ":TRIG;*OPC")
    assert int(ask(toy, "*ESR?")) & 1 == 0
    deferred = ask(toy, "*OPC?")
    assert not deferred.ready.is_set()
    toy.end_operation("trigger")
    assert deferred.ready.is_set() and deferred.resume() == "1"
    assert int(ask(toy, "*ESR?")) & 1 == 1


# ----- over a socket ----------------------------------------------------------------------------


def test_raw_bytes_over_a_socket_blocks_with_newlines_and_a_tail(toy) -> None:
    port = toy.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
            payload = b"\n\n;;\n\n;;\n\x00"
            sock.sendall(b"SOUR2:DATA:ARB w,#210" + payload + b";*OPC?\n")
            assert sock.makefile("rb").readline() == b"1\n"
            sock.sendall(b"VOLT 1;BOGUS;VOLT 2\nSYST:ERR?;*IDN?\n")
            expected = b'-113,"Undefined header";BRUNO-LAB,TOY,0,1.0\n'
            assert sock.makefile("rb").readline() == expected
    finally:
        toy.stop()
    assert toy.arbs[(2, "w")] == payload
    assert toy.channels[1].volt_v == 1.0
    assert next(r.text for r in toy.records()) == "SOUR2:DATA:ARB w,#<10 bytes>;*OPC?"


def test_opc_query_waits_on_the_socket_until_the_bench_finishes(toy) -> None:
    port = toy.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
            sock.sendall(b":TRIG;*OPC?\n")
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(16)
            with toy.lock:
                toy.end_operation("trigger")
            sock.settimeout(2.0)
            assert sock.recv(16) == b"1\n"
    finally:
        toy.stop()


def test_formats_of_replies() -> None:
    assert nr3(1.0) == "+1.00000000E+00"
    assert Number(0, 1).describe() == "0..1, MIN|MAX"
