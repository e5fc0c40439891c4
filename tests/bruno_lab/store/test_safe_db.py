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
from typing import Any

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
    # a password with plain '@': its tail used to become the host name in the resolver's error
    with pytest.raises(BadInputError, match="cannot open database") as info:
        open_store("postgresql://lab:a@b@c@127.0.0.1:1/lab")
    assert "b@c" not in str(info.value) and "127.0.0.1" in str(info.value)


# -- PostgreSQL with password authentication ----------------------------------------------

PASSWORD = "p@ss:w/rd@x#?%"  # every character a URL parser splits at, typed unencoded


def _password_role(admin_url: str, db_url: str, role: str, password: str) -> None:
    """A login role with ``password`` that owns the database of ``db_url``, authenticated by
    scram-sha-256 (the throw-away server trusts everyone else: a wrong password would pass)."""
    import time

    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    with psycopg.connect(
        host=admin.host, port=admin.port, user=admin.username, dbname=admin.database,
        autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(password)
            )
        )
        conn.execute(
            psycopg.sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                psycopg.sql.Identifier(make_url(db_url).database), psycopg.sql.Identifier(role)
            )
        )
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
        rule = f"host all {role} 127.0.0.1/32 scram-sha-256\n"
        hba.write_text(rule + hba.read_text())  # first matching line wins
        conn.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the reload is asynchronous: wait until it bites
        try:
            psycopg.connect(
                host=admin.host, port=admin.port, user=role, dbname="postgres", connect_timeout=2
            ).close()
        except psycopg.OperationalError:
            return
        time.sleep(0.1)
    raise AssertionError("pg_hba.conf reload did not take effect")


@pytest.fixture
def pg_password_db(postgres_server: str, postgres_url: str) -> tuple[str, str]:
    """(URL with the password typed unencoded, the same with a wrong password)."""
    from sqlalchemy.engine import make_url

    role = f"pw_{make_url(postgres_url).database}"
    _password_role(postgres_server, postgres_url, role, PASSWORD)
    u = make_url(postgres_url)
    base = f"postgresql+psycopg://{role}:{{pw}}@{u.host}:{u.port}/{u.database}"
    return base.format(pw=PASSWORD), base.format(pw="wr@ng:pw")


def _cli(*args: str, cwd: Path) -> Any:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(repo), "XDG_DATA_HOME": str(cwd / "xdg")}
    return subprocess.run(
        [sys.executable, "-m", "bruno_lab.cli_entry", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.postgres
def test_password_with_any_characters_connects_and_a_wrong_one_is_exit_2_masked(
    pg_password_db: tuple[str, str], tmp_path: Path
) -> None:
    good, wrong = pg_password_db
    for args in (["db", "upgrade"], ["db", "status"]):
        res = _cli(*args, "--db", wrong, cwd=tmp_path)
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr and "password authentication failed" in res.stderr
        out = res.stdout + res.stderr
        assert "wr@ng" not in out and "ng:pw" not in out and "***" in out
    up = _cli("db", "upgrade", "--db", good, cwd=tmp_path)  # the unencoded password works
    assert up.returncode == 0, up.stderr
    status = _cli("db", "status", "--db", good, "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    out = up.stdout + up.stderr + status.stdout + status.stderr
    assert all(part not in out for part in ("p@ss", "rd@x", "w/rd", "#?%")), out
    assert not list(tmp_path.rglob("*.db"))  # nothing written beside, no default database
