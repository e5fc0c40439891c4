"""Byte-level protocol tests without an instrument: a scripted fake pyvisa resource.

``expected_protocol(DriverCls, [(sent, reply), ...], **kwargs)`` builds the driver on a fake
resource that holds the script. Each write must equal the next ``sent`` (a str line without
termination, or bytes for a binary-block write: the exact bytes pyvisa would send, without the
final ``\\n``); its ``reply`` (str, bytes for a binary block, an Exception to raise on read, or
None for no reply) is what the next read returns. A pair ``(None, reply)`` is a reply read
without a write. On exit every pair must have been consumed and no reply left unread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from pyvisa import constants as visa_constants
from pyvisa import errors as visa_errors
from pyvisa import util as visa_util
from pyvisa.util import BINARY_DATATYPES

Pair = tuple[str | bytes | None, str | bytes | BaseException | None]


def visa_timeout() -> visa_errors.VisaIOError:
    """The error pyvisa raises when a read times out (for scripted fault tests)."""
    return visa_errors.VisaIOError(visa_constants.StatusCode.error_timeout)


class ProtocolMismatch(AssertionError):
    """The driver sent something else than the script expected."""


class FakeResource:
    """Enough of ``pyvisa.resources.MessageBasedResource`` for drivers, driven by a script."""

    def __init__(self, pairs: Sequence[Pair]) -> None:
        self.pairs = list(pairs)
        self.index = 0
        self.pending: list[str | bytes | BaseException] = []
        self.read_termination: str | None = None
        self.write_termination: str | None = None
        self.timeout: float | None = None
        self.sent: list[str | bytes] = []
        self.closed = False

    def _expect(self, actual: str | bytes) -> None:
        self.sent.append(actual)
        if self.pending:
            raise ProtocolMismatch(f"sent {actual!r} while reply {self.pending[0]!r} is unread")
        if self.index < len(self.pairs) and self.pairs[self.index][0] is None:
            reply = self.pairs[self.index][1]
            raise ProtocolMismatch(f"sent {actual!r}; script expected a read of {reply!r} first")
        if self.index >= len(self.pairs):
            raise ProtocolMismatch(f"sent {actual!r} after the script ended")
        sent, reply = self.pairs[self.index]
        expected = sent.encode() if isinstance(sent, str) else sent
        got = actual.encode() if isinstance(actual, str) else actual
        if got != expected:
            raise ProtocolMismatch(f"pair {self.index}: sent {actual!r}, script expects {sent!r}")
        self.index += 1
        if reply is not None:
            self.pending.append(reply)

    def _next_reply(self) -> str | bytes:
        if not self.pending and self.index < len(self.pairs) and self.pairs[self.index][0] is None:
            self.pending.append(self.pairs[self.index][1])  # type: ignore[arg-type]
            self.index += 1
        if not self.pending:
            raise ProtocolMismatch("read with no reply scripted")
        reply = self.pending.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def write(self, message: str) -> int:
        self._expect(message)
        return len(message)

    def read(self) -> str:
        reply = self._next_reply()
        return reply.decode() if isinstance(reply, bytes) else reply

    def query(self, message: str) -> str:
        self.write(message)
        return self.read()

    def write_binary_values(
        self,
        message: str,
        values: Any,
        datatype: BINARY_DATATYPES = "f",
        is_big_endian: bool = False,
        **_: Any,
    ) -> int:
        block = visa_util.to_ieee_block(list(values), datatype, is_big_endian)
        self._expect(message.encode() + block)
        return len(block)

    def query_binary_values(
        self,
        message: str,
        datatype: BINARY_DATATYPES = "f",
        is_big_endian: bool = False,
        container: Any = list,
        **_: Any,
    ) -> Any:
        self.write(message)
        reply = self._next_reply()
        raw = reply if isinstance(reply, bytes) else reply.encode()
        return visa_util.from_ieee_block(raw, datatype, is_big_endian, container)

    def clear(self) -> None:
        self.pending.clear()

    def close(self) -> None:
        self.closed = True


def ieee_block(
    values: np.ndarray | Sequence[float], datatype: BINARY_DATATYPES, big_endian: bool = False
) -> bytes:
    """The IEEE 488.2 definite-length block pyvisa sends/reads for ``values``."""
    return bytes(visa_util.to_ieee_block(list(values), datatype, big_endian))


@contextlib.contextmanager
def expected_protocol(driver_cls: type, pairs: Sequence[Pair], **kwargs: Any) -> Iterator[Any]:
    """Run ``driver_cls(FakeResource(pairs), **kwargs)``; on exit assert the script was used up.

    The connect sequence (identity query, ``*CLS``) is part of the script.
    """
    resource = FakeResource(pairs)
    driver = driver_cls(resource, **kwargs)
    yield driver
    if resource.pending:
        raise ProtocolMismatch(f"reply {resource.pending[0]!r} was never read")
    if resource.index != len(resource.pairs):
        raise ProtocolMismatch(
            f"script not used up: next expected pair {resource.pairs[resource.index]!r}"
        )
