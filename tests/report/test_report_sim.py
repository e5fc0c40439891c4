"""The report of a wafer measured with every protocol on the simulated lab, fitted into cards:
every section and figure present, wafer-map values equal to the stored scalars, and the page
drawn by a real headless Chromium without a script error (a screenshot is written)."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest
from browser import available, chromium, full_screenshot
from report_helpers import DEMO_TRUTH, all_protocols_plan, run_plan

pytestmark = pytest.mark.slow

FIGURES = (
    "fecap-map-pr_pos_c_m2",
    "fecap-map-fit-ps_c_m2",
    "fecap-pv-0",
    "fecap-pr-dist",
    "fecap-vc-dist",
    "fecap-pund",
    "fecap-kinetics",
    "felif-map-rate",
    "felif-raster",
    "felif-rate",
    "felif-membrane",
    "rram-map-forming_voltage_v",
    "rram-stuck-map",
    "rram-hrs-lrs-cdf",
    "rram-voltage-cdf",
    "rram-level-cdf",
    "rram-sigma-level",
    "rram-read-noise",
    "rram-retention",
    "rram-endurance",
)


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from bruno_lab.store import open_store
    from calibration.pipeline import calibrate
    from instruments.sim.lab import SimLab

    tmp = tmp_path_factory.mktemp("sim-report")
    store = open_store(f"sqlite:///{tmp / 'lab.db'}", require_head=False)
    store.upgrade()
    plan = all_protocols_plan([[1, 1], [3, 1]])
    for step in plan["protocols"]:  # shorter versions of the slow ones
        if step["protocol"] == "switching_kinetics":
            step["params"] = {"widths_s": ["100 ns", "10 us"], "amplitudes_v": ["2 V", "3 V"]}
        if step["protocol"] == "rram_endurance":
            step["params"]["max_cycles"] = 10
        if step["protocol"] == "pv_loop":
            step["params"]["frequencies_hz"] = ["10 kHz"]
    with SimLab.start(truth=DEMO_TRUTH, seed=1) as lab:
        run_plan(lab, plan, tmp, store)
    for kind in ("fecap", "felif", "rram"):
        calibrate(store, "demo-wafer", kind)
    yield store, tmp
    store.close()


def _records() -> tuple[Any, Any]:
    """A training that did not learn (flat ln 4 loss at chance) and a deployment onto a 1T1R
    array evaluated by analog MVM: what the loop hands the report besides the store."""
    from test_report_records import _array_record

    from reporting.records import DeploymentRecord, TrainingRecord

    hist = [
        {"epoch": e, "train_loss": 1.386, "test_loss": 1.386, "train_accuracy": 0.25,
         "test_accuracy": 0.25}
        for e in range(1, 6)
    ]  # fmt: skip
    training = TrainingRecord(hist, n_classes=4, n_test=64, confusion=[[16, 0, 0, 0]] * 4)
    deployment = DeploymentRecord(
        _array_record(),
        {
            "on_chip": "analog matrix-vector products (array tester)",
            "chip_accuracies": [0.9375, 0.921875],
            "readback_accuracy": 0.953125,
            "software_accuracy": 0.96875,
            "ideal_accuracy": 0.984375,
            "chance": 0.25,
        },
    )
    return training, deployment


def test_every_section_and_figure_of_a_fully_measured_wafer(measured: Any) -> None:
    from bruno_lab.store.queries import measurements_frame
    from reporting.build import build_report, render_html

    store, tmp = measured
    training, deployment = _records()
    report = build_report(store, "demo-wafer", training=training, deployment=deployment)
    ids = [s.id for s in report.sections]
    assert ids == [
        "summary",
        "fecap",
        "felif",
        "rram",
        "fits",
        "training",
        "deployment",
        "provenance",
    ], ids
    train = report.section("training")
    assert train.blocks[0].level == "bad" and "did not learn beyond chance" in train.blocks[0].text
    assert "stayed at ln 4 = 1.386" in train.blocks[0].text
    assert {"training-curves", "training-confusion"} <= set(train.figure_ids())
    assert "deployment-tile-0" in report.section("deployment").figure_ids()
    figs = {b.id: b.figure for s in report.sections for b in s.blocks if b.kind == "figure"}
    missing = [f for f in FIGURES if f not in figs]
    assert not missing, missing
    # the P-V figure carries the card's band and mean next to the measured loops
    names = {t.get("name", "") for t in figs["fecap-pv-0"]["data"]}
    assert "card: 16–84 % of its population" in names and any("mean device" in n for n in names)
    assert any("mean neuron" in t.get("name", "") for t in figs["felif-rate"]["data"])
    # values in the wafer maps are the stored scalars, in display units
    frame = measurements_frame(store, "demo-wafer", protocol="rram_forming")
    heat = figs["rram-map-forming_voltage_v"]["data"][1]
    for r in frame[frame["status"] == "ok"].itertuples(index=False):
        z = heat["z"][heat["y"].index(r.die_y)][heat["x"].index(r.die_x)]
        if math.isnan(r.forming_voltage_v):  # a cell that never formed: no value, no colour
            assert z is None
        else:
            assert z == pytest.approx(r.forming_voltage_v)
    fits = report.section("fits").blocks[-1]
    assert len(fits.rows) == len(report.device_curves) >= 6
    assert all(row[0].href == f"#device-{row[0].href.split('-')[-1]}" for row in fits.rows)
    html = render_html(report)
    (tmp / "report.html").write_text(html)
    embedded = re.search(r'id="device-curves">(.*?)</script>', html, re.S).group(1)
    assert set(json.loads(embedded.replace("<\\/", "</"))) == set(report.device_curves)


@pytest.mark.skipif(available() is not None, reason=available() or "")
def test_the_report_draws_in_chromium(measured: Any) -> None:
    store, tmp = measured
    path = tmp / "report.html"
    if not path.exists():
        from reporting.build import write_report

        training, deployment = _records()
        write_report(store, "demo-wafer", path, training=training, deployment=deployment)
    shots = Path(os.environ.get("BRUNO_TEST_ARTIFACTS") or tmp)
    with chromium() as driver:
        driver.get(path.as_uri() + "#device-1")
        driver.execute_script("window.brunoDrawAll()")
        n = driver.execute_script("return document.querySelectorAll('.js-plotly-plot').length")
        assert n >= len(FIGURES)
        assert driver.execute_script("return document.getElementById('device-select').value") == "1"
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        full_screenshot(driver, shots / "report-all-protocols.png")
