"""``bruno-lab train``: JSON metrics, checkpoints that resume, cards from files and the database,
outputs, and exit code 2 on bad input."""

from __future__ import annotations

import json
import sys

import pytest
from train_cards import braille_file, rram_card_dict
from typer.testing import CliRunner

from bruno_lab.cli import app, main
from bruno_lab.train.io import load_network

QUICK = ["--task", "patterns", "--hidden", "16", "--n-micro", "20", "--max-batches", "2"]


def _run(args: list[str]) -> dict:
    result = CliRunner().invoke(app, ["train", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_json_reports_metrics_memory_and_time():
    doc = _run([*QUICK, "--epochs", "1", "--neuron", "felif"])
    final = doc["final"]
    assert 0.0 <= final["test_accuracy"] <= 1.0 and final["test_loss"] > 0
    assert doc["peak_rss_bytes"] > 0 and doc["autograd_saved_bytes"] > 0
    assert doc["time_s"] > 0 and len(doc["history"]) == 1
    fid = doc["fidelity"]  # the test split on the device's neurons beside the trained network
    assert fid["n_samples"] == doc["n_test"] and 0 <= fid["accuracy_device"] <= 1
    assert fid["gap"] == pytest.approx(fid["accuracy_trained"] - fid["accuracy_device"])
    assert fid["felif_rate_device"] >= 0 and fid["felif_rate_trained"] >= 0


def test_checkpoint_resume_continues_exactly(tmp_path):
    ck = tmp_path / "ck.pt"
    straight = _run([*QUICK, "--neuron", "lif", "--synapse", "paper3", "--epochs", "2"])
    _run(
        [*QUICK, "--neuron", "lif", "--synapse", "paper3", "--epochs", "1", "--checkpoint", str(ck)]
    )
    resumed = _run(
        [
            *QUICK,
            "--neuron",
            "lif",
            "--synapse",
            "paper3",
            "--epochs",
            "2",
            "--checkpoint",
            str(ck),
            "--resume",
        ]
    )
    assert len(resumed["history"]) == 2
    for key in ("train_loss", "test_loss", "test_accuracy"):
        assert resumed["history"][1][key] == straight["history"][1][key]


def test_device_training_saves_network_map_and_nir(tmp_path):
    card_file = tmp_path / "rram.json"
    card_file.write_text(json.dumps(rram_card_dict(read_slope_rel=0.01, stuck_fraction=0.01)))
    felif_file = tmp_path / "felif.yaml"
    felif_file.write_text(
        "device_kind: felif\nscope: lot\nscope_id: L7\nmodel_name: felif-lumped\n"
        "model_version: '1'\nn_devices: 50\nn_defective: 0\nparameters:\n"
        "  area_m2: {unit: 'm**2', mean: 2.0e-11, std: 2.0e-12, n_devices: 50}\n"
    )
    out, pmap, nir_file = tmp_path / "net.pt", tmp_path / "map.json", tmp_path / "net.nir"
    doc = _run(
        [
            *QUICK,
            "--card",
            str(felif_file),
            "--epochs",
            "1",
            "--synapse",
            "device",
            "--card",
            str(card_file),
            "--relax-time-s",
            "3600",
            "--out",
            str(out),
            "--programming-map",
            str(pmap),
            "--nir",
            str(nir_file),
        ]
    )
    assert doc["cards"]["rram"]["scope_id"] == "W-test"
    net = load_network(out)
    assert net.rram_card is not None and net.config.relaxation_time_s == 3600
    assert doc["cards"]["felif"]["scope_id"] == "L7"
    area = net.output.params().area_m2
    assert float(area.mean()) == pytest.approx(2e-11, rel=0.2) and float(area.std()) > 0
    assert json.loads(pmap.read_text())["n_cells"] == 2 * (16 * 20 + 4 * 16)
    assert nir_file.stat().st_size > 0


def test_card_by_database_id(tmp_path):
    from bruno_lab.store import open_store

    url = f"sqlite:///{tmp_path / 'lab.db'}"
    store = open_store(url, require_head=False)
    try:
        store.upgrade()
        row = store.add_model_card(rram_card_dict(), [], "test")
    finally:
        store.close()
    doc = _run([*QUICK, "--epochs", "1", "--synapse", "device", "--card", str(row.id), "--db", url])
    assert doc["cards"]["rram"]["model_name"] == "rram-ladder"


@pytest.mark.parametrize(
    "args",
    [
        ["--synapse", "device"],  # no card
        ["--task", "mnist"],
        ["--neuron", "izhikevich"],
        ["--task", "braille"],  # no --data
        ["--card", "not-a-card"],
        ["--resume"],  # no --checkpoint
        ["--coarse-gradient", "exact"],
        ["--input-scale-a", "0"],
        ["--relax-time-s", "-1", "--synapse", "paper3"],
    ],
)
def test_bad_input_exits_2(monkeypatch, capsys, args):
    monkeypatch.setattr(sys, "argv", ["bruno-lab", "train", *QUICK, "--epochs", "1", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err.lower()  # ours, or a usage error (choices)


def test_braille_task_trains_from_a_pickle(tmp_path):
    path = tmp_path / "braille.pkl"
    braille_file(path, n_per_letter=2)
    doc = _run(
        [
            "--task",
            "braille",
            "--data",
            str(path),
            "--hidden",
            "16",
            "--n-micro",
            "20",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--max-batches",
            "1",
            "--neuron",
            "rlif",
        ]
    )
    assert doc["n_train"] + doc["n_test"] == 2 * 27
    assert doc["final"]["test_loss"] > 0
