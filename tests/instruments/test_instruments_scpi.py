"""The transport and declared-property machinery: typed errors, error queue, validators.

The transport tests run a driver over pyvisa-py against a tiny socket server of this file that
misbehaves on purpose (no reply, closed connection, undecodable bytes).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from instruments.errors import (
    ConnectionLost,
    GarbledReply,
    InstrumentErrorQueue,
    InstrumentTimeout,
    SettingRangeError,
)
from instruments.keithley2450 import Keithley2450
from instruments.testing import expected_protocol, visa_timeout
from instruments.validators import (
    as_bool,
    in_range,
    integer_in_range,
    one_of,
    parse_bool,
    parse_error_entry,
)

IDN = "KEITHLEY INSTRUMENTS,MODEL 2450,04096331,1.7.3c"
CONNECT = [("*IDN?", IDN), ("*LANG?", "SCPI"), ("*CLS", None)]


def test_validators_refuse_and_never_clip():
    assert in_range(0, 1)(0.5, "x") == 0.5
    for bad in (1.5, -0.1, float("nan"), float("inf")):
        with pytest.raises(SettingRangeError, match=r"x: .* outside"):
            in_range(0, 1)(bad, "x")
    assert integer_in_range(1, 3)(2, "n") == 2
    for bad in (0, 4, 2.5, True):
        with pytest.raises(SettingRangeError):
            integer_in_range(1, 3)(bad, "n")
    assert one_of("A", "B")("A", "s") == "A"
    with pytest.raises(SettingRangeError):
        one_of("A", "B")("C", "s")
    assert as_bool(1, "b") is True
    with pytest.raises(SettingRangeError):
        as_bool("yes", "b")


def test_reply_parsers():
    assert parse_bool("+1") and not parse_bool("0") and parse_bool("ON")
    with pytest.raises(ValueError):
        parse_bool("2")
    assert parse_error_entry('+0,"No error"') == (0, "No error")
    assert parse_error_entry('-222,"Data out of range"') == (-222, "Data out of range")
    with pytest.raises(ValueError):
        parse_error_entry("garbage")


def test_check_errors_reads_the_whole_queue():
    script = [
        *CONNECT,
        (":SOUR:VOLT:RANG 2", None),
        (":SYST:ERR?", '-113,"Undefined header"'),
        (":SYST:ERR?", '-222,"Data out of range"'),
        (":SYST:ERR?", '0,"No error"'),
    ]
    with (
        expected_protocol(Keithley2450, script) as smu,
        pytest.raises(InstrumentErrorQueue) as info,
    ):
        smu.source_range_v = 2
    assert info.value.entries == [(-113, "Undefined header"), (-222, "Data out of range")]
    assert info.value.command == ":SOUR:VOLT:RANG 2"
    assert "smu [KEITHLEY" in str(info.value)


def test_batch_checks_once_at_the_end():
    script = [*CONNECT, (":SOUR:VOLT:RANG 2", None), (":SENS:CURR:NPLC 1", None)]
    script += [(":SYST:ERR?", '0,"No error"')]
    with expected_protocol(Keithley2450, script) as smu, smu.batch():
        smu.source_range_v = 2
        smu.nplc = 1


def test_reset_and_opc():
    script = [*CONNECT, ("*RST", None), ("*CLS", None), ("*OPC?", "1"), (":SYST:ERR?", '0,"No"')]
    script += [("*OPC?", "0")]
    with expected_protocol(Keithley2450, script) as smu:
        smu.reset()
        with pytest.raises(GarbledReply, match="OPC"):
            smu.wait_complete()


def test_scripted_timeout_is_typed_and_names_instrument_and_command():
    with (
        expected_protocol(Keithley2450, [*CONNECT, (":READ?", visa_timeout())]) as smu,
        pytest.raises(InstrumentTimeout, match=r"smu \[KEITHLEY.*':READ\?'.*no reply"),
    ):
        smu.measure_current_a()


# -- through a real socket ------------------------------------------------------------------


@pytest.fixture
def misbehaving_server() -> Iterator[Callable[[Callable[[str], bytes | None]], str]]:
    """Start a line server whose reply to each command is chosen by ``behave(command)``:
    bytes to send, None for no reply, b"CLOSE" to drop the connection."""
    servers: list[socket.socket] = []

    def start(behave: Callable[[str], bytes | None]) -> str:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        servers.append(srv)

        def serve() -> None:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            buffer = b""
            with conn:
                while True:
                    try:
                        data = conn.recv(4096)
                    except OSError:
                        return
                    if not data:
                        return
                    buffer += data
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        reply = behave(line.decode())
                        if reply == b"CLOSE":
                            conn.shutdown(socket.SHUT_RDWR)
                            return
                        if reply is not None:
                            conn.sendall(reply)

        threading.Thread(target=serve, daemon=True).start()
        return f"TCPIP::127.0.0.1::{srv.getsockname()[1]}::SOCKET"

    yield start
    for srv in servers:
        srv.close()


def open_smu(address: str, timeout_s: float = 0.5) -> Keithley2450:
    import pyvisa

    rm = pyvisa.ResourceManager("@py")
    return Keithley2450(rm.open_resource(address), timeout_s=timeout_s)


def identify_then(fault: Callable[[str], bytes | None]) -> Callable[[str], bytes | None]:
    def behave(command: str) -> bytes | None:
        if command == "*IDN?":
            return (IDN + "\n").encode()
        if command == "*CLS":
            return None
        if command == "*LANG?":
            return b"SCPI\n"
        return fault(command)

    return behave


def test_no_reply_is_an_instrument_timeout_within_the_timeout(misbehaving_server):
    smu = open_smu(misbehaving_server(identify_then(lambda c: None)), timeout_s=0.3)
    start = time.monotonic()
    with pytest.raises(InstrumentTimeout, match=r":READ\?"):
        smu.measure_current_a()
    assert time.monotonic() - start < 2.0
    smu.close()


def test_dropped_connection_is_connection_lost(misbehaving_server):
    smu = open_smu(misbehaving_server(identify_then(lambda c: b"CLOSE")), timeout_s=0.3)
    with pytest.raises(ConnectionLost, match=r":READ\?"):
        smu.measure_current_a()
    smu.close()


def test_undecodable_reply_is_garbled(misbehaving_server):
    smu = open_smu(misbehaving_server(identify_then(lambda c: b"\xff\xfe\x00garble\n")))
    with pytest.raises(GarbledReply, match=r":READ\?"):
        smu.measure_current_a()
    smu.close()


def test_a_late_reply_is_not_taken_for_the_next_one(misbehaving_server):
    replies = iter([None, b"1.0E-06\n" + b"0\n", b"2.0E-06\n"])

    def behave(command: str) -> bytes | None:
        return next(replies) if command == ":READ?" else b"0\n"

    smu = open_smu(misbehaving_server(identify_then(behave)), timeout_s=0.3)
    with pytest.raises(InstrumentTimeout):
        smu.measure_current_a(raise_on_compliance=False)
    # the second :READ? gets two lines at once; the drain before the next command drops them
    time.sleep(0.05)
    assert smu.measure_current_a(raise_on_compliance=False) in (1e-6, 2e-6)
    smu.close()
