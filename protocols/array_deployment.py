"""Deployment of a trained network onto a die's 1T1R crossbar through the array tester.

What a lab that maps networks onto RRAM arrays does, in two runs (purpose ``deployment``):

1. **Survey** (``array_forming`` + ``array_health`` on the rows it needs, one measurement per
   row): forms the array and finds its stuck, unformed and out-of-window cells. The survey
   belongs to the array, not to a network: a later deployment on the same die reuses the newest
   completed survey instead of forming again.
2. **Program**: the programming map placed on crossbar tiles (``protocols.crossbar_placement``:
   inputs on rows, outputs as differential column pairs, row sparing around bad cells, stuck
   cells compensated by their partner), then row-parallel write-verify on the instrument
   (``array_program_verify`` with per-cell targets, one committed measurement per row).

Both runs go through the orchestrator, so a SIGKILL loses no committed row and a rerun resumes
at the first row not stored (the program plan names the map's digest and the placement, so the
same network on the same survey is the same plan). The record (JSON-able dict, written beside
the network file like :mod:`protocols.deployment`'s) says per logical cell where it sits on the
array, what it was programmed to and what it reached; ``protocols.array_eval`` runs the network
on the chip from it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bruno_lab.errors import BadInputError, DataError
from bruno_lab.train.network import SpikingNetwork
from protocols.array_forming import ArrayFormingParams
from protocols.array_health import ArrayHealthParams
from protocols.array_program import ArrayProgramParams
from protocols.base import DeviceUnderTest, ProtocolParams
from protocols.crossbar_placement import OK, Placement, Tile, compensate, place
from protocols.deployment import (
    RECORD_FORMAT,
    RECORD_VERSION,
    DeploymentResult,
    _write_json,
    find_die,
    map_sha256,
    network_and_path,
    record_destination,
    station_snapshot,
    station_wafer,
)
from protocols.orchestrator import Orchestrator, RunProgress
from protocols.plan import Plan, PlanFile, Step
from protocols.runs import leased_run
from protocols.schedule import Planned, measurement_key
from protocols.seams import RunStore
from protocols.wafer import DieRef, SiteRef, WaferMap

log = logging.getLogger(__name__)

TARGET = "crossbar"  # the record's "target": deployed on an array through the tester


class ArrayDeploySettings(BaseModel):
    """How the array is surveyed and programmed (SI units; the array protocols' own models)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spare_rows: int | None = Field(
        None, ge=0, description="Rows surveyed beyond those the network needs; None: every row."
    )
    forming: ArrayFormingParams = Field(default_factory=ArrayFormingParams)
    health: ArrayHealthParams = Field(default_factory=ArrayHealthParams)
    program: ArrayProgramParams = Field(
        default_factory=lambda: ArrayProgramParams(tolerance_siemens=4e-6)
    )


def array_site(wafer: WaferMap) -> SiteRef | None:
    """The die's 1T1R crossbar site (the first ``rram_array`` site), or None."""
    return next((s for s in wafer.sites if s.kind == "rram_array"), None)


def _array_shape(site: SiteRef, where: str) -> tuple[int, int]:
    rows, cols = site.geometry.get("rows"), site.geometry.get("cols")
    if not rows or not cols:
        raise BadInputError(f"{where}: the rram_array site {site.site} gives no rows/cols")
    return int(rows), int(cols)


def _device(die: DieRef, site: SiteRef) -> DeviceUnderTest:
    return DeviceUnderTest(
        die.col, die.row, die.label, site.site, "rram_array", dict(site.geometry)
    )


def _plan(name: str, die: DieRef, site: SiteRef, steps: list[Step], extra: dict[str, Any]) -> Plan:
    raw_doc = {
        "version": 1,
        "name": name[:128],
        "dies": [[die.col, die.row]],
        "sites": {"rram_array": [site.site], "rram": [], "fecap": [], "felif": []},
        "protocols": [{"protocol": s.name, "params": s.params.as_record()} for s in steps],
    }
    raw = PlanFile.model_validate(raw_doc)
    return Plan(raw, steps, "deployment", {**raw_doc, "deployment": extra})


def _schedule(device: DeviceUnderTest, items: list[tuple[str, ProtocolParams]]) -> list[Planned]:
    counters: dict[str, int] = {}
    out = []
    for protocol, params in items:
        index = counters.get(protocol, 0)
        counters[protocol] = index + 1
        key = measurement_key(device, protocol, index)
        out.append(Planned(key, device, protocol, index, params, params.estimate_s()))
    return out


def _latest_run(store: RunStore, plan: Plan) -> tuple[int, str] | None:
    """(id, status) of the newest run of ``plan`` (same hash), or None."""
    from sqlalchemy import select

    from bruno_lab.store.models import Run

    with store.session() as session:
        for run_id, plan_json, status in session.execute(
            select(Run.id, Run.plan, Run.status).order_by(Run.id.desc())
        ):
            if (plan_json or {}).get("sha256") == plan.sha256:
                return int(run_id), str(getattr(status, "value", status))
    return None


def _row_arrays(store: RunStore, run_id: int, protocol: str, names: list[str]) -> dict[int, Any]:
    """``row -> {name: values}`` of a run's measurements of ``protocol`` (ok ones only)."""
    from sqlalchemy import select

    from bruno_lab.store.models import Measurement

    with store.session() as session:
        found = session.execute(
            select(Measurement.id, Measurement.scalars, Measurement.status).where(
                Measurement.run_id == run_id, Measurement.protocol == protocol
            )
        ).all()
    ok = [(m.id, m.scalars) for m in found if str(getattr(m.status, "value", m.status)) == "ok"]
    arrays = store.load_arrays_many([i for i, _ in ok], names) if ok else {}
    out: dict[int, Any] = {}
    for mid, scalars in ok:
        row = int((scalars or {}).get("row", -1))
        got = arrays.get(mid, {})
        if row >= 0 and all(n in got for n in names):
            out[row] = {"id": int(mid), **{n: np.asarray(got[n][0]) for n in names}}
    return out


def _envelope_check(station: Any, params: list[ProtocolParams]) -> None:
    from instruments.envelope import Envelope, SafetyGuard

    envelope = Envelope.from_mapping(station.envelope, where="station envelope")
    guard = SafetyGuard(envelope, device_kind="rram_array", contact_probe=lambda: True)
    try:
        for p in params:
            p.check_envelope(guard)
    except ValueError as exc:
        raise BadInputError(f"deployment settings: {exc}") from None


def _run(
    plan: Plan,
    schedule: list[Planned],
    store: RunStore,
    station_record: dict[str, Any],
    wafer: WaferMap,
    connect: Callable[[], Any],
    operator: str,
    on_progress: Callable[[RunProgress], None] | None,
) -> tuple[int, str]:
    with leased_run(
        store, plan, station_record, resume=None, operator=operator, purpose="deployment"
    ) as (run_id, resumed, leased_store):
        summary = Orchestrator(
            plan, schedule, leased_store, connect, run_id=run_id,
            wafer_name=wafer.name or "wafer", resumed=resumed, on_progress=on_progress,
        ).run()  # fmt: skip
    return run_id, summary.status


def survey_rows(settings: ArrayDeploySettings, needed: int, rows: int) -> list[int]:
    """The rows the survey forms and maps: every row, or the first ``needed + spare_rows``."""
    if settings.spare_rows is None:
        return list(range(rows))
    return list(range(min(rows, needed + settings.spare_rows)))


def deploy_to_crossbar(
    network: SpikingNetwork | str | Path,
    station_path: str | Path,
    die: str,
    store: RunStore,
    *,
    settings: ArrayDeploySettings | None = None,
    on_progress: Callable[[RunProgress], None] | None = None,
    connect: Callable[[], Any] | None = None,
    operator: str = "bruno-lab deploy",
    record_path: str | Path | None = None,
) -> DeploymentResult:
    """Survey ``die``'s crossbar (or reuse its survey), place the network's map on it and
    program it row by row on the array tester; returns the deployment and its record."""
    from bruno_lab.train.io import programming_map
    from instruments.station import open_bench
    from instruments.station_lock import station_locked

    t0 = time.perf_counter()
    settings = settings or ArrayDeploySettings()
    net, network_path = network_and_path(network)
    station_path = Path(station_path)
    pmap = programming_map(net)
    station, wafer = station_wafer(station_path)
    die_ref = find_die(wafer, die)
    site = array_site(wafer)
    if site is None:
        raise BadInputError(f"{station_path}: the wafer's dies carry no rram_array site")
    if "array_tester" not in station.instruments:
        raise BadInputError(f"{station_path}: a crossbar deployment needs an array_tester")
    rows, cols = _array_shape(site, str(station_path))
    needed = len(place(pmap, rows, cols).used_rows())  # raises when it cannot fit at all
    read_v = float(pmap.get("read_voltage_v") or settings.program.read_v)
    program = settings.program.model_copy(update={"read_v": read_v, "n_rows": rows, "cols": cols})
    _envelope_check(station, [settings.forming, settings.health, program])
    path = record_destination(network_path, die_ref.label, record_path)
    survey = survey_rows(settings, needed, rows)
    device = _device(die_ref, site)
    sha = map_sha256(pmap)
    station_record = station_snapshot(station, station_path)
    connect = connect or (lambda: open_bench(station_path))
    base = {"n_rows": rows, "cols": cols}
    forming = settings.forming.model_copy(update={**base, "rows": survey})
    health = settings.health.model_copy(update={**base, "rows": survey})
    survey_plan = _plan(
        f"survey array at site {site.site} on {die_ref.label}",
        die_ref, site,
        [Step("array_forming", forming, ("rram_array",)),
         Step("array_health", health, ("rram_array",))],
        {"phase": "survey", "wafer": wafer.name, "site": site.site, "rows": survey},
    )  # fmt: skip
    with station_locked(station, str(station_path)):
        latest = _latest_run(store, survey_plan)
        if latest is not None and latest[1] == "completed":
            survey_id, survey_status = latest
            log.info("reusing survey run %s of %s", survey_id, die_ref.label)
        else:
            items = [("array_forming", p) for p in forming.expand()]
            items += [("array_health", p) for p in health.expand()]
            survey_id, survey_status = _run(
                survey_plan, _schedule(device, items), store, station_record, wafer, connect,
                operator, on_progress,
            )  # fmt: skip
        if survey_status != "completed":
            raise DataError(
                f"the survey of {die_ref.label}'s array (run {survey_id}) ended {survey_status}"
                "; rerun the deployment to resume it"
            )
        status, g_stuck = _health_maps(store, survey_id, rows, cols)
        placement = place(pmap, rows, cols, bad=status != OK)
        cell_status = status[placement.cell_row, placement.cell_col]
        targets = np.array([c["target_conductance_siemens"] for c in pmap["cells"]])
        g_range = _ladder_range(net)
        programmed, compensated = compensate(
            targets, cell_status, g_stuck[placement.cell_row, placement.cell_col], g_range
        )
        row_targets = _row_targets(placement, programmed, cols)
        steps = [("array_program_verify", program.model_copy(update={"rows": sorted(row_targets)}))]
        program_plan = _plan(
            f"deploy network {sha[:12]} on {die_ref.label} array at site {site.site}",
            die_ref, site, [Step(steps[0][0], steps[0][1], ("rram_array",))],
            {"phase": "program", "map_sha256": sha, "wafer": wafer.name, "site": site.site,
             "survey_run": survey_id, "placement": placement.as_dict(),
             "row_targets_siemens": {str(r): _json_targets(t) for r, t in row_targets.items()}},
        )  # fmt: skip
        items = [
            (
                "array_program_verify",
                program.model_copy(
                    update={"row": r, "rows": None, "targets_siemens": _json_targets(t)}
                ),
            )
            for r, t in sorted(row_targets.items())
        ]
        run_id, run_status = _run(
            program_plan, _schedule(device, items), store, station_record, wafer, connect,
            operator, on_progress,
        )  # fmt: skip
    record = _record(
        store, run_id, survey_id, pmap, placement, programmed, compensated, cell_status,
        die_ref, site, program, network_path, station_path, wafer,
    )  # fmt: skip
    record.update(status=run_status, map_sha256=sha)
    if path is not None:
        _write_json(path, record)
    log.info(
        "deployed on %s's array: %s of %s", die_ref.label, record["n_success"], record["n_cells"]
    )
    return DeploymentResult(run_id, run_status, path, record, time.perf_counter() - t0)


def _json_targets(t: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(g) else float(g) for g in t]


def _health_maps(
    store: RunStore, survey_id: int, rows: int, cols: int
) -> tuple[np.ndarray, np.ndarray]:
    """Status per cell (rows not surveyed: unformed) and the conductance a dead cell holds."""
    from protocols.crossbar_placement import UNFORMED

    names = ["status", "conductance_set_siemens", "conductance_reset_siemens"]
    found = _row_arrays(store, survey_id, "array_health", names)
    status = np.full((rows, cols), UNFORMED, dtype=np.int64)
    g = np.zeros((rows, cols))
    for r, a in found.items():
        if r < rows and a["status"].size == cols:
            status[r] = a["status"]
            g[r] = 0.5 * (a["conductance_set_siemens"] + a["conductance_reset_siemens"])
    return status, g


def _ladder_range(net: SpikingNetwork) -> tuple[float, float]:
    card = net.rram_card
    if card is None or card.rram is None:
        raise BadInputError("a crossbar deployment needs a network trained on an RRAM card")
    means = [lv.mean_siemens for lv in card.rram.levels]
    return float(min(means)), float(max(means))


def _row_targets(placement: Placement, programmed: np.ndarray, cols: int) -> dict[int, np.ndarray]:
    """Per used array row, one target per column (NaN: not programmed)."""
    out: dict[int, np.ndarray] = {}
    for r in placement.used_rows():
        out[r] = np.full(cols, np.nan)
    out_rows, out_cols = placement.cell_row, placement.cell_col
    for k in range(programmed.size):
        out[int(out_rows[k])][int(out_cols[k])] = programmed[k]
    return {r: t for r, t in out.items() if np.isfinite(t).any()}


def _record(
    store: RunStore,
    run_id: int,
    survey_id: int,
    pmap: dict[str, Any],
    placement: Placement,
    programmed: np.ndarray,
    compensated: np.ndarray,
    cell_status: np.ndarray,
    die: DieRef,
    site: SiteRef,
    program: ArrayProgramParams,
    network_path: Path | None,
    station_path: Path,
    wafer: WaferMap,
) -> dict[str, Any]:
    names = ["reached_conductance_siemens", "attempts", "success"]
    found = _row_arrays(store, run_id, "array_program_verify", names)
    cells = []
    for k, c in enumerate(pmap["cells"]):
        r, col = int(placement.cell_row[k]), int(placement.cell_col[k])
        got = found.get(r)
        wanted = bool(np.isfinite(programmed[k]))
        reached = float(got["reached_conductance_siemens"][col]) if got and wanted else math.nan
        cells.append(
            {
                **{f: c[f] for f in ("cell", "layer", "row", "col", "polarity", "level_index")},
                "target_conductance_siemens": float(c["target_conductance_siemens"]),
                "programmed_target_siemens": float(programmed[k]) if wanted else None,
                "array_row": r,
                "array_col": col,
                "health": int(cell_status[k]),
                "compensated": bool(compensated[k]),
                "reached_conductance_siemens": reached,
                "attempts": int(got["attempts"][col]) if got and wanted else 0,
                "success": bool(got is not None and wanted and got["success"][col]),
                "measurement_id": got["id"] if got else None,
            }
        )
    reached_g = np.array([c["reached_conductance_siemens"] for c in cells])
    target = np.array(
        [np.nan if t is None else t for t in (c["programmed_target_siemens"] for c in cells)]
    )
    ok = np.isfinite(reached_g) & np.isfinite(target)
    n_programmed = int(np.isfinite(target).sum())
    return {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "target": TARGET,
        "created_at": datetime.now(UTC).isoformat(),
        "network": None if network_path is None else str(network_path),
        "station": str(station_path),
        "wafer": wafer.name,
        "die": {"col": die.col, "row": die.row, "label": die.label},
        "array": {"site": site.site, "rows": placement.rows,
                  "cols": placement.cols},
        "run_id": run_id,
        "survey_run_id": survey_id,
        "read_voltage_v": program.read_v,
        "settings": program.as_record(),
        "placement": placement.as_dict(),
        "n_cells": len(cells),
        "n_programmed": n_programmed,
        "n_success": sum(c["success"] for c in cells),
        "n_compensated": int(compensated.sum()),
        "n_unusable": int(sum(c["programmed_target_siemens"] is None for c in cells)),
        "mean_attempts": float(np.mean([c["attempts"] for c in cells if c["attempts"]]))
        if any(c["attempts"] for c in cells)
        else 0.0,
        "rms_error_siemens": float(np.sqrt(np.mean((reached_g - target)[ok] ** 2)))
        if ok.any()
        else math.nan,
        "layers": pmap["layers"],
        "cells": cells,
    }  # fmt: skip


def tiles_of(record: dict[str, Any]) -> list[Tile]:
    """The record's tiles (what ``protocols.array_eval`` drives)."""
    if record.get("target") != TARGET:
        raise BadInputError("not a crossbar deployment record")
    return [Tile.from_dict(t) for t in record["placement"]["tiles"]]


__all__ = ["TARGET", "ArrayDeploySettings", "array_site", "deploy_to_crossbar", "tiles_of"]
