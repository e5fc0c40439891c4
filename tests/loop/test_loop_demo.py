"""The reduced demo end to end: its report's content and its database's contents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest


@pytest.mark.slow
def test_quick_demo_writes_report_summary_and_database(tmp_path: Path) -> None:
    from sqlalchemy import func, select
    from typer.testing import CliRunner

    from bruno_lab.cli import app
    from bruno_lab.store import open_store
    from bruno_lab.store.models import Fit, Measurement, ModelCard, Run

    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--quick", "--out", str(out), "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert json.loads((out / "summary.json").read_text()) == summary

    # the summary: ids, accuracies, timings
    acc = summary["accuracy"]
    for key in ("software", "ideal_map", "on_chip", "chance"):
        assert 0.0 <= acc[key] <= 1.0
    assert summary["cards"]["rram"]["card_id"] >= 1
    stages = ("lab", "characterize", "fit", "train", "deploy", "evaluate", "report", "total")
    assert all(summary["timings_s"][s] >= 0.0 for s in stages)
    dep = summary["deployment"]
    assert dep["die"] == "2,2" and dep["n_cells"] == 8 and dep["status"] == "completed"

    # the report (reporting/): one self-contained file, every section, the accuracies in %
    report = (out / "report.html").read_text()
    sections = set(re.findall(r'<section id="([a-z-]+)" class="report-section">', report))
    assert {"summary", "fecap", "felif", "rram", "fits", "training", "deployment", "provenance",
            "demo"} <= sections, sections  # fmt: skip
    for fig in ("rram-level-cdf", "rram-map-forming_voltage_v", "training-curves",
                "training-confusion", "deployment-target-reached"):  # fmt: skip
        assert f'id="data-{fig}"' in report, fig
    from reporting.plotjson import plotly_js

    assert plotly_js() in report  # plotly.js inlined from the installed package
    assert not re.search(r'(src|href)="(https?:)?//', report.replace(plotly_js(), ""))
    assert f"{100 * acc['on_chip']:.1f} %" in report

    # the database: characterization, fits, cards and the deployment's measurements
    store = open_store(summary["db"])
    try:
        with store.session() as s:
            per_protocol = dict(
                s.execute(
                    select(Measurement.protocol, func.count())
                    .where(Measurement.run_id == summary["characterization"]["run_id"])
                    .group_by(Measurement.protocol)
                ).all()
            )
            assert per_protocol["pund"] == 2 and per_protocol["pv_loop"] == 4
            for proto in ("rram_forming", "rram_iv", "rram_program_verify", "rram_read_noise",
                          "rram_retention"):  # fmt: skip
                assert per_protocol[proto] == 2  # 2 dies x 1 RRAM test cell (--quick)
            assert s.execute(select(func.count()).select_from(Fit)).scalar() >= 2
            cards = s.execute(select(ModelCard.id, ModelCard.device_kind)).all()
            assert (summary["cards"]["rram"]["card_id"], "rram") in [
                (i, str(getattr(k, "value", k))) for i, k in cards
            ]
            deploy_rows = s.execute(
                select(Measurement.key, Measurement.status).where(
                    Measurement.run_id == dep["run_id"]
                )
            ).all()
            run = s.get(Run, dep["run_id"])
            assert run.plan["document"]["deployment"]["wafer"] == "demo-wafer"
            record = json.loads(Path(dep["record"]).read_text())
            survey = s.execute(
                select(Measurement.protocol, func.count())
                .where(Measurement.run_id == record["survey_run_id"])
                .group_by(Measurement.protocol)
            ).all()
    finally:
        store.close()
    # the demo die's crossbar: surveyed (the network's rows + 8 spare), programmed row by row
    assert record["target"] == "crossbar" and record["array"]["rows"] == 64
    assert [c["cell"] for c in record["cells"]] == list(range(8))
    rows = {c["array_row"] for c in record["cells"]}
    pv = sorted(k for k, _ in deploy_rows if "/array_program_verify/" in k)
    site = record["array"]["site"]
    assert pv == sorted(f"2,2/{site}/array_program_verify/{i}" for i in range(len(rows)))
    assert dict(survey) == {"array_forming": len(rows) + 8, "array_health": len(rows) + 8}
    assert summary["evaluation"]["n_vectors"] > 0  # the chip ran the synapses (analog MVM)
