"""Engines for the store: SQLite tuned for a lab (WAL, foreign keys, busy timeout) or PostgreSQL.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a killed process never leaves a partial
transaction (the kill test checks this); only an OS crash or power loss may lose the last
committed transactions. Transactions are opened with an explicit ``BEGIN`` (the pysqlite
driver's own implicit transaction handling is turned off) so SQLite DDL is transactional too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from bruno_lab.config import mask_url
from bruno_lab.errors import BadInputError
from bruno_lab.extras import require_extra

SQLITE_BUSY_TIMEOUT_S = 30.0
_BEGIN_OPTION = "bruno_lab_sqlite_begin"
WAL_AUTOCHECKPOINT_PAGES = 16384


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def json_dumps(obj: Any) -> str:
    """JSON for the database: numpy scalars, datetimes, enums and paths allowed; NaN refused."""
    return json.dumps(obj, default=_json_default, allow_nan=False, separators=(",", ":"))


def finite_or_none(value: Any) -> float | None:
    """A scalar result as float; NaN/inf become None (JSON null), which pandas reads as NaN."""
    x = float(value)
    return x if math.isfinite(x) else None


def parse_url(url: str) -> URL:
    """Parse an SQLAlchemy URL; ``postgresql://`` means psycopg 3 (``postgresql+psycopg://``)."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise BadInputError(
            f"database URL {mask_url(url)!r} is not valid; use e.g. sqlite:////path/lab.db or "
            "postgresql+psycopg://user@host:5432/db"
        ) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def missing_sqlite_file(url: str) -> Path | None:
    """The path of an SQLite database file that does not exist yet, else None.

    Connecting would create it empty; commands that only read (``db status``, or any command
    that needs a migrated schema) check this first so that a mistyped path leaves no file behind.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database).expanduser()
    return None if path.exists() else path


def make_engine(url: str, *, foreign_keys: bool = True) -> Engine:
    """Create an engine for ``url``. ``foreign_keys=False`` is for SQLite batch migrations only."""
    parsed = parse_url(url)
    common: dict[str, Any] = {"json_serializer": json_dumps, "future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            parent = Path(parsed.database).expanduser().parent
            if not parent.is_dir():
                raise BadInputError(
                    f"database {mask_url(url)!r}: directory {parent} does not exist"
                )
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, **common)
        _tune_sqlite(engine, foreign_keys=foreign_keys)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
        require_extra("postgres", f"the database {mask_url(url)!r}")
    try:
        return create_engine(parsed, pool_pre_ping=True, **common)
    except Exception as exc:  # unknown dialect or missing driver
        raise BadInputError(f"database {mask_url(url)!r}: {exc}") from exc


def _tune_sqlite(engine: Engine, *, foreign_keys: bool) -> None:
    busy_ms = int(SQLITE_BUSY_TIMEOUT_S * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # no implicit BEGIN; see _on_begin
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        # Checkpoints (the only fsyncs under synchronous=NORMAL) every ~64 MiB of WAL instead of
        # the default 4 MiB: each waveform measurement is ~1 MiB, and checkpointing every few
        # commits cut ingest speed by a third (benchmarks/store_ingest.py).
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cur.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())


@contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """A transaction for read-then-write work (next version number, get-or-create).

    On SQLite it starts with ``BEGIN IMMEDIATE``, taking the write lock up front: a second
    writer then waits out the busy timeout instead of failing with "database is locked" when
    its read snapshot turns out stale. Elsewhere it is a plain transaction.
    """
    with engine.connect() as conn:
        conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            yield conn
