"""The live view without a browser: what ``LiveState`` reads from the database, and the ASGI
app over a real uvicorn server (HTTP snapshot, server-sent events to several viewers)."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from report_helpers import synthetic_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    s = synthetic_store(f"sqlite:///{tmp_path / 'syn.db'}", protocols=("pv_loop",))
    yield s
    s.close()


def _add(store: Any, run_id: int, die: tuple[int, int], *, ok: bool = True) -> int:
    from sqlalchemy import select

    from bruno_lab.store.models import Device, Die

    with store.engine.connect() as conn:
        dev = conn.execute(
            select(Device.id)
            .join(Die, Die.id == Device.die_id)
            .where(Die.x == die[0], Die.y == die[1], Device.site == "0")
        ).scalar_one()
    t = datetime.now(UTC)
    v = np.linspace(-3, 3, 50)
    return store.add_measurement(
        run_id=run_id,
        device_id=dev,
        protocol="pv_loop",
        parameters={},
        instruments={
            "smu": {"idn": "SMU", "output_enabled": False},
            "awg": {"idn": "AWG", "output_enabled": True, "amplitude_vpp": 6.0},
        },
        started_at=t,
        finished_at=t,
        status="ok" if ok else "failed",
        error=None if ok else "device: short: 1 mA at 0.1 V",
        scalars={"pr_pos_c_m2": 0.3} if ok else {},
        arrays={"voltage_v": (v, "V"), "polarization_c_m2": (0.2 * np.tanh(v), "C/m^2")},
        key=f"{die[0]},{die[1]}/0/pv_loop/{int(t.timestamp() * 1e6)}",
    )


def test_state_reads_run_measurements_failures_bench_and_curves(store: Any) -> None:
    from reporting.live.state import LiveState

    state = LiveState(store)
    assert state.poll() and state.run["id"] == 1 and state.run["status"] == "completed"
    snap = state.snapshot()
    assert len(snap["measurements"]) == 8 and snap["progress"]["failed"] == 1
    fail = next(m for m in snap["measurements"] if m["status"] != "ok")
    assert fail["die"] == [1, 0] and fail["error"] == "device: no switching: test reason"
    assert snap["scalars"]["pv_loop:pr_pos_c_m2"]["unit"] == "µC/cm²"
    assert not state.poll()  # nothing new: no version bump
    store.set_run_status(1, "running")
    mid = _add(store, 1, (0, 0))
    assert state.poll()
    delta = state.delta(after_id=mid - 1)
    assert [m["id"] for m in delta["measurements"]] == [mid]
    assert delta["bench"]["awg"]["output"] == "on" and delta["bench"]["smu"]["output"] == "off"
    assert delta["bench"]["prober"]["die"] == "0,0"
    curve = delta["curves"]["pv_loop"]
    assert curve["measurement_id"] == mid and curve["x_label"] == "voltage (V)"
    assert curve["ys"][0]["unit"] == "µC/cm²"
    assert max(curve["ys"][0]["y"]) == pytest.approx(20.0 * np.tanh(3.0), rel=1e-3)


def test_state_follows_the_newest_run_and_survives_a_lost_database(store: Any) -> None:
    from bruno_lab.store import open_store
    from reporting.live.state import LiveState

    state = LiveState(store)
    state.poll()
    run2 = store.create_run({"name": "next", "document": {}}, "t", {}, "test")
    mid = _add(store, run2, (0, 1), ok=False)
    assert state.poll()
    snap = state.snapshot()
    assert snap["run"]["id"] == run2 and [m["id"] for m in snap["measurements"]] == [mid]
    assert snap["measurements"][0]["error"] == "device: short: 1 mA at 0.1 V"
    gone = open_store("postgresql+psycopg://u:secret@127.0.0.1:1/none", require_head=False)
    lost = LiveState(gone)
    assert lost.poll() and "database unreachable" in lost.error and "secret" not in lost.error
    gone.close()


class _Server:
    """The live app on a real uvicorn server in a thread (free loopback port)."""

    def __init__(self, store: Any, poll_s: float = 0.1) -> None:
        import uvicorn

        from reporting.live.app import create_app
        from reporting.live.server import free_port
        from reporting.live.state import LiveState

        self.port = free_port()
        self.app = app = create_app(LiveState(store), poll_s=poll_s)
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                timeout_graceful_shutdown=1,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.app.state.close_streams()
        self.server.should_exit = True
        self.thread.join(10)


def _events(port: int, out: list[dict[str, Any]], stop: threading.Event) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/api/events?after=0")
    resp = conn.getresponse()
    event, data = None, []
    while not stop.is_set():
        line = resp.readline().decode()
        if not line:
            return
        line = line.rstrip("\n")
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line.split(":", 1)[1].strip())
        elif line == "" and data:
            if event == "state":
                out.append({"t": time.time(), **json.loads("".join(data))})
            event, data = None, []
    conn.close()


def test_app_serves_snapshot_and_events_to_several_viewers(store: Any) -> None:
    with _Server(store) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        deadline = time.monotonic() + 10
        while True:
            conn.request("GET", "/api/state")
            snap = json.loads(conn.getresponse().read())
            if snap["measurements"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(snap["measurements"]) == 8
        conn.request("GET", "/")
        page = conn.getresponse().read().decode()
        assert '<script src="/static/plotly.js">' in page
        assert not re.search(r'(src|href)="(https?:)?//', page)
        conn.request("GET", "/static/plotly.js")
        js = conn.getresponse()
        assert js.status == 200 and len(js.read()) > 1_000_000
        viewers: list[list[dict[str, Any]]] = [[], [], []]
        stop = threading.Event()
        threads = [
            threading.Thread(target=_events, args=(srv.port, v, stop), daemon=True) for v in viewers
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while not all(viewers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(len(v[0]["measurements"]) == 8 and v[0]["reset"] for v in viewers)
        store.set_run_status(1, "running")
        mid = _add(store, 1, (2, 1))
        committed = time.time()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
            any(m["id"] == mid for e in v for m in e["measurements"]) for v in viewers
        ):
            time.sleep(0.02)
        stop.set()
        for v in viewers:
            event = next(e for e in v if any(m["id"] == mid for m in e["measurements"]))
            assert [m["id"] for m in event["measurements"]] == [mid]  # only what is new
            assert event["t"] - committed < 3.0


@pytest.mark.postgres
def test_live_view_of_a_run_written_by_another_process_to_postgresql(postgres_url: str) -> None:
    """Another "station" (a separate process) commits into PostgreSQL; the live view, which
    shares nothing with it but the database, sees each commit and its failure reason."""
    import subprocess
    import sys

    from reporting.live.state import LiveState

    store = synthetic_store(postgres_url, protocols=("pv_loop",))
    try:
        state = LiveState(store)
        assert state.poll() and len(state.measurements) == 8
        store.set_run_status(1, "running")
        tests = str(Path(__file__).parent)
        code = (
            f"import sys; sys.path.insert(0, {tests!r}); from bruno_lab.store import open_store;"
            f"from test_live_state import _add; s = open_store({postgres_url!r});"
            "print(_add(s, 1, (0, 2), ok=False)); s.close()"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
        )
        mid = int(out.stdout.split()[-1])
        assert state.poll()
        new = state.delta(after_id=mid - 1)["measurements"]
        assert [m["id"] for m in new] == [mid] and new[0]["error"].startswith("device: short")
        assert state.snapshot()["run"]["status"] == "running"
        # and through the served app: two viewers' event streams get the next commit of the
        # other process, with its reason, from PostgreSQL
        with _Server(store) as srv:
            viewers: list[list[dict[str, Any]]] = [[], []]
            stop = threading.Event()
            for v in viewers:
                threading.Thread(target=_events, args=(srv.port, v, stop), daemon=True).start()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not all(
                len({m["id"] for e in v for m in e["measurements"]}) == 9 for v in viewers
            ):
                time.sleep(0.05)
            assert all(len({m["id"] for e in v for m in e["measurements"]}) == 9 for v in viewers)
            out = subprocess.run(
                [sys.executable, "-c", code.replace("(0, 2)", "(1, 2)")],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
            mid2 = int(out.stdout.split()[-1])
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not all(
                any(m["id"] == mid2 for e in v for m in e["measurements"]) for v in viewers
            ):
                time.sleep(0.05)
            stop.set()
            for v in viewers:
                got = [m for e in v for m in e["measurements"] if m["id"] == mid2]
                assert got and got[0]["error"].startswith("device: short"), v[-1]
    finally:
        store.close()


def test_a_stopped_heartbeat_marks_the_run_stalled(store: Any) -> None:
    """A SIGKILLed runner leaves its run "running" with a lease heartbeat that stops: the view
    says stalled once a few heartbeats are missed, whatever the time between commits."""
    from datetime import timedelta

    from sqlalchemy import update

    from bruno_lab.store.models import Run
    from reporting.live.state import STALL_HEARTBEATS, LiveState, _heartbeat_s

    state = LiveState(store)

    def beat(age_s: float) -> dict[str, Any]:
        with store.engine.begin() as conn:
            conn.execute(
                update(Run)
                .where(Run.id == 1)
                .values(
                    status="running",
                    lease_holder="station-7:4242:abc",
                    lease_heartbeat_at=datetime.now(UTC) - timedelta(seconds=age_s),
                )
            )
        state.poll()
        return state.progress()

    fresh = beat(1.0)
    assert not fresh["stalled"] and fresh["runner"] == "station-7:4242:abc"
    assert fresh["last_commit_s_ago"] > 60  # old commits alone do not make it stalled
    late = beat(STALL_HEARTBEATS * _heartbeat_s() + 5)
    assert late["stalled"] and late["heartbeat_s_ago"] > STALL_HEARTBEATS * _heartbeat_s()
