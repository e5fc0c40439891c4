"""A threaded line server on 127.0.0.1: the transport every simulated instrument shares.

Bytes in, commands out: a command is one line ended by ``\\n``; an IEEE 488.2 definite-length
block (``#<n><len><bytes>``) inside a line is read by length, so binary data may contain ``\\n``.
The server keeps the instrument's error queue, records every command it receives (wall and
virtual timestamps, the reply it gave, any fault applied), and asks an optional fault injector
before each command whether to drop the connection, delay, swallow or garble the reply, or push
an error. SCPI instruments subclass :class:`instruments.sim.scpi_server.TableServer` (the message
layer and a declarative command table); others subclass :class:`LineServer` and implement
:meth:`LineServer.handle`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from instruments.sim.faults import FaultInjector, FaultKind
from instruments.sim.scpi_message import CommandError

log = logging.getLogger(__name__)

ERROR_QUEUE_DEPTH = 10
_MAX_LINE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CommandRecord:
    """One command as the simulated instrument received it.

    ``text`` is the line with any binary block replaced by ``#<len bytes>``; ``block`` holds the
    block's bytes. ``wall_s`` is ``time.monotonic()`` at receipt, ``virtual_s`` the bench clock.
    """

    role: str
    text: str
    block: bytes | None
    reply: str | None
    wall_s: float
    virtual_s: float
    fault: str | None = None


class Deferred:
    """A reply that must wait for the bench (``*OPC?`` or ``*WAI`` while an operation is
    pending): the connection waits, outside the bench lock, until ``ready`` is set, then
    ``resume`` (run under the lock) gives the reply or another ``Deferred``. Meanwhile the
    connection reads nothing more, as an instrument's input buffer stalls."""

    def __init__(
        self, ready: threading.Event, resume: Callable[[], str | bytes | Deferred | None]
    ) -> None:
        self.ready = ready
        self.resume = resume

    def wait(self, stopping: threading.Event) -> bool:
        """Block until ready (True) or the server stops (False)."""
        while not self.ready.wait(0.05):
            if stopping.is_set():
                return False
        return True


class BlockParser:
    """Splits a byte stream into (line, block) commands; blocks are read by their length."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, bytes | None]]:
        self._buffer += data
        commands: list[tuple[str, bytes | None]] = []
        while True:
            parsed = self._next()
            if parsed is None:
                return commands
            commands.append(parsed)

    def _next(self) -> tuple[str, bytes | None] | None:
        buf = self._buffer
        hash_at = buf.find(b"#")
        newline_at = buf.find(b"\n")
        if newline_at >= 0 and (hash_at < 0 or newline_at < hash_at):
            line = bytes(buf[:newline_at])
            del buf[: newline_at + 1]
            return _decode(line.rstrip(b"\r")), None
        if hash_at < 0:
            if len(buf) > _MAX_LINE_BYTES:
                buf.clear()
            return None
        # A '#' before the end of line: a definite-length block #<n><len><bytes> (or #0...\n).
        if len(buf) < hash_at + 2:
            return None
        n_char = chr(buf[hash_at + 1])
        if not n_char.isdigit() or n_char == "0":
            if newline_at < 0:
                return None
            line = bytes(buf[:newline_at])
            del buf[: newline_at + 1]
            return _decode(line.rstrip(b"\r")), None
        n_digits = int(n_char)
        header_end = hash_at + 2 + n_digits
        if len(buf) < header_end:
            return None
        length_text = bytes(buf[hash_at + 2 : header_end])
        if not length_text.isdigit():
            line_end = newline_at if newline_at >= 0 else len(buf)
            line = bytes(buf[:line_end])
            del buf[: line_end + 1]
            return _decode(line), None
        length = int(length_text)
        block_end = header_end + length
        if len(buf) < block_end + 1:
            return None
        block = bytes(buf[header_end:block_end])
        rest_end = buf.find(b"\n", block_end)
        if rest_end < 0:
            return None
        # keep the space before the block: it separates a header from its first data element
        head = bytes(buf[:hash_at]).decode("latin-1").lstrip()
        tail = _decode(bytes(buf[block_end:rest_end]))  # e.g. ';*OPC?' after the block
        del buf[: rest_end + 1]
        return f"{head}#<{length} bytes>{tail}", block


def _decode(raw: bytes) -> str:
    return raw.decode("latin-1").strip()


def ieee_block(payload: bytes) -> bytes:
    """Wrap bytes as an IEEE 488.2 definite-length block ``#<n><len><bytes>``."""
    length = str(len(payload)).encode()
    return b"#" + str(len(length)).encode() + length + payload


class LineServer:
    """A TCP server for one instrument role; one thread per connection, commands serialised.

    ``lock`` is shared by every server of a bench so that commands touching the shared physics
    never interleave. ``clock_s`` returns the bench's virtual time for the command record.
    """

    role: str = "instrument"

    def __init__(
        self,
        lock: threading.RLock,
        clock_s: Callable[[], float],
        faults: FaultInjector | None = None,
    ) -> None:
        self.lock = lock
        self._clock_s = clock_s
        self.faults = faults
        self.error_queue: deque[tuple[int, str]] = deque()
        self._records: list[CommandRecord] = []
        self._records_lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self.port: int = 0

    # ----- the instrument's side: implemented by each instrument --------------------------------

    def handle(self, text: str, block: bytes | None) -> str | bytes | Deferred | None:
        """Execute one command; return the reply (without terminator) or None for no reply."""
        raise NotImplementedError

    def push_error(self, code: int, text: str) -> None:
        """Put an error on the queue as the instrument would; the oldest is kept on overflow."""
        if len(self.error_queue) >= ERROR_QUEUE_DEPTH:
            self.error_queue[-1] = (-350, "Queue overflow")
            return
        self.error_queue.append((code, text))

    def pop_error(self) -> tuple[int, str] | None:
        return self.error_queue.popleft() if self.error_queue else None

    # ----- records ------------------------------------------------------------------------------

    def records(self) -> list[CommandRecord]:
        with self._records_lock:
            return list(self._records)

    def clear_records(self) -> None:
        with self._records_lock:
            self._records.clear()

    # ----- lifecycle ----------------------------------------------------------------------------

    def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1:port (0 picks a free port); return the port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(8)
        sock.settimeout(0.05)
        self._socket = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"sim-{self.role}-accept", daemon=True
        )
        self._thread.start()
        log.debug("%s listening on 127.0.0.1:%d", self.role, self.port)
        return self.port

    def request_stop(self) -> None:
        """Stop accepting and close every connection; does not wait (see :meth:`stop`)."""
        self._stopping.set()
        if self._socket is not None:
            self._socket.close()
        for conn in list(self._connections):
            _close_quietly(conn)

    def stop(self) -> None:
        """Stop and wait for the accept thread to end."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _accept_loop(self) -> None:
        assert self._socket is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connections.add(conn)
            threading.Thread(
                target=self._serve, args=(conn,), name=f"sim-{self.role}-conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        parser = BlockParser()
        conn.settimeout(0.2)
        try:
            while not self._stopping.is_set():
                try:
                    data = conn.recv(1 << 16)
                except TimeoutError:
                    continue
                if not data:
                    return
                _quick_ack(conn)
                for text, block in parser.feed(data):
                    if not self._dispatch(conn, text, block):
                        return
        except OSError:
            return
        finally:
            self._connections.discard(conn)
            _close_quietly(conn)

    def _dispatch(self, conn: socket.socket, text: str, block: bytes | None) -> bool:
        """Run one command with faults applied; False when the connection must close."""
        if not text and block is None:
            return True
        fault = self.faults.decide(self.role, text) if self.faults is not None else None
        wall_s = time.monotonic()
        if fault is FaultKind.DROP:
            self._record(text, block, None, wall_s, fault)
            # Reset, not a polite close: what a client sees when an instrument drops off the
            # LAN or reboots (and a closed socket must not look readable forever).
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return False
        with self.lock:
            virtual_s = self._clock_s()
            reply = self._guarded(text, lambda: self.handle(text, block))
            if fault is FaultKind.ERROR:
                self.push_error(-310, "System error; injected fault")
        while isinstance(reply, Deferred):  # e.g. *OPC? while an operation is pending
            if not reply.wait(self._stopping):
                return False
            with self.lock:
                reply = self._guarded(text, reply.resume)
        payload = _encode(reply)
        self._record(text, block, _reply_text(reply), wall_s, fault, virtual_s)
        if payload is None or fault is FaultKind.NO_REPLY:
            return True
        if fault is FaultKind.SLOW and self.faults is not None:
            time.sleep(self.faults.config.slow_delay_s)
        if fault is FaultKind.GARBLED:
            payload = _garble(payload)
        conn.sendall(payload + b"\n")
        return True

    def _guarded(
        self, text: str, run: Callable[[], str | bytes | Deferred | None]
    ) -> str | bytes | Deferred | None:
        try:
            return run()
        except CommandError as exc:
            self.push_error(exc.code, exc.text)
        except Exception:  # the instrument must survive any command; log and queue an error
            log.exception("%s failed on %r", self.role, text)
            self.push_error(-300, "Device-specific error")
        return None

    def _record(
        self,
        text: str,
        block: bytes | None,
        reply: str | None,
        wall_s: float,
        fault: FaultKind | None,
        virtual_s: float | None = None,
    ) -> None:
        record = CommandRecord(
            role=self.role,
            text=text,
            block=block,
            reply=reply,
            wall_s=wall_s,
            virtual_s=self._clock_s() if virtual_s is None else virtual_s,
            fault=fault.value if fault is not None else None,
        )
        with self._records_lock:
            self._records.append(record)


def _encode(reply: str | bytes | None) -> bytes | None:
    if reply is None:
        return None
    return reply if isinstance(reply, bytes) else reply.encode("latin-1")


def _reply_text(reply: str | bytes | None) -> str | None:
    if reply is None or isinstance(reply, str):
        return reply
    return f"<{len(reply)} bytes>"


def _garble(payload: bytes) -> bytes:
    """Corrupt a reply the way a bad cable or a mid-reply reset would: junk, no valid number."""
    return b"\x15?" + bytes(b ^ 0x5A for b in payload[: max(1, len(payload) // 2)]).replace(
        b"\n", b"~"
    )


def _quick_ack(conn: socket.socket) -> None:
    """ACK at once (Linux): a client with Nagle on would otherwise wait for our delayed ACK
    (~40 ms) between two consecutive writes, which an instrument's TCP stack does not do."""
    quick_ack = getattr(socket, "TCP_QUICKACK", None)
    if quick_ack is not None:
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, quick_ack, 1)


def _close_quietly(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()
