"""Store writes and reads on SQLite and PostgreSQL: catalogue, runs, measurements, arrays."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import func, select, update
from store_helpers import T0, measurement_kwargs

from bruno_lab.errors import BadInputError, DataError
from bruno_lab.store import Store, arrays
from bruno_lab.store import store as store_module
from bruno_lab.store.models import (
    ArrayChunk,
    Device,
    DeviceKind,
    Measurement,
    MeasurementStatus,
    RunStatus,
    StoredArray,
)


def _counts(store: Store) -> tuple[int, int, int]:
    with store.session() as s:
        return (
            s.scalar(select(func.count()).select_from(Measurement)),
            s.scalar(select(func.count()).select_from(StoredArray)),
            s.scalar(select(func.count()).select_from(ArrayChunk)),
        )


def test_ensure_is_idempotent_and_keeps_units(store: Store) -> None:
    w = store.ensure_wafer("W01", lot="L7", diameter_m=0.2)
    assert store.ensure_wafer("W01") == w
    assert store.ensure_wafer("W02") != w
    die = store.ensure_die(w, 0, 1, "D01")
    assert store.ensure_die(w, 0, 1, "D01") == die
    dev = store.ensure_device(die, "s1", DeviceKind.RRAM, {"area_m2": 1e-14})
    assert store.ensure_device(die, "s1", "rram", {"area_m2": 1e-14}) == dev
    with store.session() as s:
        row = s.get(Device, dev)
        assert row.kind is DeviceKind.RRAM and row.geometry == {"area_m2": 1e-14}


def test_bad_device_kind_names_allowed_values(store: Store) -> None:
    die = store.ensure_die(store.ensure_wafer("W01"), 0, 0, "D00")
    with pytest.raises(BadInputError, match="fecap, felif, rram"):
        store.ensure_device(die, "s1", "mosfet", {})
    store.ensure_device(die, "s1", "fecap", {})
    with pytest.raises(DataError, match="kind=fecap, not rram"):
        store.ensure_device(die, "s1", "rram", {})


def test_ensure_die_of_missing_wafer_is_a_data_error(store: Store) -> None:
    with pytest.raises(DataError):
        store.ensure_die(12345, 0, 0, "D00")


def test_run_status_terminal_stamps_finish(store: Store, run_id: int) -> None:
    run = store.get_run(run_id)
    assert run.status is RunStatus.RUNNING and run.finished_at is None
    assert run.started_at.tzinfo is not None
    store.set_run_status(run_id, "completed")
    run = store.get_run(run_id)
    assert run.status is RunStatus.COMPLETED and run.finished_at >= run.started_at
    with pytest.raises(DataError, match="999"):
        store.set_run_status(999, RunStatus.FAILED)
    with pytest.raises(BadInputError, match="run status"):
        store.set_run_status(run_id, "done")


def test_measurement_round_trip_is_bit_exact(store: Store, run_id: int, device_id: int) -> None:
    rng = np.random.default_rng(7)
    waves = {
        "current_a": (rng.normal(size=1000), "A"),
        "counts": (rng.integers(-500, 500, size=17).astype(">i2"), ""),  # big-endian in
        "mask": (rng.random(9) > 0.5, ""),
        "image_v": (rng.normal(size=(4, 5)).astype(np.float32), "V"),
        "empty_s": (np.zeros(0), "s"),
        "sliced_v": (np.arange(20.0)[::3], "V"),  # not contiguous
    }
    mid = store.add_measurement(
        **measurement_kwargs(
            run_id, device_id, scalars={"pr_c_m2": 0.21, "ec_v_m": float("nan")}, arrays=waves
        )
    )
    got = store.load_arrays(mid)
    assert set(got) == set(waves)
    for name, (values, unit) in waves.items():
        back, back_unit = got[name]
        assert back_unit == unit
        assert back.shape == values.shape
        assert back.dtype.byteorder in "<|=" and back.dtype.newbyteorder(
            "="
        ) == values.dtype.newbyteorder("=")
        np.testing.assert_array_equal(back, values)
    back, unit = store.load_array(mid, "image_v")
    assert unit == "V" and back.dtype == np.float32
    back[0, 0] = 1.0  # returned arrays are writable copies
    meas = store.get_measurement(mid)
    assert meas.scalars == {"pr_c_m2": 0.21, "ec_v_m": None}  # NaN stored as null
    assert meas.started_at == T0 and meas.status is MeasurementStatus.OK
    assert meas.instruments["awg"]["settings"]["load_ohm"] == 50.0
    assert store.array_names(mid)["current_a"] == "A"


def test_large_arrays_are_chunked(db_url: str) -> None:
    from store_helpers import migrated_store

    store = migrated_store(db_url, chunk_bytes=1000)
    try:
        dev = store.ensure_device(
            store.ensure_die(store.ensure_wafer("W01"), 0, 0, "D"), "s", "felif", {}
        )
        run = store.create_run({}, "ada", {}, "0.1.0")
        values = np.linspace(0.0, 1.0, 1001)  # 8008 bytes -> 9 chunks of <= 1000 bytes
        mid = store.add_measurement(**measurement_kwargs(run, dev, arrays={"v_v": (values, "V")}))
        with store.session() as s:
            sizes = (
                s.execute(select(func.length(ArrayChunk.data)).order_by(ArrayChunk.seq))
                .scalars()
                .all()
            )
        assert sizes == [1000] * 8 + [8]
        np.testing.assert_array_equal(store.load_array(mid, "v_v")[0], values)
    finally:
        store.close()


def test_duplicate_key_returns_existing_and_writes_nothing(
    store: Store, run_id: int, device_id: int
) -> None:
    arr = {"i_a": (np.ones(10), "A")}
    first = store.add_measurement(
        **measurement_kwargs(run_id, device_id, arrays=arr, key="d1/s1/pund")
    )
    before = _counts(store)
    again = store.add_measurement(
        **measurement_kwargs(run_id, device_id, arrays=arr, key="d1/s1/pund", scalars={"x": 1.0})
    )
    assert again == first
    assert _counts(store) == before
    other_run = store.create_run({}, "ada", {}, "0.1.0")
    assert (
        store.add_measurement(**measurement_kwargs(other_run, device_id, key="d1/s1/pund")) != first
    )
    store.add_measurement(**measurement_kwargs(run_id, device_id))  # no key: always stored
    assert store.completed_keys(run_id) == {"d1/s1/pund"}


def test_failure_inside_the_transaction_leaves_nothing(
    store: Store, run_id: int, device_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = arrays.encode_array

    def broken_second(values: np.ndarray, *, name: str, chunk_bytes: int) -> arrays.EncodedArray:
        enc = real(values, name=name, chunk_bytes=chunk_bytes)
        if name == "second":  # NULL chunk data violates NOT NULL at the very last insert
            return arrays.EncodedArray(enc.dtype, enc.shape, enc.n_bytes, enc.sha256, [None])  # type: ignore[list-item]
        return enc

    monkeypatch.setattr(store_module, "encode_array", broken_second)
    two = {"first": (np.ones(100), "A"), "second": (np.ones(100), "A")}
    with pytest.raises(DataError):
        store.add_measurement(**measurement_kwargs(run_id, device_id, arrays=two, key="k"))
    assert _counts(store) == (0, 0, 0)
    assert store.completed_keys(run_id) == set()


def test_missing_foreign_keys_are_refused(store: Store, run_id: int) -> None:
    with pytest.raises(DataError, match="device 4242"):
        store.add_measurement(**measurement_kwargs(run_id, 4242, arrays={"i_a": (np.ones(3), "A")}))
    assert _counts(store) == (0, 0, 0)


def test_bad_input_is_refused_before_writing(store: Store, run_id: int, device_id: int) -> None:
    with pytest.raises(BadInputError, match="measurement status"):
        store.add_measurement(**measurement_kwargs(run_id, device_id, status="great"))
    with pytest.raises(DataError, match="dtype"):
        store.add_measurement(
            **measurement_kwargs(
                run_id, device_id, arrays={"o": (np.array(["a"], dtype=object), "")}
            )
        )
    with pytest.raises(BadInputError):
        store.add_measurement(
            **measurement_kwargs(run_id, device_id, started_at=datetime(2026, 1, 1))  # naive
        )
    with pytest.raises(BadInputError):
        store.add_measurement(**measurement_kwargs(run_id, device_id, parameters={"x": object()}))
    assert _counts(store) == (0, 0, 0)


def test_numpy_values_in_json_fields_are_stored(store: Store, run_id: int, device_id: int) -> None:
    mid = store.add_measurement(
        **measurement_kwargs(
            run_id,
            device_id,
            parameters={"amplitude_v": np.float64(2.5), "n_cycles": np.int64(3)},
            scalars={"pr_c_m2": np.float32(0.25)},
        )
    )
    meas = store.get_measurement(mid)
    assert meas.parameters == {"amplitude_v": 2.5, "n_cycles": 3}
    assert meas.scalars == {"pr_c_m2": 0.25}


def test_corrupt_or_missing_chunks_raise_data_error(
    store: Store, run_id: int, device_id: int
) -> None:
    mid = store.add_measurement(
        **measurement_kwargs(run_id, device_id, arrays={"i_a": (np.arange(50.0), "A")})
    )
    with store.session() as s:
        aid = s.scalar(select(StoredArray.id).where(StoredArray.measurement_id == mid))
        data = bytearray(s.scalar(select(ArrayChunk.data).where(ArrayChunk.array_id == aid)))
        data[17] ^= 0x01  # one flipped bit
        s.execute(update(ArrayChunk).where(ArrayChunk.array_id == aid).values(data=bytes(data)))
    with pytest.raises(DataError, match="checksum"):
        store.load_array(mid, "i_a")
    with store.session() as s:
        s.execute(ArrayChunk.__table__.delete().where(ArrayChunk.array_id == aid))
    with pytest.raises(DataError, match="chunks"):
        store.load_arrays(mid)
    with pytest.raises(DataError, match="no array 'v_v'"):
        store.load_array(mid, "v_v")


def test_timestamps_come_back_aware_utc(store: Store, run_id: int, device_id: int) -> None:
    from datetime import timedelta, timezone

    cet = timezone(timedelta(hours=1))
    start = datetime(2026, 6, 1, 12, 0, tzinfo=cet)
    mid = store.add_measurement(
        **measurement_kwargs(run_id, device_id, started_at=start, finished_at=start)
    )
    got = store.get_measurement(mid).started_at
    assert got == start and got.utcoffset() == timedelta(0) and got.tzinfo == UTC


def test_two_writers_on_one_sqlite_file(tmp_path) -> None:
    """Two stores (as two stations would) writing the same SQLite file wait, never fail."""
    import threading

    from store_helpers import migrated_store

    url = f"sqlite:///{tmp_path / 'lab.db'}"
    stores = [migrated_store(url), migrated_store(url)]
    dev = stores[0].ensure_device(
        stores[0].ensure_die(stores[0].ensure_wafer("W"), 0, 0, "D"), "s", "rram", {}
    )
    run = stores[0].create_run({}, "ada", {}, "0.1.0")
    errors: list[BaseException] = []

    def write(store: Store, who: int) -> None:
        try:
            for i in range(15):
                store.add_measurement(
                    **measurement_kwargs(
                        run, dev, key=f"{who}/{i}", arrays={"g_siemens": (np.full(5000, i), "S")}
                    )
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, k)) for k, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(stores[1].completed_keys(run)) == 30
    for s in stores:
        s.close()
