"""Time as the devices see it: ``WallClock`` on a real bench, ``SimulatedClock`` in the sim.

Both have ``now_s()`` and ``wait_s(seconds)``; protocols wait through the bench's clock, so a
retention bake of a day runs in a second against the simulated lab (virtual time) and in a day
on the real one. The station file says which (``model: wall`` or ``model: sim-clock``).
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

from instruments.roles import Clock, register_model
from instruments.scpi import Instrument
from instruments.validators import format_float, in_range, parse_float

_WAIT = in_range(0.0, 1e9)


@register_model("sim-clock", role="clock")
class SimulatedClock(Instrument, Clock):
    """The sim's virtual time over its clock port: ``:SYST:TIME?`` and ``:SYST:TIME:ADV <s>``.

    The clock has no ``*IDN?`` in the dialect: identity is a ``:SYST:TIME?`` reply that is a
    number.
    """

    IDENTITY_QUERY = ":SYST:TIME?"
    IDENTITY_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"

    def _identity_text(self, reply: str) -> str:
        return "simulated clock"

    def now_s(self) -> float:
        """Virtual seconds since the sim started."""
        return self.query_parsed(":SYST:TIME?", parse_float)

    def wait_s(self, seconds: float) -> None:
        """Advance virtual time by ``seconds``; returns once the sim has done so."""
        seconds = _WAIT(seconds, f"{self.name}: wait_s")
        if seconds == 0.0:
            return
        self.write(f":SYST:TIME:ADV {format_float(seconds)}")
        self.now_s()  # a reply after the advance: the devices have relaxed when we go on

    def check_errors(self) -> None:
        """The clock has no error queue in the dialect."""


@register_model("wall", role="clock")
class WallClock(Clock):
    """Wall time (``time.monotonic`` / ``time.sleep``) for a real bench."""

    needs_resource: ClassVar[bool] = False
    ROLE = "clock"

    def __init__(self, resource: Any = None, **_: Any) -> None:
        self.role = "clock"
        self.idn = "wall clock"
        self.name = "clock [wall clock]"

    def now_s(self) -> float:
        return time.monotonic()

    def wait_s(self, seconds: float) -> None:
        seconds = _WAIT(seconds, f"{self.name}: wait_s")
        if math.isfinite(seconds) and seconds > 0:
            time.sleep(seconds)

    def snapshot(self) -> dict[str, str]:
        return {"role": self.role, "model": "wall", "idn": self.idn}

    def close(self) -> None:
        """Nothing to close."""
