"""The measurement database: SQLAlchemy 2 models, array storage, migrations, queries.

    from bruno_lab.store import open_store
    store = open_store("sqlite:////data/lab.db")      # SchemaError unless migrated to head
    wafer_id = store.ensure_wafer("W01", lot="L7")

``open_store`` is the one entry point; commands use :func:`open_store_for_cli`, which also
resolves ``--db`` / ``BRUNO_LAB_DB`` / the per-user default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bruno_lab.errors import BadInputError, SchemaError

if TYPE_CHECKING:
    from bruno_lab.store.store import Store

__all__ = ["Store", "open_store", "open_store_for_cli"]


def open_store(
    url: str | None = None, *, require_head: bool = True, chunk_bytes: int | None = None
) -> Store:
    """Open the database at ``url`` (resolved like ``--db`` when None).

    With ``require_head`` (the default) a schema that is not at the migrations' head raises
    ``SchemaError`` naming the command to run. A database that cannot be reached raises
    ``BadInputError``; messages never contain the password.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from bruno_lab.config import mask_url, resolve_db_url
    from bruno_lab.store.arrays import DEFAULT_CHUNK_BYTES
    from bruno_lab.store.engine import make_engine, missing_sqlite_file
    from bruno_lab.store.store import Store

    resolved = resolve_db_url(url)
    if require_head and missing_sqlite_file(resolved) is not None:
        raise SchemaError(
            f"database {mask_url(resolved)} does not exist: create it with "
            f"`bruno-lab db upgrade --db '{mask_url(resolved)}'`"
        )
    if require_head:  # an SQLite file not at head is refused before it is opened for writing
        _refuse_sqlite_not_at_head(resolved)
    engine = make_engine(resolved)
    store = Store(engine, resolved, chunk_bytes=chunk_bytes or DEFAULT_CHUNK_BYTES)
    if not require_head:
        return store
    try:
        status = store.schema_status()
    except SQLAlchemyError as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise BadInputError(f"cannot open database {mask_url(resolved)}: {reason}") from None
    if not status["known"]:
        engine.dispose()
        raise SchemaError(
            f"database {status['url']} is at schema {status['current']}, unknown to this "
            f"bruno-lab (head {status['head']}): it was migrated by a newer bruno-lab; "
            "upgrade bruno-lab instead"
        )
    if not status["at_head"]:
        engine.dispose()
        have = status["current"] or "empty (no schema)"
        raise SchemaError(
            f"database {status['url']} is at schema {have}, this bruno-lab needs "
            f"{status['head']}: run `bruno-lab db upgrade --db '{status['url']}'`"
            + (" (with the real password)" if "***" in status["url"] else "")
        )
    return store


def _refuse_sqlite_not_at_head(url: str) -> None:
    """Read an SQLite file's revision without changing it (no WAL conversion of a file this
    bruno-lab will refuse anyway); raise the same ``SchemaError`` as :func:`open_store`."""
    from bruno_lab.config import mask_url
    from bruno_lab.store.engine import sqlite_file, sqlite_revision_read_only
    from bruno_lab.store.schema import head_revision, revision_known

    path = sqlite_file(url)
    if path is None or not path.exists():
        return
    current, head = sqlite_revision_read_only(url), head_revision()
    if current == head:
        return
    if current is not None and not revision_known(current):
        raise SchemaError(
            f"database {mask_url(url)} is at schema {current}, unknown to this bruno-lab "
            f"(head {head}): it was migrated by a newer bruno-lab; upgrade bruno-lab instead"
        )
    raise SchemaError(
        f"database {mask_url(url)} is at schema {current or 'empty (no schema)'}, this "
        f"bruno-lab needs {head}: run `bruno-lab db upgrade --db '{mask_url(url)}'`"
    )


def open_store_for_cli(db: str | None) -> Store:
    """The store a command should use: ``--db`` > ``$BRUNO_LAB_DB`` > default; must be at head."""
    return open_store(db, require_head=True)


def __getattr__(name: str) -> object:
    # `from bruno_lab.store import Store` without importing SQLAlchemy at package import.
    if name == "Store":
        from bruno_lab.store.store import Store

        return Store
    raise AttributeError(name)
