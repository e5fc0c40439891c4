"""The records of a run the orchestrator keeps: progress reports, the summary, and helpers
to group a schedule by device and to describe the instruments that took a measurement."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from protocols.base import DeviceUnderTest
from protocols.schedule import Planned
from protocols.seams import BenchView


@dataclass
class RunProgress:
    """A progress report, sent after each measurement (and once at the start)."""

    dies_done: int
    dies_total: int
    devices_done: int
    devices_total: int
    measurements_done: int
    measurements_total: int
    failed: int
    skipped: int
    elapsed_s: float
    eta_s: float | None
    current: str


@dataclass
class RunSummary:
    """The outcome of one invocation; counts are over the whole run (resumes included)."""

    run_id: int
    status: str  # "completed", "interrupted" or "failed"
    planned: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    resumed: bool = False
    reason: str | None = None
    wall_s: float = 0.0
    instrument_s: float = 0.0  # inside protocols and prober moves (instrument I/O + physics)
    store_s: float = 0.0
    measured_here: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "planned": self.planned,
            "done": self.done,
            "failed": self.failed,
            "skipped": self.skipped,
            "resumed": self.resumed,
            "reason": self.reason,
            "wall_s": self.wall_s,
        }


class RunStopped(Exception):
    """The run must stop cleanly (lost bench, stop condition): ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def now_utc() -> datetime:
    return datetime.now(UTC)


def instrument_record(bench: BenchView) -> dict[str, Any]:
    """Role -> identity and the settings the driver sent (``snapshot()``, no I/O): provenance."""
    record: dict[str, Any] = {}
    for role in ("smu", "awg", "scope", "prober", "clock"):
        instrument = getattr(bench, role, None)
        if instrument is None:
            continue
        snapshot = getattr(instrument, "snapshot", None)
        try:
            entry = dict(snapshot()) if callable(snapshot) else {}
        except Exception:  # provenance must never fail a measurement
            entry = {}
        entry.setdefault("idn", str(getattr(instrument, "idn", type(instrument).__name__)))
        record[role] = json.loads(json.dumps(entry, default=str))
    return record


def last_indices(schedule: list[Planned]) -> tuple[list[int], list[int]]:
    """Sorted index of the last measurement of each die and of each device."""
    die_last: dict[str, int] = {}
    dev_last: dict[tuple[str, int], int] = {}
    for i, p in enumerate(schedule):
        die_last[p.device.die_label] = i
        dev_last[(p.device.die_label, p.device.site)] = i
    return sorted(die_last.values()), sorted(dev_last.values())


def group_by_device(items: list[Planned]) -> list[tuple[DeviceUnderTest, list[Planned]]]:
    groups: list[tuple[DeviceUnderTest, list[Planned]]] = []
    for item in items:
        if groups and groups[-1][0] == item.device:
            groups[-1][1].append(item)
        else:
            groups.append((item.device, [item]))
    return groups
