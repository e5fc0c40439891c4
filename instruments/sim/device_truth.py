"""One simulated device: its drawn truth and its mutable physical state.

A leaf of the simulated lab: the wafer draws devices (``instruments.sim.wafer``), crossbars hold
arrays of them (``instruments.sim.crossbar``), the bench's physics updates their state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DeviceTruth:
    """What the sim knows about one device: the answer calibration must recover."""

    col: int
    row: int
    site: int
    kind: str
    area_m2: float
    params: dict[str, float]
    n_domains: int
    defect: str | None


@dataclass
class SimDevice:
    """A drawn device plus its mutable physical state (owned by the bench's physics)."""

    truth: DeviceTruth
    state: Any = None
    last_touched_s: float = 0.0
    shorted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_short(self) -> bool:
        return self.shorted or self.truth.defect == "short"
