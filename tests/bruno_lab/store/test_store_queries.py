"""DataFrames of a wafer's measurements (one select, no arrays) and Parquet export of a run."""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import event
from store_helpers import measurement_kwargs

from bruno_lab.errors import BadInputError, DataError
from bruno_lab.store import Store
from bruno_lab.store.queries import export_run_parquet, measurements_frame


@contextmanager
def count_statements(store: Store):
    seen: list[str] = []

    def _record(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE")):
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", _record)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", _record)


@pytest.fixture
def populated(store: Store) -> dict[str, int]:
    """Two wafers; W01 has two dies, fecap and rram devices, pund and iv measurements."""
    ids: dict[str, int] = {}
    w1, w2 = store.ensure_wafer("W01", lot="L7"), store.ensure_wafer("W02", lot="L7")
    run = store.create_run({"wafer": "W01"}, "ada", {"smu": "K2450"}, "0.1.0")
    ids["run"] = run
    rng = np.random.default_rng(3)
    n = 0
    for wafer in (w1, w2):
        for x in (0, 1):
            die = store.ensure_die(wafer, x, 0, f"D{x}0")
            for kind in ("fecap", "rram"):
                dev = store.ensure_device(die, f"{kind}-1", kind, {"area_m2": 1e-12})
                for protocol in ("pund", "iv_sweep"):
                    n += 1
                    arrays = {
                        "current_a": (rng.normal(size=16), "A"),
                        "time_s": (np.arange(16) * 1e-6, "s"),
                    }
                    if protocol == "iv_sweep":
                        arrays["map_v"] = (rng.normal(size=(2, 3)), "V")
                    store.add_measurement(
                        **measurement_kwargs(
                            run,
                            dev,
                            protocol=protocol,
                            scalars={"pr_c_m2": 0.01 * n, "status": 1.0},
                            arrays=arrays,
                            key=f"m{n}",
                        )
                    )
    return ids


def test_frame_is_one_select_with_scalar_columns(store: Store, populated: dict[str, int]) -> None:
    with count_statements(store) as seen:
        df = measurements_frame(store, "W01")
    assert len(seen) == 1
    assert len(df) == 8
    assert set(df["wafer"]) == {"W01"} and set(df["kind"]) == {"fecap", "rram"}
    assert df["pr_c_m2"].dtype == np.float64
    np.testing.assert_allclose(sorted(df["pr_c_m2"]), 0.01 * np.arange(1, 9))
    assert "scalar_status" in df and set(df["status"]) == {"ok"}  # name clash gets a prefix
    assert str(df["started_at"].dt.tz) == "UTC"
    row = df.iloc[0]
    values, unit = store.load_array(int(row.measurement_id), "current_a")  # arrays on demand
    assert unit == "A" and values.shape == (16,)


def test_frame_filters(store: Store, populated: dict[str, int]) -> None:
    assert len(measurements_frame(store, "W01", protocol="pund")) == 4
    assert len(measurements_frame(store, "W01", kind="rram")) == 4
    df = measurements_frame(store, "W01", protocol="iv_sweep", kind="fecap", die=(1, 0))
    assert len(df) == 1 and (df.die_x.iloc[0], df.die_label.iloc[0]) == (1, "D10")
    assert len(measurements_frame(store, "W01", die="D00")) == 4
    empty = measurements_frame(store, "W01", protocol="retention")
    assert len(empty) == 0 and "measurement_id" in empty
    with pytest.raises(DataError, match="W99"):
        measurements_frame(store, "W99")
    with pytest.raises(BadInputError, match="device kind"):
        measurements_frame(store, "W01", kind="diode")


def test_export_run_parquet_keeps_values_and_units(
    store: Store, populated: dict[str, int], tmp_path
) -> None:
    path = export_run_parquet(store, populated["run"], tmp_path / "run.parquet")
    table = pq.read_table(path)
    assert table.num_rows == 16
    assert table.schema.field("current_a").metadata == {b"unit": b"A"}
    assert table.schema.field("time_s").metadata == {b"unit": b"s"}
    meta = json.loads(table.schema.metadata[b"bruno_lab"])
    assert meta["units"] == {"current_a": "A", "map_v": "V", "time_s": "s"}
    assert meta["run"]["operator"] == "ada" and meta["run"]["plan"] == {"wafer": "W01"}
    df = table.to_pandas()
    for rec in df.itertuples():
        for name in ("current_a", "map_v"):
            stored = store.load_arrays(int(rec.measurement_id)).get(name)
            got = getattr(rec, name)
            if stored is None:
                assert got is None
                continue
            shape = tuple(getattr(rec, f"{name}__shape")) if name == "map_v" else stored[0].shape
            np.testing.assert_array_equal(np.asarray(got).reshape(shape), stored[0])
    assert json.loads(df.parameters.iloc[0]) == {"amplitude_v": 3.0, "width_s": 1e-6}
    assert not list(tmp_path.glob("*.partial"))


def test_export_unknown_run_or_bad_path(store: Store, tmp_path) -> None:
    with pytest.raises(DataError, match="run 31"):
        export_run_parquet(store, 31, tmp_path / "x.parquet")
    run = store.create_run({}, "ada", {}, "0.1.0")
    with pytest.raises(BadInputError, match="does not exist"):
        export_run_parquet(store, run, tmp_path / "nodir" / "x.parquet")
    empty = pq.read_table(export_run_parquet(store, run, tmp_path / "empty.parquet"))
    assert empty.num_rows == 0
