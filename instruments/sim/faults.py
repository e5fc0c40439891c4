"""Fault injection for the simulated lab: configured by rate and seed, or forced by a test.

Transport faults act on one command at the server (drop the connection, reply late, never
reply, garble the reply, push an instrument error); device faults act on the bench (the SMU hits
compliance on a reading, the device under the needles shorts for good). Each role draws from
its own generator seeded from ``(seed, role)``, so one instrument's traffic never changes
another's faults. A config file is YAML::

    seed: 7
    slow_delay_s: 2.0          # how late a SLOW reply comes
    rates:                     # probability per command (device faults: per stimulus)
      drop: 0.0
      slow: 0.0
      no_reply: 0.0
      garbled: 0.0
      error: 0.0
      compliance: 0.0
      short: 0.0
    roles: [smu, awg, scope, prober]   # which instruments get transport faults (default: all)
"""

from __future__ import annotations

import contextlib
import enum
import threading
import zlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import ConfigDict, Field, ValidationError

from bruno_lab.errors import PlanError
from bruno_lab.strict import StrictModel


class FaultKind(enum.Enum):
    """Every fault the sim can inject."""

    DROP = "drop"
    SLOW = "slow"
    NO_REPLY = "no_reply"
    GARBLED = "garbled"
    ERROR = "error"
    COMPLIANCE = "compliance"
    SHORT = "short"


TRANSPORT_FAULTS = (
    FaultKind.DROP,
    FaultKind.SLOW,
    FaultKind.NO_REPLY,
    FaultKind.GARBLED,
    FaultKind.ERROR,
)
DEVICE_FAULTS = (FaultKind.COMPLIANCE, FaultKind.SHORT)
_IDENTITY = ("*IDN?", "REPORTKERNELVERSION")


class FaultRates(StrictModel):
    """Probability of each fault per command (transport) or per stimulus (device), in [0, 1]."""

    model_config = ConfigDict(extra="forbid")

    drop: float = Field(0.0, ge=0.0, le=1.0)
    slow: float = Field(0.0, ge=0.0, le=1.0)
    no_reply: float = Field(0.0, ge=0.0, le=1.0)
    garbled: float = Field(0.0, ge=0.0, le=1.0)
    error: float = Field(0.0, ge=0.0, le=1.0)
    compliance: float = Field(0.0, ge=0.0, le=1.0)
    short: float = Field(0.0, ge=0.0, le=1.0)


class FaultConfig(StrictModel):
    """What to inject, how often, with which seed."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    slow_delay_s: float = Field(2.0, ge=0.0, le=600.0)
    rates: FaultRates = FaultRates()
    roles: list[Literal["smu", "awg", "scope", "prober", "clock"]] | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> FaultConfig:
        """Load a fault config; a malformed file raises ``PlanError`` naming file and field."""
        from bruno_lab.yamlio import load_yaml_file

        path = Path(path)
        raw = load_yaml_file(path, "fault config").data or {}
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise PlanError(
                f"{path}: invalid fault config: {where}: {first['msg']}"
                + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")
            ) from None


class FaultInjector:
    """Decides, per command or per stimulus, whether a fault happens; tests may force one."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        self._lock = threading.Lock()
        self._generators: dict[str, np.random.Generator] = {}
        self._forced: dict[str, list[FaultKind]] = defaultdict(list)
        self.injected: list[tuple[str, FaultKind, str]] = []
        self._paused = 0

    def _rng(self, role: str) -> np.random.Generator:
        if role not in self._generators:
            self._generators[role] = np.random.default_rng(
                [self.config.seed, zlib.crc32(role.encode())]
            )
        return self._generators[role]

    def force(self, role: str, kind: FaultKind, count: int = 1) -> None:
        """Make the next ``count`` commands (or stimuli, for device faults) of ``role`` fail."""
        with self._lock:
            self._forced[role].extend([kind] * count)

    def clear(self) -> None:
        """Forget every forced fault."""
        with self._lock:
            self._forced.clear()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No fault by rate inside the block (forced faults still apply): set-up, clean-up."""
        with self._lock:
            self._paused += 1
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1

    def decide(self, role: str, command: str) -> FaultKind | None:
        """The transport fault for this command, or None. Identity queries are never faulted
        by rate (a driver must be able to connect), only when forced."""
        with self._lock:
            forced = self._take_forced(role, TRANSPORT_FAULTS)
            if forced is not None:
                self.injected.append((role, forced, command))
                return forced
            if self._paused or (self.config.roles is not None and role not in self.config.roles):
                return None
            if command.upper().startswith(_IDENTITY):
                return None
            rng = self._rng(role)
            for kind in TRANSPORT_FAULTS:
                rate = getattr(self.config.rates, kind.value)
                if rate > 0.0 and rng.random() < rate:
                    self.injected.append((role, kind, command))
                    return kind
            return None

    def device_fault(self, role: str, kind: FaultKind) -> bool:
        """Whether the device fault ``kind`` happens on this stimulus of ``role``."""
        with self._lock:
            if self._take_forced(role, (kind,)) is not None:
                self.injected.append((role, kind, "<stimulus>"))
                return True
            rate = 0.0 if self._paused else getattr(self.config.rates, kind.value)
            if rate > 0.0 and self._rng(f"{role}/{kind.value}").random() < rate:
                self.injected.append((role, kind, "<stimulus>"))
                return True
            return False

    def _take_forced(self, role: str, kinds: tuple[FaultKind, ...]) -> FaultKind | None:
        queue = self._forced.get(role)
        if not queue or queue[0] not in kinds:
            return None
        return queue.pop(0)
