"""The ``Store``: one object over an engine, with the writes the lab needs and array loading.

Every write is one transaction. ``add_measurement`` writes the measurement row, its arrays and
their chunks together or not at all, so a killed process never leaves a row without its data
or data without a row. Writes use SQLAlchemy Core inserts (not ORM unit-of-work) because ingest
speed matters: ``benchmarks/store_ingest.py`` compares it with raw ``sqlite3``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from bruno_lab.config import mask_url
from bruno_lab.errors import BadInputError, DataError, SchemaError
from bruno_lab.store import schema
from bruno_lab.store.arrays import DEFAULT_CHUNK_BYTES, decode_array, encode_array
from bruno_lab.store.cards_store import CardsMixin
from bruno_lab.store.engine import begin_write, finite_or_none, inserted_id, json_dumps
from bruno_lab.store.models import (
    ArrayChunk,
    Device,
    DeviceKind,
    Die,
    Measurement,
    MeasurementStatus,
    Run,
    RunPurpose,
    RunStatus,
    StoredArray,
    Wafer,
    utcnow,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunInfo:
    """One run as ``Store.list_runs`` reports it."""

    run_id: int
    plan_name: str
    purpose: str
    status: str
    operator: str
    started_at: datetime
    finished_at: datetime | None
    n_measurements: int


@dataclass(frozen=True)
class WaferInfo:
    """One wafer as ``Store.list_wafers`` reports it."""

    name: str
    lot: str | None
    diameter_m: float | None
    n_dies: int
    n_devices: int
    n_measurements: int


_MEAS = Measurement.__table__
_ARR = StoredArray.__table__
_CHUNK = ArrayChunk.__table__
_TERMINAL = {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.ABORTED}


def as_enum(enum_cls: Any, value: Any, *, field: str) -> Any:
    """``value`` as a member of ``enum_cls``; a bad value raises BadInputError naming choices."""
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise BadInputError(f"{field}: {value!r} is not one of {allowed}") from None


def _check_json(value: Mapping[str, Any], field: str) -> None:
    try:
        json_dumps(dict(value))
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"measurement {field}: not storable as JSON ({exc})") from None


class Store(CardsMixin):
    """The measurement database. Build it with :func:`bruno_lab.store.open_store`."""

    def __init__(self, engine: Engine, url: str, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        self.engine = engine
        self.url = url
        self.masked_url = mask_url(url)
        self.chunk_bytes = int(chunk_bytes)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Store({self.masked_url!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: commits if the block succeeds, rolls back otherwise.

        Objects stay usable after the block (``expire_on_commit=False``).
        """
        with self._sessions() as sess, sess.begin():
            yield sess

    # -- schema ---------------------------------------------------------------------------

    def schema_status(self) -> dict[str, Any]:
        """``{"current": revision or None, "head": revision, "at_head": bool, "url": masked}``."""
        return {**schema.schema_status(self.engine), "url": self.masked_url}

    def upgrade(self, revision: str = "head") -> dict[str, Any]:
        """Run the alembic migrations up to ``revision``; returns the new status."""
        status = self.schema_status()
        if not status["known"]:
            raise SchemaError(
                f"database {self.masked_url} is at schema {status['current']}, unknown to this "
                f"bruno-lab (head {status['head']}): upgrade bruno-lab, not the database"
            )
        schema.upgrade(self.engine, self.url, revision)
        return self.schema_status()

    # -- catalogue ------------------------------------------------------------------------

    def _ensure(
        self,
        model: Any,
        match: Mapping[str, Any],
        extra: Mapping[str, Any],
        must_agree: tuple[str, ...] = (),
    ) -> int:
        """Id of the row matching ``match``, inserted with ``extra`` if absent (race-safe).

        An existing row whose ``must_agree`` columns differ from ``extra`` raises DataError.
        """
        table = model.__table__
        stmt = select(table.c.id, *(table.c[c] for c in must_agree)).where(
            *(table.c[k] == v for k, v in match.items())
        )

        def check(row: Any) -> int:
            for col in must_agree:
                if row._mapping[col] != extra[col]:
                    raise DataError(
                        f"{table.name} {dict(match)} exists with {col}={row._mapping[col]!s}, "
                        f"not {extra[col]!s}"
                    )
            return int(row.id)

        with self.engine.connect() as conn:  # fast path: no write lock when it exists
            found = conn.execute(stmt).first()
        if found is not None:
            return check(found)
        for attempt in range(2):
            with begin_write(self.engine) as conn:
                found = conn.execute(stmt).first()
                if found is not None:
                    return check(found)
                try:
                    with conn.begin_nested():
                        res = conn.execute(insert(table).values(**match, **extra))
                    return inserted_id(res)
                except IntegrityError as exc:
                    if attempt:
                        raise DataError(f"{table.name} {dict(match)}: {exc.orig}") from exc
        raise AssertionError("unreachable")

    def ensure_wafer(
        self, name: str, *, lot: str | None = None, diameter_m: float | None = None
    ) -> int:
        """Id of wafer ``name``, created if new (``lot`` and ``diameter_m`` set on creation)."""
        return self._ensure(
            Wafer, {"name": name}, {"lot": lot, "diameter_m": diameter_m, "created_at": utcnow()}
        )

    def ensure_die(self, wafer_id: int, x: int, y: int, label: str) -> int:
        """Id of the die at column ``x``, row ``y`` of the wafer, created if new."""
        return self._ensure(Die, {"wafer_id": wafer_id, "x": int(x), "y": int(y)}, {"label": label})

    def ensure_device(
        self, die_id: int, site: str, kind: DeviceKind | str, geometry: Mapping[str, Any]
    ) -> int:
        """Id of the device at ``site`` of the die, created if new (``geometry`` keys carry units:
        ``{"area_m2": 2.5e-11}``; the first geometry stored is kept). An existing device of
        another kind raises DataError."""
        kind = as_enum(DeviceKind, kind, field="device kind")
        return self._ensure(
            Device,
            {"die_id": die_id, "site": site},
            {"kind": kind, "geometry": dict(geometry)},
            must_agree=("kind",),
        )

    def create_run(
        self,
        plan: Mapping[str, Any],
        operator: str,
        station: Mapping[str, Any],
        software_version: str,
        purpose: RunPurpose | str = RunPurpose.CHARACTERIZATION,
    ) -> int:
        """Start a run (status ``running``, ``started_at`` now) and return its id. ``purpose``
        says why (calibration reads ``characterization`` runs only, unless told otherwise)."""
        purpose = as_enum(RunPurpose, purpose, field="run purpose")
        with self.engine.begin() as conn:
            res = conn.execute(
                insert(Run.__table__).values(
                    plan=dict(plan),
                    operator=operator,
                    station=dict(station),
                    software_version=software_version,
                    status=RunStatus.RUNNING,
                    purpose=purpose,
                    started_at=utcnow(),
                )
            )
            return inserted_id(res)

    def set_run_status(
        self, run_id: int, status: RunStatus | str, finished_at: datetime | None = None
    ) -> None:
        """Set a run's status; a terminal status stamps ``finished_at`` (now unless given)."""
        status = as_enum(RunStatus, status, field="run status")
        if finished_at is None and status in _TERMINAL:
            finished_at = utcnow()
        with self.engine.begin() as conn:
            res = conn.execute(
                update(Run.__table__)
                .where(Run.__table__.c.id == run_id)
                .values(status=status, finished_at=finished_at)
            )
            if res.rowcount != 1:
                raise DataError(f"run {run_id} does not exist")

    def get_run(self, run_id: int) -> Run:
        with self.session() as sess:
            run = sess.get(Run, run_id)
            if run is None:
                raise DataError(f"run {run_id} does not exist")
            return run

    def list_runs(
        self, *, purpose: RunPurpose | str | None = None, wafer: str | None = None
    ) -> list[RunInfo]:
        """Every run, oldest first, optionally of one ``purpose`` and/or touching ``wafer``
        (a run touches the wafers its measurements were taken on)."""
        r, m = Run.__table__, _MEAS
        d, die, w = Device.__table__, Die.__table__, Wafer.__table__
        counts = select(m.c.run_id, func.count(m.c.id).label("n")).group_by(m.c.run_id).subquery()
        stmt = (
            select(r, func.coalesce(counts.c.n, 0).label("n_measurements"))
            .outerjoin(counts, counts.c.run_id == r.c.id)
            .order_by(r.c.id)
        )
        if purpose is not None:
            stmt = stmt.where(r.c.purpose == as_enum(RunPurpose, purpose, field="run purpose"))
        if wafer is not None:
            touching = (
                select(m.c.run_id)
                .join(d, d.c.id == m.c.device_id)
                .join(die, die.c.id == d.c.die_id)
                .join(w, w.c.id == die.c.wafer_id)
                .where(w.c.name == wafer)
            )
            stmt = stmt.where(r.c.id.in_(touching))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [
            RunInfo(
                run_id=int(row.id),
                plan_name=str((row.plan or {}).get("name", "")),
                purpose=str(as_enum(RunPurpose, row.purpose, field="run purpose").value),
                status=str(as_enum(RunStatus, row.status, field="run status").value),
                operator=row.operator,
                started_at=row.started_at,
                finished_at=row.finished_at,
                n_measurements=int(row.n_measurements),
            )
            for row in rows
        ]

    def list_wafers(self) -> list[WaferInfo]:
        """Every wafer with its lot and how many dies, devices and measurements it holds."""
        w, die, d, m = Wafer.__table__, Die.__table__, Device.__table__, _MEAS
        stmt = (
            select(
                w.c.name,
                w.c.lot,
                w.c.diameter_m,
                func.count(func.distinct(die.c.id)).label("n_dies"),
                func.count(func.distinct(d.c.id)).label("n_devices"),
                func.count(func.distinct(m.c.id)).label("n_measurements"),
            )
            .select_from(w)
            .outerjoin(die, die.c.wafer_id == w.c.id)
            .outerjoin(d, d.c.die_id == die.c.id)
            .outerjoin(m, m.c.device_id == d.c.id)
            .group_by(w.c.id, w.c.name, w.c.lot, w.c.diameter_m)
            .order_by(w.c.name)
        )
        with self.engine.connect() as conn:
            return [
                WaferInfo(
                    name=row.name,
                    lot=row.lot,
                    diameter_m=row.diameter_m,
                    n_dies=int(row.n_dies),
                    n_devices=int(row.n_devices),
                    n_measurements=int(row.n_measurements),
                )
                for row in conn.execute(stmt)
            ]

    # -- measurements ---------------------------------------------------------------------

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
        status: MeasurementStatus | str,
        error: str | None,
        scalars: Mapping[str, float],
        arrays: Mapping[str, tuple[np.ndarray, str]],
        key: str | None = None,
    ) -> int:
        """Store one measurement with all its arrays in ONE transaction; return its id.

        ``scalars`` are floats in the units their names say (NaN/inf are stored as null);
        ``arrays`` map a name to ``(values, unit)``. ``key`` is an idempotency key unique per
        run: storing a key that the run already has writes nothing and returns the EXISTING
        measurement's id (so a resumed or retried run never duplicates a measurement).
        """
        status = as_enum(MeasurementStatus, status, field="measurement status")
        encoded = []
        for name, item in arrays.items():
            try:
                values, unit = item
            except (TypeError, ValueError):
                raise BadInputError(f"array {name!r}: expected (values, unit)") from None
            enc = encode_array(values, name=name, chunk_bytes=self.chunk_bytes)
            encoded.append((name, str(unit), enc))
        _check_json(parameters, "parameters")
        _check_json(instruments, "instruments")
        for field, stamp in (("started_at", started_at), ("finished_at", finished_at)):
            if not isinstance(stamp, datetime) or stamp.tzinfo is None:
                raise BadInputError(f"measurement {field}: need an aware datetime, got {stamp!r}")
        row = {
            "run_id": run_id,
            "device_id": device_id,
            "key": key,
            "protocol": protocol,
            "parameters": dict(parameters),
            "instruments": dict(instruments),
            "started_at": started_at,
            "finished_at": finished_at,
            "status": status,
            "error": error,
            "scalars": {str(k): finite_or_none(v) for k, v in scalars.items()},
        }
        try:
            with self.engine.begin() as conn:
                mid = inserted_id(conn.execute(insert(_MEAS), row))
                chunk_rows: list[dict[str, Any]] = []
                for name, unit, enc in encoded:
                    meta = {
                        "measurement_id": mid,
                        "name": name,
                        "dtype": enc.dtype,
                        "shape": enc.shape,
                        "unit": unit,
                        "n_bytes": enc.n_bytes,
                        "n_chunks": len(enc.chunks),
                        "sha256": enc.sha256,
                    }
                    aid = inserted_id(conn.execute(insert(_ARR), meta))
                    chunk_rows.extend(
                        {"array_id": aid, "seq": i, "data": c} for i, c in enumerate(enc.chunks)
                    )
                if chunk_rows:
                    conn.execute(insert(_CHUNK), chunk_rows)
                return mid
        except IntegrityError as exc:
            if key is not None:
                existing = self._measurement_id_for_key(run_id, key)
                if existing is not None:
                    log.info(
                        "run %s: key %r already stored as measurement %s", run_id, key, existing
                    )
                    return existing
            raise DataError(
                f"measurement of run {run_id}, device {device_id} not stored: {exc.orig}"
            ) from exc
        except StatementError as exc:  # e.g. parameters not JSON-serializable, naive datetime
            raise BadInputError(
                f"measurement of run {run_id}, device {device_id}: {exc.orig}"
            ) from exc

    def _measurement_id_for_key(self, run_id: int, key: str) -> int | None:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(_MEAS.c.id).where(_MEAS.c.run_id == run_id, _MEAS.c.key == key)
            ).scalar()
        return None if found is None else int(found)

    def completed_keys(self, run_id: int) -> set[str]:
        """Idempotency keys of every measurement stored for the run, whatever its status.

        A failed measurement is stored too; to retry it, use a new key (e.g. with an attempt
        number), since storing an existing key is a no-op.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(_MEAS.c.key).where(_MEAS.c.run_id == run_id, _MEAS.c.key.is_not(None))
            )
            return {r[0] for r in rows}

    def get_measurement(self, measurement_id: int) -> Measurement:
        """The measurement row (arrays not loaded; use :meth:`load_arrays`)."""
        with self.session() as sess:
            meas = sess.get(Measurement, measurement_id)
            if meas is None:
                raise DataError(f"measurement {measurement_id} does not exist")
            return meas

    def array_names(self, measurement_id: int) -> dict[str, str]:
        """Name -> unit of the arrays stored with a measurement, without loading their bytes."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(_ARR.c.name, _ARR.c.unit)
                .where(_ARR.c.measurement_id == measurement_id)
                .order_by(_ARR.c.name)
            )
            return {name: unit for name, unit in rows}

    def load_arrays(
        self, measurement_id: int, names: list[str] | None = None
    ) -> dict[str, tuple[np.ndarray, str]]:
        """Arrays of a measurement as ``name -> (values, unit)``, each checksum verified."""
        return self.load_arrays_many([measurement_id], names).get(measurement_id, {})

    def load_arrays_many(
        self, measurement_ids: list[int], names: list[str] | None = None
    ) -> dict[int, dict[str, tuple[np.ndarray, str]]]:
        """Arrays of several measurements in one query: ``id -> name -> (values, unit)``."""
        stmt = (
            select(_ARR, _CHUNK.c.seq, _CHUNK.c.data)
            .join(_CHUNK, _CHUNK.c.array_id == _ARR.c.id, isouter=True)
            .where(_ARR.c.measurement_id.in_([int(m) for m in measurement_ids]))
            .order_by(_ARR.c.measurement_id, _ARR.c.name, _CHUNK.c.seq)
        )
        if names is not None:
            stmt = stmt.where(_ARR.c.name.in_(names))
        grouped: dict[tuple[int, str], tuple[Any, list[tuple[int, bytes]]]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(stmt):
                _meta, chunks = grouped.setdefault((row.measurement_id, row.name), (row, []))
                if row.seq is not None:
                    chunks.append((row.seq, row.data))
        out: dict[int, dict[str, tuple[np.ndarray, str]]] = {}
        for (mid, name), (meta, chunks) in grouped.items():
            values = decode_array(
                where=f"measurement {mid} array {name!r}",
                dtype=meta.dtype,
                shape=list(meta.shape),
                n_bytes=meta.n_bytes,
                sha256=meta.sha256,
                n_chunks=meta.n_chunks,
                chunks=chunks,
            )
            out.setdefault(mid, {})[name] = (values, meta.unit)
        return out

    def load_array(self, measurement_id: int, name: str) -> tuple[np.ndarray, str]:
        """One array ``(values, unit)``; missing or corrupt (bad checksum) raises DataError."""
        found = self.load_arrays(measurement_id, [name])
        if name not in found:
            have = sorted(self.array_names(measurement_id))
            raise DataError(f"measurement {measurement_id} has no array {name!r} (has {have})")
        return found[name]
