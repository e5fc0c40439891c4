"""The orchestrator on the simulated lab through the real drivers: commits, resume, faults,
interruption, lost connections. No mock: SimLab servers on loopback, pyvisa-py, the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from bruno_lab.store import open_store
from bruno_lab.store.models import Measurement, Run
from protocols.prepare import execute_run, prepare_run
from protocols.retry import RetryPolicy

FAST_RETRY = RetryPolicy(max_reconnects=2, backoff_s=0.01, backoff_factor=2.0, max_attempts=2)


def _rows(db_url: str) -> list[Any]:
    store = open_store(db_url)
    try:
        with store.session() as s:
            return list(s.execute(select(Measurement.run_id, Measurement.key, Measurement.status,
                                         Measurement.error, Measurement.id)))  # fmt: skip
    finally:
        store.close()


def _prepared(lab: Any, tmp_path: Path, plan_path: Path) -> Any:
    station = lab.write_station(tmp_path / "station.yaml")
    return prepare_run(plan_path, station)


def _is_safe(lab: Any) -> bool:
    smu, awg, prober = (lab.servers[r].state for r in ("smu", "awg", "prober"))
    return not smu.output_on and not awg.output_on and not prober.contact


def test_run_commits_every_measurement_once(
    sim_lab_factory, truth_factory, quick_plan_factory, write_plan, db_url, tmp_path
) -> None:
    lab = sim_lab_factory(truth=truth_factory(), seed=11)
    prepared = _prepared(lab, tmp_path, write_plan(quick_plan_factory(dies=[[1, 0], [0, 1]])))
    seen: list[Any] = []
    store = open_store(db_url)
    summary = execute_run(prepared, store, on_progress=seen.append, policy=FAST_RETRY)
    assert summary.status == "completed", summary
    assert summary.planned == summary.done == 4 and summary.skipped == 0
    keys = sorted(p.key for p in prepared.schedule)
    rows = _rows(db_url)
    assert sorted(r.key for r in rows) == keys
    # progress: one report at the start and one per measurement, monotone, ends complete
    assert [p.measurements_done for p in seen] == [0, 1, 2, 3, 4]
    assert seen[-1].dies_done == seen[-1].dies_total == 2
    assert seen[-1].devices_done == seen[-1].devices_total == 2
    # contract names, units, parameters and provenance on each row
    for row in rows:
        m = store.get_measurement(row.id)
        arrays = store.load_arrays(row.id)
        assert row.status.value == "ok", row.error
        if m.protocol == "rram_forming":
            assert {"voltage_v", "current_a"} <= arrays.keys()
            assert arrays["current_a"][1] == "A"
            assert m.scalars["formed"] == 1.0 and 1.0 < m.scalars["forming_voltage_v"] < 3.5
            assert m.parameters["max_v"] == pytest.approx(3.5)
        else:
            assert m.protocol == "rram_pulsed"
            assert {"amplitude_v", "width_s", "conductance_siemens", "polarity"} <= arrays.keys()
            assert m.scalars["n_pulses"] == 2.0
        assert "KEITHLEY" in m.instruments["smu"]["idn"]
    with store.session() as s:
        run = s.get(Run, summary.run_id)
        assert run.status.value == "completed" and run.plan["sha256"] == prepared.plan.sha256
    store.close()
    assert _is_safe(lab)


def test_interrupt_then_plain_rerun_resumes(
    sim_lab_factory, truth_factory, quick_plan_factory, write_plan, db_url, tmp_path
) -> None:
    lab = sim_lab_factory(truth=truth_factory(), seed=12)
    prepared = _prepared(
        lab, tmp_path, write_plan(quick_plan_factory(dies=[[1, 0], [0, 1], [1, 1]]))
    )

    def interrupt_after_three(p: Any) -> None:
        if p.measurements_done == 3:
            raise KeyboardInterrupt  # what SIGINT/SIGTERM raise in the main thread

    store = open_store(db_url)
    first = execute_run(prepared, store, on_progress=interrupt_after_three, policy=FAST_RETRY)
    assert first.status == "interrupted" and first.done == 3
    assert _is_safe(lab)
    with store.session() as s:
        assert s.get(Run, first.run_id).status.value == "aborted"
    second = execute_run(prepared, store, policy=FAST_RETRY)
    assert second.status == "completed" and second.resumed and second.run_id == first.run_id
    assert second.skipped == 3 and second.done == second.planned == 6
    keys = [r.key for r in _rows(db_url)]
    assert sorted(keys) == sorted(p.key for p in prepared.schedule)
    # a third invocation: the newest run of this plan completed, so it starts a new run
    with store.session() as s:
        assert s.execute(select(func.count()).select_from(Run)).scalar() == 1
    store.close()


def test_resume_by_id_refuses_another_plan(
    sim_lab_factory, truth_factory, quick_plan_factory, write_plan, db_url, tmp_path
) -> None:
    from bruno_lab.errors import BadInputError

    lab = sim_lab_factory(truth=truth_factory(), seed=13)
    store = open_store(db_url)
    plan_a = quick_plan_factory(name="a", dies=[[1, 0]])
    prepared = _prepared(lab, tmp_path, write_plan(plan_a, "a.yaml"))
    done = execute_run(prepared, store, policy=FAST_RETRY)
    other = _prepared(
        lab, tmp_path, write_plan(quick_plan_factory(name="b", dies=[[1, 0]]), "b.yaml")
    )
    with pytest.raises(BadInputError, match="different plan"):
        execute_run(other, store, resume=done.run_id)
    with pytest.raises(BadInputError, match="no such run"):
        execute_run(prepared, store, resume=999)
    again = execute_run(prepared, store, resume=done.run_id)
    assert again.run_id == done.run_id and again.resumed
    assert again.skipped == again.planned == 2 and again.measured_here == 0
    assert again.status == "completed"
    store.close()


def test_injected_faults_are_recorded_and_the_run_goes_on(
    sim_lab_factory, truth_factory, quick_plan_factory, write_plan, db_url, tmp_path
) -> None:
    from instruments.sim.faults import FaultKind

    lab = sim_lab_factory(truth=truth_factory(), seed=14)
    prepared = _prepared(
        lab, tmp_path, write_plan(quick_plan_factory(dies=[[1, 0], [0, 1], [1, 1]]))
    )

    def inject(p: Any) -> None:
        # after the first measurement: an error in the SMU's queue on its next command
        if p.measurements_done == 1:
            lab.faults.force("smu", FaultKind.ERROR)

    store = open_store(db_url)
    summary = execute_run(prepared, store, policy=FAST_RETRY, on_progress=inject)
    assert summary.status == "completed"
    rows = _rows(db_url)
    assert len(rows) == summary.planned == 6
    failed = [r for r in rows if r.status.value == "failed"]
    assert len(failed) >= 1 and summary.failed == len(failed)
    assert all(r.error for r in failed)
    assert any("error queue" in r.error for r in failed)
    store.close()
    assert _is_safe(lab)


def test_reads_at_the_compliance_limit_are_the_failed_measurements_reason(
    sim_lab_factory, truth_factory, quick_plan_factory, write_plan, db_url, tmp_path
) -> None:
    """Every SMU reading at the current limit: rram_iv fails as "no switching", and its reason
    says the reads measured the limit (issue 16: 451 injected hits, none named as a reason)."""
    from instruments.sim.faults import FaultKind

    lab = sim_lab_factory(truth=truth_factory(), seed=15)
    plan = {**quick_plan_factory(dies=[[1, 1]]), "protocols": [{"protocol": "rram_iv"}]}
    prepared = _prepared(lab, tmp_path, write_plan(plan))
    lab.faults.force("smu", FaultKind.COMPLIANCE, 10_000)
    store = open_store(db_url)
    try:
        summary = execute_run(prepared, store, policy=FAST_RETRY)
    finally:
        lab.faults.clear()
        store.close()
    rows = _rows(db_url)
    assert summary.failed == len(rows) >= 1
    for row in rows:
        assert "no switching" in row.error
        assert "read(s) at the 0.0005 A current limit" in row.error, row.error
    # a measurement that does not read at the limit says nothing about compliance
    prepared = _prepared(lab, tmp_path, write_plan({**plan, "name": "clean"}, "clean.yaml"))
    store = open_store(db_url)
    try:
        execute_run(prepared, store, policy=FAST_RETRY)
    finally:
        store.close()
    assert not any("compliance" in (r.error or "") for r in _rows(db_url)[len(rows) :])


def test_dropped_connection_is_reconnected_and_retried(
    sim_lab_factory, truth_factory, quick_plan_factory, write_plan, db_url, tmp_path
) -> None:
    from instruments.sim.faults import FaultKind

    lab = sim_lab_factory(truth=truth_factory(), seed=15)
    prepared = _prepared(lab, tmp_path, write_plan(quick_plan_factory(dies=[[1, 0]])))
    lab.faults.force("smu", FaultKind.DROP)
    store = open_store(db_url)
    summary = execute_run(prepared, store, policy=FAST_RETRY)
    assert summary.status == "completed"
    rows = _rows(db_url)
    assert len(rows) == 2 and all(r.status.value == "ok" for r in rows), rows
    assert any(kind == FaultKind.DROP for _, kind, _ in lab.faults.injected)
    store.close()


def test_lost_bench_stops_the_run_cleanly(
    sim_lab_factory, truth_factory, quick_plan_factory, write_plan, db_url, tmp_path
) -> None:
    lab = sim_lab_factory(truth=truth_factory(), seed=16)
    prepared = _prepared(lab, tmp_path, write_plan(quick_plan_factory(dies=[[1, 0], [0, 1]])))
    sleeps: list[float] = []

    def pull_the_plug(p: Any) -> None:
        if p.measurements_done == 1:
            lab.stop()

    store = open_store(db_url)
    from protocols.orchestrator import Orchestrator
    from protocols.runs import open_run

    run_id, _ = open_run(store, prepared.plan, {}, resume=None, operator="t")
    from instruments.station import open_bench

    def connect() -> Any:
        return open_bench(prepared.station_path, timeout_s=1.0)

    orch = Orchestrator(
        prepared.plan, prepared.schedule, store, connect, run_id=run_id, wafer_name="w",
        policy=FAST_RETRY, on_progress=pull_the_plug, sleep=sleeps.append,
    )  # fmt: skip
    summary = orch.run()
    assert summary.status == "failed"
    assert "reconnects failed" in summary.reason
    assert sleeps == FAST_RETRY.delays_s()
    assert len(_rows(db_url)) == 1  # what was committed stays, nothing half-written
    with store.session() as s:
        assert s.get(Run, run_id).status.value == "failed"
    store.close()


def test_pund_charge_matches_the_simulated_polarization(
    sim_lab_factory, truth_factory, quick_plan_factory, write_plan, db_url, tmp_path
) -> None:
    """PUND's P-U charge equals area x the switching of the P pulse in the sim's own trace."""
    from instruments.station import open_bench
    from protocols.base import DeviceUnderTest
    from protocols.pund import PundParams
    from protocols.pund import run as run_pund

    lab = sim_lab_factory(truth=truth_factory(), seed=17)
    station = lab.write_station(tmp_path / "station.yaml")
    params = PundParams()
    area = lab.truth_for((1, 0), 0).area_m2
    device = DeviceUnderTest(1, 0, "1,0", 0, "fecap", {"area_m2": area})
    with open_bench(station) as bench:
        bench.prober.step_to(1, 0, 0)
        bench.prober.contact()
        result = run_pund(bench, device, params)
        burst = lab.last_burst()
    _, _, windows = params.waveform()
    pol = burst.polarization_c_m2
    t = burst.time_s
    (p0, p1), (u0, u1) = windows[0], windows[1]
    switched_p = np.interp(p1, t, pol) - np.interp(p0, t, pol)
    switched_u = np.interp(u1, t, pol) - np.interp(u0, t, pol)
    expected_c = (switched_p - switched_u) * area
    got = result.scalars["switched_charge_pos_c"]
    assert got == pytest.approx(expected_c, rel=0.05)
    assert result.scalars["switched_polarization_c_m2"] > 0.1


@pytest.mark.slow
def test_random_faults_the_run_completes_with_reasons(
    sim_lab_factory, truth_factory, quick_plan_factory, write_plan, db_url, tmp_path
) -> None:
    """Faults at rates (seeded): errors, garbled replies, drops, lost replies, compliance hits,
    shorts. The run completes, every planned key is stored once, failures say why."""
    from instruments.station import open_bench

    faults = {
        "seed": 5,
        "slow_delay_s": 0.2,
        "rates": {"error": 0.01, "garbled": 0.005, "drop": 0.005, "no_reply": 0.002,
                  "slow": 0.01, "compliance": 0.02, "short": 0.01},
    }  # fmt: skip
    lab = sim_lab_factory(truth=truth_factory(), seed=18, faults=faults)
    dies = [[1, 0], [0, 1], [1, 1], [2, 1], [1, 2]]
    prepared = _prepared(lab, tmp_path, write_plan(quick_plan_factory(dies=dies, fecap=True)))
    store = open_store(db_url)
    summary = execute_run(
        prepared, store, policy=FAST_RETRY,
        connect=lambda: open_bench(prepared.station_path, timeout_s=1.0),
    )  # fmt: skip
    assert summary.status == "completed", summary
    rows = _rows(db_url)
    assert sorted(r.key for r in rows) == sorted(p.key for p in prepared.schedule)
    failed = [r for r in rows if r.status.value == "failed"]
    assert lab.faults.injected, "the fault injector injected nothing"
    assert failed and all(r.error and len(r.error) > 10 for r in failed)
    assert summary.failed == len(failed)
    store.close()
    assert _is_safe(lab)


def test_stop_condition_ends_the_run_cleanly(
    sim_lab_factory, truth_factory, quick_plan_factory, write_plan, db_url, tmp_path
) -> None:
    """A shorted cell fails forming ("short"); with max_consecutive_failed: 1 the run stops
    before the next measurement, bench safe, status failed; a rerun resumes and completes."""
    lab = sim_lab_factory(truth=truth_factory(), seed=19)
    lab.device((1, 0), 2).shorted = True
    plan = quick_plan_factory(dies=[[1, 0], [0, 1]])
    plan["stop"] = {"max_consecutive_failed": 1}
    prepared = _prepared(lab, tmp_path, write_plan(plan))
    store = open_store(db_url)
    summary = execute_run(prepared, store, policy=FAST_RETRY)
    assert summary.status == "failed" and "consecutive" in summary.reason
    rows = _rows(db_url)
    assert [r.key for r in rows] == ["1,0/2/rram_forming/0"]
    assert "short" in rows[0].error
    assert _is_safe(lab)
    with store.session() as s:
        assert s.get(Run, summary.run_id).status.value == "failed"
    again = execute_run(prepared, store, policy=FAST_RETRY)
    assert again.run_id == summary.run_id and again.skipped == 1
    assert again.status == "completed" and again.done == again.planned == 4
    store.close()
