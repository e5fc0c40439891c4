"""Helpers of the report and live-view tests: a plan with every protocol, a run of it on the
simulated lab, a stand-in deployment run, and a synthetic store for the fast tests.

A uniquely named module (not conftest.py), so that ``import report_helpers`` cannot pick another
test folder's helpers under xdist."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "protocols" / "examples"
DEMO_PLAN = EXAMPLES / "demo_plan.yaml"
DEMO_TRUTH = EXAMPLES / "demo_truth.yaml"

EXTRA_STEPS: list[dict[str, Any]] = [
    {
        "protocol": "switching_kinetics",
        "params": {"widths_s": ["100 ns", "1 us", "10 us"], "amplitudes_v": ["2 V", "3 V"]},
    },
    {
        "protocol": "rram_endurance",
        "params": {
            "max_cycles": 100,
            "checkpoints_per_decade": 1,
            "set_v": "1.4 V",
            "reset_v": "1.6 V",
            "pulse_width_s": "1 us",
        },
    },
]


def all_protocols_plan(dies: list[list[int]], *, rram_sites: list[int] = (3,)) -> dict[str, Any]:
    """The demo's characterization plan plus switching kinetics and endurance: every protocol
    the report has a section or figure for, on ``dies``."""
    plan = copy.deepcopy(yaml.safe_load(DEMO_PLAN.read_text()))
    plan["name"] = "report-all-protocols"
    plan["dies"] = dies
    plan["sites"]["rram"] = list(rram_sites)
    steps = plan["protocols"]
    at = next(i for i, s in enumerate(steps) if s["protocol"] == "pv_loop") + 1
    steps.insert(at, EXTRA_STEPS[0])
    steps.append(EXTRA_STEPS[1])
    return plan


def run_plan(lab: Any, plan: dict[str, Any], tmp: Path, store: Any, **kwargs: Any) -> Any:
    """Run ``plan`` on the lab into ``store``; returns the RunSummary."""
    from protocols.prepare import execute_run, prepare_run

    station = lab.write_station(tmp / "station.yaml")
    path = tmp / f"{plan['name']}.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return execute_run(prepare_run(path, station), store, operator="report tests", **kwargs)


def add_deployment_run(
    store: Any, wafer: str, die: tuple[int, int], site: int, conductance_siemens: float
) -> int:
    """A deployment-like run that programmed one RRAM cell to ``conductance_siemens`` (a value
    no characterization level has): the report must leave it out of the level distributions."""
    wid = store.ensure_wafer(wafer)
    did = store.ensure_die(wid, die[0], die[1], f"{die[0]},{die[1]}")
    dev = store.ensure_device(did, str(site), "rram", {"area_m2": 1e-14})
    doc = {
        "name": "deploy test",
        "dies": [list(die)],
        "sites": {"rram": [site]},
        "protocols": [],
        "deployment": {"network_sha256": "0" * 64, "wafer": wafer},
    }
    run_id = _create_run(store, doc, "deployment")
    t = datetime.now(UTC)
    g = np.array([conductance_siemens])
    store.add_measurement(
        run_id=run_id,
        device_id=dev,
        protocol="rram_program_verify",
        parameters={"read_v": 0.2},
        instruments={},
        started_at=t,
        finished_at=t,
        status="ok",
        error=None,
        scalars={"n_levels": 1.0, "n_success": 1.0},
        arrays={
            "target_level": (np.array([0]), ""),
            "target_conductance_siemens": (g, "S"),
            "reached_conductance_siemens": (g, "S"),
            "attempts": (np.array([3]), ""),
            "success": (np.array([1]), ""),
        },
        key=f"{die[0]},{die[1]}/{site}/rram_program_verify/0",
    )
    store.set_run_status(run_id, "completed")
    return run_id


def _create_run(store: Any, document: dict[str, Any], purpose: str) -> int:
    import inspect

    record = {"name": document["name"], "sha256": "x" * 64, "source": "test", "document": document}
    if "purpose" in inspect.signature(store.create_run).parameters:
        return store.create_run(record, "report tests", {}, "test", purpose=purpose)
    return store.create_run(record, "report tests", {}, "test")


def synthetic_store(url: str, *, protocols: tuple[str, ...] = ("pv_loop", "rram_forming")) -> Any:
    """A migrated store holding a 3 x 3-die wafer ``W-syn`` (8 dies: the corner (2, 2) is off
    the map) with one FeCap and two RRAM cells per die and scalar-only measurements of
    ``protocols`` (values are a known function of the die, so tests can check the maps);
    die (1, 0)'s FeCap pv_loop failed with a reason."""
    from bruno_lab.store import open_store

    store = open_store(url, require_head=False)
    store.upgrade()
    wid = store.ensure_wafer("W-syn", lot="L-syn")
    run_id = _create_run(
        store, {"name": "syn", "dies": "all", "sites": {}, "protocols": []}, "characterization"
    )
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    n = 0
    for y in range(3):
        for x in range(3):
            if (x, y) == (2, 2):
                continue
            did = store.ensure_die(wid, x, y, f"{x},{y}")
            fe = store.ensure_device(did, "0", "fecap", {"area_m2": 2.5e-11})
            cells = [store.ensure_device(did, str(s), "rram", {"area_m2": 1e-14}) for s in (3, 4)]
            t = t0 + timedelta(seconds=n)
            n += 1
            if "pv_loop" in protocols:
                failed = (x, y) == (1, 0)
                store.add_measurement(
                    run_id=run_id,
                    device_id=fe,
                    protocol="pv_loop",
                    parameters={"frequency_hz": 1e4},
                    instruments={},
                    started_at=t,
                    finished_at=t,
                    status="failed" if failed else "ok",
                    error="device: no switching: test reason" if failed else None,
                    scalars={}
                    if failed
                    else {
                        "pr_pos_c_m2": 0.20 + 0.01 * x + 0.001 * y,
                        "vc_pos_v": 1.2 + 0.05 * y,
                        "imprint_v": 0.01 * (x - 1),
                    },
                    arrays={},
                    key=f"{x},{y}/0/pv_loop/0",
                )
            if "rram_program_verify" in protocols:
                for k, cell in enumerate(cells):
                    tgt = np.array([20e-6, 60e-6, 100e-6])
                    reached = tgt * (1.0 + 0.01 * (x - y) + 0.005 * k)
                    store.add_measurement(
                        run_id=run_id,
                        device_id=cell,
                        protocol="rram_program_verify",
                        parameters={"read_v": 0.2},
                        instruments={},
                        started_at=t,
                        finished_at=t,
                        status="ok",
                        error=None,
                        scalars={"n_levels": 3.0, "n_success": 3.0},
                        arrays={
                            "target_level": (np.arange(3), ""),
                            "target_conductance_siemens": (tgt, "S"),
                            "reached_conductance_siemens": (reached, "S"),
                            "attempts": (np.array([3, 4, 5]), ""),
                            "success": (np.ones(3, dtype=np.int64), ""),
                        },
                        key=f"{x},{y}/{3 + k}/rram_program_verify/0",
                    )
            if "rram_forming" in protocols:
                for k, cell in enumerate(cells):
                    store.add_measurement(
                        run_id=run_id,
                        device_id=cell,
                        protocol="rram_forming",
                        parameters={},
                        instruments={},
                        started_at=t,
                        finished_at=t,
                        status="ok",
                        error=None,
                        scalars={"forming_voltage_v": 2.0 + 0.1 * x + 0.02 * k, "formed": 1.0},
                        arrays={},
                        key=f"{x},{y}/{3 + k}/rram_forming/0",
                    )
    store.set_run_status(run_id, "completed")
    return store
