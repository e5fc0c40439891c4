"""One writer per run and one process per bench, on SQLite and a real PostgreSQL.

Two processes running the same plan: the second is refused (exit 2, naming the holder) and the
first stores every planned measurement exactly once. Two processes on the same station: the
second is refused before any command reaches the simulated instruments. A SIGKILLed holder's
run is taken over by the next run of the plan, with a log line, and finished without a
duplicate. The lease rules themselves (free, mine, live, dead, stale) are tested in-process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bruno_lab.store import open_store
from bruno_lab.store.models import Measurement, Run, utcnow
from protocols import lease

REPO = Path(__file__).resolve().parents[2]


def _spawn(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "bruno_lab.cli_entry", *args], cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bruno_lab.cli_entry", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _runs(url: str) -> list[tuple[int, str, str | None, int]]:
    """(id, status, lease holder, measurements) of every run."""
    store = open_store(url)
    try:
        with store.session() as s:
            rows = s.execute(select(Run.id, Run.status, Run.lease_holder).order_by(Run.id)).all()
            counts = {
                int(r): int(n)
                for r, n in s.execute(
                    select(Measurement.run_id, func.count()).group_by(Measurement.run_id)
                )
            }
        return [(int(i), str(getattr(st, "value", st)), h, counts.get(i, 0)) for i, st, h in rows]
    finally:
        store.close()


def _wait_for_measurements(url: str, n: int, proc: subprocess.Popen[str], limit_s: float = 120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        runs = _runs(url)
        if runs and runs[-1][3] >= n and runs[-1][2]:
            return runs[-1]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the first run stored no measurement in time")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lab.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = open_store(url, require_head=False)
    store.upgrade()
    store.close()
    return url


def _plan(write_plan: Any, quick_plan_factory: Any, name: str = "lease") -> Path:
    plan = quick_plan_factory(name)
    plan["protocols"][0]["params"]["step_v"] = "50 mV"  # ~1 s per die on the sim
    return write_plan(plan, f"{name}.yaml")


# -- the lease rules, in-process ----------------------------------------------------------


def _new_run(url: str) -> int:
    store = open_store(url)
    try:
        return store.create_run({"name": "x", "sha256": "0" * 64}, "op", {}, "test")
    finally:
        store.close()


def _set(store: Any, run_id: int, **values: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(**values))


def test_lease_free_mine_live_dead_and_stale(any_db: str, caplog: pytest.LogCaptureFixture):
    run_id = _new_run(any_db)
    store = open_store(any_db)
    try:
        me = lease.holder_id()
        lease.acquire(store, run_id, me)
        lease.acquire(store, run_id, me)  # re-entrant for the holder
        live = f"{socket.gethostname()}:{os.getppid()}:other"  # a live process of this host
        with pytest.raises(lease.RunLeased, match=rf"run {run_id} is being written by .*{me}"):
            lease.acquire(store, run_id, live)
        # a holder process that does not exist any more: taken over at once, with a log line
        dead = f"{socket.gethostname()}:999999999:dead"
        _set(store, run_id, lease_holder=dead, lease_heartbeat_at=utcnow())
        with caplog.at_level(logging.WARNING, logger="protocols.lease"):
            lease.acquire(store, run_id, me)
        assert "took over the stale lease of" in caplog.text and "process is gone" in caplog.text
        # another host's holder: live while it heartbeats, stale after STALE_AFTER_S
        _set(store, run_id, lease_holder="elsewhere:1:x", lease_heartbeat_at=utcnow())
        with pytest.raises(lease.RunLeased, match="elsewhere:1:x"):
            lease.acquire(store, run_id, me)
        old = utcnow() - timedelta(seconds=lease.STALE_AFTER_S + 5)
        _set(store, run_id, lease_heartbeat_at=old)
        lease.acquire(store, run_id, me)
        assert lease.lease_info(store, run_id)[0] == me
        lease.release(store, run_id, me)
        assert lease.lease_info(store, run_id) == (None, None)
    finally:
        store.close()


def test_a_lost_lease_stops_writes(any_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = _new_run(any_db)
    store = open_store(any_db)
    monkeypatch.setattr(lease, "HEARTBEAT_S", 0.05)
    try:
        held = lease.Lease(store, run_id, lease.holder_id())
        lease.acquire(store, run_id, held.holder)
        held.start()
        with store.engine.begin() as conn:  # another process takes the run over
            conn.execute(update(Run).where(Run.id == run_id).values(lease_holder="thief:1:x"))
        deadline = time.monotonic() + 10
        while not held.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        guarded = lease.LeasedStore(store, held)
        with pytest.raises(lease.LeaseLost, match="took the run over"):
            guarded.add_measurement()
        guarded.set_run_status(run_id, "failed")  # not written: the run is not ours
        assert _runs(any_db)[0][1] == "running"
        held.close()
        assert lease.lease_info(store, run_id)[0] == "thief:1:x"  # not released: not ours
    finally:
        store.close()


# -- processes ----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_runs_of_one_plan_second_refused_nothing_lost(
    any_db, sim_lab_factory, truth_factory, quick_plan_factory, write_plan, tmp_path
) -> None:
    lab = sim_lab_factory(truth=truth_factory(), seed=31)
    station = lab.write_station(tmp_path / "station.yaml")
    plan = _plan(write_plan, quick_plan_factory)
    argv = ["run", str(plan), "--station", str(station), "--db", any_db, "--no-progress"]
    first = _spawn(*argv, "--json", cwd=tmp_path)
    _wait_for_measurements(any_db, 1, first)
    second = _cli(*argv, cwd=tmp_path)
    out, err = first.communicate(timeout=600)
    assert second.returncode == 2, second.stderr
    assert "Traceback" not in second.stderr
    # refused by the bench lock or the run lease, whichever it reached first: both name the pid
    assert f"pid {first.pid}" in second.stderr or f":{first.pid}:" in second.stderr
    assert first.returncode == 0, err
    doc = json.loads(out)
    runs = _runs(any_db)
    assert len(runs) == 1 and runs[0][1] == "completed" and runs[0][2] is None
    assert runs[0][3] == doc["planned"] == doc["done"]


@pytest.mark.slow
def test_same_plan_on_two_benches_second_refused_by_the_lease(
    any_db, sim_lab_factory, truth_factory, quick_plan_factory, write_plan, tmp_path
) -> None:
    """Two benches (two sims), one plan, one database: the run lease alone refuses the second."""
    labs = [sim_lab_factory(truth=truth_factory(), seed=31) for _ in range(2)]
    stations = [lab.write_station(tmp_path / f"station{i}.yaml") for i, lab in enumerate(labs)]
    plan = _plan(write_plan, quick_plan_factory)
    first = _spawn("run", str(plan), "--station", str(stations[0]), "--db", any_db,
                   "--no-progress", cwd=tmp_path)  # fmt: skip
    run_id = _wait_for_measurements(any_db, 1, first)[0]
    labs[1].clear_records()
    second = _cli("run", str(plan), "--station", str(stations[1]), "--db", any_db, cwd=tmp_path)
    first.communicate(timeout=600)
    assert second.returncode == 2, second.stderr
    assert (
        f"run {run_id} is being written by" in second.stderr and f":{first.pid}:" in second.stderr
    )
    assert not any(labs[1].records(r) for r in ("smu", "awg", "scope", "prober", "clock"))
    runs = _runs(any_db)
    assert len(runs) == 1 and runs[0][1] == "completed"


@pytest.mark.slow
def test_same_station_second_process_refused_before_any_instrument_traffic(
    sim_lab_factory, truth_factory, quick_plan_factory, write_plan, db_url, tmp_path
) -> None:
    lab = sim_lab_factory(truth=truth_factory(), seed=32)
    station = lab.write_station(tmp_path / "station.yaml")
    first = _spawn("run", str(_plan(write_plan, quick_plan_factory, "first")), "--station",
                   str(station), "--db", db_url, "--no-progress", cwd=tmp_path)  # fmt: skip
    _wait_for_measurements(db_url, 1, first)
    os.killpg(first.pid, signal.SIGSTOP)  # the first sends nothing while the second tries
    try:
        time.sleep(1.0)
        lab.clear_records()
        other_db = f"sqlite:///{tmp_path / 'other.db'}"
        store = open_store(other_db, require_head=False)
        store.upgrade()
        store.close()
        second = _cli("run", str(_plan(write_plan, quick_plan_factory, "second")), "--station",
                      str(station), "--db", other_db, cwd=tmp_path)  # fmt: skip
        traffic = [(r, rec.text) for r in ("smu", "awg", "scope", "prober", "clock")
                   for rec in lab.records(r)]  # fmt: skip
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    first.communicate(timeout=600)
    assert second.returncode == 2, second.stderr
    assert "is in use by pid" in second.stderr and str(first.pid) in second.stderr
    assert traffic == []
    assert _runs(other_db) == []  # refused before the run row was written
    assert first.returncode == 0


@pytest.mark.slow
def test_a_killed_holders_run_is_taken_over_and_finished_once(
    any_db, sim_lab_factory, truth_factory, quick_plan_factory, write_plan, tmp_path
) -> None:
    lab = sim_lab_factory(truth=truth_factory(), seed=33)
    station = lab.write_station(tmp_path / "station.yaml")
    plan = _plan(write_plan, quick_plan_factory)
    argv = ["run", str(plan), "--station", str(station), "--db", any_db, "--no-progress"]
    first = _spawn(*argv, cwd=tmp_path)
    run_id, _, holder, _ = _wait_for_measurements(any_db, 2, first)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    assert holder is not None and f":{first.pid}:" in holder
    rerun = _cli(*argv, "--json", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"took over the stale lease of {holder}" in rerun.stderr
    doc = json.loads(rerun.stdout)
    assert doc["run_id"] == run_id and doc["resumed"] is True
    runs = _runs(any_db)
    assert len(runs) == 1 and runs[0][1] == "completed" and runs[0][3] == doc["planned"]
