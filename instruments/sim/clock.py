"""Virtual time for the simulated lab, and the ``clock`` instrument that serves it.

Time in the sim advances only when something takes time: a burst played, a reading integrated,
a sweep step, or an explicit ``:SYST:TIME:ADV <s>``. So a day of retention costs one command.
Devices read the clock to relax by the virtual time elapsed since they were last touched.
"""

from __future__ import annotations

import threading

from instruments.sim.server import CommandError, ScpiServer, parse_float

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


class ClockServer(ScpiServer):
    """The ``sim-clock`` instrument: ``:SYST:TIME?`` and ``:SYST:TIME:ADV <s>``."""

    role = "clock"
    IDN = "BRUNO-LAB,SIM-CLOCK,0,1.0"
    COMMANDS = (
        ("*IDN?", "_idn"),
        ("*RST", "_nothing"),
        ("*CLS", "_cls"),
        ("*OPC?", "_opc"),
        ("SYSTem:ERRor?", "_err"),
        ("SYSTem:TIME?", "_time"),
        ("SYSTem:TIME:ADVance", "_advance"),
    )

    def __init__(self, clock: VirtualClock, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock

    def _time(self, suffixes, args, block) -> str:
        return f"{self.clock.now_s():.12E}"

    def _advance(self, suffixes, args, block) -> None:
        seconds = parse_float(args, 0.0, MAX_ADVANCE_S)
        if seconds < 0:
            raise CommandError(-222, "Data out of range")
        self.clock.advance_s(seconds)
