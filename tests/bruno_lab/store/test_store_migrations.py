"""The alembic migrations and the ORM models agree (alembic check), on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from bruno_lab.store import open_store
from bruno_lab.store.models import Base
from bruno_lab.store.schema import alembic_config, head_revision


def _diff(store) -> list:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "target_metadata": Base.metadata}
        )
        return compare_metadata(ctx, Base.metadata)


def test_base_to_head_matches_the_models(db_url: str) -> None:
    store = open_store(db_url, require_head=False)
    try:
        assert store.schema_status()["current"] is None
        status = store.upgrade()
        assert status["current"] == head_revision() and status["at_head"]
        assert _diff(store) == []
        tables = set(inspect(store.engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
    finally:
        store.close()


def test_downgrade_to_base_and_back(db_url: str) -> None:
    store = open_store(db_url, require_head=False)
    try:
        store.upgrade()
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
        store.upgrade()
        assert _diff(store) == []
    finally:
        store.close()


def test_sqlite_pragmas_are_on(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'lab.db'}", require_head=False)
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    finally:
        store.close()
