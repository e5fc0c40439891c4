"""From files to a run: load station and plan, check the envelope, build the schedule, execute.

``prepare_run`` touches no instrument and writes nothing: it is all ``--dry-run`` does, and it
is what makes a bad plan exit 2 before anything is written. ``execute_run`` opens the run in
the store and hands over to the orchestrator.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bruno_lab.errors import EnvelopeError, PlanError
from protocols.orchestrator import Orchestrator, RunProgress, RunSummary
from protocols.plan import Plan, parse_plan
from protocols.retry import RetryPolicy
from protocols.runs import leased_run
from protocols.schedule import Planned, build_schedule, summarize
from protocols.seams import RunStore
from protocols.wafer import WaferMap, wafer_map_from_dict


@dataclass
class PreparedRun:
    """A validated plan on a station's wafer, with its schedule; nothing opened yet."""

    plan: Plan
    station_path: Path
    station: Any  # instruments.station.StationFile
    wafer: WaferMap
    schedule: list[Planned]

    def summary(self) -> dict[str, Any]:
        return {"plan": self.plan.name, "wafer": self.wafer.name, **summarize(self.schedule)}


def _wafer_for(document: Any, source: str, station: Any, station_path: Path) -> WaferMap:
    """The plan's own ``wafer_map`` if it has one, else the station file's ``wafer``."""
    if isinstance(document, dict) and isinstance(document.get("wafer_map"), dict):
        return wafer_map_from_dict(document["wafer_map"], where=f"{source}: wafer_map")
    if not station.wafer:
        raise PlanError(
            f"{station_path}: no wafer section, and {source} has no wafer_map: the run "
            "does not know the dies and sites (add wafer_map to the plan)"
        )
    return wafer_map_from_dict(station.wafer, where=f"{station_path}: wafer")


def _plan_document(plan: str | Path | Mapping[str, Any]) -> tuple[Any, str, str]:
    """(parsed document or None, YAML text, source name) of a plan file or mapping."""
    import yaml

    if isinstance(plan, Mapping):
        text = yaml.safe_dump(dict(plan), sort_keys=False)
        return dict(plan), text, "<plan>"
    from bruno_lab.errors import BadInputError
    from bruno_lab.safeio import read_text
    from bruno_lab.yamlio import MAX_FILE_BYTES, parse_yaml

    path = Path(plan)
    try:  # strict UTF-8, size-capped; the YAML through the one loader (bruno_lab.yamlio)
        text = read_text(path, "plan", max_bytes=MAX_FILE_BYTES)
    except BadInputError as exc:
        raise PlanError(str(exc)) from None
    return parse_yaml(text, str(path), error=PlanError).data, text, str(path)


def wafer_record(wafer: WaferMap) -> dict[str, Any]:
    """The wafer map as the run row keeps it (in its station record), so that a report or a
    live view on another machine knows every die and site without the station file."""
    return {
        "name": wafer.name,
        "dies": [[d.col, d.row, d.label] for d in wafer.dies],
        "sites": [{"site": s.site, "kind": s.kind, **s.geometry} for s in wafer.sites],
    }


def check_plan_envelope(plan: Plan, envelope: Any, wiring: dict[str, Any]) -> None:
    """Check every step's stimuli against the envelope for each device kind it runs on.

    Raises ``EnvelopeError`` naming the plan file, the step and the limit (exit 2).
    """
    from instruments.envelope import SafetyGuard

    for i, step in enumerate(plan.steps):
        for kind in step.kinds:
            guard = SafetyGuard(envelope, device_kind=kind, contact_probe=lambda: True)
            for params in step.rows():
                where = f"{plan.where('protocols', i, 'params')} ({step.name} on {kind})"
                try:
                    params.check_envelope(guard, wiring)
                except EnvelopeError as exc:
                    raise EnvelopeError(f"{where}: {exc}") from None
                except ValueError as exc:
                    raise PlanError(f"{where}: {exc}") from None
                except MemoryError:
                    raise PlanError(
                        f"{where}: the waveform would not fit in memory (too many samples: "
                        "check the widths, delays and sample rates)"
                    ) from None


def prepare_run(
    plan: Plan | str | Path | Mapping[str, Any], station_path: str | Path
) -> PreparedRun:
    """Validate station and plan (syntax, units, protocols, dies, envelope); build the schedule.

    ``plan`` is a plan file, a plan document (the mapping a plan file holds) or a ``Plan``."""
    from instruments.envelope import Envelope
    from instruments.station import load_station

    station_path = Path(station_path)
    station = load_station(station_path)
    if isinstance(plan, Plan):
        wafer = _wafer_for(plan.document, plan.source, station, station_path)
        plan.check_wafer(wafer)
        source = plan.source
    else:
        document, text, source = _plan_document(plan)
        wafer = _wafer_for(document, source, station, station_path)
        plan = parse_plan(text, source, wafer)
    envelope = Envelope.from_mapping(station.envelope, where=f"{station_path}: envelope")
    check_plan_envelope(plan, envelope, dict(station.wiring))
    schedule = build_schedule(plan, wafer)
    if not schedule:
        raise PlanError(
            f"{source}: the plan selects no measurement on wafer {wafer.name!r} "
            "(check dies, sites and the protocols' kinds)"
        )
    return PreparedRun(plan, station_path, station, wafer, schedule)


def execute_run(
    prepared: PreparedRun,
    store: RunStore,
    *,
    resume: int | None = None,
    operator: str | None = None,
    on_progress: Callable[[RunProgress], None] | None = None,
    policy: RetryPolicy | None = None,
    connect: Callable[[], Any] | None = None,
    purpose: str = "characterization",
) -> RunSummary:
    """Open (or resume) the run in ``store`` and execute the schedule on the station's bench;
    the run records ``purpose`` (characterization unless told otherwise)."""
    from instruments.station import open_bench

    station_record = {
        "path": str(prepared.station_path),
        "station": prepared.station.station,
        "instruments": {
            role: entry.model_dump() for role, entry in prepared.station.instruments.items()
        },
        "wiring": dict(prepared.station.wiring),
        "envelope": prepared.station.envelope,
        "wafer_map": wafer_record(prepared.wafer),
    }
    from instruments.station_lock import station_locked

    # one process per bench, then one writer per run: both refused (exit 2) before any write
    with (
        station_locked(prepared.station, str(prepared.station_path)),
        leased_run(
            store,
            prepared.plan,
            station_record,
            resume=resume,
            operator=operator or _operator(),
            purpose=purpose,
        ) as (run_id, resumed, leased_store),
    ):
        orchestrator = Orchestrator(
            prepared.plan,
            prepared.schedule,
            leased_store,
            connect or (lambda: open_bench(prepared.station_path)),
            run_id=run_id,
            wafer_name=prepared.wafer.name or prepared.plan.raw.wafer or "wafer",
            resumed=resumed,
            policy=policy,
            on_progress=on_progress,
        )
        return orchestrator.run()


def _operator() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
