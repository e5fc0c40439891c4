"""Runs by purpose, wafer listing, long-format frames, and the 0001 -> 0002 upgrade of old data."""

from __future__ import annotations

import json

import pytest
from alembic import command
from store_helpers import measurement_kwargs
from store_helpers import migrated_store as _migrated

from bruno_lab.errors import BadInputError
from bruno_lab.store import Store, open_store
from bruno_lab.store.queries import measurements_frame, measurements_long
from bruno_lab.store.schema import alembic_config


@pytest.fixture
def two_purposes(store: Store) -> dict[str, int]:
    """W01 with one characterization run (2 devices) and one deployment run (1 device)."""
    wafer = store.ensure_wafer("W01", lot="L7", diameter_m=0.1)
    die = store.ensure_die(wafer, 1, 2, "D12")
    a = store.ensure_device(die, "rram-1", "rram", {})
    b = store.ensure_device(die, "rram-2", "rram", {})
    char = store.create_run({"name": "char"}, "ada", {}, "0", purpose="characterization")
    dep = store.create_run({"name": "deploy"}, "ada", {}, "0", purpose="deployment")
    for i, dev in enumerate((a, b)):
        store.add_measurement(
            **measurement_kwargs(char, dev, key=f"c{i}", scalars={"g_s": 1e-5, "v_v": 0.2})
        )
    store.add_measurement(**measurement_kwargs(dep, a, key="d0", scalars={"g_s": 9e-5}))
    store.add_measurement(
        **measurement_kwargs(dep, b, key="d1", status="failed", error="boom", scalars={})
    )
    store.ensure_wafer("W02")
    return {"char": char, "deploy": dep}


def test_runs_are_listed_by_purpose_and_wafer(store: Store, two_purposes: dict[str, int]) -> None:
    runs = store.list_runs()
    assert [(r.run_id, r.purpose, r.n_measurements) for r in runs] == [
        (two_purposes["char"], "characterization", 2),
        (two_purposes["deploy"], "deployment", 2),
    ]
    assert [r.plan_name for r in store.list_runs(purpose="deployment")] == ["deploy"]
    assert len(store.list_runs(wafer="W01")) == 2
    assert store.list_runs(wafer="W02") == []
    with pytest.raises(BadInputError, match="run purpose"):
        store.list_runs(purpose="fun")


def test_wafers_are_listed_with_counts(store: Store, two_purposes: dict[str, int]) -> None:
    wafers = {w.name: w for w in store.list_wafers()}
    assert set(wafers) == {"W01", "W02"}
    assert (wafers["W01"].n_dies, wafers["W01"].n_devices, wafers["W01"].n_measurements) == (
        1,
        2,
        4,
    )
    assert wafers["W01"].lot == "L7" and wafers["W01"].diameter_m == pytest.approx(0.1)
    assert (wafers["W02"].n_dies, wafers["W02"].n_measurements) == (0, 0)


def test_frames_select_by_purpose(store: Store, two_purposes: dict[str, int]) -> None:
    every = measurements_frame(store, "W01")
    assert sorted(every["purpose"]) == ["characterization"] * 2 + ["deployment"] * 2
    char = measurements_frame(store, "W01", purpose="characterization")
    assert set(char["run_id"]) == {two_purposes["char"]}
    both = measurements_frame(store, "W01", purpose=["characterization", "deployment"])
    assert len(both) == 4


def test_long_frame_has_one_row_per_scalar_and_keeps_bare_measurements(
    store: Store, two_purposes: dict[str, int]
) -> None:
    wide = measurements_frame(store, "W01")
    long = measurements_long(store, "W01")
    # every non-missing scalar of the wide frame is one row, plus one row for the bare failure
    n_values = int(wide[["g_s", "v_v"]].notna().sum().sum())
    assert len(long) == n_values + 1
    bare = long[long["quantity"].isna()]
    assert len(bare) == 1 and bare["error"].iloc[0] == "boom"
    g = long[(long["quantity"] == "g_s") & (long["purpose"] == "deployment")]
    assert g["value"].tolist() == [pytest.approx(9e-5)]
    assert set(long.columns) >= {"measurement_id", "die_label", "quantity", "value"}


def test_upgrade_from_0001_gives_old_runs_a_purpose(tmp_path) -> None:
    """A database written before runs had a purpose: a deployment run (its plan document has a
    ``deployment`` section, as protocols.deployment writes it) becomes ``deployment``."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    fresh = open_store(url, require_head=False)
    with fresh.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
        for i, doc in enumerate(({"name": "char"}, {"name": "dep", "deployment": {"wafer": "w"}})):
            conn.exec_driver_sql(
                "INSERT INTO run (id, plan, operator, station, software_version, status, "
                "started_at) VALUES (?, ?, 'ada', '{}', '0', 'completed', "
                "'2026-01-01 00:00:00.000000')",
                (i + 1, json.dumps({"name": doc["name"], "document": doc})),
            )
    fresh.upgrade()
    fresh.close()
    store = _migrated(url)
    try:
        assert [(r.run_id, r.purpose) for r in store.list_runs()] == [
            (1, "characterization"),
            (2, "deployment"),
        ]
    finally:
        store.close()
