"""Ingest speed of the measurement store against raw sqlite3, and DataFrame load time.

Cases (each on a fresh database per repeat, median of ``--repeats`` after a warm-up):
  raw-sqlite3     one ``executemany`` of the waveform bytes into a (id, blob) table, one commit
  store-sqlite    ``Store.add_measurement`` per measurement (own transaction, sha256, metadata)
  store-postgres  the same on a throw-away PostgreSQL server (skipped if none is installed)
  frame-*         ``measurements_frame`` of a wafer holding ``--frame-rows`` measurements

Every measurement carries one float64 waveform of ``--samples`` samples. Both SQLite cases use
WAL with ``synchronous=NORMAL``. Run: ``.venv/bin/python benchmarks/store_ingest.py``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np

from bruno_lab.store import Store, open_store
from bruno_lab.store.queries import measurements_frame


def _waveforms(n_samples: int, n_distinct: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=n_samples) for _ in range(n_distinct)]


def _fresh_store(url: str) -> Store:
    store = open_store(url, require_head=False)
    store.upgrade()
    return store


def raw_sqlite(path: Path, waves: list[np.ndarray], n: int) -> float:
    """Seconds to insert ``n`` waveform blobs with one executemany and one commit."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE wave (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    rows = [(waves[i % len(waves)].tobytes(),) for i in range(n)]
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO wave (data) VALUES (?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def _catalogue(store: Store, wafer: str) -> tuple[int, int]:
    die = store.ensure_die(store.ensure_wafer(wafer), 0, 0, "D00")
    dev = store.ensure_device(die, "cap-1", "fecap", {"area_m2": 2.5e-11})
    return dev, store.create_run({"bench": True}, "bench", {}, "bench")


def store_ingest(store: Store, waves: list[np.ndarray], n: int, wafer: str) -> float:
    """Seconds for ``n`` add_measurement calls, one waveform each."""
    dev, run = _catalogue(store, wafer)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    for i in range(n):
        store.add_measurement(
            run_id=run,
            device_id=dev,
            protocol="pund",
            parameters={"amplitude_v": 3.0, "width_s": 1e-6},
            instruments={"scope": {"idn": "bench"}},
            started_at=now,
            finished_at=now,
            status="ok",
            error=None,
            scalars={"pr_c_m2": 0.2, "ec_v_m": 1e8},
            arrays={"current_a": (waves[i % len(waves)], "A")},
            key=f"m{i}",
        )
    return time.perf_counter() - t0


def frame_load(store: Store, n_rows: int, seed: int, repeats: int) -> tuple[float, float, float]:
    """Seconds to fill ``n_rows`` scalar-only measurements of one wafer, to load them into a
    DataFrame the first time (cold) and the median of ``repeats`` further loads (warm)."""
    rng = np.random.default_rng(seed)
    wafer = store.ensure_wafer("FRAME")
    devs = [
        store.ensure_device(store.ensure_die(wafer, d % 10, d // 10, f"D{d}"), "s", "fecap", {})
        for d in range(100)
    ]
    run = store.create_run({}, "bench", {}, "bench")
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    for i in range(n_rows):
        store.add_measurement(
            run_id=run,
            device_id=devs[i % len(devs)],
            protocol="pund" if i % 2 else "iv_sweep",
            parameters={"amplitude_v": 3.0},
            instruments={},
            started_at=now,
            finished_at=now,
            status="ok",
            error=None,
            scalars={"pr_c_m2": float(rng.normal()), "ec_v_m": 1e8, "leak_a": 1e-9},
            arrays={},
        )
    fill = time.perf_counter() - t0
    loads = []
    for _ in range(
        repeats + 1
    ):  # the first (cold: pandas import, statement compile) is reported apart
        t0 = time.perf_counter()
        df = measurements_frame(store, "FRAME")
        loads.append(time.perf_counter() - t0)
        assert len(df) == n_rows
    return fill, loads[0], statistics.median(loads[1:])


def _median(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    times = [fn() for _ in range(repeats)]
    return statistics.median(times), (max(times) - min(times)) / 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200], help="measurements per case")
    ap.add_argument("--samples", type=int, default=100_000, help="float64 samples per waveform")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frame-rows", type=int, default=10_000)
    ap.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL cases")
    ap.add_argument("--json", action="store_true", help="print rows as JSON")
    args = ap.parse_args(argv)

    waves = _waveforms(args.samples, 8, seed=1)
    mb_per = waves[0].nbytes / 1e6
    rows: list[dict[str, object]] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-store-")))
        backends: dict[str, Callable[[str], str]] = {
            "sqlite": lambda tag: f"sqlite:///{tmp / (tag + '.db')}"
        }
        if not args.no_postgres:
            from bruno_lab.store.pgtemp import create_database, find_pg_bin, temporary_postgres

            if find_pg_bin() is not None:
                # on disk, like the SQLite cases (tests default to /dev/shm)
                admin = stack.enter_context(temporary_postgres(base_dir=tempfile.gettempdir()))
                backends["postgres"] = lambda tag: create_database(admin, tag)
            else:
                print("PostgreSQL not installed: postgres cases skipped", file=sys.stderr)
        counter = iter(range(10**6))

        def tag() -> str:
            return f"b{next(counter)}"

        def raw(n: int) -> float:
            return raw_sqlite(tmp / f"{tag()}.raw", waves, n)

        def through(backend: str, n: int) -> float:
            store = _fresh_store(backends[backend](tag()))
            try:
                return store_ingest(store, waves, n, "W")
            finally:
                store.close()

        import pandas  # noqa: F401  (imported once per process; ~1 s, not part of a load)

        raw(5)  # warm-up
        for b in backends:
            through(b, 5)
        for n in args.sizes:
            cases = {"raw-sqlite3": lambda n=n: raw(n)}
            cases.update({f"store-{b}": (lambda n=n, b=b: through(b, n)) for b in backends})
            for name, fn in cases.items():
                med, spread = _median(fn, args.repeats)
                rows.append(
                    {
                        "case": name,
                        "n_measurements": n,
                        "median_s": med,
                        "spread_s": spread,
                        "measurements_per_s": n / med,
                        "mb_per_s": n * mb_per / med,
                    }
                )
        for b in backends:
            store = _fresh_store(backends[b](tag()))
            try:
                fill, cold, load = frame_load(store, args.frame_rows, seed=2, repeats=args.repeats)
            finally:
                store.close()
            rows.append(
                {
                    "case": f"frame-{b}",
                    "n_measurements": args.frame_rows,
                    "median_s": load,
                    "spread_s": 0.0,
                    "measurements_per_s": args.frame_rows / load,
                    "mb_per_s": None,
                    "fill_s": fill,
                    "cold_s": cold,
                }
            )

    raw_rate = {r["n_measurements"]: r["mb_per_s"] for r in rows if r["case"] == "raw-sqlite3"}
    for r in rows:
        if str(r["case"]).startswith("store-"):
            r["vs_raw"] = r["mb_per_s"] / raw_rate[r["n_measurements"]]  # type: ignore[operator]
    header = (
        f"store ingest | device cpu, float64 waveforms of {args.samples} samples "
        f"({mb_per:.2f} MB), torch {version('torch')}, sqlalchemy {version('sqlalchemy')}, "
        f"sizes {args.sizes}, repeats {args.repeats}, frame rows {args.frame_rows}"
    )
    if args.json:
        print(json.dumps({"header": header, "rows": rows}, indent=2))
        return 0
    print(header)
    print(
        f"{'case':<16}{'n':>7}{'median s':>11}{'±':>8}{'meas/s':>10}{'MB/s':>9}{'vs raw':>8}  note"
    )
    for r in rows:
        mbs = "-" if r["mb_per_s"] is None else f"{r['mb_per_s']:.0f}"
        vs = f"{r['vs_raw']:.2f}" if "vs_raw" in r else "-"
        note = (
            f"cold first load {r['cold_s']:.3f} s, fill {r['fill_s']:.1f} s"
            if "cold_s" in r
            else ""
        )
        print(
            f"{r['case']:<16}{r['n_measurements']:>7}{r['median_s']:>11.3f}{r['spread_s']:>8.3f}"
            f"{r['measurements_per_s']:>10.0f}{mbs:>9}{vs:>8}  {note}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
