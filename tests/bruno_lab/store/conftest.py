"""Store fixtures: a migrated store on SQLite (tmp_path file) and on a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from store_helpers import migrated_store

from bruno_lab.store import Store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A database URL with no schema yet: SQLite file in tmp_path, or a fresh PostgreSQL db."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lab.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = migrated_store(db_url)
    yield s
    s.close()


@pytest.fixture
def device_id(store: Store) -> int:
    wafer = store.ensure_wafer("W01", lot="L7", diameter_m=0.2)
    die = store.ensure_die(wafer, 3, 4, "D34")
    return store.ensure_device(die, "cap-a", "fecap", {"area_m2": 2.5e-11})


@pytest.fixture
def run_id(store: Store) -> int:
    return store.create_run({"wafer": "W01"}, "ada", {"smu": "KEITHLEY 2450"}, "0.1.0")
