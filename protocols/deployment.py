"""Deployment of a trained network onto a die's RRAM array, and chip-in-the-loop evaluation.

Deployment is a measurement procedure: each logical cell of the network's programming map
(``bruno_lab.train.io.programming_map``, map order) is assigned to a physical RRAM site of the
die (the die's RRAM sites in site-index order), then formed (``rram_forming``) and programmed to
its target conductance by program-and-verify (``rram_program_verify`` with one target). Both
run through the wafer-run orchestrator, so every cell is one committed measurement with its
instruments' identities, in a run whose plan names the network (by SHA-256) and the die; an
interrupted deployment resumes like any run. A deployment record (JSON) beside the network
says, per cell, die/site, target, reached conductance, attempts and success.

On-chip evaluation (reading the cells back, inference with the measured conductances) is
:mod:`protocols.deployment_eval`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bruno_lab.errors import BadInputError, DataError
from bruno_lab.train.network import SpikingNetwork
from protocols.base import DeviceUnderTest
from protocols.orchestrator import Orchestrator, RunProgress
from protocols.plan import Plan, PlanFile, Step
from protocols.rram_forming import RramFormingParams
from protocols.rram_program_verify import RramProgramVerifyParams
from protocols.runs import leased_run
from protocols.schedule import Planned, measurement_key
from protocols.seams import RunStore
from protocols.wafer import DieRef, WaferMap, wafer_map_from_dict

log = logging.getLogger(__name__)

RECORD_FORMAT = "bruno-lab-deployment"
RECORD_VERSION = 2  # 2: the map's digest (map_sha256) instead of the network file's


class DeploySettings(BaseModel):
    """How cells are formed and programmed (SI units; the protocols' own parameter models)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    form: bool = True
    forming: RramFormingParams = Field(
        default_factory=lambda: RramFormingParams(max_v=3.5, step_v=0.2, compliance_a=1e-4)
    )
    verify: RramProgramVerifyParams = Field(
        default_factory=lambda: RramProgramVerifyParams(
            tolerance_siemens=5e-6,
            set_start_v=0.7,
            reset_start_v=0.6,
            step_v=0.05,
            max_attempts=40,
            pulse_width_s=1e-6,
        )
    )


@dataclass(frozen=True)
class CellSite:
    """One logical cell of the map on its physical site."""

    cell: int
    layer: int
    row: int
    col: int
    polarity: str
    level_index: int
    target_conductance_siemens: float
    die_col: int
    die_row: int
    die_label: str
    site: int


def map_sha256(pmap: dict[str, Any]) -> str:
    """SHA-256 of a programming map's cells (canonical JSON): names what was programmed in the
    run's plan and the record, so a rerun of the same map resumes and an evaluation of a
    network whose map changed since it was deployed is refused. Computed from the map, not a
    file, so a network object and its saved file give the same digest."""
    cells = [
        [c["cell"], c["layer"], c["row"], c["col"], c["polarity"], c["level_index"],
         round(float(c["target_conductance_siemens"]), 15)]
        for c in pmap["cells"]
    ]  # fmt: skip
    doc = {"layers": pmap["layers"], "cells": cells}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def record_path_for(network_path: str | Path, die_label: str) -> Path:
    """Where the deployment record of ``network_path`` on ``die_label`` lives (beside it)."""
    network_path = Path(network_path)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in die_label)
    return network_path.with_name(f"{network_path.stem}.deploy-{safe}.json")


def station_wafer(station_path: str | Path) -> tuple[Any, WaferMap]:
    """The station file and its wafer map (dies and sites); the map is required."""
    from instruments.station import load_station

    station = load_station(station_path)
    if not station.wafer:
        raise BadInputError(f"{station_path}: no wafer section: the dies and sites are unknown")
    return station, wafer_map_from_dict(station.wafer, where=f"{station_path}: wafer")


def network_and_path(network: SpikingNetwork | str | Path) -> tuple[SpikingNetwork, Path | None]:
    """The network object, and its file when it was given as one (``save_network``'s format)."""
    if isinstance(network, SpikingNetwork):
        return network, None
    from bruno_lab.train.io import load_network

    return load_network(Path(network)), Path(network)


def station_snapshot(station: Any, station_path: Path) -> dict[str, Any]:
    """What a deployment run stores of the station it ran on."""
    return {
        "path": str(station_path),
        "station": station.station,
        "instruments": {r: e.model_dump() for r, e in station.instruments.items()},
        "wiring": dict(station.wiring),
        "envelope": station.envelope,
    }


def find_die(wafer: WaferMap, die: str) -> DieRef:
    """The die given as a label or ``"col,row"``; ``BadInputError`` lists a few valid ones."""
    ref = wafer.find_die(die)
    if ref is None:
        some = ", ".join(d.label for d in wafer.dies[:6])
        raise BadInputError(f"--die {die!r}: no such die on wafer {wafer.name!r} (e.g. {some})")
    return ref


def assign_cells(pmap: dict[str, Any], wafer: WaferMap, die: DieRef) -> list[CellSite]:
    """Map order -> the die's RRAM sites in site order; too few sites is bad input."""
    sites = sorted(s.site for s in wafer.sites if s.kind == "rram")
    cells = pmap["cells"]
    if len(cells) > len(sites):
        raise BadInputError(
            f"the network needs {len(cells)} RRAM cells but a die of {wafer.name!r} has "
            f"{len(sites)} RRAM sites; train a smaller network or use a larger array"
        )
    return [
        CellSite(
            int(c["cell"]),
            int(c["layer"]),
            int(c["row"]),
            int(c["col"]),
            str(c["polarity"]),
            int(c["level_index"]),
            float(c["target_conductance_siemens"]),
            die.col,
            die.row,
            die.label,
            site,
        )
        for c, site in zip(cells, sites, strict=False)
    ]


def _plan(
    name: str, wafer: WaferMap, die: DieRef, cells: list[CellSite], s: DeploySettings, sha: str
) -> Plan:
    steps = [{"protocol": "rram_program_verify", "params": s.verify.as_record()}]
    if s.form:
        steps.insert(0, {"protocol": "rram_forming", "params": s.forming.as_record()})
    raw_doc = {
        "version": 1,
        "name": name[:128],
        "dies": [[die.col, die.row]],
        "sites": {"rram": [c.site for c in cells], "fecap": [], "felif": []},
        "protocols": steps,
    }
    raw = PlanFile.model_validate(raw_doc)
    plan_steps = [Step("rram_program_verify", s.verify, ("rram",))]
    if s.form:
        plan_steps.insert(0, Step("rram_forming", s.forming, ("rram",)))
    document = {
        **raw_doc,
        "deployment": {
            "map_sha256": sha,
            "wafer": wafer.name,
            "targets_siemens": [c.target_conductance_siemens for c in cells],
        },
    }
    return Plan(raw, plan_steps, "deployment", document)


def deployment_schedule(
    wafer: WaferMap, cells: list[CellSite], settings: DeploySettings
) -> list[Planned]:
    """Per cell (in map order): forming (optional), then program-and-verify to its target."""
    schedule: list[Planned] = []
    for c in cells:
        geometry = dict(wafer.site(c.site).geometry)
        device = DeviceUnderTest(c.die_col, c.die_row, c.die_label, c.site, "rram", geometry)
        verify = settings.verify.model_copy(
            update={"targets_siemens": [c.target_conductance_siemens]}
        )
        items: list[tuple[str, Any]] = [("rram_program_verify", verify)]
        if settings.form:
            items.insert(0, ("rram_forming", settings.forming))
        for protocol, params in items:
            key = measurement_key(device, protocol, 0)
            schedule.append(Planned(key, device, protocol, 0, params, params.estimate_s()))
    return schedule


def check_envelope(station: Any, settings: DeploySettings, targets_siemens: list[float]) -> None:
    """Every stimulus of the deployment against the station's envelope, before anything runs."""
    from instruments.envelope import Envelope, SafetyGuard

    envelope = Envelope.from_mapping(station.envelope, where="station envelope")
    guard = SafetyGuard(envelope, device_kind="rram", contact_probe=lambda: True)
    try:
        if settings.form:
            settings.forming.check_envelope(guard)
        top = settings.verify.model_copy(update={"targets_siemens": [max(targets_siemens)]})
        top.check_envelope(guard)
    except ValueError as exc:
        raise BadInputError(f"deployment settings: {exc}") from None


@dataclass
class DeploymentResult:
    """The run and its deployment record (written beside the network file when the network
    was given as a file, or to ``record_path`` when asked; else only returned)."""

    run_id: int
    status: str
    record_path: Path | None
    record: dict[str, Any]
    wall_s: float

    def summary(self) -> dict[str, Any]:
        r = self.record
        return {
            "run_id": self.run_id,
            "status": self.status,
            "record": None if self.record_path is None else str(self.record_path),
            "die": r["die"]["label"],
            "n_cells": r["n_cells"],
            "n_success": r["n_success"],
            "mean_attempts": r["mean_attempts"],
            "rms_error_siemens": r["rms_error_siemens"],
            "wall_s": self.wall_s,
        }


def deploy_network(
    network: SpikingNetwork | str | Path,
    station_path: str | Path,
    die: str,
    store: RunStore,
    *,
    settings: DeploySettings | None = None,
    on_progress: Callable[[RunProgress], None] | None = None,
    connect: Callable[[], Any] | None = None,
    operator: str = "bruno-lab deploy",
    record_path: str | Path | None = None,
) -> DeploymentResult:
    """Program the network's map onto ``die`` through the orchestrator (a ``deployment`` run).

    ``network`` is a network object or a file saved by ``save_network``; a file's record is
    written beside it (``record_path_for``) unless ``record_path`` says where."""
    from bruno_lab.train.io import programming_map
    from instruments.station import open_bench

    t0 = time.perf_counter()
    settings = settings or DeploySettings()
    net, network_path = network_and_path(network)
    station_path = Path(station_path)
    pmap = programming_map(net)
    station, wafer = station_wafer(station_path)
    die_ref = find_die(wafer, die)
    cells = assign_cells(pmap, wafer, die_ref)
    check_envelope(station, settings, [c.target_conductance_siemens for c in cells])
    path = record_destination(network_path, die_ref.label, record_path)
    sha = map_sha256(pmap)
    what = network_path.name if network_path is not None else f"network {sha[:12]}"
    plan = _plan(f"deploy {what} on {die_ref.label}", wafer, die_ref, cells, settings, sha)
    station_record = station_snapshot(station, station_path)
    from instruments.station_lock import station_locked

    with (
        station_locked(station, str(station_path)),
        leased_run(
            store, plan, station_record, resume=None, operator=operator, purpose="deployment"
        ) as (run_id, resumed, leased_store),
    ):
        orchestrator = Orchestrator(
            plan,
            deployment_schedule(wafer, cells, settings),
            leased_store,
            connect or (lambda: open_bench(station_path)),
            run_id=run_id,
            wafer_name=wafer.name or "wafer",
            resumed=resumed,
            on_progress=on_progress,
        )
        summary = orchestrator.run()
    record = _record(store, run_id, cells, pmap, settings, network_path, station_path, wafer)
    record.update(status=summary.status, map_sha256=sha)
    if path is not None:
        _write_json(path, record)
    log.info("deployed %s on %s: %s", what, die_ref.label, record["n_success"])
    return DeploymentResult(run_id, summary.status, path, record, time.perf_counter() - t0)


def _run_rows(store: RunStore, run_id: int) -> dict[str, Any]:
    from sqlalchemy import select

    from bruno_lab.store.models import Measurement

    with store.session() as session:
        rows = session.execute(
            select(
                Measurement.id,
                Measurement.key,
                Measurement.status,
                Measurement.error,
                Measurement.scalars,
            ).where(Measurement.run_id == run_id)
        ).all()
    return {r.key: r for r in rows}


def _record(
    store: RunStore,
    run_id: int,
    cells: list[CellSite],
    pmap: dict[str, Any],
    settings: DeploySettings,
    network_path: Path | None,
    station_path: Path,
    wafer: WaferMap,
) -> dict[str, Any]:
    """Per cell what the store holds for it (reached G, attempts, success) as a JSON dict."""
    rows = _run_rows(store, run_id)
    pv_ids = [r.id for k, r in rows.items() if k and "/rram_program_verify/" in k]
    names = ["reached_conductance_siemens", "attempts", "success"]
    arrays = store.load_arrays_many(pv_ids, names) if pv_ids else {}
    out = []
    for c in cells:
        device = f"{c.die_label}/{c.site}"
        pv = rows.get(f"{device}/rram_program_verify/0")
        form = rows.get(f"{device}/rram_forming/0")
        got = arrays.get(pv.id, {}) if pv is not None else {}
        reached = float(got["reached_conductance_siemens"][0][0]) if got.get(names[0]) else math.nan
        attempts = int(got["attempts"][0][0]) if got.get("attempts") else 0
        ok = (
            pv is not None
            and _status(pv.status) == "ok"
            and bool(got.get("success") and got["success"][0][0])
        )
        out.append(
            {
                **asdict(c),
                "reached_conductance_siemens": reached,
                "attempts": attempts,
                "success": bool(ok),
                "formed": None if form is None else (form.scalars or {}).get("formed"),
                "measurement_id": None if pv is None else int(pv.id),
                "error": None if pv is None else pv.error,
            }
        )
    reached_g = np.array([c["reached_conductance_siemens"] for c in out])
    target = np.array([c.target_conductance_siemens for c in cells])
    finite = np.isfinite(reached_g)
    return {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "created_at": datetime.now(UTC).isoformat(),
        "network": None if network_path is None else str(network_path),
        "station": str(station_path),
        "wafer": wafer.name,
        "die": {"col": cells[0].die_col, "row": cells[0].die_row, "label": cells[0].die_label}
        if cells
        else None,
        "run_id": run_id,
        "read_voltage_v": settings.verify.read_v,
        "settings": settings.model_dump(mode="json"),
        "n_cells": len(out),
        "n_success": sum(c["success"] for c in out),
        "mean_attempts": float(np.mean([c["attempts"] for c in out])) if out else 0.0,
        "rms_error_siemens": float(np.sqrt(np.mean((reached_g - target)[finite] ** 2)))
        if finite.any()
        else math.nan,
        "layers": pmap["layers"],
        "cells": out,
    }


def _status(value: Any) -> str:
    return str(getattr(value, "value", value))


def write_record(path: str | Path, record: dict[str, Any]) -> Path:
    """Write a deployment record as JSON (atomic rename): what :func:`load_record` reads and
    ``bruno-lab evaluate`` finds beside a network file (``record_path_for``)."""
    path = Path(path)
    _write_json(path, record)
    return path


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    from bruno_lab.safeio import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(doc, indent=1, default=str))


def record_destination(
    network_path: Path | None, die_label: str, record_path: str | Path | None
) -> Path | None:
    """Where a deployment's record goes (``record_path``, else beside the network file, else
    nowhere), checked writable before anything is programmed."""
    from bruno_lab.safeio import check_output_path

    if record_path is not None:
        return check_output_path(record_path, "deployment record")
    if network_path is not None:
        return check_output_path(record_path_for(network_path, die_label), "deployment record")
    return None


def load_record(path: str | Path) -> dict[str, Any]:
    """A deployment record written by :func:`deploy_network`."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInputError(
            f"{path}: no readable deployment record ({exc}); run `bruno-lab deploy` first"
        ) from None
    if doc.get("format") != RECORD_FORMAT:
        raise DataError(f"{path}: not a bruno-lab deployment record")
    if doc.get("version") != RECORD_VERSION:
        raise DataError(
            f"{path}: deployment record version {doc.get('version')!r}, this bruno-lab reads "
            f"version {RECORD_VERSION}: deploy the network again (`bruno-lab deploy`)"
        )
    return doc
