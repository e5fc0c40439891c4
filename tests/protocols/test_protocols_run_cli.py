"""``bruno-lab run`` as a user runs it: exit codes, JSON, dry run, bad plans, signals, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from bruno_lab.store import open_store
from bruno_lab.store.models import Measurement, Run

BRUNO_LAB = str(Path(sys.executable).with_name("bruno-lab"))


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BRUNO_LAB, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _counts(db_url: str) -> tuple[int, int, int]:
    """(runs, measurements, distinct (run, key))."""
    store = open_store(db_url)
    try:
        with store.session() as s:
            runs = s.execute(select(func.count()).select_from(Run)).scalar()
            rows = s.execute(select(Measurement.run_id, Measurement.key)).all()
        return int(runs or 0), len(rows), len(set(rows))
    finally:
        store.close()


def _run_statuses(db_url: str) -> list[str]:
    store = open_store(db_url)
    try:
        with store.session() as s:
            return [str(getattr(st, "value", st)) for st in s.scalars(select(Run.status))]
    finally:
        store.close()


def test_dry_run_prints_schedule_and_touches_nothing(
    sim_lab_factory, truth_factory, quick_plan_factory, write_plan, db_url, tmp_path
) -> None:
    lab = sim_lab_factory(truth=truth_factory(), seed=21)
    station = lab.write_station(tmp_path / "station.yaml")
    lab.clear_records()
    plan = write_plan(quick_plan_factory())
    result = _cli(
        "run", str(plan), "--station", str(station), "--db", db_url, "--dry-run", "--json"
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    n_dies = len(lab.wafer.dies)
    assert doc["n_dies"] == n_dies and doc["n_measurements"] == 2 * n_dies
    assert doc["schedule"][0]["key"] == f"{doc['schedule'][0]['die']}/2/rram_forming/0"
    assert doc["estimated_duration_s"] > 0
    human = _cli("run", str(plan), "--station", str(station), "--dry-run")
    assert (
        human.returncode == 0 and "estimated" in human.stderr and "/rram_forming/0" in human.stderr
    )
    assert all(not lab.records(role) for role in ("smu", "awg", "scope", "prober"))
    assert _counts(db_url) == (0, 0, 0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["protocols"][0]["params"].update(max_v="3 A"), "max_v"),
        (lambda p: p["protocols"][1]["params"].update(set_amplitudes_v=["9 V"]), "max_voltage_v"),
        (lambda p: p["protocols"][0].update(protocol="pundit"), "unknown protocol"),
        (lambda p: p.update(dies=[[0, 0], [42, 42]]), "no such die"),
        (None, "malformed YAML"),
    ],
)
def test_bad_plans_exit_2_and_write_nothing(
    edit, message, sim_lab_factory, truth_factory, quick_plan_factory, write_plan, db_url, tmp_path
) -> None:
    lab = sim_lab_factory(truth=truth_factory(), seed=22)
    station = lab.write_station(tmp_path / "station.yaml")
    lab.clear_records()
    plan = quick_plan_factory()
    if edit is None:
        path = tmp_path / "broken.yaml"
        path.write_text("name: x\nprotocols: [ {protocol: pund\n")
    else:
        edit(plan)
        path = write_plan(plan)
    result = _cli("run", str(path), "--station", str(station), "--db", db_url, "--json")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and path.name in result.stderr
    assert result.stdout == ""
    assert _counts(db_url) == (0, 0, 0)
    assert all(not lab.records(role) for role in ("smu", "awg", "scope", "prober"))


def _start_run(plan: Path, station: Path, db_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [BRUNO_LAB, "run", str(plan), "--station", str(station), "--db", db_url, "--json",
         "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for_measurements(
    db_url: str, n: int, proc: subprocess.Popen[str], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _counts(db_url)[1] >= n or proc.poll() is not None:
            return
        time.sleep(0.05)
    raise AssertionError("the run made no progress")


@pytest.mark.slow
def test_sigterm_leaves_bench_safe_and_run_interrupted(
    sim_lab_factory, truth_factory, quick_plan_factory, write_plan, db_url, tmp_path
) -> None:
    """SIGTERM (what Ctrl-C's SIGINT also does): the measurement in progress completes, then
    the bench is safe, the run is marked interrupted, exit 130; a rerun completes it."""
    sig = signal.SIGTERM
    lab = sim_lab_factory(truth=truth_factory(), seed=23)
    station = lab.write_station(tmp_path / "station.yaml")
    plan = write_plan(quick_plan_factory(dies=[[1, 0], [0, 1]]))
    proc = _start_run(plan, station, db_url)
    _wait_for_measurements(db_url, 1, proc, 120)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert doc["status"] == "interrupted" and 1 <= doc["done"] < doc["planned"]
    smu, awg, prober = (lab.servers[r].state for r in ("smu", "awg", "prober"))
    assert not smu.output_on and not awg.output_on and not prober.contact
    runs, n, distinct = _counts(db_url)
    assert runs == 1 and n == distinct == doc["done"]
    store = open_store(db_url)
    with store.session() as s:
        assert s.get(Run, doc["run_id"]).status.value == "aborted"
    store.close()
    # a plain rerun continues the same run and completes it
    again = _cli("run", str(plan), "--station", str(station), "--db", db_url, "--json")
    assert again.returncode == 0, again.stderr
    final = json.loads(again.stdout)
    assert final["run_id"] == doc["run_id"] and final["resumed"]
    assert final["skipped"] == doc["done"] and final["done"] == final["planned"]


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_loses_and_duplicates_nothing(
    sim_lab_factory, truth_factory, quick_plan_factory, write_plan, tmp_path
) -> None:
    """Several trials: SIGKILL the runner at a random point (after a random number of commits
    plus a random delay, so mid-measurement or mid-commit), then a plain rerun resumes; every
    planned measurement is in the database exactly once, in one run."""
    rng = np.random.default_rng(20261124)
    lab = sim_lab_factory(truth=truth_factory(), seed=24)
    station = lab.write_station(tmp_path / "station.yaml")
    plan = write_plan(quick_plan_factory(dies=[[1, 0], [0, 1], [1, 1]]))
    planned = 6
    finished_before_kill = 0
    for trial in range(3):
        url = f"sqlite:///{tmp_path / f'trial{trial}.db'}"
        store = open_store(url, require_head=False)
        store.upgrade()
        store.close()
        after = int(rng.integers(0, planned - 1))
        proc = _start_run(plan, station, url)
        _wait_for_measurements(url, after, proc, 120)
        time.sleep(float(rng.uniform(0.0, 0.3)))
        killed = proc.poll() is None
        if killed:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        before = _counts(url)
        if before[1] == planned and _run_statuses(url) == ["completed"]:
            finished_before_kill += 1  # the kill came after the run had completed: no resume
            continue
        again = _cli("run", str(plan), "--station", str(station), "--db", url, "--json")
        assert again.returncode == 0, again.stderr
        doc = json.loads(again.stdout)
        assert doc["status"] == "completed" and doc["planned"] == planned
        if killed and before[0] > 0:
            assert doc["resumed"] and doc["skipped"] == before[1], (trial, before, doc)
        elif killed:  # killed while starting up, before its run row existed: a fresh run
            assert not doc["resumed"] and doc["skipped"] == 0
        runs, n, distinct = _counts(url)
        assert runs == 1, f"trial {trial}: a resumed run must reuse the interrupted run"
        assert n == distinct == planned, (trial, after, before, n, distinct)
    assert finished_before_kill < 3, "no trial killed a run before it completed"
