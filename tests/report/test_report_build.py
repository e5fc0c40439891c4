"""The wafer report on a synthetic store: wafer-map values are the stored scalars (in display
units), characterization-only selection, a plan lacking a protocol, units, the CLI's errors."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from report_helpers import add_deployment_run, synthetic_store


def _figures(html: str) -> dict[str, dict]:
    return {
        m.group(1): json.loads(m.group(2).replace("<\\/", "</"))
        for m in re.finditer(
            r'<script type="application/json" id="data-([^"]+)">(.*?)</script>', html, re.S
        )
    }


@pytest.fixture
def store(tmp_path: Path):
    s = synthetic_store(
        f"sqlite:///{tmp_path / 'syn.db'}",
        protocols=("pv_loop", "rram_forming", "rram_program_verify"),
    )
    yield s
    s.close()


def test_wafer_map_values_are_the_stored_scalars_in_display_units(store, tmp_path: Path) -> None:
    from bruno_lab.store.queries import measurements_frame
    from reporting.build import build_report, render_html

    html = render_html(build_report(store, "W-syn"))
    figs = _figures(html)
    heat = figs["fecap-map-pr_pos_c_m2"]["data"][1]
    frame = measurements_frame(store, "W-syn", protocol="pv_loop")
    ok = frame[frame["status"] == "ok"]
    assert len(ok) == 7
    for r in ok.itertuples(index=False):
        shown = heat["z"][heat["y"].index(r.die_y)][heat["x"].index(r.die_x)]
        assert shown == pytest.approx(100.0 * r.pr_pos_c_m2, rel=1e-3)  # C/m² -> µC/cm²
        text = heat["text"][heat["y"].index(r.die_y)][heat["x"].index(r.die_x)]
        assert float(text) == pytest.approx(100.0 * r.pr_pos_c_m2, rel=5e-3)
        assert "e" not in text.lower()  # plain notation, no exponent
    assert heat["colorbar"]["title"]["text"] == "µC/cm²"
    # two RRAM cells per die: the map shows their median
    forming = figs["rram-map-forming_voltage_v"]["data"][1]
    assert forming["z"][0][1] == pytest.approx(np.median([2.1, 2.12]), rel=1e-3)
    # the failed die: red frame, its reason on hover; the off-map die is absent
    shapes = figs["fecap-map-pr_pos_c_m2"]["layout"]["shapes"]
    assert any(
        s["type"] == "rect" and s["x0"] < 1 < s["x1"] and s["y0"] < 0 < s["y1"] for s in shapes
    )
    assert "test reason" in heat["customdata"][0][1]
    assert heat["z"][2][2] is None and heat["customdata"][2][2] == ""
    # imprint is signed: diverging colour map centred on 0, in mV
    imprint = figs["fecap-map-imprint_v"]["data"][1]
    assert imprint["zmid"] == 0 and imprint["colorbar"]["title"]["text"] == "mV"


def test_every_section_renders_and_nothing_is_fetched(store) -> None:
    from reporting.build import build_report, render_html
    from reporting.plotjson import plotly_js

    report = build_report(store, "W-syn")
    ids = [s.id for s in report.sections]
    assert ids[0] == "summary" and {"fecap", "rram", "provenance"} <= set(ids)
    html = render_html(report)
    assert plotly_js() in html  # inlined from the installed package: nothing to fetch
    assert not re.search(r'(src|href)="(https?:)?//', html.replace(plotly_js(), ""))
    assert "device: no switching: test reason" in html  # the failure and its reason


def test_characterization_only_unless_asked(store) -> None:
    from reporting.build import build_report

    run = add_deployment_run(store, "W-syn", (0, 1), 3, 500e-6)

    def level_x(report) -> np.ndarray:
        fig = report.section("rram").blocks
        cdf = next(b.figure for b in fig if b.id == "rram-level-cdf")
        return np.concatenate(
            [np.asarray(t["x"], float) for t in cdf["data"] if "n =" in t.get("name", "")]
        )

    only = build_report(store, "W-syn")
    assert level_x(only).max() < 200.0  # µS: the deployment's 500 µS cell is left out
    prov = only.section("provenance").blocks[0]
    assert [c.text for c in prov.rows[-1][:2]] == [f"run {run}", "deployment"]
    assert prov.rows[-1][-1].text == "left out (purpose)"
    both = build_report(store, "W-syn", purposes=("characterization", "deployment"))
    assert level_x(both).max() == pytest.approx(500.0)
    just = build_report(store, "W-syn", run_ids=[run])
    assert [r.run_id for r in just.meta.get("runs", [])] in ([], [run])
    assert level_x(just).max() == pytest.approx(500.0)


def test_a_plan_without_a_protocol_has_no_section_for_it(tmp_path: Path) -> None:
    from reporting.build import build_report, render_html

    store = synthetic_store(f"sqlite:///{tmp_path / 'rram.db'}", protocols=("rram_forming",))
    try:
        report = build_report(store, "W-syn")
        ids = [s.id for s in report.sections]
        assert "fecap" not in ids and "felif" not in ids and "rram" in ids
        rram = report.section("rram")
        assert [b.id for b in rram.blocks if b.kind == "figure"] == [
            "rram-map-forming_voltage_v",
            "rram-voltage-cdf",
        ]
        assert render_html(report).count('class="report-section"') == len(ids)
    finally:
        store.close()


def test_units_and_numbers() -> None:
    from reporting.units import fmt, pct, quantity

    assert quantity("pr_pos_c_m2").unit == "µC/cm²" and quantity("pr_pos_c_m2").factor == 100
    assert quantity("e_a_v_m").unit == "MV/cm" and quantity("e_a_v_m").scale(
        12.7e8
    ) == pytest.approx(12.7)
    assert quantity("t_hzo_m").unit == "nm"
    assert quantity("g_hrs_siemens", [5e-9, 6e-9]).unit == "nS"
    assert quantity("g_lrs_siemens", [1.2e-4]).unit == "µS"
    assert quantity("imprint_v", [0.004]).unit == "mV" and quantity("vc_pos_v", [1.3]).unit == "V"
    assert quantity("input_current_a", [2e-8]).unit == "nA"
    assert quantity("imprint_v").diverging and not quantity("pr_pos_c_m2").diverging
    assert [fmt(x) for x in (22.4371, 0.25312, 1015.2, 1.0e-17, math.nan)] == [
        "22.4",
        "0.253",
        "1015",
        "0",
        "–",
    ]
    assert pct(0.6197916666666666) == "62.0 %"


def test_cli_report_writes_html_and_refuses_bad_input(
    store, tmp_path: Path, monkeypatch, capsys
) -> None:
    from typer.testing import CliRunner

    from bruno_lab.cli import app, main

    url = store.url
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(
        app, ["report", "--wafer", "W-syn", "--out", str(out), "--db", url, "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert Path(doc["report"]) == out / "report.html" and "fecap" in doc["sections"]
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for args, needle in (
        (["--wafer", "NOPE"], "no wafer named 'NOPE'"),
        (["--wafer", "W-syn", "--training", str(bad)], "not JSON"),
        (["--wafer", "W-syn", "--run", "99"], "run(s) [99]"),
        (["--wafer", "W-syn", "--evaluation", str(bad)], "--evaluation needs --deployment"),
    ):
        monkeypatch.setattr(
            sys,
            "argv",
            ["bruno-lab", "report", *args, "--out", str(tmp_path / "x.html"), "--db", url],
        )
        with pytest.raises(SystemExit) as exc:
            main()
        err = capsys.readouterr().err
        assert exc.value.code == 2, (args, err)
        assert needle in err, (needle, err)
        assert not (tmp_path / "x.html").exists()


def test_the_report_and_the_live_view_name_their_extra(store, monkeypatch) -> None:
    from test_extras import hide

    from bruno_lab.errors import MissingExtraError
    from bruno_lab.extras import install_hint
    from reporting.build import build_report
    from reporting.live.server import serve

    hide(monkeypatch, "plotly")
    with pytest.raises(MissingExtraError, match=re.escape(install_hint("report"))):
        build_report(store, "W-syn")
    with pytest.raises(MissingExtraError, match="the live view needs plotly"):
        serve(store)


def test_array_conductance_maps_plug_into_the_rram_section(store) -> None:
    """A protocol named ``array_*`` that stores a 2-D conductance array (rows x columns of a
    1T1R array, in S) gets a heat map in µS in the RRAM section."""
    from datetime import UTC, datetime

    from reporting.build import build_report

    g = np.linspace(5e-6, 200e-6, 32).reshape(4, 8)
    dev = store.ensure_device(
        store.ensure_die(store.ensure_wafer("W-syn"), 0, 0, "0,0"), "9", "rram", {}
    )
    t = datetime.now(UTC)
    mid = store.add_measurement(
        run_id=1,
        device_id=dev,
        protocol="array_read",
        parameters={},
        instruments={},
        started_at=t,
        finished_at=t,
        status="ok",
        error=None,
        scalars={},
        arrays={"conductance_siemens": (g, "S"), "row": (np.arange(4), "")},
        key="0,0/9/array_read/0",
    )
    levels = np.arange(32).reshape(4, 8) % 2
    targets = np.where(levels == 0, 30e-6, 150e-6)
    reached = targets * (1 + 0.01 * np.sin(np.arange(32)).reshape(4, 8))
    prog = store.add_measurement(
        run_id=1,
        device_id=dev,
        protocol="array_program",
        parameters={},
        instruments={},
        started_at=t,
        finished_at=t,
        status="ok",
        error=None,
        scalars={},
        arrays={
            "target_level": (levels, ""),
            "target_conductance_siemens": (targets, "S"),
            "reached_conductance_siemens": (reached, "S"),
            "success": (np.ones((4, 8), dtype=np.int64), ""),
        },
        key="0,0/9/array_program/0",
    )
    rram = build_report(store, "W-syn").section("rram")
    ids = {b.id for b in rram.blocks if b.kind == "figure"}
    fig = next(b.figure for b in rram.blocks if b.id == f"rram-array-{mid}-conductance_siemens")
    assert np.allclose(np.asarray(fig["data"][0]["z"]), g * 1e6)
    assert f"rram-array-{prog}-reached_conductance_siemens" in ids  # measured, mapped
    assert f"rram-array-{prog}-target_conductance_siemens" not in ids  # a target is not
    # the array's 32 cells join the test cells' level distributions, a level per target
    table = next(b for b in rram.blocks if b.id == "rram-levels")
    assert [(r[1].text, r[4].text) for r in table.rows] == [
        ("20.0", "16"),
        ("30.0", "16"),
        ("60.0", "16"),
        ("100", "16"),
        ("150", "16"),
    ]
