"""The array protocols through the orchestrator on the simulated lab: one stored measurement
per row with per-cell arrays, a health map that finds the truth's bad cells, and a run that
resumes at the first row not stored after an interruption (no row measured twice)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from bruno_lab.errors import EnvelopeError, PlanError

EXAMPLES = Path(__file__).resolve().parents[2] / "protocols" / "examples"
DIE, SITE = (1, 1), 4


def _truth(rows: int) -> dict[str, Any]:
    from bruno_lab.yamlio import load_yaml_file

    doc = copy.deepcopy(load_yaml_file(EXAMPLES / "array_truth.yaml", "truth").data)
    doc["sites"][SITE]["array"].update(rows=rows, stuck_lrs_rate=0.02, stuck_hrs_rate=0.02)
    return doc


def _plan(tmp_path: Path, n_rows: int, steps: list[str] | None = None) -> Path:
    plan = yaml.safe_load((EXAMPLES / "array_plan.yaml").read_text())
    kept = []
    for step in plan["protocols"]:
        if steps is not None and step["protocol"] not in steps:
            continue
        params = step.setdefault("params", {})
        if "rows" in params:
            params["rows"] = [r for r in params["rows"] if r < n_rows] or [0]
        else:
            params["n_rows"] = n_rows
        if step["protocol"] == "array_retention":
            params["times_s"] = ["1 s", "100 s"]
        kept.append(step)
    plan["protocols"] = kept
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def _run(lab: Any, tmp_path: Path, plan: Path, store: Any, **kwargs: Any) -> Any:
    from protocols.prepare import execute_run, prepare_run

    prepared = prepare_run(plan, lab.write_station(tmp_path / "station.yaml"))
    return execute_run(prepared, store, operator="test", **kwargs)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    from bruno_lab.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'lab.db'}", require_head=False)
    store.upgrade()
    yield store
    store.close()


def _rows(store: Any, protocol: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from bruno_lab.store.models import Measurement

    with store.session() as s:
        found = s.execute(
            select(Measurement.id, Measurement.key, Measurement.parameters, Measurement.scalars)
            .where(Measurement.protocol == protocol)
            .order_by(Measurement.id)
        ).all()
    return [dict(id=r.id, key=r.key, parameters=r.parameters, scalars=r.scalars) for r in found]


def test_every_protocol_stores_one_measurement_per_row(
    sim_lab_factory: Any, tmp_path: Path, store: Any
) -> None:
    lab = sim_lab_factory(truth=_truth(rows=4), seed=12)
    summary = _run(lab, tmp_path, _plan(tmp_path, 4), store)
    assert summary.status == "completed" and summary.failed == 0
    for protocol in ("array_forming", "array_health", "array_program_verify",
                     "array_conductance_map"):  # fmt: skip
        rows = _rows(store, protocol)
        assert [r["parameters"]["row"] for r in rows] == [0, 1, 2, 3], protocol
        assert [r["key"] for r in rows] == [f"1,1/4/{protocol}/{i}" for i in range(4)]
    program = _rows(store, "array_program_verify")
    arrays = store.load_arrays_many([r["id"] for r in program], ["success", "attempts"])
    success = np.concatenate([arrays[r["id"]]["success"][0] for r in program])
    assert success.shape == (256,) and success.mean() > 0.9
    noise = _rows(store, "array_read_noise")
    reads = store.load_arrays_many([noise[0]["id"]], ["conductance_siemens"])
    assert reads[noise[0]["id"]]["conductance_siemens"][0].shape == (32, 64)
    # the health map finds the truth's stuck and never-forming cells
    health = _rows(store, "array_health")
    status = store.load_arrays_many([r["id"] for r in health], ["status"])
    found = np.concatenate([status[r["id"]]["status"][0] for r in health])
    truth = lab.wafer.array(*DIE, SITE).state.stuck.numpy()
    assert set(np.flatnonzero(truth < 0)) <= set(np.flatnonzero(found == 2))  # unformed
    assert set(np.flatnonzero(truth > 0)) <= set(np.flatnonzero(found == 1))  # stuck LRS
    assert np.mean(found == 0) > 0.9


def test_an_interrupted_array_run_resumes_at_the_first_row_not_stored(
    sim_lab_factory: Any, tmp_path: Path, store: Any
) -> None:
    lab = sim_lab_factory(truth=_truth(rows=6), seed=13)
    plan = _plan(tmp_path, 6, ["array_forming", "array_program_verify"])

    def stop_after_eight(progress: Any) -> None:
        if progress.measurements_done == 8:
            raise KeyboardInterrupt

    first = _run(lab, tmp_path, plan, store, on_progress=stop_after_eight)
    assert first.status == "interrupted"
    assert len(_rows(store, "array_program_verify")) == 2
    lab.clear_records()
    second = _run(lab, tmp_path, plan, store)
    assert second.status == "completed" and second.resumed and second.skipped == 8
    program = _rows(store, "array_program_verify")
    assert [r["parameters"]["row"] for r in program] == list(range(6))
    texts = lab.commands("array_tester")
    rows_programmed = [t.split(",")[0].split()[-1] for t in texts if t.startswith(":PROG:ROW")]
    assert rows_programmed == ["2", "3", "4", "5"]  # the two stored rows were not redone


def test_bad_array_plans_are_refused_before_anything_runs(
    sim_lab_factory: Any, tmp_path: Path
) -> None:
    from protocols.prepare import prepare_run

    lab = sim_lab_factory(truth=_truth(rows=4), seed=14)
    station = lab.write_station(tmp_path / "station.yaml")
    plan = yaml.safe_load(_plan(tmp_path, 4, ["array_program_verify"]).read_text())
    plan["protocols"][0]["params"]["gate_stop_v"] = "4.2 V"  # beyond max_wordline_v
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(plan))
    with pytest.raises(EnvelopeError, match="max_wordline_v"):
        prepare_run(path, station)
    plan["protocols"][0]["params"].update(gate_stop_v="2.8 V", rows=[1, 1])
    path.write_text(yaml.safe_dump(plan))
    with pytest.raises(PlanError, match="must not repeat"):
        prepare_run(path, station)


def _stored_rows(url: str, protocol: str) -> list[int]:
    from bruno_lab.store import open_store

    store = open_store(url)
    try:
        return [int(r["parameters"]["row"]) for r in _rows(store, protocol)]
    finally:
        store.close()


@pytest.mark.slow
def test_a_sigkilled_array_run_resumes_without_reprogramming_a_stored_row(
    sim_lab_factory: Any, tmp_path: Path
) -> None:
    """``bruno-lab run`` SIGKILLed while it programs an array (rows of forming stored, some
    rows of program-and-verify stored, one possibly on the instrument), then a plain rerun:
    every row is stored exactly once, and no row stored before the kill is sent to the
    tester again (only the row in flight, whose measurement was never stored, may be)."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from bruno_lab.store import open_store

    cli = str(Path(sys.executable).with_name("bruno-lab"))
    n_rows = 6
    lab = sim_lab_factory(truth=_truth(rows=n_rows), seed=17)
    station = lab.write_station(tmp_path / "station.yaml")
    plan = _plan(tmp_path, n_rows, ["array_forming", "array_program_verify"])
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    store = open_store(url, require_head=False)
    store.upgrade()
    store.close()
    args = ["run", str(plan), "--station", str(station), "--db", url, "--json"]
    proc = subprocess.Popen(
        [cli, *args, "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while len(_stored_rows(url, "array_program_verify")) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    killed_at = time.monotonic()  # the sim's records carry time.monotonic() at receipt
    stored = _stored_rows(url, "array_program_verify")
    assert 2 <= len(stored) < n_rows, stored  # killed mid-programming
    again = subprocess.run([cli, *args], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["status"] == "completed" and doc["resumed"]
    assert doc["skipped"] == n_rows + len(stored)  # forming rows and the stored program rows
    assert _stored_rows(url, "array_forming") == list(range(n_rows))
    assert _stored_rows(url, "array_program_verify") == list(range(n_rows))

    def programmed(after: bool) -> list[int]:
        return [
            int(r.text.split(",")[0].split()[-1]) for r in lab.records("array_tester")
            if r.text.startswith(":PROG:ROW") and (r.wall_s > killed_at) == after
        ]  # fmt: skip

    assert programmed(after=False)[: len(stored)] == stored
    assert programmed(after=True) == [r for r in range(n_rows) if r not in stored]
    forming_after = [r for r in lab.records("array_tester") if r.wall_s > killed_at]
    assert not any(r.text.startswith(":FORM:ROW") for r in forming_after)
