"""Reading a wafer's measurements of one device kind out of the store, for the fits.

One ``measurements_frame`` query for the rows (device, die, scalars, status), one select for the
protocol parameters and device geometry those rows need, and arrays loaded in bulk per protocol
(checksums verified by the store: a corrupt array raises ``DataError`` naming the measurement).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bruno_lab.errors import BadInputError, DataError
from bruno_lab.store.queries import FIXED_COLUMNS
from calibration.seams import CalibrationStore

log = logging.getLogger(__name__)

KINDS = ("fecap", "felif", "rram", "rram_array")


@dataclass
class DeviceRecords:
    """The measurements of one device: protocol -> list of rows (dicts), oldest first."""

    device_id: int
    die_label: str
    die_x: int
    die_y: int
    site: str
    geometry: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def ok_rows(self, protocol: str) -> list[dict[str, Any]]:
        return [r for r in self.rows.get(protocol, []) if r["status"] == "ok"]

    def failures(self) -> list[str]:
        return [
            f"{p}: {r['error'] or r['status']}"
            for p, rows in self.rows.items()
            for r in rows
            if r["status"] != "ok"
        ]


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise BadInputError(f"unknown device kind {kind!r}; choose one of {', '.join(KINDS)}")
    return kind


CHARACTERIZATION = ("characterization",)
"""The run purposes calibration reads by default: never deployment or evaluation runs, so that
programming a network onto a die does not change the device card."""


def load_devices(
    store: CalibrationStore, wafer: str, kind: str, purpose: Sequence[str] | None = CHARACTERIZATION
) -> list[DeviceRecords]:
    """Every device of ``kind`` on ``wafer`` with its measurement rows (arrays not loaded),
    from runs of ``purpose`` (None: every run).

    No measurements for the wafer and kind raise ``DataError``.
    """
    from sqlalchemy import select

    from bruno_lab.store.models import Device, Measurement
    from bruno_lab.store.queries import measurements_frame

    check_kind(kind)
    frame = measurements_frame(store, wafer, kind=kind, purpose=purpose)
    if frame.empty:
        runs = "" if purpose is None else f" in {'/'.join(purpose)} runs"
        raise DataError(f"no {kind} measurements on wafer {wafer!r}{runs}: nothing to fit")
    ids = [int(x) for x in frame["measurement_id"]]
    with store.engine.connect() as conn:
        extra = {
            int(r.id): (r.parameters or {}, r.geometry or {})
            for r in conn.execute(
                select(Measurement.id, Measurement.parameters, Device.geometry)
                .join(Device, Device.id == Measurement.device_id)
                .where(Measurement.id.in_(ids))
            )
        }
    scalar_cols = [c for c in frame.columns if c not in _FIXED]
    devices: dict[int, DeviceRecords] = {}
    for row in frame.itertuples(index=False):
        mid = int(row.measurement_id)
        params, geometry = extra[mid]
        dev = devices.get(int(row.device_id))
        if dev is None:
            dev = DeviceRecords(
                device_id=int(row.device_id),
                die_label=str(row.die_label),
                die_x=int(row.die_x),
                die_y=int(row.die_y),
                site=str(row.site),
                geometry=dict(geometry),
            )
            devices[dev.device_id] = dev
        scalars = {
            c: float(getattr(row, c)) for c in scalar_cols if np.isfinite(getattr(row, c, np.nan))
        }
        dev.rows.setdefault(str(row.protocol), []).append(
            {
                "measurement_id": mid,
                "status": str(row.status),
                "error": row.error,
                "parameters": dict(params),
                "scalars": scalars,
            }
        )
    log.info("wafer %s: %d %s devices, %d measurements", wafer, len(devices), kind, len(ids))
    return list(devices.values())


_FIXED = frozenset(FIXED_COLUMNS)  # the store's fixed columns; every other one is a scalar


def lot_wafers(store: CalibrationStore, lot: str) -> list[str]:
    """Names of the wafers of ``lot``; an unknown lot raises ``DataError``."""
    from sqlalchemy import select

    from bruno_lab.store.models import Wafer

    with store.engine.connect() as conn:
        names = [r[0] for r in conn.execute(select(Wafer.name).where(Wafer.lot == lot))]
    if not names:
        raise DataError(f"no wafer of lot {lot!r} in the database")
    return sorted(names)


def load_scope(
    store: CalibrationStore,
    scope: str,
    scope_id: str,
    kind: str,
    purpose: Sequence[str] | None = CHARACTERIZATION,
) -> list[DeviceRecords]:
    """Devices of ``kind`` on a wafer (``scope`` "wafer") or on every wafer of a lot ("lot")."""
    if scope == "wafer":
        return load_devices(store, scope_id, kind, purpose)
    if scope != "lot":
        raise BadInputError(f"unknown scope {scope!r}; choose wafer or lot")
    devices: list[DeviceRecords] = []
    for wafer in lot_wafers(store, scope_id):
        try:
            devices += load_devices(store, wafer, kind, purpose)
        except DataError as exc:
            if "no wafer named" in str(exc):
                raise
            log.info("lot %s: wafer %s has no %s measurements", scope_id, wafer, kind)
    if not devices:
        raise DataError(f"no {kind} measurements on any wafer of lot {scope_id!r}: nothing to fit")
    return devices


def load_arrays(
    store: CalibrationStore, measurement_ids: Sequence[int], names: Sequence[str]
) -> dict[int, dict[str, np.ndarray]]:
    """``id -> name -> values`` for the named arrays; a missing one raises ``DataError``."""
    got = store.load_arrays_many([int(m) for m in measurement_ids], list(names))
    out: dict[int, dict[str, np.ndarray]] = {}
    for mid in measurement_ids:
        arrays = got.get(int(mid), {})
        missing = [n for n in names if n not in arrays]
        if missing:
            raise DataError(f"measurement {mid} lacks array(s) {missing}")
        out[int(mid)] = {n: np.asarray(arrays[n][0]) for n in names}
    return out
