"""What the live page shows, read from the database only: the run, its planned schedule
(rebuilt from the plan and wafer map the run row holds), every committed measurement (die,
site, protocol, status, reason, scalars), the latest curve of each protocol, and the bench's
state at the latest commit (the instruments' snapshot stored with it; the prober stood on that
measurement's device).

One ``LiveState`` per server polls the database (``poll``: measurements with a higher id than
the last seen, one indexed query) and keeps everything in memory; any number of viewers read
that copy, so viewers add no database load.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from reporting.data import ReportStore, run_purpose, wafer_map_of_run
from reporting.units import quantity

if TYPE_CHECKING:
    from sqlalchemy import Row

log = logging.getLogger(__name__)

CURVE_POINTS = 600
# the wafer map's default quantity: the first of these the run has measured
PREFERRED_SCALARS = (
    "pv_loop:pr_pos_c_m2",
    "pund:switched_polarization_c_m2",
    "felif_response:firing_rate_hz",
    "rram_forming:forming_voltage_v",
    "rram_iv:g_lrs_siemens",
    "rram_program_verify:n_success",
)
RATE_WINDOW = 20  # recent commits that set the ETA's pace
STALL_MIN_S = 30.0  # without a lease heartbeat: no commit for this long (or 10 gaps) is stalled
STALL_HEARTBEATS = 3  # with one: this many missed heartbeats are stalled


def _heartbeat_s() -> float:
    """The runner's lease heartbeat period (``protocols.lease``)."""
    from protocols.lease import HEARTBEAT_S

    return float(HEARTBEAT_S)


# protocol -> (x array, [y arrays], x log, y log, mode); y "abs:" plots |y|
CURVES: dict[str, tuple[str, tuple[str, ...], bool, bool, str]] = {
    "pv_loop": ("voltage_v", ("polarization_c_m2",), False, False, "lines"),
    "pund": ("time_s", ("current_a",), False, False, "lines"),
    "switching_kinetics": ("width_s", ("switched_polarization_c_m2",), True, False, "markers"),
    "felif_response": ("time_s", ("voltage_v",), False, False, "lines"),
    "rram_forming": ("voltage_v", ("abs:current_a",), False, True, "lines+markers"),
    "rram_iv": ("voltage_v", ("abs:current_a",), False, True, "lines+markers"),
    "rram_program_verify": (
        "target_conductance_siemens",
        ("reached_conductance_siemens",),
        False,
        False,
        "markers",
    ),
    "rram_read_noise": ("level", ("conductance_siemens",), False, False, "markers"),
    "rram_retention": ("time_s", ("conductance_siemens",), True, False, "markers"),
    "rram_endurance": ("cycle", ("g_lrs_siemens", "g_hrs_siemens"), True, True, "lines+markers"),
    "rram_pulsed": ("amplitude_v", ("conductance_siemens",), False, False, "markers"),
}


def _iso(t: Any) -> str | None:
    if t is None:
        return None
    if isinstance(t, str):
        return t
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat()


def _epoch(t: Any) -> float | None:
    if t is None:
        return None
    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


@dataclass
class PlannedRun:
    """The schedule rebuilt from the run row: keys in run order, estimates, the dies."""

    keys: list[str]
    estimate_s: dict[str, float]
    dies: list[tuple[int, int, str]]
    devices: dict[str, int]  # die label -> planned measurements on it
    wafer_dies: list[tuple[int, int, str]] = field(default_factory=list)  # the whole map


def planned_schedule(run: Any) -> PlannedRun | None:
    """The run's schedule from its plan document and wafer map, or None if the row holds
    neither well enough (then progress shows counts without a total)."""
    from protocols.plan import PlanFile, parse_plan
    from protocols.schedule import build_schedule
    from protocols.wafer import DieRef, SiteRef, WaferMap, wafer_map_from_dict

    doc = ((run.plan or {}).get("document")) or {}
    if not isinstance(doc, dict):
        return None
    doc = {k: v for k, v in doc.items() if k in PlanFile.model_fields}
    wm_doc = wafer_map_of_run(run)
    try:
        if wm_doc is not None:
            wafer = wafer_map_from_dict(wm_doc, where=f"run {run.id}: wafer map")
        else:  # a plan listing its dies and sites explicitly needs no map
            dies = doc.get("dies")
            sites = doc.get("sites") or {}
            if not isinstance(dies, list) or any(v == "all" for v in sites.values()):
                return None
            wafer = WaferMap(
                str(doc.get("wafer") or ""),
                tuple(DieRef(int(d[0]), int(d[1]), f"{int(d[0])},{int(d[1])}") for d in dies),
                tuple(
                    SiteRef(int(s), kind)
                    for kind, idx in sorted(sites.items())
                    for s in (idx if isinstance(idx, list) else [])
                ),
            )
        plan = parse_plan(json.dumps(doc), f"run {run.id} plan", wafer)
        schedule = build_schedule(plan, wafer)
    except Exception as exc:  # an old or foreign plan: show what is committed, without a total
        log.info("run %s: no schedule from its plan (%s)", run.id, exc)
        return None
    per_die: dict[str, int] = {}
    for p in schedule:
        per_die[p.device.die_label] = per_die.get(p.device.die_label, 0) + 1
    dies = [(d.col, d.row, d.label) for d in plan.select_dies(wafer)]
    return PlannedRun(
        keys=[p.key for p in schedule],
        estimate_s={p.key: float(p.estimate_s) for p in schedule},
        dies=dies,
        devices=per_die,
        wafer_dies=[(d.col, d.row, d.label) for d in wafer.dies],
    )


def curve_of(protocol: str, arrays: dict[str, tuple[np.ndarray, str]]) -> dict[str, Any] | None:
    """The plot of one measurement's arrays: x, one or more y, axis kinds and units."""
    spec = CURVES.get(protocol)
    if spec is None:  # a protocol this view does not know: its first two equal-length arrays
        one_d = [(n, a) for n, (a, _) in sorted(arrays.items()) if a.ndim == 1 and a.size > 1]
        pair = next(
            ((x, y) for x in one_d for y in one_d if x[0] != y[0] and x[1].size == y[1].size), None
        )
        if pair is None:
            return None
        spec = (pair[0][0], (pair[1][0],), False, False, "lines")
    x_name, y_names, x_log, y_log, mode = spec
    if x_name not in arrays:
        return None
    x = np.asarray(arrays[x_name][0], dtype=float).reshape(-1)
    stride = max(1, x.size // CURVE_POINTS)
    qx = _axis_quantity(x_name, x, x_log)
    ys = []
    for yn in y_names:
        absolute = yn.startswith("abs:")
        yn = yn.removeprefix("abs:")
        if yn not in arrays:
            continue
        y = np.asarray(arrays[yn][0], dtype=float).reshape(-1)
        if y.size != x.size:
            continue
        y = np.abs(y) if absolute else y
        qy = _axis_quantity(yn, y, y_log)
        vals = qy.scale(y[::stride])
        if y_log:
            vals = np.where(vals > 0, vals, np.nan)
        ys.append(
            {
                "name": ("|" + qy.label + "|") if absolute else qy.label,
                "unit": qy.unit,
                "y": [None if not math.isfinite(v) else float(f"{v:.5g}") for v in vals],
            }
        )
    if not ys:
        return None
    xs = qx.scale(x[::stride])
    return {
        "x": [None if not math.isfinite(v) else float(f"{v:.5g}") for v in xs],
        "x_label": qx.title,
        "y_label": ys[0]["name"] + (f" ({ys[0]['unit']})" if ys[0]["unit"] else ""),
        "ys": ys,
        "x_log": x_log,
        "y_log": y_log,
        "mode": mode,
    }


def _axis_quantity(name: str, values: np.ndarray, log_axis: bool) -> Any:
    """A linear axis in the engineering unit; a log axis in the SI base unit (its tick labels
    carry the prefix: 100µ, 1n), so that a prefix never stacks on another."""
    from reporting.units import Quantity, base_unit

    q = quantity(name, values)
    if not log_axis:
        return q
    return Quantity(name, q.label, base_unit(name)[1], 1.0, q.diverging)


def bench_state(instruments: dict[str, Any], where: dict[str, Any]) -> dict[str, Any]:
    """Outputs and settings from the snapshot stored with the latest measurement; the prober
    stood on that measurement's device."""
    out: dict[str, Any] = {"prober": where}
    for role in ("smu", "awg", "scope"):
        snap = instruments.get(role)
        if not isinstance(snap, dict):
            continue
        entry = {"idn": str(snap.get("idn", ""))[:80]}
        if "output_enabled" in snap:
            entry["output"] = "on" if snap["output_enabled"] else "off"
        for key in ("source_voltage_v", "current_limit_a", "amplitude_vpp", "offset_v", "nplc"):
            if isinstance(snap.get(key), int | float):
                entry[key] = snap[key]
        out[role] = entry
    return out


@dataclass
class LiveState:
    """The in-memory copy of one run that every viewer reads; ``poll`` refreshes it."""

    store: ReportStore
    run_id: int | None = None  # None: follow the newest run
    scalar: str | None = None
    version: int = 0
    run: dict[str, Any] = field(default_factory=dict)
    measurements: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)
    bench: dict[str, Any] = field(default_factory=dict)
    scalars: dict[str, dict[str, Any]] = field(default_factory=dict)  # "protocol:name" -> unit
    planned: PlannedRun | None = None
    error: str | None = None
    last_poll: float = 0.0
    _last_id: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- database --------------------------------------------------------------------------

    def _current_run(self, conn: Any) -> Any:
        from sqlalchemy import select

        from bruno_lab.store.models import Run

        t = Run.__table__
        stmt = select(t) if self.run_id is None else select(t).where(t.c.id == self.run_id)
        row = conn.execute(stmt.order_by(t.c.id.desc()).limit(1)).first()
        return row

    def poll(self) -> bool:
        """Read what is new; True when anything changed (the version is bumped)."""
        from sqlalchemy import select

        from bruno_lab.store.models import Device, Die, Measurement, Wafer

        try:
            with self.store.engine.connect() as conn:
                run = self._current_run(conn)
                if run is None:
                    changed = self._set_error(
                        f"no run {self.run_id} in the database" if self.run_id else "no run yet"
                    )
                    self.last_poll = time.time()
                    return changed
                m, d, die, w = (
                    Measurement.__table__,
                    Device.__table__,
                    Die.__table__,
                    Wafer.__table__,
                )
                reset = bool(self.run) and self.run.get("id") != run.id
                if reset:
                    self._reset()
                rows = conn.execute(
                    select(
                        m.c.id,
                        m.c.key,
                        m.c.protocol,
                        m.c.status,
                        m.c.error,
                        m.c.scalars,
                        m.c.started_at,
                        m.c.finished_at,
                        m.c.instruments,
                        d.c.site,
                        d.c.kind,
                        die.c.x,
                        die.c.y,
                        die.c.label,
                        w.c.name,
                    )
                    .join(d, d.c.id == m.c.device_id)
                    .join(die, die.c.id == d.c.die_id)
                    .join(w, w.c.id == die.c.wafer_id)
                    .where(m.c.run_id == run.id, m.c.id > self._last_id)
                    .order_by(m.c.id)
                ).all()
            changed = self._update_run(run) or reset
            if rows:
                self._add(rows)
                changed = True
            changed = self._set_error(None) or changed
        except Exception as exc:  # the database went away: say so, keep the last state
            log.warning("live view: database: %s", exc)
            changed = self._set_error(f"database unreachable: {type(exc).__name__}: {exc}")
        self.last_poll = time.time()
        if changed:
            with self._lock:
                self.version += 1
        return changed

    def _set_error(self, error: str | None) -> bool:
        if error == self.error:
            return False
        self.error = error
        return True

    def _reset(self) -> None:
        self.measurements, self.curves, self.bench, self.scalars = [], {}, {}, {}
        self.planned, self._last_id, self.run = None, 0, {}

    def _update_run(self, run: Any) -> bool:
        status = str(getattr(run.status, "value", run.status))
        if self.planned is None or self.run.get("id") != run.id:
            self.planned = planned_schedule(run)
        doc = {
            "id": int(run.id),
            "status": status,
            "purpose": run_purpose(run),
            "plan": str((run.plan or {}).get("name", "")),
            "operator": run.operator,
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "lease_holder": getattr(run, "lease_holder", None),
            "lease_heartbeat_at": _iso(getattr(run, "lease_heartbeat_at", None)),
        }
        changed = doc != self.run
        self.run = doc
        return changed

    def _add(self, rows: Sequence[Row[*tuple[Any, ...]]]) -> None:
        latest_ok: dict[str, int] = {}
        for r in rows:
            scalars = r.scalars if isinstance(r.scalars, dict) else json.loads(r.scalars or "{}")
            item = {
                "id": int(r.id),
                "key": r.key,
                "protocol": r.protocol,
                "status": str(getattr(r.status, "value", r.status)),
                "error": r.error,
                "die": [int(r.x), int(r.y)],
                "die_label": r.label,
                "site": r.site,
                "kind": str(getattr(r.kind, "value", r.kind)),
                "finished_at": _iso(r.finished_at),
                "t": _epoch(r.finished_at),
                "dt": (_epoch(r.finished_at) or 0.0) - (_epoch(r.started_at) or 0.0),
                "scalars": {
                    k: v
                    for k, v in (scalars or {}).items()
                    if isinstance(v, int | float) and math.isfinite(v)
                },
            }
            self.measurements.append(item)
            for name, v in item["scalars"].items():
                key = f"{r.protocol}:{name}"
                if key not in self.scalars:
                    q = quantity(name, [v])
                    self.scalars[key] = {
                        "label": f"{r.protocol}: {q.label}",
                        "unit": q.unit,
                        "factor": q.factor,
                        "diverging": q.diverging,
                    }
            if item["status"] == "ok":
                latest_ok[r.protocol] = int(r.id)
            self._last_id = max(self._last_id, int(r.id))
        last = rows[-1]
        instruments = (
            last.instruments
            if isinstance(last.instruments, dict)
            else json.loads(last.instruments or "{}")
        )
        self.bench = bench_state(
            instruments or {},
            {
                "die": last.label,
                "col": int(last.x),
                "row": int(last.y),
                "site": last.site,
                "protocol": last.protocol,
                "at": _iso(last.finished_at),
            },
        )
        for protocol, mid in latest_ok.items():
            try:
                arrays = self.store.load_arrays(mid)
                curve = curve_of(protocol, arrays)
            except Exception as exc:
                log.warning("live view: arrays of measurement %s: %s", mid, exc)
                continue
            if curve is not None:
                m = next(x for x in reversed(self.measurements) if x["id"] == mid)
                curve.update(
                    measurement_id=mid, device=f"{m['die_label']}/{m['site']}", at=m["finished_at"]
                )
                self.curves[protocol] = curve

    # -- what the page gets ----------------------------------------------------------------

    def progress(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        done_keys = {m["key"] for m in self.measurements if m["key"]}
        failed = [m for m in self.measurements if m["status"] != "ok"]
        out: dict[str, Any] = {
            "done": len(done_keys),
            "failed": len(failed),
            "total": len(self.planned.keys) if self.planned else None,
            "eta_s": None,
            "last_commit_s_ago": None,
            "heartbeat_s_ago": None,
            "runner": self.run.get("lease_holder"),
            "stalled": False,
        }
        running = self.run.get("status") == "running"
        beat = _epoch(self.run.get("lease_heartbeat_at"))
        if beat is not None:
            out["heartbeat_s_ago"] = max(0.0, now - beat)
        if self.measurements:
            last_t = self.measurements[-1]["t"] or now
            out["last_commit_s_ago"] = max(0.0, now - last_t)
        if running and out["heartbeat_s_ago"] is not None:
            # the runner's lease heartbeat is the signal: a protocol may run for hours (a
            # retention bake on a real bench) between two commits of a healthy run
            out["stalled"] = out["heartbeat_s_ago"] > STALL_HEARTBEATS * _heartbeat_s()
        elif running and self.measurements:
            gaps = np.diff([m["t"] for m in self.measurements[-RATE_WINDOW:] if m["t"]])
            typical = float(np.median(gaps)) if gaps.size else 0.0
            out["stalled"] = out["last_commit_s_ago"] > max(STALL_MIN_S, 10 * typical)
        if self.planned and self.measurements and self.run.get("status") == "running":
            remaining = [k for k in self.planned.keys if k not in done_keys]
            recent = self.measurements[-RATE_WINDOW:]
            est = sum(self.planned.estimate_s.get(m["key"], 0.0) for m in recent)
            wall = (recent[-1]["t"] or now) - ((recent[0]["t"] or now) - max(recent[0]["dt"], 0.0))
            if est > 0 and wall > 0:
                out["eta_s"] = sum(self.planned.estimate_s[k] for k in remaining) * wall / est
        return out

    def dies(self) -> list[dict[str, Any]]:
        """Every die of the plan (or seen), with planned and done counts."""
        seen: dict[tuple[int, int], dict[str, Any]] = {}
        if self.planned:
            for col, row, label in self.planned.wafer_dies:
                seen[(col, row)] = {"col": col, "row": row, "label": label, "planned": 0}
            for col, row, label in self.planned.dies:
                seen[(col, row)] = {
                    "col": col,
                    "row": row,
                    "label": label,
                    "planned": self.planned.devices.get(label, 0),
                }
        for m in self.measurements:
            c, r = m["die"]
            seen.setdefault((c, r), {"col": c, "row": r, "label": m["die_label"], "planned": None})
        return list(seen.values())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            version = self.version
        return {
            "version": version,
            "run": self.run,
            "progress": self.progress(),
            "dies": self.dies(),
            "measurements": self.measurements,
            "curves": self.curves,
            "bench": self.bench,
            "scalars": self.scalars,
            "default_scalar": self.scalar
            or next((k for k in PREFERRED_SCALARS if k in self.scalars), None),
            "error": self.error,
            "server_time": time.time(),
        }

    def delta(self, after_id: int) -> dict[str, Any]:
        """What a viewer that has every measurement up to ``after_id`` needs."""
        snap = self.snapshot()
        snap["measurements"] = [m for m in self.measurements if m["id"] > after_id]
        snap["delta"] = True
        return snap
