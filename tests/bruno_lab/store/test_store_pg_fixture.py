"""The PostgreSQL fixture: fresh database per test; missing binaries skip locally, fail in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

TESTS_DIR = Path(__file__).resolve().parents[2]

CONFTEST = """
import postgres_fixture
postgres_fixture.find_pg_bin = lambda: None   # as on a machine without PostgreSQL
pytest_plugins = ["postgres_fixture"]
"""
TEST = """
def test_needs_pg(postgres_url):
    assert postgres_url
"""


def _run_without_pg(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_needs_pg.py").write_text(TEST)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), str(TESTS_DIR.parent)])
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "-n", "0",
         "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


@pytest.mark.slow
def test_missing_binaries_skip_locally_and_fail_in_ci(tmp_path: Path) -> None:
    local = _run_without_pg(tmp_path, None)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "1 skipped" in local.stdout and "not installed" in local.stdout
    ci = _run_without_pg(tmp_path, "true")
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert "CI must provision PostgreSQL" in ci.stdout


@pytest.mark.postgres
def test_each_test_gets_a_fresh_database(postgres_url: str, postgres_server: str) -> None:
    u = make_url(postgres_url)
    assert u.host == "127.0.0.1" and u.drivername == "postgresql+psycopg"
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        server_version = conn.execute("SHOW server_version_num").fetchone()[0]
        assert int(server_version) >= 150000
    assert u.database != make_url(postgres_server).database
