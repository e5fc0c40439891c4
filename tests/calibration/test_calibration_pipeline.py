"""The calibration pipeline on a synthetic RRAM store: cards, versions, CLI, bad input."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from bruno_lab.cards import load_card_file
from bruno_lab.errors import BadInputError, DataError
from bruno_lab.store import open_store
from bruno_lab.store.models import ArrayChunk, Fit, ModelCard, StoredArray
from calibration.pipeline import calibrate

TARGETS = np.linspace(6e-6, 242e-6, 8)
N_CELLS = 40
STUCK = {3, 17}


def _add(store, run_id, dev, protocol, arrays, scalars, status="ok", error=None, params=None):
    now = datetime.now(UTC)
    return store.add_measurement(
        run_id=run_id,
        device_id=dev,
        protocol=protocol,
        parameters=params or {"read_v": 0.2},
        instruments={},
        started_at=now,
        finished_at=now,
        status=status,
        error=error,
        scalars=scalars,
        arrays=arrays,
    )


def _fill(url: str, rng: np.random.Generator) -> dict[str, int]:
    store = open_store(url, require_head=False)
    store.upgrade()
    wid = store.ensure_wafer("W7", lot="L1")
    run_id = store.create_run({"plan": "synthetic"}, "test", {}, "0")
    ids = {}
    for cell in range(N_CELLS):
        die = store.ensure_die(wid, cell % 8, cell // 8, f"D{cell}")
        dev = store.ensure_device(die, "0", "rram", {"area_m2": 1e-14})
        v = np.linspace(0, 4, 81)
        vf = 2.5 + 0.1 * rng.normal()
        i = np.where(v >= vf, 1e-4, 1e-9 * (1 + v))
        fid = _add(
            store,
            run_id,
            dev,
            "rram_forming",
            {"voltage_v": (v, "V"), "current_a": (i, "A")},
            {"forming_voltage_v": float(v[v >= vf][0]), "formed": 1.0},
        )
        ids.setdefault("forming", fid)
        _add(
            store,
            run_id,
            dev,
            "rram_iv",
            {"voltage_v": (v, "V"), "current_a": (i, "A"), "cycle_index": (np.zeros(81), "")},
            {
                "set_voltage_v": 0.8 + 0.05 * rng.normal(),
                "reset_voltage_v": -0.7,
                "g_lrs_siemens": 2e-4 * (1 + 0.05 * rng.normal()),
                "g_hrs_siemens": 5e-6,
                "n_cycles": 5.0,
            },
        )
        if cell in STUCK:
            _add(
                store,
                run_id,
                dev,
                "rram_program_verify",
                {},
                {},
                status="failed",
                error="no switching: conductance stayed at 3e-06 S for every target",
            )
            continue
        reached = TARGETS + rng.normal(0, 1.5e-6, 8)
        _add(
            store,
            run_id,
            dev,
            "rram_program_verify",
            {
                "target_level": (np.arange(8), ""),
                "target_conductance_siemens": (TARGETS, "S"),
                "reached_conductance_siemens": (reached, "S"),
                "attempts": (np.full(8, 3), ""),
                "success": (np.ones(8, dtype=np.int64), ""),
            },
            {"n_levels": 8.0, "n_success": 8.0},
        )
        lv = np.repeat(np.arange(8), 10)
        g = reached[lv] + rng.normal(0, 1e-7 + 0.01 * reached[lv])
        _add(
            store,
            run_id,
            dev,
            "rram_read_noise",
            {"level": (lv, ""), "conductance_siemens": (g, "S")},
            {},
        )
        t = np.tile(np.geomspace(1, 1e4, 5), 2)
        lvl = np.repeat([0, 1], 5)
        g0 = np.array([50e-6, 150e-6])[lvl]
        gt = g0 * (1 - 0.01 * np.log10(t)) + rng.normal(0, 1, 10) * 3e-7 * np.log10(t)
        _add(
            store,
            run_id,
            dev,
            "rram_retention",
            {"time_s": (t, "s"), "level": (lvl, ""), "conductance_siemens": (gt, "S")},
            {},
        )
    store.close()
    return ids


@pytest.fixture
def db(tmp_path: Path) -> tuple[str, dict[str, int]]:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    ids = _fill(url, np.random.default_rng(0))
    return url, ids


def _n(url: str, model) -> int:
    store = open_store(url)
    with store.session() as s:
        n = s.scalar(select(func.count()).select_from(model))
    store.close()
    return int(n)


def test_rram_card_has_ladder_stuck_rate_and_provenance(db) -> None:
    url, _ = db
    store = open_store(url)
    out = calibrate(store, "W7", "rram", version="test")
    body = out.body
    assert body.device_kind == "rram" and body.scope_id == "W7"
    assert body.n_devices == N_CELLS - len(STUCK) and body.n_defective == len(STUCK)
    for lv, tgt in zip(body.rram.levels, TARGETS, strict=True):
        assert abs(lv.mean_siemens - tgt) / tgt < 0.02
    assert body.rram.stuck_fraction == pytest.approx(len(STUCK) / N_CELLS)
    assert body.rram.relaxation.drift_rel_per_decade == pytest.approx(-0.01, rel=0.2)
    assert body.parameters["forming_voltage_v"].mean == pytest.approx(2.5, abs=0.05)
    assert len(out.fit_ids) == N_CELLS
    card = store.get_model_card(out.card_id)
    assert card.fit_ids == sorted(out.fit_ids) and card.code_version == "test"
    fit = store.get_fit(out.fit_ids[0])
    assert len(fit.measurement_links) == 5  # forming, iv, verify, read noise, retention
    again = calibrate(store, "W7", "rram", version="test")
    assert (again.card_version, out.card_version) == (2, 1)
    assert store.get_model_card(out.card_id).body == card.body  # v1 untouched
    store.close()


def test_bad_input_writes_no_card(db) -> None:
    url, ids = db
    store = open_store(url)
    with pytest.raises(DataError, match="no wafer named"):
        calibrate(store, "NOPE", "rram")
    with pytest.raises(DataError, match="no fecap measurements"):
        calibrate(store, "W7", "fecap")
    with pytest.raises(BadInputError, match="unknown device kind"):
        calibrate(store, "W7", "memristor")
    with store.session() as s:
        aid = s.scalar(
            select(StoredArray.id)
            .where(StoredArray.measurement_id == ids["forming"])
            .where(StoredArray.name == "current_a")
        )
        data = bytearray(s.scalar(select(ArrayChunk.data).where(ArrayChunk.array_id == aid)))
        data[3] ^= 0x10
        s.execute(update(ArrayChunk).where(ArrayChunk.array_id == aid).values(data=bytes(data)))
    with pytest.raises(DataError, match="checksum"):
        calibrate(store, "W7", "rram")
    store.close()
    assert _n(url, ModelCard) == 0 and _n(url, Fit) == 0


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from bruno_lab.cli import main

    monkeypatch.setattr(sys, "argv", ["bruno-lab", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_cli_fit_cards_and_exit_codes(db, tmp_path: Path, monkeypatch, capsys) -> None:
    from bruno_lab.cli import app

    url, _ = db
    runner = CliRunner()
    res = runner.invoke(app, ["fit", "--wafer", "W7", "--kind", "rram", "--db", url, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["cards"][0]["card_version"] == 1 and doc["cards"][0]["n_devices"] == 38
    res = runner.invoke(app, ["cards", "list", "--db", url, "--json"])
    assert [c["version"] for c in json.loads(res.stdout)["cards"]] == [1]
    card_id = str(doc["cards"][0]["card_id"])
    res = runner.invoke(app, ["cards", "show", card_id, "--db", url, "--json"])
    assert json.loads(res.stdout)["body"]["rram"]["stuck_fraction"] == pytest.approx(0.05)
    for suffix in ("json", "yaml"):
        out = tmp_path / f"card.{suffix}"
        res = runner.invoke(app, ["cards", "export", card_id, "--out", str(out), "--db", url])
        assert res.exit_code == 0, res.output
        assert load_card_file(out).device_kind == "rram"
    res = runner.invoke(
        app,
        [
            "cards",
            "export",
            "--kind",
            "rram",
            "--wafer",
            "W7",
            "--format",
            "yaml",
            "--provenance",
            "--db",
            url,
        ],
    )
    assert yaml.safe_load(res.stdout)["card"]["version"] == 1
    code, _, err = _main(monkeypatch, capsys, "fit", "--wafer", "NOPE", "--db", url)
    assert code == 2 and "no wafer named 'NOPE'" in err
    code, _, err = _main(monkeypatch, capsys, "fit", "--wafer", "W7", "--kind", "xx", "--db", url)
    assert code == 2 and "not one of" in err and "rram_array" in err  # a usage error
    code, _, err = _main(monkeypatch, capsys, "cards", "show", "999", "--db", url)
    assert code == 2 and "999" in err
    assert _n(url, ModelCard) == 1


def test_report_writes_level_histograms_and_wafer_maps(db, tmp_path: Path) -> None:
    from bruno_lab.cli import app

    url, _ = db
    runner = CliRunner()
    assert runner.invoke(app, ["fit", "--wafer", "W7", "--db", url]).exit_code == 0
    out = tmp_path / "report"
    res = runner.invoke(app, ["report", "--wafer", "W7", "--out", str(out), "--db", url, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert Path(doc["report"]) == out / "report.html" and "rram" in doc["sections"]
    html = (out / "report.html").read_text()
    for fig in ("rram-level-cdf", "rram-sigma-level", "rram-stuck-map"):
        assert f'id="data-{fig}"' in html, fig


def test_lot_card_spans_the_lot(db, monkeypatch, capsys) -> None:
    from bruno_lab.cli import app

    url, _ = db
    res = CliRunner().invoke(app, ["fit", "--lot", "L1", "--kind", "rram", "--db", url, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["scope"], doc["scope_id"]) == ("lot", "L1")
    store = open_store(url)
    card = store.latest_model_card("rram", "lot", "L1").card()
    store.close()
    assert card.scope == "lot" and card.n_devices == N_CELLS - len(STUCK)
    code, _, err = _main(monkeypatch, capsys, "fit", "--lot", "NOPE", "--db", url)
    assert code == 2 and "lot 'NOPE'" in err
    code, _, err = _main(monkeypatch, capsys, "fit", "--lot", "L1", "--wafer", "W7", "--db", url)
    assert code == 2 and "exactly one" in err


def _card_body(url: str, version: int) -> dict:
    store = open_store(url)
    try:
        cards = store.list_model_cards(kind="rram", scope="wafer", scope_id="W7")
        doc = next(c for c in cards if c.version == version).card().model_dump(mode="json")
    finally:
        store.close()
    for key in ("created_at", "provenance"):
        doc.pop(key, None)
    return doc


def test_cli_refit_after_a_deployment_gives_the_same_card(db, monkeypatch, capsys) -> None:
    """A deployment run reprograms cells of the wafer to conductances off the ladder; the refit
    reads characterization runs only and gives the card it gave before, field for field.
    ``--purpose`` brings the deployment in, and then the card changes."""
    from bruno_lab.cli import app

    url, _ = db
    runner = CliRunner()
    fit = ["fit", "--wafer", "W7", "--kind", "rram", "--db", url, "--json"]
    res = runner.invoke(app, fit)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["purpose"] == ["characterization"]

    store = open_store(url)
    dep = store.create_run({"plan": "deploy"}, "test", {}, "0", purpose="deployment")
    wid = store.ensure_wafer("W7", lot="L1")
    targets = np.array([500e-6, 400e-6])
    for cell in range(10):  # the same cells (ensure_* finds them)
        die = store.ensure_die(wid, cell % 8, cell // 8, f"D{cell}")
        dev = store.ensure_device(die, "0", "rram", {"area_m2": 1e-14})
        _add(
            store,
            dep,
            dev,
            "rram_program_verify",
            {
                "target_level": (np.arange(2), ""),
                "target_conductance_siemens": (targets, "S"),
                "reached_conductance_siemens": (targets * 1.01, "S"),
                "attempts": (np.full(2, 2), ""),
                "success": (np.ones(2, dtype=np.int64), ""),
            },
            {"n_levels": 2.0, "n_success": 2.0},
        )
    store.set_run_status(dep, "completed")
    store.close()

    res = runner.invoke(app, fit)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["cards"][0]["card_version"] == 2
    assert _card_body(url, 2) == _card_body(url, 1)

    res = runner.invoke(app, [*fit, "--purpose", "characterization", "--purpose", "deployment"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["purpose"] == ["characterization", "deployment"]
    assert _card_body(url, 3) != _card_body(url, 1)
    code, _, err = _main(monkeypatch, capsys, *fit[:-1], "--purpose", "evaluation")
    assert code == 2 and "in evaluation runs: nothing to fit" in err, err
