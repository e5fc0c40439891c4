"""FormFactor (Cascade Microtech) Velox probe station over its remote command interface (SCI).

Followed: the Velox SCI command names as FormFactor's own Python module ``veloxsci`` (generated
from ``commands.info.xml``) and its die-stepping example use them: ``ReportKernelVersion``,
``StepFirstDie``, ``StepNextDie [Column Row Site]``, ``ReadMapPosition``, ``MoveChuckContact``,
``MoveChuckSeparation``, ``ReadChuckStatus`` (the chuck height is read from its first field, as
the shared dialect has it, or from Velox's own ``PresetHeight`` field: ``C``/``O`` contact,
``A``/``S`` not). Every command is one line and gets one reply
``<errcode>: <data>``; ``0`` is success (e.g. ``0: 3 4 0``), any other code is an error with a
message (``703: End of wafer``). Sites (sub-dies) count from 0. Replies with more fields than
used (real ``ReadMapPosition`` adds die and cluster indices) are accepted; only the leading
fields are read. Distances come in micrometres and are returned in metres.

Safety: the needles move only with every source off. Before stepping, contact or separation the
``before_move`` hooks run (the bench registers the SMU's and AWG's ``ensure_safe``), and a step
while in contact separates first. ``after_move`` hooks learn the new position (the bench
updates the envelope's device kind from the wafer map).

No SCPI error queue here: an error comes back in the reply of the command that caused it and
is raised there (``InstrumentErrorQueue`` with that code and message).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from instruments.errors import GarbledReply, InstrumentErrorQueue, _Named
from instruments.roles import DiePosition, MapPosition, ProbeStation, register_model
from instruments.scpi import Instrument
from instruments.validators import integer_in_range

END_OF_WAFER = 703
_REPLY = re.compile(r"^\s*(-?\d+):\s?(.*)$")
_INDEX = integer_in_range(-100_000, 100_000)
_SITE = integer_in_range(0, 100_000)


def _tokens(data: str, n: int) -> list[str]:
    words = data.split()
    if len(words) < n:
        raise ValueError(f"{len(words)} fields, expected at least {n}")
    return words


def _die(data: str) -> DiePosition:
    col, row, site = _tokens(data, 3)[:3]
    return DiePosition(int(col), int(row), int(site))


def _map_position(data: str) -> MapPosition:
    col, row, x_um, y_um, site = _tokens(data, 5)[:5]
    return MapPosition(int(col), int(row), int(site), float(x_um) * 1e-6, float(y_um) * 1e-6)


_HEIGHTS = ("C", "O", "A", "S")  # contact, overtravel, align, separation
_PRESET_HEIGHT_FIELD = 6  # real ReadChuckStatus: FlagsInit FlagsMode FlagsLimit FlagsMoving
#                           Comp IsVacuumOn PresetHeight LoadPos IsLiftDown ...


def _contact(data: str) -> bool:
    """Whether the chuck is at contact (or overtravel) height. The shared dialect puts the
    height first (``C 1 0``); Velox itself reports it as the 7th field, ``PresetHeight``."""
    words = [w.upper() for w in _tokens(data, 1)]
    if words[0] in _HEIGHTS:
        height = words[0]
    elif len(words) > _PRESET_HEIGHT_FIELD and words[_PRESET_HEIGHT_FIELD][:1] in _HEIGHTS:
        height = words[_PRESET_HEIGHT_FIELD][:1]
    else:
        raise ValueError(f"no chuck height (C, O, A or S) in {data!r}")
    return height in ("C", "O")


class VeloxError(InstrumentErrorQueue):
    """The prober refused a command; ``code`` and ``message`` are its reply."""

    def __init__(self, code: int, message: str, *, instrument: str, command: str) -> None:
        self.code = code
        self.message = message
        self.entries = [(code, message)]
        _Named.__init__(
            self, f"prober refused: {code}: {message}", instrument=instrument, command=command
        )


@register_model("velox", role="prober")
class VeloxProber(Instrument, ProbeStation):
    """FormFactor Velox prober: wafer-map stepping by die index, chuck contact/separation."""

    IDENTITY_QUERY = "ReportKernelVersion"
    # Velox answers "0: <Version> <Description>"; the shared dialect "0: Velox <ver>"
    IDENTITY_PATTERN = r"(?i)^0:\s*(\d+(\.\d+)+\b|.*velox)"

    def __init__(self, resource: Any, **kwargs: Any) -> None:
        self.before_move: list[Callable[[], None]] = []
        self.after_move: list[Callable[[DiePosition | None, bool], None]] = []
        super().__init__(resource, **kwargs)

    def _identity_text(self, reply: str) -> str:
        return reply.split(":", 1)[1].strip()

    def command(self, line: str, parser: Callable[[str], Any] | None = None) -> Any:
        """Send one Velox command; raise ``VeloxError`` on a non-zero code; parse the data."""

        def split(reply: str) -> tuple[int, str]:
            match = _REPLY.match(reply)
            if match is None:
                raise ValueError("not '<code>: <data>'")
            return int(match.group(1)), match.group(2).strip()

        code, data = self.query_parsed(line, split)
        if code != 0:
            raise VeloxError(code, data, instrument=self.name, command=line)
        if parser is None:
            return data
        return self._parse_data(line, data, parser)

    def _parse_data(self, line: str, data: str, parser: Callable[[str], Any]) -> Any:
        try:
            return parser(data)
        except (ValueError, IndexError) as exc:
            raise GarbledReply(
                f"cannot parse {data!r}: {exc}", instrument=self.name, command=line
            ) from exc

    def check_errors(self) -> None:
        """Nothing queued on a Velox: each reply carries its own error code (raised there)."""

    def _moving(self) -> None:
        for hook in self.before_move:
            hook()

    def _moved(self, die: DiePosition | None, in_contact: bool) -> None:
        for hook in self.after_move:
            hook(die, in_contact)

    def _separate_if_in_contact(self) -> None:
        if self.in_contact:
            self.command("MoveChuckSeparation")
            self._moved(None, False)

    def step_first_die(self) -> DiePosition:
        """Step to the first die of the wafer map (site 0), separating first if needed."""
        self._moving()
        self._separate_if_in_contact()
        die = self.command("StepFirstDie", _die)
        self._moved(die, False)
        return die

    def step_next_die(self) -> DiePosition | None:
        """Step to the next die of the map; None at the end of the wafer (code 703)."""
        self._moving()
        self._separate_if_in_contact()
        try:
            die = self.command("StepNextDie", _die)
        except VeloxError as exc:
            if exc.code == END_OF_WAFER:
                return None
            raise
        self._moved(die, False)
        return die

    def step_to(self, column: int, row: int, site: int = 0) -> DiePosition:
        """Step to die ``(column, row)`` and put the needles on ``site`` (from 0)."""
        column = _INDEX(column, f"{self.name}: column")
        row = _INDEX(row, f"{self.name}: row")
        site = _SITE(site, f"{self.name}: site")
        self._moving()
        self._separate_if_in_contact()
        die = self.command(f"StepNextDie {column} {row} {site}", _die)
        self._moved(die, False)
        return die

    def position(self) -> MapPosition:
        """Die, site and chuck position (m, from home) of the needles."""
        return self.command("ReadMapPosition", _map_position)

    def contact(self) -> None:
        """Move the chuck up to contact (sources made safe first)."""
        self._moving()
        self.command("MoveChuckContact")
        self._moved(None, True)

    def separate(self) -> None:
        """Move the chuck down to separation (sources made safe first)."""
        self._moving()
        self.command("MoveChuckSeparation")
        self._moved(None, False)

    @property
    def in_contact(self) -> bool:
        """Is the chuck in contact? (asked of the prober, ``ReadChuckStatus``)."""
        return self.command("ReadChuckStatus", _contact)
