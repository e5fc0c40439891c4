"""Virtual time for the simulated lab, and the ``clock`` instrument that serves it.

Time in the sim advances only when something takes time: a burst played, a reading integrated,
a sweep step, or an explicit ``:SYST:TIME:ADV <s>``. So a day of retention costs one command.
Devices read the clock to relax by the virtual time elapsed since they were last touched.
"""

from __future__ import annotations

import threading
from typing import Any

from instruments.sim.scpi_params import Number
from instruments.sim.scpi_server import Call, TableServer
from instruments.sim.scpi_table import action, query

MAX_ADVANCE_S = 1.0e9  # about 30 years: enough for any retention test, finite for the physics


class VirtualClock:
    """Seconds since the sim started, advanced explicitly; thread safe."""

    def __init__(self) -> None:
        self._now_s = 0.0
        self._lock = threading.Lock()

    def now_s(self) -> float:
        with self._lock:
            return self._now_s

    def advance_s(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0); returns the new time."""
        if not seconds >= 0.0:
            raise ValueError(f"virtual time only moves forward; got {seconds} s")
        with self._lock:
            self._now_s += seconds
            return self._now_s


class ClockServer(TableServer):
    """The ``sim-clock`` instrument: ``:SYST:TIME?`` and ``:SYST:TIME:ADV <s>``."""

    role = "clock"
    IDN = "BRUNO-LAB,SIM-CLOCK,0,1.0"
    COMMANDS = (
        query(":SYSTem:TIME", "_time", doc="Virtual time since the lab started, s."),
        action(
            ":SYSTem:TIME:ADVance", "_advance", Number(0.0, MAX_ADVANCE_S, unit="S"),
            doc="Move virtual time forward (a retention bake, a wait).",
        ),
    )  # fmt: skip

    def __init__(self, clock: VirtualClock, *args: Any, **kwargs: Any) -> None:
        self.clock = clock
        super().__init__(*args, **kwargs)

    def _time(self, call: Call) -> str:
        return f"{self.clock.now_s():.12E}"

    def _advance(self, call: Call, seconds_s: float) -> None:
        self.clock.advance_s(seconds_s)
