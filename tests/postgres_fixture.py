"""PostgreSQL for the tests: one throw-away server per test session (per xdist worker).

``postgres_server`` (session scope) yields the admin URL of a server started from initdb in a
temp dir on 127.0.0.1 and a free port (as the ``postgres`` user when run by root), and stops it
afterwards. ``postgres_url`` (function scope) yields the URL of a FRESH database on it, so tests
never see each other's rows. Missing server binaries skip the test, except under ``CI=true``,
where they fail it.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `.venv/bin/pytest` (unlike `python -m pytest`, which `make test` runs) does not put the
# repository root on sys.path, while pytest's rootdir-relative imports put `tests/` there; then
# `tests/bruno_lab/` (no __init__.py by design) shadows the real `bruno_lab` package as a
# namespace package and `bruno_lab.store` resolves to `tests/bruno_lab/store`. Put the
# repository first, as `python -m pytest` does.
_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
for _name in [m for m in sys.modules if m == "bruno_lab" or m.startswith("bruno_lab.")]:
    if getattr(sys.modules[_name], "__file__", None) is None:  # a shadowing namespace package
        del sys.modules[_name]

from bruno_lab.store.pgtemp import (  # noqa: E402
    create_database,
    find_pg_bin,
    temporary_postgres,
)

_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    if find_pg_bin() is None:
        reason = "PostgreSQL server binaries (initdb, postgres, pg_ctl) are not installed"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must provision PostgreSQL 15", pytrace=False)
        pytest.skip(reason)
    with temporary_postgres() as admin_url:
        yield admin_url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """URL (``postgresql+psycopg://...``) of a new, empty database for this test."""
    name = f"t{os.getpid()}_{next(_counter)}"
    return create_database(postgres_server, name)
