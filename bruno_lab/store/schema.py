"""Alembic, driven from Python: the migration scripts ship inside the package.

No ``alembic.ini`` is needed: :func:`alembic_config` points alembic at
``bruno_lab/store/migrations`` and hands it an open connection.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from bruno_lab.errors import DataError

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic ``Config`` for the packaged migrations, bound to ``connection`` if given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the packaged migrations have no head"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_status(engine: Engine) -> dict[str, Any]:
    """``{"current": rev or None, "head": rev, "at_head": bool, "known": bool}``.

    ``known`` is False when the database carries a revision these migrations do not have
    (written by a newer bruno-lab): upgrading the database cannot help, upgrading the code can.
    """
    current = current_revision(engine)
    head = head_revision()
    known = current is None or revision_known(current)
    return {"current": current, "head": head, "at_head": current == head, "known": known}


def revision_known(revision: str) -> bool:
    """True if the packaged migrations have ``revision`` (False: a newer bruno-lab wrote it)."""
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except Exception:  # alembic raises ResolutionError/CommandError for unknown ids
        return False


def upgrade(engine: Engine, url: str, revision: str = "head") -> None:
    """Migrate the database at ``engine`` to ``revision``, in one transaction.

    On SQLite, batch migrations rebuild tables, which must not fire ON DELETE CASCADE: the
    migration runs with foreign keys off and ``PRAGMA foreign_key_check`` afterwards.
    """
    if engine.dialect.name == "sqlite":
        from bruno_lab.store.engine import make_engine

        mig_engine = make_engine(url, foreign_keys=False)
        try:
            with mig_engine.begin() as conn:
                command.upgrade(alembic_config(conn), revision)
                bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if bad:
                    raise DataError(f"migration left {len(bad)} foreign-key violations: {bad[:5]}")
        finally:
            mig_engine.dispose()
    else:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    log.info("database upgraded to %s", revision)
