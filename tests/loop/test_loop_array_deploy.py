"""A network deployed onto a die's 1T1R crossbar through the array tester, as a user does it
(``bruno-lab deploy`` / ``evaluate --on-chip``), checked against the sim's own cells; a SIGKILL
in the middle of programming; and the chip's accuracy next to the software's as the array gets
noisier."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SITE = 6  # the crossbar's site in loop_truth(n_rram=3, crossbar=...): FeCap, FeCap, FeLIF, 3 RRAM


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bruno_lab.cli_entry", *args],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _measurements(db_url: str, protocol: str) -> list[tuple[int, int, str]]:
    """(run id, measurement id, key) of every stored measurement of ``protocol``."""
    from sqlalchemy import select

    from bruno_lab.store import open_store
    from bruno_lab.store.models import Measurement

    store = open_store(db_url)
    try:
        with store.session() as s:
            rows = s.execute(
                select(Measurement.run_id, Measurement.id, Measurement.key).where(
                    Measurement.protocol == protocol
                )
            ).all()
    finally:
        store.close()
    return [(int(r), int(i), str(k)) for r, i, k in rows]


@pytest.mark.slow
def test_deploy_on_a_crossbar_then_evaluate_through_the_cli(
    sim_lab_factory, loop_truth_factory, tiny_network_factory, loop_db_url, tmp_path
) -> None:
    """Survey (every row formed and health-mapped), placement around bad cells, row-parallel
    write-verify: every programmed cell holds, in the sim's own physics, what the record says
    it reached; a second deployment reuses the survey; the chip runs the network by MVM."""
    truth = loop_truth_factory(
        n_rram=3, crossbar={"rows": 16, "cols": 16, "stuck_lrs_rate": 0.04, "stuck_hrs_rate": 0.04}
    )
    lab = sim_lab_factory(truth=truth, seed=7)
    station = lab.write_station(tmp_path / "station.yaml")
    net = tiny_network_factory(tmp_path / "net.pt", n_hidden=2)  # 2-2-2: 16 cells
    args = ["deploy", "--network", str(net), "--station", str(station), "--die", "1,1",
            "--db", loop_db_url, "--json"]  # fmt: skip
    first = _cli(*args)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["status"] == "completed" and summary["n_cells"] == 16
    record = json.loads(Path(summary["record"]).read_text())
    assert record["target"] == "crossbar" and record["array"] == {"site": SITE, "rows": 16,
                                                                   "cols": 16}  # fmt: skip
    forming = [m for m in _measurements(loop_db_url, "array_forming")]
    assert len(forming) == 16  # the whole array surveyed (spare_rows None)
    cells = record["cells"]
    # the placement kept the used cells clear of what the survey found bad (rows to spare)
    assert all(c["health"] == 0 for c in cells)
    assert len({(c["array_row"], c["array_col"]) for c in cells}) == 16
    tol = record["settings"]["tolerance_siemens"]
    xbar = lab.wafer.array(1, 1, SITE)
    truth_g = xbar.isolated_conductance(0.2, 3.3).numpy().reshape(16, 16)
    for c in cells:
        assert c["success"], c
        assert abs(c["reached_conductance_siemens"] - c["programmed_target_siemens"]) <= tol
        # the device holds it (the tester's read has the lines' drop and read noise: 2 uS)
        g = truth_g[c["array_row"], c["array_col"]]
        assert g == pytest.approx(c["reached_conductance_siemens"], abs=2e-6)
    program = _measurements(loop_db_url, "array_program_verify")
    assert len(program) == len({c["array_row"] for c in cells})  # one measurement per row

    again = _cli(*args)  # the same network again: the survey is reused, the rows reprogrammed
    assert again.returncode == 0, again.stderr
    record2 = json.loads(Path(json.loads(again.stdout)["record"]).read_text())
    assert record2["survey_run_id"] == record["survey_run_id"]
    assert len(_measurements(loop_db_url, "array_forming")) == 16  # nothing formed again
    assert record2["placement"] == record["placement"]

    ev = _cli("evaluate", "--network", str(net), "--on-chip", "--station", str(station),
              "--die", "1,1", "--passes", "2", "--json")  # fmt: skip
    assert ev.returncode == 0, ev.stderr
    doc = json.loads(ev.stdout)
    assert doc["n_passes"] == 2 and doc["n_vectors"] > 0 and "analog" in doc["on_chip"]
    for key in ("chip_accuracy", "readback_accuracy", "software_accuracy", "ideal_accuracy"):
        assert 0.0 <= doc[key] <= 1.0
    mvm = [r for r in lab.commands("array_tester") if r.upper().startswith(":MVM:VECT")]
    assert mvm, "the chip's accuracy must come from the tester's analog products"


@pytest.mark.slow
def test_sigkill_while_programming_rows_then_resume(
    sim_lab_factory, loop_truth_factory, tiny_network_factory, loop_db_url, tmp_path
) -> None:
    """SIGKILL of ``deploy`` once a few rows are programmed; a rerun resumes the same program
    run: no row programmed twice, every programmed row recorded once, the rows committed before
    the kill kept as they were."""
    truth = loop_truth_factory(n_rram=3, crossbar={"rows": 16, "cols": 32})
    lab = sim_lab_factory(truth=truth, seed=8)
    station = lab.write_station(tmp_path / "station.yaml")
    net = tiny_network_factory(tmp_path / "net.pt", n_hidden=12)  # rows: 2 + 12
    args = ["deploy", "--network", str(net), "--station", str(station), "--die", "1,1",
            "--db", loop_db_url, "--json"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "bruno_lab.cli_entry", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if len(_measurements(loop_db_url, "array_program_verify")) >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    before = _measurements(loop_db_url, "array_program_verify")
    assert 4 <= len(before) < 14
    again = _cli(*args)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    after = _measurements(loop_db_url, "array_program_verify")
    keys = [k for _, _, k in after]
    assert len(keys) == len(set(keys)) == 14  # every used row once
    assert {r for r, _, _ in after} == {doc["run_id"]}  # the killed run, resumed
    assert set(before) <= set(after)  # committed rows kept, not reprogrammed
    record = json.loads(Path(doc["record"]).read_text())
    assert all(c["measurement_id"] is not None for c in record["cells"])
    assert record["n_cells"] == 96 and record["n_success"] >= 90  # 2x12 + 12x2 weights, pairs


def _trained(path: Path, seed: int) -> tuple[Any, Any]:
    """A small FeLIF network on an 8-channel 2-class pattern task that learns it (device
    synapses on a card like the crossbar's levels), saved to ``path``."""
    import torch
    from loop_helpers import rram_card_dict

    from bruno_lab.cards import parse_card
    from bruno_lab.train.data.patterns import make_patterns
    from bruno_lab.train.io import save_network
    from bruno_lab.train.loop import TrainConfig, train
    from bruno_lab.train.network import NetworkConfig, build_network

    torch.set_num_threads(1)
    task = {"n_classes": 2, "n_channels": 8, "n_steps": 10, "n_train": 128, "n_test": 128,
            "rate": 0.2, "seed": 0}  # fmt: skip
    data = make_patterns(**task)
    cfg = NetworkConfig(kind="classify", n_in=8, n_hidden=8, n_out=2, neuron="felif",
                        method="bruno", synapse="device", seed=seed, n_micro=200)  # fmt: skip
    torch.manual_seed(seed)
    net = build_network(cfg, {"rram": parse_card(rram_card_dict(4, 200e-6))})
    result = train(net, data, TrainConfig(epochs=6, lr=5e-2, batch_size=32, seed=seed))
    assert result.final is not None and result.final.test_accuracy >= 0.85, result.final
    save_network(path, net, {"task": "patterns", "task_kwargs": task, "seed": seed})
    return net, data


@pytest.mark.slow
def test_chip_accuracy_is_close_to_software_and_falls_as_the_array_gets_worse(
    sim_lab_factory, loop_truth_factory, loop_db_url, tmp_path
) -> None:
    """At the demo array's nominal read noise, line resistance and stuck rate the chip (analog
    MVM) is within 3 points of software; with 20x the read noise and 40x the line resistance the
    gap grows."""
    from bruno_lab import loop
    from bruno_lab.store import open_store
    from protocols.array_deployment import ArrayDeploySettings

    net_path = tmp_path / "net.pt"
    net, data = _trained(net_path, seed=1)
    gaps = {}
    worse = {"bit_line_ohm_per_cell": 10.0, "source_line_ohm_per_cell": 10.0,
             "stuck_lrs_rate": 0.04, "stuck_hrs_rate": 0.04}  # fmt: skip
    size = {"rows": 24, "cols": 24}
    for name, crossbar, read_rel in (("nominal", size, None), ("worse", {**size, **worse}, 0.1)):
        rram = None if read_rel is None else {"read_rel": {"mean": read_rel, "sigma_rel": 0.0}}
        lab = sim_lab_factory(
            truth=loop_truth_factory(n_rram=3, crossbar=crossbar, rram_params=rram), seed=11
        )
        station = lab.write_station(tmp_path / f"{name}.yaml")
        url = loop_db_url.replace("lab.db", f"{name}.db")
        store = open_store(url, require_head=False)
        store.upgrade()
        try:
            dep = loop.deploy(
                net, station, "1,1", store, settings=ArrayDeploySettings(spare_rows=4)
            )
            assert dep.status == "completed"
            result = loop.evaluate_on_chip(net, dep, station, data, n_passes=2)
        finally:
            store.close()
        s = result.summary()
        gaps[name] = s["software_accuracy"] - s["chip_accuracy"]
        shown = ("software", "chip", "readback", "ideal")
        print(name, {k: round(s[f"{k}_accuracy"], 3) for k in shown})
    assert gaps["nominal"] <= 0.03, gaps
    assert gaps["worse"] > gaps["nominal"] + 0.02, gaps


@pytest.mark.parametrize("target", ["crossbar", "cells"])
def test_an_unwritable_record_path_is_refused_before_anything_is_programmed(
    sim_lab_factory, loop_truth_factory, tiny_network_factory, loop_db_url, tmp_path, target
) -> None:
    lab = sim_lab_factory(truth=loop_truth_factory(n_rram=8, crossbar={"rows": 8, "cols": 8}))
    station = lab.write_station(tmp_path / "station.yaml")
    net = tiny_network_factory(tmp_path / "net.pt")
    (tmp_path / "net.deploy-1_1.json").mkdir()  # where the record would go: a directory
    done = _cli("deploy", "--network", str(net), "--station", str(station), "--die", "1,1",
                "--db", loop_db_url, "--target", target)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "deployment record" in done.stderr and "Traceback" not in done.stderr
    assert not lab.commands("array_tester") and not lab.commands("smu")
    assert _measurements(loop_db_url, "array_forming") == []
    assert not list(tmp_path.glob("*.tmp"))
