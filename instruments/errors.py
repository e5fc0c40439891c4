"""Typed instrument errors. Each names the instrument (role + IDN) and the command.

A timeout, a dropped connection and a garbled reply are told apart here, once, in
``instruments.scpi.Instrument``, so that a protocol can react (retry, skip the die) and the
bench can still be left safe.
"""

from __future__ import annotations

from collections.abc import Sequence

from bruno_lab.errors import BadInputError, EnvelopeError, InstrumentError

__all__ = [
    "ComplianceHit",
    "ConnectionLost",
    "EnvelopeError",
    "GarbledReply",
    "InstrumentError",
    "InstrumentErrorQueue",
    "InstrumentTimeout",
    "InterlockOpen",
    "SettingRangeError",
    "WrongInstrument",
]


class _Named(InstrumentError):
    """An instrument error that carries the instrument and the command it happened on."""

    def __init__(self, message: str, *, instrument: str, command: str | None) -> None:
        self.instrument = instrument
        self.command = command
        where = f"{instrument}" + (f", command {command!r}" if command is not None else "")
        super().__init__(f"{where}: {message}")


class InstrumentTimeout(_Named):
    """The instrument did not answer within its timeout."""


class ConnectionLost(_Named):
    """The connection dropped (socket closed or reset, VISA connection lost)."""


class GarbledReply(_Named):
    """The reply could not be decoded or parsed as the command's reply format."""


class WrongInstrument(_Named):
    """The identity read at connect is not the model this driver is for."""


class ComplianceHit(_Named):
    """The source reached its compliance (current limit) where that was not expected."""


class InterlockOpen(_Named):
    """The instrument's safety interlock is not asserted: it would limit the output."""


class InstrumentErrorQueue(_Named):
    """The instrument reported errors in its error queue; ``entries`` holds them in order."""

    def __init__(
        self, entries: Sequence[tuple[int, str]], *, instrument: str, command: str | None
    ) -> None:
        self.entries = list(entries)
        text = "; ".join(f'{code},"{msg}"' for code, msg in self.entries)
        super().__init__(f"instrument error queue: {text}", instrument=instrument, command=command)


class SettingRangeError(BadInputError):
    """A value lies outside what the instrument can do (not a safety limit: see EnvelopeError)."""
