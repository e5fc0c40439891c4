"""Simulated Keithley 707B switch matrix (TSP), routing the SMU and AWG to one cell of an array.

Followed: Keithley 707B Reference Manual (707B-901-01), TSP commands ``channel.close()``,
``channel.open()``, ``channel.exclusiveclose()``, ``channel.getclose()``, ``reset()``,
``errorqueue.count`` / ``errorqueue.next()`` and the IEEE 488.2 common commands. A channel is
``<slot><row><column>`` (``1A01``: slot 1, row A, column 01; rows A..H, columns 01..12 per
slot); lists are comma separated, ``allslots`` or ``slot<n>`` name every crosspoint of the
frame or of a slot. TSP prints only what ``print()`` is given.

Wiring of the sim (written to the station file's ``wiring.switch_matrix``): matrix rows are
instrument buses, A the SMU's HI, B the AWG's output, C ground (SMU LO and AWG return),
D the gate supply (held at ``gate_bias_v``); matrix columns are the array's lines, the bit
lines first, then the word lines, then the source lines (line ``k`` is slot ``k // 12 + 1``,
column ``k % 12 + 1``; the frame has as many slots as the array needs). A source reaches cell
``(i, j)`` when its row is closed to bit line ``j``, source line ``i`` to ground and word line
``i`` to the gate supply; the transistor then limits the current to ``I_sat(gate_bias_v)``.
One cell at a time: a route that connects a source to more than one cell reaches none (the sim
does not solve the partial array through a matrix) and says so in the log.

The command dialect is a table of patterns in one place (:data:`COMMANDS`), so a port onto a
common TSP parser is mechanical.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from instruments.sim.crossbar import CellView, Crossbar
from instruments.sim.server import LineServer

log = logging.getLogger(__name__)

MATRIX_ROWS = "ABCDEFGH"
COLUMNS_PER_SLOT = 12
BUS = {"A": "smu", "B": "awg", "C": "ground", "D": "gate"}
IDN = "Keithley Instruments Inc., Model 707B, 04123456, 01.20.0"
DEFAULT_GATE_BIAS_V = 1.6
RELAY_SETTLE_S = 3e-3  # reed relay operate time plus settling


def line_channel(line: int, bus_row: str) -> str:
    """The crosspoint name of array line ``line`` (0-based) on matrix row ``bus_row``."""
    return f"{line // COLUMNS_PER_SLOT + 1}{bus_row}{line % COLUMNS_PER_SLOT + 1:02d}"


def array_lines(rows: int, cols: int) -> dict[str, list[int]]:
    """Matrix column (line) indices of the bit, word and source lines of an array."""
    return {
        "bl": list(range(cols)),
        "wl": list(range(cols, cols + rows)),
        "sl": list(range(cols + rows, cols + 2 * rows)),
    }


class TspError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


_CHANNEL = re.compile(r"^(\d+)([A-H])(\d{2})$")
_STRING = r"""\(\s*["']([^"']*)["']\s*\)"""


class SwitchMatrixServer(LineServer):
    """The 707B's TSP subset over a socket; the closed crosspoints route the bench."""

    role = "switch_matrix"

    def __init__(self, bench: Any, *args: Any, gate_bias_v: float = DEFAULT_GATE_BIAS_V,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.bench = bench
        self.gate_bias_v = float(gate_bias_v)
        self.closed_set: set[str] = set()
        self._views: dict[tuple[int, ...], CellView] = {}
        self.errors: list[tuple[int, str]] = []
        self.commands: list[tuple[re.Pattern[str], Callable[..., str | None]]] = [
            (re.compile(p, re.IGNORECASE), getattr(self, m)) for p, m in COMMANDS
        ]

    # ----- the message loop ----------------------------------------------------------------

    def handle(self, text: str, block: bytes | None) -> str | None:
        replies = []
        for statement in (s.strip() for s in text.split(";")):
            if not statement:
                continue
            for pattern, method in self.commands:
                found = pattern.match(statement)
                if found is not None:
                    try:
                        reply = method(*found.groups())
                    except TspError as exc:
                        self.errors.append((exc.code, exc.text))
                        reply = None
                    if reply is not None:
                        replies.append(reply)
                    break
            else:
                self.errors.append((-285, f"Program syntax; {statement[:40]}"))
        return "\n".join(replies) if replies else None

    # ----- commands ------------------------------------------------------------------------

    def _idn(self) -> str:
        return IDN

    def _opc(self) -> str:
        return "1"

    def _nothing(self) -> None:
        return None

    def _reset(self) -> None:
        self.closed_set.clear()
        self.errors.clear()

    def _clear_errors(self) -> None:
        self.errors.clear()

    def _close(self, spec: str) -> None:
        self.closed_set |= self._expand(spec)
        self._settled()

    def _exclusive_close(self, spec: str) -> None:
        self.closed_set = self._expand(spec)
        self._settled()

    def _open(self, spec: str) -> None:
        self.closed_set -= self._expand(spec, allow_all=True)
        self._settled()

    def _getclose(self, spec: str) -> str:
        inside = sorted(c for c in self._expand(spec, allow_all=True) if c in self.closed_set)
        return ";".join(inside) if inside else "nil"

    def _error_count(self) -> str:
        return str(len(self.errors))

    def _error_next(self) -> str:
        if not self.errors:
            return "0\tQueue Is Empty\t0\t0"
        code, text = self.errors.pop(0)
        return f"{code}\t{text}\t2\t0"

    # ----- channel lists and the route they make -------------------------------------------------

    def _expand(self, spec: str, allow_all: bool = False) -> set[str]:
        out: set[str] = set()
        for item in (p.strip() for p in spec.split(",")):
            low = item.lower()
            if low == "allslots" or low.startswith("slot"):
                if not allow_all:
                    raise TspError(1115, "Parameter error; close names channels, not slots")
                out |= {c for c in self.closed_set if low == "allslots" or self._in_slot(c, low)}
                continue
            found = _CHANNEL.match(item.upper())
            if found is None or not 1 <= int(found.group(3)) <= COLUMNS_PER_SLOT:
                raise TspError(1115, f"Parameter error; bad channel {item!r}")
            out.add(item.upper())
        return out

    @staticmethod
    def _in_slot(channel: str, spec: str) -> bool:
        low = spec.lower()
        return low.startswith("slot") and channel.startswith(low[4:])

    def _settled(self) -> None:
        self.bench.clock.advance_s(RELAY_SETTLE_S)

    def _buses(self) -> dict[str, set[int]]:
        """Matrix row bus -> the lines it is connected to."""
        out: dict[str, set[int]] = {}
        for channel in self.closed_set:
            found = _CHANNEL.match(channel)
            assert found is not None
            slot, row, col = int(found.group(1)), found.group(2), int(found.group(3))
            out.setdefault(row, set()).add((slot - 1) * COLUMNS_PER_SLOT + col - 1)
        return out

    def routed_cell(self, crossbar: Crossbar, source: str) -> tuple[int, int] | None:
        """The one cell ``source`` (``smu`` or ``awg``) reaches through the closed crosspoints,
        or None (not routed, or routed to more than one cell)."""
        buses = self._buses()
        bus_row = next(r for r, name in BUS.items() if name == source)
        lines = array_lines(crossbar.rows, crossbar.cols)
        bl = [j for j in buses.get(bus_row, set()) if j in lines["bl"]]
        ground = buses.get("C", set())
        gate = buses.get("D", set())
        rows = [i for i in range(crossbar.rows)
                if lines["sl"][i] in ground and lines["wl"][i] in gate]  # fmt: skip
        if not bl or not rows:
            return None
        if len(bl) > 1 or len(rows) > 1:
            log.warning("switch matrix: %s routed to %d bit lines and %d rows: one cell at a time",
                        source, len(bl), len(rows))  # fmt: skip
            return None
        return rows[0], bl[0]

    def device_for(self, crossbar: Crossbar, source: str, where: tuple[int, int, int]) -> Any:
        """The simulated device ``source`` drives (a view onto one crossbar cell) or None."""
        cell = self.routed_cell(crossbar, source)
        if cell is None:
            return None
        row, col = cell
        key = (*where, row * crossbar.cols + col)
        view = self._views.get(key)
        if view is None:  # one view per cell: its noise draws go on from call to call
            view = CellView(crossbar, key[-1], where, self.gate_bias_v, self.bench.clock.now_s)
            self._views[key] = view
        return view


COMMANDS: tuple[tuple[str, str], ...] = (
    (r"^\*IDN\?$", "_idn"),
    (r"^\*OPC\?$", "_opc"),
    (r"^\*RST$", "_reset"),
    (r"^\*CLS$", "_clear_errors"),
    (r"^\*WAI$", "_nothing"),
    (r"^reset\(\s*\)$", "_reset"),
    (r"^errorqueue\.clear\(\s*\)$", "_clear_errors"),
    (rf"^channel\.close{_STRING}$", "_close"),
    (rf"^channel\.exclusiveclose{_STRING}$", "_exclusive_close"),
    (rf"^channel\.open{_STRING}$", "_open"),
    (rf"^print\(\s*channel\.getclose{_STRING}\s*\)$", "_getclose"),
    (r"^print\(\s*errorqueue\.count\s*\)$", "_error_count"),
    (r"^print\(\s*errorqueue\.next\(\s*\)\s*\)$", "_error_next"),
)
"""The dialect: a statement pattern and the method that runs it, one line each."""
