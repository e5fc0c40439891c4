"""Update latency of the live view: from a measurement's commit to its arrival at the viewers.

A writer process (standing in for a station's runner) commits measurements into the database
at a steady pace, each with P-V-loop-sized arrays, on a 60-die, 240-device wafer map; the live
view (``reporting.live``, uvicorn on 127.0.0.1) polls that database; ``--viewers`` clients read
its server-sent events like the page does. Latency = arrival at a viewer - the measurement's
``finished_at`` (so it includes the commit itself). Prints the median, 95th percentile and
maximum per poll interval.

    .venv/bin/python benchmarks/live_latency.py [--commits 100] [--interval-s 0.2]
        [--viewers 3] [--poll-s 0.25,0.5,1.0] [--db URL | --postgres] [--json]

``--postgres`` starts a throw-away PostgreSQL server (``bruno_lab.store.pgtemp``, on disk) for
the run: the writer process and the live view then share only that server, as a station and
a viewer on another host would.
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N_DIES, SITES = 60, ((0, "fecap"), (2, "felif"), (3, "rram"), (4, "rram"))


def _dies() -> list[tuple[int, int]]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from report_build import _die_map

    return _die_map(N_DIES)


def writer(url: str, run_id: int, commits: int, interval_s: float) -> None:
    """Commit ``commits`` measurements, one every ``interval_s``, die by die."""
    from bruno_lab.store import open_store

    store = open_store(url)
    wid = store.ensure_wafer("W-live")
    v = np.concatenate([np.linspace(0, 3, 250), np.linspace(3, -3, 500), np.linspace(-3, 0, 250)])
    arrays = {
        "time_s": (np.arange(v.size) * 1e-7, "s"),
        "voltage_v": (v, "V"),
        "current_a": (1e-6 * np.gradient(np.tanh(v)), "A"),
        "polarization_c_m2": (0.2 * np.tanh(v), "C/m^2"),
    }
    n = 0
    for x, y in _dies():
        did = store.ensure_die(wid, x, y, f"{x},{y}")
        for site, kind in SITES:
            if n >= commits:
                store.close()
                return
            dev = store.ensure_device(did, str(site), kind, {"area_m2": 2.5e-11})
            t0 = time.monotonic()
            now = datetime.now(UTC)
            store.add_measurement(
                run_id=run_id,
                device_id=dev,
                protocol="pv_loop",
                parameters={},
                instruments={},
                started_at=now,
                finished_at=now,
                status="ok",
                error=None,
                scalars={"pr_pos_c_m2": 0.2 + 0.01 * np.sin(n)},
                arrays=arrays,
                key=f"{x},{y}/{site}/pv_loop/0",
            )
            n += 1
            time.sleep(max(0.0, interval_s - (time.monotonic() - t0)))
    store.close()


def _viewer(port: int, arrivals: dict[int, float], stop: threading.Event) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/api/events?after=0")
    resp = conn.getresponse()
    data: list[str] = []
    while not stop.is_set():
        line = resp.readline().decode()
        if not line:
            return
        line = line.rstrip("\n")
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            doc = json.loads("".join(data))
            now = time.time()
            for m in doc.get("measurements", []):
                arrivals.setdefault(int(m["id"]), now)
            data = []


def one(url: str, commits: int, interval_s: float, viewers: int, poll_s: float) -> dict[str, Any]:
    import uvicorn
    from sqlalchemy import select

    from bruno_lab.store import open_store
    from bruno_lab.store.models import Measurement
    from reporting.live.app import create_app
    from reporting.live.server import free_port
    from reporting.live.state import LiveState

    store = open_store(url)
    wafer_map = {
        "name": "W-live",
        "dies": [[x, y, f"{x},{y}"] for x, y in _dies()],
        "sites": [{"site": s, "kind": k} for s, k in SITES],
    }
    doc = {
        "name": f"live-bench-{poll_s}",
        "dies": "all",
        "sites": {"fecap": [0], "felif": [2], "rram": [3, 4]},
        "protocols": [{"protocol": "pv_loop", "params": {"frequencies_hz": [1e4]}}],
    }
    run_id = store.create_run(
        {"name": doc["name"], "sha256": "l" * 64, "source": "bench", "document": doc},
        "bench",
        {"wafer_map": wafer_map},
        "bench",
    )
    port = free_port()
    app = create_app(LiveState(store, run_id=run_id), poll_s=poll_s)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    stop = threading.Event()
    arrivals = [{} for _ in range(viewers)]
    vts = [threading.Thread(target=_viewer, args=(port, a, stop), daemon=True) for a in arrivals]
    for t in vts:
        t.start()
    time.sleep(1.0)
    w = subprocess.run(
        [sys.executable, __file__, "--writer", url, str(run_id), str(commits), str(interval_s)],
        check=True,
    )
    del w
    time.sleep(max(3.0, 3 * poll_s))
    stop.set()
    with store.engine.connect() as conn:
        done = {
            int(i): t.timestamp()
            for i, t in conn.execute(
                select(Measurement.id, Measurement.finished_at).where(Measurement.run_id == run_id)
            )
        }
    app.state.close_streams()
    server.should_exit = True
    th.join(10)
    store.close()
    lat = [a[i] - t for a in arrivals for i, t in done.items() if i in a]
    missing = sum(1 for a in arrivals for i in done if i not in a)
    lat.sort()
    return {
        "poll_s": poll_s,
        "viewers": viewers,
        "commits": len(done),
        "missed": missing,
        "median_s": statistics.median(lat),
        "p95_s": lat[int(0.95 * (len(lat) - 1))],
        "max_s": lat[-1],
    }


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--writer":
        writer(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=100)
    ap.add_argument("--interval-s", type=float, default=0.2)
    ap.add_argument("--viewers", type=int, default=3)
    ap.add_argument("--poll-s", default="0.25,0.5,1.0")
    ap.add_argument("--db", default=None, help="SQLAlchemy URL (default: a fresh SQLite file)")
    ap.add_argument(
        "--postgres", action="store_true", help="a throw-away PostgreSQL server as the database"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.postgres:
        from bruno_lab.store.pgtemp import create_database, temporary_postgres

        # on disk like the SQLite case (pgtemp makes its own directory the server may enter)
        with temporary_postgres(base_dir=tempfile.gettempdir()) as admin:
            args.db = create_database(admin, "live_latency")
            return _run(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from bruno_lab.store import open_store

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'live.db'}"
        s = open_store(url, require_head=False)
        s.upgrade()
        s.close()
        for p in (float(x) for x in args.poll_s.split(",")):
            rows.append(one(url, args.commits, args.interval_s, args.viewers, p))
    doc = {
        "benchmark": "live_latency",
        "python": platform.python_version(),
        "interval_s": args.interval_s,
        "database": "sqlite" if not args.db else args.db.split(":", 1)[0],
        "results": rows,
    }
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    print(f"database: {doc['database']}, a commit every {args.interval_s} s")
    print(
        f"{'poll s':>7}{'viewers':>9}{'commits':>9}{'missed':>8}{'median s':>10}{'p95 s':>8}"
        f"{'max s':>8}"
    )
    for r in rows:
        print(
            f"{r['poll_s']:>7.2f}{r['viewers']:>9}{r['commits']:>9}{r['missed']:>8}"
            f"{r['median_s']:>10.3f}{r['p95_s']:>8.3f}{r['max_s']:>8.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
