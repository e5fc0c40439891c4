"""What a report reads from the store, once: the selected runs' measurements, devices, dies,
fits and cards; arrays on demand (one bulk query per protocol, cached).

Run selection: a report describes the *characterization* of a wafer. Deployment runs program
cells to a network's targets, evaluation runs read them back: their program-verify records are
not the population's levels and must not enter its histograms. Runs are selected by their
``purpose`` (``characterization`` unless the caller asks for others).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from bruno_lab.errors import DataError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from bruno_lab.store.models import Fit, ModelCard, Run

log = logging.getLogger(__name__)

CHARACTERIZATION = "characterization"


class ReportStore(Protocol):
    """The store as the report and the live view read it: measurement frames through
    ``bruno_lab.store.queries`` (its engine and URL, a ``Queryable``), runs in a session,
    arrays, fits and cards. A structural type: ``bruno_lab.store.Store`` satisfies it."""

    @property
    def engine(self) -> Engine: ...
    @property
    def masked_url(self) -> str: ...

    def session(self) -> AbstractContextManager[Session]: ...
    def array_names(self, measurement_id: int) -> dict[str, str]: ...
    def load_arrays(
        self, measurement_id: int, names: list[str] | None = None
    ) -> dict[str, tuple[np.ndarray, str]]: ...
    def load_arrays_many(
        self, measurement_ids: list[int], names: list[str] | None = None
    ) -> dict[int, dict[str, tuple[np.ndarray, str]]]: ...
    def list_fits(
        self, *, device_ids: Sequence[int] | None = None, model_name: str | None = None
    ) -> list[Fit]: ...
    def list_model_cards(
        self, *, kind: str | None = None, scope: str | None = None, scope_id: str | None = None
    ) -> list[ModelCard]: ...


@dataclass(frozen=True)
class RunInfo:
    """One run of the wafer as the report lists it."""

    run_id: int
    purpose: str
    plan_name: str
    status: str
    operator: str
    started_at: Any
    finished_at: Any
    n_measurements: int


def run_purpose(run: Any) -> str:
    """The run's purpose: its ``purpose`` column; on a schema without it, a deployment plan
    (whose document names the network it deploys) is ``deployment``, any other
    ``characterization``."""
    value = getattr(run, "purpose", None)
    if value is not None:
        return str(getattr(value, "value", value))
    doc = (getattr(run, "plan", None) or {}).get("document") or {}
    return "deployment" if isinstance(doc, dict) and "deployment" in doc else CHARACTERIZATION


def wafer_map_of_run(run: Any) -> dict[str, Any] | None:
    """The wafer map a run stepped through: from its station record when it holds one, else
    from the station file it names when that file is readable here (same host), else None."""
    station = getattr(run, "station", None) or {}
    wm = station.get("wafer_map") or station.get("wafer")
    if isinstance(wm, dict) and wm.get("dies"):
        return wm
    doc = ((getattr(run, "plan", None) or {}).get("document")) or {}
    if isinstance(doc, dict) and isinstance(doc.get("wafer_map"), dict):
        return doc["wafer_map"]
    path = station.get("path")
    if not path:
        return None
    try:
        import yaml

        with open(path, encoding="utf-8") as fh:
            wm = (yaml.safe_load(fh) or {}).get("wafer")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    return wm if isinstance(wm, dict) and wm.get("dies") else None


@dataclass
class ReportData:
    """The selected measurements of one wafer and everything the sections need about them."""

    store: ReportStore
    wafer: str
    frame: pd.DataFrame
    runs: list[RunInfo]
    other_runs: list[RunInfo]
    purposes: tuple[str, ...]
    dies: dict[tuple[int, int], str]
    devices: pd.DataFrame  # one row per device: device_id, kind, site, die_x, die_y, die_label
    geometry: dict[int, dict[str, Any]]
    fits: dict[int, Fit]  # device id -> the fit the report shows for it
    cards: dict[str, ModelCard]  # device kind -> the wafer's latest card
    _cache: dict[tuple[str, tuple[str, ...], bool], dict[int, dict[str, np.ndarray]]] = field(
        default_factory=dict, repr=False
    )
    _extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def rows(self, protocol: str, *, ok: bool | None = None) -> pd.DataFrame:
        """Measurements of ``protocol`` (ok only, failed only, or all with ``ok=None``)."""
        f = self.frame[self.frame["protocol"] == protocol]
        if ok is True:
            f = f[f["status"] == "ok"]
        elif ok is False:
            f = f[f["status"] != "ok"]
        return f

    def has(self, protocol: str) -> bool:
        return bool((self.frame["protocol"] == protocol).any())

    def kinds(self) -> list[str]:
        return sorted(set(self.devices["kind"]))

    def arrays(
        self, protocol: str, names: Sequence[str], *, include_failed: bool = False
    ) -> dict[int, dict[str, np.ndarray]]:
        """measurement id -> name -> values of ``protocol``'s measurements holding all ``names``."""
        key = (protocol, tuple(names), include_failed)
        if key not in self._cache:
            rows = self.rows(protocol, ok=None if include_failed else True)
            ids = [int(m) for m in rows["measurement_id"]]
            got = self.store.load_arrays_many(ids, list(names)) if ids else {}
            self._cache[key] = {
                mid: {n: a[n][0] for n in names}
                for mid, a in got.items()
                if all(n in a for n in names)
            }
        return self._cache[key]

    def parameters(self) -> dict[int, dict[str, Any]]:
        """measurement id -> the protocol parameters it was taken with (one query, cached)."""
        if "_params" not in self._extra:
            from sqlalchemy import select

            from bruno_lab.store.models import Measurement

            ids = [int(m) for m in self.frame["measurement_id"]]
            with self.store.engine.connect() as conn:
                self._extra["_params"] = {
                    int(i): dict(p or {})
                    for i, p in conn.execute(
                        select(Measurement.id, Measurement.parameters).where(
                            Measurement.id.in_(ids)
                        )
                    )
                }
        return self._extra["_params"]

    def device_of(self) -> dict[int, int]:
        """measurement id -> device id."""
        return dict(
            zip(
                self.frame["measurement_id"].astype(int),
                self.frame["device_id"].astype(int),
                strict=True,
            )
        )

    def scalar_names(self, protocol: str) -> list[str]:
        from bruno_lab.store.queries import FIXED_COLUMNS

        rows = self.rows(protocol, ok=True)
        extra = {"purpose", "scalar_purpose"}
        return [
            c
            for c in rows.columns
            if c not in FIXED_COLUMNS and c not in extra and rows[c].notna().any()
        ]


def _runs(store: ReportStore, wafer: str, frame: pd.DataFrame) -> list[tuple[RunInfo, Run]]:
    from sqlalchemy import select

    from bruno_lab.store.models import Run

    counts = frame.groupby("run_id").size().to_dict() if len(frame) else {}
    out = []
    with store.session() as sess:
        for run in sess.scalars(select(Run).where(Run.id.in_([int(r) for r in counts]))):
            info = RunInfo(
                run_id=int(run.id),
                purpose=run_purpose(run),
                plan_name=str((run.plan or {}).get("name", "")),
                status=str(getattr(run.status, "value", run.status)),
                operator=run.operator,
                started_at=run.started_at,
                finished_at=run.finished_at,
                n_measurements=int(counts.get(run.id, 0)),
            )
            out.append((info, run))
    return sorted(out, key=lambda p: p[0].run_id)


def load_report_data(
    store: ReportStore,
    wafer: str,
    *,
    purposes: Sequence[str] = (CHARACTERIZATION,),
    run_ids: Sequence[int] | None = None,
) -> ReportData:
    """Read the wafer's measurements of the selected runs (``run_ids`` if given, else every
    run whose purpose is in ``purposes``), their devices, fits and the wafer's latest cards.

    An unknown wafer or no measurement in the selection raises ``DataError``.
    """
    from sqlalchemy import select

    from bruno_lab.store.models import Device, Die, Wafer
    from bruno_lab.store.queries import measurements_frame

    everything = measurements_frame(store, wafer)  # DataError for an unknown wafer
    runs = _runs(store, wafer, everything)
    if run_ids is not None:
        wanted = {int(r) for r in run_ids}
        unknown = wanted - {i.run_id for i, _ in runs}
        if unknown:
            raise DataError(f"wafer {wafer!r} has no measurements in run(s) {sorted(unknown)}")
    else:
        wanted = {i.run_id for i, _ in runs if i.purpose in set(purposes)}
    selected = [i for i, _ in runs if i.run_id in wanted]
    others = [i for i, _ in runs if i.run_id not in wanted]
    frame = everything[everything["run_id"].isin(wanted)].reset_index(drop=True)
    if frame.empty:
        have = ", ".join(f"run {i.run_id} ({i.purpose})" for i, _ in runs) or "none"
        raise DataError(
            f"wafer {wafer!r}: no measurements in the selected runs "
            f"(purpose {', '.join(purposes)}); runs on this wafer: {have}"
        )
    dies: dict[tuple[int, int], str] = {}
    for _, run in runs:
        wm = wafer_map_of_run(run)
        for item in (wm or {}).get("dies", []):
            try:
                if isinstance(item, dict):
                    x, y = int(item["col"]), int(item["row"])
                    label = str(item.get("label") or f"{x},{y}")
                else:
                    x, y = int(item[0]), int(item[1])
                    label = str(item[2]) if len(item) > 2 else f"{x},{y}"
            except (KeyError, TypeError, ValueError, IndexError):
                continue
            dies.setdefault((x, y), label)
    with store.engine.connect() as conn:
        for x, y, label in conn.execute(
            select(Die.x, Die.y, Die.label)
            .join(Wafer, Wafer.id == Die.wafer_id)
            .where(Wafer.name == wafer)
        ):
            dies[(int(x), int(y))] = str(label)
        dev_ids = sorted({int(d) for d in frame["device_id"]})
        geometry = {
            int(i): dict(g or {})
            for i, g in conn.execute(
                select(Device.id, Device.geometry).where(Device.id.in_(dev_ids))
            )
        }
    devices = (
        frame[["device_id", "kind", "site", "die_x", "die_y", "die_label"]]
        .drop_duplicates("device_id")
        .sort_values(["die_y", "die_x", "site"])
        .reset_index(drop=True)
    )
    cards = _latest_cards(store, wafer)
    fits = _fits(store, dev_ids, cards)
    log.info(
        "report %s: runs %s, %d measurements, %d devices, cards %s",
        wafer,
        sorted(wanted),
        len(frame),
        len(devices),
        sorted(cards),
    )
    return ReportData(
        store=store,
        wafer=wafer,
        frame=frame,
        runs=selected,
        other_runs=others,
        purposes=tuple(purposes) if run_ids is None else ("runs " + ", ".join(map(str, wanted)),),
        dies=dies,
        devices=devices,
        geometry=geometry,
        fits=fits,
        cards=cards,
    )


def _latest_cards(store: ReportStore, wafer: str) -> dict[str, ModelCard]:
    cards: dict[str, ModelCard] = {}
    for row in store.list_model_cards(scope="wafer", scope_id=wafer):
        cards[str(getattr(row.device_kind, "value", row.device_kind))] = row  # highest version last
    return cards


def _fits(store: ReportStore, device_ids: list[int], cards: dict[str, ModelCard]) -> dict[int, Fit]:
    """Per device: the fit its kind's latest card was built from, else its latest fit."""
    fits = store.list_fits(device_ids=device_ids) if device_ids else []
    by_id = {f.id: f for f in fits}
    out = {f.device_id: f for f in fits}  # oldest first: the latest wins
    for card in cards.values():
        for fid in card.fit_ids:
            fit = by_id.get(fid)
            if fit is not None:
                out[fit.device_id] = fit
    return out
