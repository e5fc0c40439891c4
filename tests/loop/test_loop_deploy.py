"""Deployment of a network's programming map onto a die, and on-chip evaluation, on the sim."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from protocols.deployment import (
    DeploySettings,
    assign_cells,
    deployment_schedule,
    record_path_for,
)
from protocols.wafer import DieRef, SiteRef, WaferMap


def _wafer(n_rram: int) -> WaferMap:
    sites = [SiteRef(0, "fecap", {"area_m2": 2.5e-11})]
    sites += [SiteRef(1 + k, "rram", {"area_m2": 1e-14}) for k in range(n_rram)]
    return WaferMap("W", (DieRef(0, 0, "A"), DieRef(1, 0, "B")), tuple(sites))


def _pmap(n_cells: int) -> dict[str, Any]:
    cells = [
        {
            "cell": i,
            "layer": 0,
            "row": i // 4,
            "col": (i // 2) % 2,
            "polarity": "+-"[i % 2],
            "level_index": i % 3,
            "target_conductance_siemens": (10 + 30 * (i % 3)) * 1e-6,
        }
        for i in range(n_cells)
    ]
    return {"n_cells": n_cells, "layers": [], "cells": cells}


def test_cells_go_to_the_dies_rram_sites_in_map_order() -> None:
    cells = assign_cells(_pmap(5), _wafer(8), DieRef(1, 0, "B"))
    assert [c.site for c in cells] == [1, 2, 3, 4, 5]  # site 0 is a FeCap
    assert [c.cell for c in cells] == list(range(5))
    assert all((c.die_col, c.die_row, c.die_label) == (1, 0, "B") for c in cells)
    assert cells[2].target_conductance_siemens == pytest.approx(70e-6)


def test_a_network_larger_than_the_array_is_bad_input() -> None:
    from bruno_lab.errors import BadInputError

    with pytest.raises(BadInputError, match=r"needs 9 RRAM cells .* has 8 RRAM sites"):
        assign_cells(_pmap(9), _wafer(8), DieRef(0, 0, "A"))


def test_schedule_forms_then_programs_each_cell_to_its_own_target() -> None:
    wafer = _wafer(4)
    cells = assign_cells(_pmap(3), wafer, DieRef(0, 0, "A"))
    schedule = deployment_schedule(wafer, cells, DeploySettings())
    assert [p.key for p in schedule] == [
        f"A/{s}/{proto}/0" for s in (1, 2, 3) for proto in ("rram_forming", "rram_program_verify")
    ]
    verify = [p.params for p in schedule if p.protocol == "rram_program_verify"]
    assert [v.targets_siemens for v in verify] == [
        [pytest.approx(g)] for g in (10e-6, 40e-6, 70e-6)
    ]
    assert all(p.device.kind == "rram" and p.device.geometry["area_m2"] == 1e-14 for p in schedule)
    no_form = deployment_schedule(wafer, cells, DeploySettings(form=False))
    assert [p.protocol for p in no_form] == ["rram_program_verify"] * 3


def test_record_lives_beside_the_network_per_die(tmp_path: Path) -> None:
    path = record_path_for(tmp_path / "net.pt", "2,2")
    assert path == tmp_path / "net.deploy-2_2.json"


def _run_cli(args: list[str]) -> Any:
    from typer.testing import CliRunner

    from bruno_lab.cli import app

    return CliRunner().invoke(app, args, catch_exceptions=False)


def _main_exit_code(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> int:
    import sys

    from bruno_lab.cli import main

    monkeypatch.setattr(sys, "argv", ["bruno-lab", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code)


def test_bad_deploy_and_evaluate_input_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    net = tmp_path / "net.pt"
    net.write_bytes(b"not read before the arguments are checked")
    assert _main_exit_code(monkeypatch, ["evaluate", "--network", str(net), "--on-chip"]) == 2
    assert "--on-chip needs --station" in capsys.readouterr().err
    missing = ["deploy", "--network", str(tmp_path / "nope.pt"), "--station", str(net),
               "--die", "1,1"]  # fmt: skip
    assert _main_exit_code(monkeypatch, missing) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_deploy_then_evaluate_on_chip_through_the_cli(
    sim_lab_factory, loop_truth_factory, tiny_network_factory, loop_db_url, tmp_path
) -> None:
    from sqlalchemy import select

    from bruno_lab.store import open_store
    from bruno_lab.store.models import Measurement, Run
    from protocols.deployment import deploy_network

    lab = sim_lab_factory(truth=loop_truth_factory(n_rram=12), seed=5)
    station = lab.write_station(tmp_path / "station.yaml")
    net = tiny_network_factory(tmp_path / "net.pt")  # 2 inputs, 1 hidden, 2 outputs: 8 cells

    def stop_after_two_cells(p: Any) -> None:  # Ctrl-C once two cells are committed
        if p.measurements_done >= 4:
            raise KeyboardInterrupt

    store = open_store(loop_db_url)
    try:
        first = deploy_network(net, station, "1,1", store, on_progress=stop_after_two_cells)
    finally:
        store.close()
    assert first.status == "interrupted"
    assert sum(c["measurement_id"] is not None for c in first.record["cells"]) == 2
    # the command continues the interrupted deployment: same run, the two cells not redone
    result = _run_cli(
        ["deploy", "--network", str(net), "--station", str(station), "--die", "1,1",
         "--db", loop_db_url, "--json"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_cells"] == 8 and summary["die"] == "1,1"
    assert summary["run_id"] == first.run_id and summary["status"] == "completed"
    record = json.loads(Path(summary["record"]).read_text())
    assert Path(summary["record"]) == tmp_path / "net.deploy-1_1.json"
    cells = record["cells"]
    before = [c["measurement_id"] for c in first.record["cells"][:2]]
    assert [c["measurement_id"] for c in cells[:2]] == before  # committed once, kept
    tol = record["settings"]["verify"]["tolerance_siemens"]
    assert [c["site"] for c in cells] == list(range(3, 11))  # sites 0-2: FeCap, FeCap, FeLIF
    ok = [c for c in cells if c["success"]]
    assert len(ok) >= 5
    for c in ok:  # what the record says each cell reached is what the device holds
        g_true = _true_conductance(lab, (1, 1), c["site"])
        assert abs(c["reached_conductance_siemens"] - c["target_conductance_siemens"]) <= tol
        assert g_true == pytest.approx(c["reached_conductance_siemens"], abs=3e-6)
    # one stored program-verify measurement per cell, in the deployment's run, with provenance
    store = open_store(loop_db_url)
    try:
        with store.session() as s:
            rows = s.execute(
                select(Measurement.key, Measurement.id, Measurement.instruments).where(
                    Measurement.run_id == summary["run_id"],
                    Measurement.protocol == "rram_program_verify",
                )
            ).all()
            plan = s.get(Run, summary["run_id"]).plan
        assert sorted(k for k, _, _ in rows) == sorted(
            f"1,1/{s}/rram_program_verify/0" for s in range(3, 11)
        )
        assert all("KEITHLEY" in json.dumps(inst) for _, _, inst in rows)
        assert plan["document"]["deployment"]["map_sha256"] == record["map_sha256"]
        by_id = {mid: key for key, mid, _ in rows}
        assert {c["measurement_id"] for c in cells} == set(by_id)
    finally:
        store.close()

    result = _run_cli(
        ["evaluate", "--network", str(net), "--on-chip", "--station", str(station),
         "--die", "1,1", "--passes", "2", "--json"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ev = json.loads(result.stdout)
    assert ev["n_cells"] == 8 and ev["n_passes"] == 2
    for key in ("chip_accuracy", "software_accuracy", "ideal_accuracy"):
        assert 0.0 <= ev[key] <= 1.0
    # the read-back conductances are the programmed ones (read noise is a fraction of a µS)
    assert ev["read_rms_error_siemens"] == pytest.approx(record["rms_error_siemens"], abs=3e-6)


def _true_conductance(lab: Any, die: tuple[int, int], site: int) -> float:
    from bruno_lab.devices.rram import rram_conductance_siemens
    from instruments.sim.physics import params_for

    device = lab.device(die, site)
    return float(np.asarray(rram_conductance_siemens(device.state, params_for(device)))[0])
