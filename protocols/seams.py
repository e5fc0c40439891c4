"""The bench and the store as the measurement protocols and the orchestrator see them.

Structural types (``typing.Protocol``): ``instruments.station.Bench`` and
``bruno_lab.store.Store`` satisfy them without knowing them, and so does any stand-in a test
or a notebook builds with the same members. A protocol function takes a :class:`BenchView`;
the orchestrator writes into a :class:`RunStore`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from instruments.envelope import SafetyGuard
from instruments.roles import (
    ArrayTester,
    Clock,
    Oscilloscope,
    ProbeStation,
    SourceMeter,
    WaveformGenerator,
)


class BenchView(Protocol):
    """The opened instruments of one station, by role (a station lacking a role has None
    there: a protocol needing it fails on use), the safety guard and the wiring constants
    (``tia_gain_v_per_a``, ...)."""

    @property
    def smu(self) -> SourceMeter: ...
    @property
    def awg(self) -> WaveformGenerator: ...
    @property
    def scope(self) -> Oscilloscope: ...
    @property
    def prober(self) -> ProbeStation: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def array_tester(self) -> ArrayTester | None:
        """The 1T1R array tester, None on a station without one (the array protocols reach it
        through ``protocols.array_common.tester_of``, which refuses such a bench)."""
        ...

    @property
    def guard(self) -> SafetyGuard: ...
    @property
    def wiring(self) -> Mapping[str, Any]: ...

    def snapshot(self) -> dict[str, Any]:
        """Identity and settings of every instrument: a measurement's provenance."""
        ...

    def safe_state(self) -> list[str]:
        """Outputs off at 0 V, probes up; returns what could not be verified safe."""
        ...

    def close(self) -> None: ...


class RunStore(Protocol):
    """What a wafer run writes: wafers, dies and devices found as the prober goes, the run row
    and its status, and one measurement (with its arrays) per protocol and device; its
    ``engine`` carries the run lease's conditional updates and the plan-open lock
    (``protocols.lease``)."""

    @property
    def engine(self) -> Engine: ...
    def session(self) -> AbstractContextManager[Session]: ...
    def ensure_wafer(
        self, name: str, *, lot: str | None = None, diameter_m: float | None = None
    ) -> int: ...
    def ensure_die(self, wafer_id: int, x: int, y: int, label: str) -> int: ...
    def ensure_device(
        self, die_id: int, site: str, kind: str, geometry: Mapping[str, Any]
    ) -> int: ...
    def create_run(
        self,
        plan: Mapping[str, Any],
        operator: str,
        station: Mapping[str, Any],
        software_version: str,
        purpose: str = ...,
    ) -> int: ...
    def set_run_status(
        self, run_id: int, status: str, finished_at: datetime | None = None
    ) -> None: ...
    def completed_keys(self, run_id: int) -> set[str]: ...
    def add_measurement(
        self,
        *,
        run_id: int,
        device_id: int,
        protocol: str,
        parameters: Mapping[str, Any],
        instruments: Mapping[str, Any],
        started_at: datetime,
        finished_at: datetime,
        status: str,
        error: str | None,
        scalars: Mapping[str, float],
        arrays: Mapping[str, tuple[np.ndarray, str]],
        key: str | None = None,
    ) -> int: ...
    def load_arrays_many(
        self, measurement_ids: list[int], names: list[str] | None = None
    ) -> dict[int, dict[str, tuple[np.ndarray, str]]]: ...
