"""Keithley 707B switch matrix (TSP): close and open crosspoints, with ``*OPC?`` after each change.

Followed: Keithley 707B Reference Manual (707B-901-01): ``channel.close("1A01,1C12")``,
``channel.open(...)``, ``channel.open("allslots")``, ``print(channel.getclose("allslots"))``
(``nil`` when nothing is closed), ``errorqueue.count`` / ``errorqueue.next()``. The 707B speaks
TSP, not SCPI: settings are Lua calls, only ``print()`` answers, and the IEEE 488.2 common
commands (``*IDN?``, ``*OPC?``, ``*RST``, ``*CLS``) work as usual.

Safety: a relay change while any source of the bench is (or may be) on is refused before anything
is sent (``forbid_hot_switching`` in the envelope; the bench tells the guard which outputs are
live): hot switching arcs the reeds and puts the source's step on whatever the relay meets.

    matrix = Keithley707B(rm.open_resource("TCPIP::10.0.0.8::5025::SOCKET"), guard=guard)
    matrix.close_channels(["1A05", "1C11", "1D07"])  # SMU to a bit line, ground, gate to a row
    ...                                      # outputs on, measure, outputs off
    matrix.open_all()
"""

from __future__ import annotations

import re
from typing import Any

from instruments.errors import GarbledReply, InstrumentErrorQueue, SettingRangeError
from instruments.roles import SwitchMatrix, register_model
from instruments.scpi import Instrument

_CHANNEL = re.compile(r"^\d{1,2}[A-H]\d{2}$")
MAX_ERRORS = 32


def _channel_list(channels: list[str]) -> str:
    bad = [c for c in channels if not _CHANNEL.match(str(c))]
    if not channels or bad:
        raise SettingRangeError(
            f"switch matrix: channels look like '1A01' (slot, row A..H, column 01..12); got {bad}"
        )
    return ",".join(str(c) for c in channels)


@register_model("keithley707b", role="switch_matrix")
class Keithley707B(Instrument, SwitchMatrix):
    """Keithley 707B semiconductor switching matrix over TSP."""

    IDENTITY_PATTERN = r"Keithley Instruments Inc\., Model 707B,"

    def __init__(self, resource: Any, **kwargs: Any) -> None:
        self._closed: set[str] | None = None  # None: not known to this driver
        super().__init__(resource, **kwargs)

    def _connect(self) -> None:
        super()._connect()
        self.write("errorqueue.clear()")  # errors from before we came are not ours

    def check_errors(self) -> None:
        """Read the TSP error queue (``code<TAB>message<TAB>severity<TAB>node``) until empty."""
        count = int(float(self.query("print(errorqueue.count)")))
        entries = []
        for _ in range(min(count, MAX_ERRORS)):
            parts = self.query("print(errorqueue.next())").split("\t")
            try:
                entries.append((int(float(parts[0])), parts[1] if len(parts) > 1 else ""))
            except ValueError as exc:
                raise GarbledReply(f"error entry {parts!r}", instrument=self.name,
                                   command="errorqueue.next()") from exc  # fmt: skip
        if entries:
            raise InstrumentErrorQueue(entries, instrument=self.name, command="channel")

    def wait_complete(self) -> None:
        reply = self.query("*OPC?")
        if reply.strip() != "1":
            raise GarbledReply(f"*OPC? answered {reply!r}", instrument=self.name, command="*OPC?")

    def _change(self, statement: str, what: str) -> None:
        self.guard.check_no_hot_switching(self.name, what)
        self.write(statement)
        self.wait_complete()  # the relays have settled
        self.check_errors()

    def close_channels(self, channels: list[str]) -> None:
        spec = _channel_list(channels)
        self._change(f'channel.close("{spec}")', f"close {spec}")
        if self._closed is not None:
            self._closed |= set(spec.split(","))

    def open_channels(self, channels: list[str]) -> None:
        spec = _channel_list(channels)
        self._change(f'channel.open("{spec}")', f"open {spec}")
        if self._closed is not None:
            self._closed -= set(spec.split(","))

    def open_all(self) -> None:
        """Open every crosspoint (the safe state; refused like any relay change while a source
        is on: the bench turns its sources off first)."""
        self._change('channel.open("allslots")', "open allslots")
        self._closed = set()

    def closed(self) -> list[str]:
        reply = self.query('print(channel.getclose("allslots"))').strip()
        found = [] if reply in ("nil", "") else reply.split(";")
        if any(not _CHANNEL.match(c) for c in found):
            raise GarbledReply(f"closed channels {reply!r}", instrument=self.name,
                               command="channel.getclose")  # fmt: skip
        self._closed = set(found)
        return sorted(found)

    def snapshot(self) -> dict[str, Any]:
        return {"role": self.role, "model": self.MODEL_NAME, "idn": self.idn,
                "closed": sorted(self._closed) if self._closed is not None else None}  # fmt: skip
