"""The loop's first stage: a wafer plan run on a station's bench into a store.

Kept apart from :mod:`bruno_lab.loop.stages` so that running a plan (``bruno-lab run``) imports
the orchestrator and the protocols only, not the trainer or the calibration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bruno_lab.errors import BadInputError
from bruno_lab.store.store import Store
from protocols.orchestrator import RunProgress
from protocols.plan import Plan
from protocols.prepare import PreparedRun, execute_run, prepare_run
from protocols.run_state import RunSummary

PlanLike = Plan | str | Path | Mapping[str, Any]
"""A plan: a ``Plan``, a plan file's path, or the mapping a plan file holds."""


def prepare(plan: PlanLike, station: str | Path) -> PreparedRun:
    """Validate ``plan`` against the station (units, protocols, dies, safety envelope) and
    build its schedule, touching no instrument and writing nothing (what ``--dry-run`` does)."""
    return prepare_run(plan, station)


def characterize(
    plan: PlanLike | PreparedRun,
    station: str | Path | None,
    store: Store,
    *,
    resume: int | None = None,
    operator: str | None = None,
    purpose: str = "characterization",
    on_progress: Callable[[RunProgress], None] | None = None,
) -> RunSummary:
    """Run a wafer plan on the station's bench into ``store``: die by die, protocol by protocol,
    each measurement committed as it completes. An interrupted run of the same plan is resumed
    (or ``resume`` names the run). ``plan`` may be a ``PreparedRun`` from :func:`prepare`
    (then ``station`` may be None). Returns the run's summary (counts, status, failures)."""
    if isinstance(plan, PreparedRun):
        prepared = plan
    else:
        if station is None:
            raise BadInputError("characterize: a station file is required with a plan")
        prepared = prepare_run(plan, station)
    return execute_run(
        prepared,
        store,
        resume=resume,
        operator=operator,
        purpose=purpose,
        on_progress=on_progress,
    )
