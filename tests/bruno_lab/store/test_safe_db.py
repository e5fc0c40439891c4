"""Database errors are the user's to fix: clear messages, exit 2, nothing modified first.

Read-only SQLite files are opened read-only (reads work, the first write is refused); an
unmigrated file is refused without being converted to WAL; a string longer than its column is
refused on SQLite as on PostgreSQL; an unreachable server is named with the password masked,
whatever characters the password holds.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from bruno_lab.config import mask_url
from bruno_lab.errors import BadInputError, SchemaError
from bruno_lab.store import open_store


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://lab:s3cr@t:/p#w?d@127.0.0.1:1/lab", "s3cr@t:/p#w?d"),
        ("postgresql+psycopg://lab:pa%40ss@db.lab:5432/x", "pa%40ss"),
        ("postgresql://lab:@@@@host/x", "@@@"),
        ("postgresql://host/x?password=hunter2&sslmode=require", "hunter2"),
    ],
)
def test_mask_url_hides_any_password(url: str, secret: str) -> None:
    masked = mask_url(url)
    assert secret not in masked and "***" in masked
    assert mask_url("sqlite:////data/a@b:c/lab.db") == "sqlite:////data/a@b:c/lab.db"


def _migrated(path: Path) -> str:
    url = f"sqlite:///{path}"
    store = open_store(url, require_head=False)
    store.upgrade()
    store.close()
    return url


def test_read_only_sqlite_reads_but_refuses_writes(tmp_path: Path) -> None:
    url = _migrated(tmp_path / "lab.db")
    before = (tmp_path / "lab.db").read_bytes()
    os.chmod(tmp_path / "lab.db", 0o444)
    try:
        store = open_store(url)
        assert store.schema_status()["at_head"]
        with pytest.raises(BadInputError, match="read-only"):
            store.create_run({"name": "x"}, "op", {}, "v")
        store.close()
    finally:
        os.chmod(tmp_path / "lab.db", 0o644)
    assert (tmp_path / "lab.db").read_bytes() == before


def test_unmigrated_file_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.execute("create table t (x)")
    con.close()
    before = path.read_bytes()
    with pytest.raises(SchemaError, match="db upgrade"):
        open_store(f"sqlite:///{path}")
    assert path.read_bytes() == before  # not converted to WAL (header bytes 18-19)
    assert not Path(f"{path}-wal").exists()
    (tmp_path / "junk.db").write_bytes(b"not a database" * 10)
    with pytest.raises(BadInputError, match="not an SQLite database"):
        open_store(f"sqlite:///{tmp_path / 'junk.db'}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return _migrated(tmp_path / "lab.db")
    pg = request.getfixturevalue("postgres_url")
    store = open_store(pg, require_head=False)
    store.upgrade()
    store.close()
    return pg


def test_values_longer_than_their_column_are_refused_on_every_backend(url: str) -> None:
    store = open_store(url)
    try:
        with pytest.raises(BadInputError, match=r"run\.operator: 1000 characters, at most 128"):
            store.create_run({"name": "x"}, "o" * 1000, {}, "v")
        with pytest.raises(BadInputError, match=r"wafer\.name"):
            store.ensure_wafer("w" * 500)
        assert store.create_run({"name": "x"}, "o" * 128, {}, "v") >= 1
    finally:
        store.close()


def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    for secret, expect in (("s3cr%40t%3A", "cannot open database"), ("s3cr@t:/p#w", "database")):
        with pytest.raises(BadInputError, match=expect) as info:
            open_store(f"postgresql+psycopg://lab:{secret}@127.0.0.1:1/lab")
        assert secret not in str(info.value) and "***" in str(info.value)
