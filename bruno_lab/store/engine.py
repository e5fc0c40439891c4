"""Engines for the store: SQLite tuned for a lab (WAL, foreign keys, busy timeout) or PostgreSQL.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a killed process never leaves a partial
transaction (the kill test checks this); only an OS crash or power loss may lose the last
committed transactions. Transactions are opened with an explicit ``BEGIN`` (the pysqlite
driver's own implicit transaction handling is turned off) so SQLite DDL is transactional too.
"""

from __future__ import annotations

import json
import math
import os
import stat
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, CursorResult, Engine, make_url

from bruno_lab.config import mask_url
from bruno_lab.errors import BadInputError
from bruno_lab.extras import require_extra

SQLITE_BUSY_TIMEOUT_S = 30.0
_READ_ONLY_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
CONNECT_TIMEOUT_S = 10  # a PostgreSQL server that does not answer: refused after this
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


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the row a single-row INSERT wrote (SQLAlchemy types it optional)."""
    key = result.inserted_primary_key
    if key is None:
        raise AssertionError("inserted_id needs the result of a single-row INSERT")
    return int(key[0])


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


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL (None for other backends and in-memory databases)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


def sqlite_read_only(path: Path) -> bool:
    """True if the file (or its directory, where SQLite keeps its -wal/-shm files) is not
    writable, or its mode marks it read-only for its owner (also honoured when run as root)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return (
        not (mode & stat.S_IWUSR)
        or not os.access(path, os.W_OK)
        or not os.access(path.parent, os.W_OK | os.X_OK)
    )


def check_sqlite_file(url: str) -> None:
    """Refuse an existing path that is not an SQLite database (a directory, another file)
    before SQLite touches it; a missing file is the caller's business."""
    path = sqlite_file(url)
    if path is None or not path.exists():
        return
    if path.is_dir():
        raise BadInputError(f"database {path}: is a directory, not an SQLite file")
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise BadInputError(f"database {path}: cannot read it ({exc.strerror})") from None
    if head and head != b"SQLite format 3\x00":
        raise BadInputError(f"database {path}: not an SQLite database file")


def sqlite_revision_read_only(url: str) -> str | None:
    """The alembic revision of an SQLite file, read without changing it (no WAL conversion,
    no -wal file): what ``open_store`` checks before it opens the file for real."""
    import sqlite3

    path = sqlite_file(url)
    assert path is not None
    check_sqlite_file(url)
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise BadInputError(f"cannot open database {path}: {exc}") from None
    try:
        row = con.execute(
            "select name from sqlite_master where type='table' and name='alembic_version'"
        ).fetchone()
        if row is None:
            return None
        found = con.execute("select version_num from alembic_version").fetchone()
        return None if found is None else str(found[0])
    except sqlite3.DatabaseError as exc:
        raise BadInputError(f"cannot open database {path}: {exc}") from None
    finally:
        con.close()


def engine_is_read_only(engine: Engine) -> bool:
    """True for an SQLite engine opened read-only (see :func:`make_engine`)."""
    return engine in _READ_ONLY_ENGINES


def make_engine(url: str, *, foreign_keys: bool = True) -> Engine:
    """Create an engine for ``url``. ``foreign_keys=False`` is for SQLite batch migrations only.

    A read-only SQLite file is opened read-only (``mode=ro``): reads work, the first write is
    refused with a clear message. Database errors that are the user's (unreachable server,
    wrong password, read-only or foreign file, a value longer than its column) become
    ``BadInputError`` (exit 2) with the URL masked; see :func:`_map_errors`."""
    parsed = parse_url(url)
    common: dict[str, Any] = {"json_serializer": json_dumps, "future": True}
    if parsed.get_backend_name() == "sqlite":
        read_only = False
        path = sqlite_file(url)
        if path is not None:
            parent = path.parent
            if not parent.is_dir():
                raise BadInputError(
                    f"database {mask_url(url)!r}: directory {parent} does not exist"
                )
            check_sqlite_file(url)
            if path.exists() and sqlite_read_only(path):
                read_only = True
                parsed = parsed.set(database=f"file:{path}?mode=ro", query={"uri": "true"})
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, **common)
        if read_only:
            _READ_ONLY_ENGINES.add(engine)
        _tune_sqlite(engine, foreign_keys=foreign_keys, read_only=read_only)
        _map_errors(engine, url)
        _check_lengths(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
        require_extra("postgres", f"the database {mask_url(url)!r}")
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S}
    if parsed.get_backend_name() != "postgresql":
        connect_args = {}
    try:
        engine = create_engine(parsed, pool_pre_ping=True, connect_args=connect_args, **common)
    except Exception as exc:  # unknown dialect or missing driver
        raise BadInputError(f"database {mask_url(url)!r}: {_first_line(exc)}") from None
    _map_errors(engine, url)
    _check_lengths(engine)
    return engine


def _check_lengths(engine: Engine) -> None:
    """Refuse a string longer than its column before the statement runs, on every backend
    (SQLite stores any length; PostgreSQL raises StringDataRightTruncation mid-job)."""
    from sqlalchemy import String
    from sqlalchemy.sql.dml import Insert, Update

    @event.listens_for(engine, "before_execute")
    def _before(conn: Any, clause: Any, multiparams: Any, params: Any, options: Any) -> None:
        if not isinstance(clause, Insert | Update):
            return
        table = clause.table
        table_name = getattr(table, "name", table)  # a Join has none (never ours)
        rows: list[Mapping[str, Any]] = []
        for p in (multiparams, params):
            if isinstance(p, Mapping):
                rows.append(p)
            elif isinstance(p, list | tuple):
                rows.extend(r for r in p if isinstance(r, Mapping))
        values = getattr(clause, "_values", None)
        if values:
            rows.append(
                {getattr(k, "key", str(k)): getattr(v, "value", v) for k, v in values.items()}
            )
        for row in rows:
            for name, value in row.items():
                col = table.c.get(str(name)) if hasattr(table, "c") else None
                if col is None or not isinstance(value, str):
                    continue
                limit = getattr(col.type, "length", None)
                if isinstance(col.type, String) and limit and len(value) > limit:
                    raise BadInputError(
                        f"{table_name}.{col.name}: {len(value)} characters, at most {limit} "
                        f"(got {value[:40]!r}...)"
                    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _map_errors(engine: Engine, url: str) -> None:
    """Turn the database errors a user causes into ``BadInputError`` naming the database."""
    masked = mask_url(url)

    @event.listens_for(engine, "handle_error")
    def _on_error(ctx: Any) -> None:
        orig = ctx.original_exception
        message = _first_line(orig)
        low = message.lower()
        if ctx.connection is None or ctx.is_pre_ping:
            raise BadInputError(f"cannot open database {masked}: {message}") from None
        if "readonly database" in low or "read-only" in low:
            raise BadInputError(
                f"database {masked} is read-only (file or directory permissions): nothing "
                "was written; use a writable copy"
            ) from None
        if "file is not a database" in low or "unable to open database" in low:
            raise BadInputError(f"database {masked}: {message}") from None
        if "value too long" in low or "stringdatarighttruncation" in type(orig).__name__.lower():
            raise BadInputError(f"database {masked}: {message}") from None


def _tune_sqlite(engine: Engine, *, foreign_keys: bool, read_only: bool = False) -> None:
    busy_ms = int(SQLITE_BUSY_TIMEOUT_S * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # no implicit BEGIN; see _on_begin
        cur = dbapi_conn.cursor()
        if not read_only:
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
