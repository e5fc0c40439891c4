"""Honest metrics: tie-aware accuracy, collapse detected and warned, runs over seeds."""

from __future__ import annotations

import json
import logging
import math
import sys

import pytest
import torch
from typer.testing import CliRunner

from bruno_lab.cli import app, main
from bruno_lab.train import metrics as mx
from bruno_lab.train.data.patterns import make_patterns
from bruno_lab.train.loop import TrainConfig, evaluate_split, train
from bruno_lab.train.network import NetworkConfig, SpikingNetwork


def test_ties_count_one_over_k_so_a_silent_network_scores_chance_not_the_class_0_share():
    y = torch.tensor([0, 0, 0, 1])  # 75 % class 0: argmax of all-zero counts would score 0.75
    silent = torch.zeros(4, 3)
    assert mx.tie_aware_hits(silent, y) == pytest.approx(4 / 3)
    assert float((silent.argmax(1) == y).float().mean()) == 0.75  # what plain argmax says
    counts = torch.tensor([[3.0, 3.0, 0.0], [5.0, 1.0, 1.0], [0.0, 2.0, 2.0], [1.0, 4.0, 4.0]])
    # sample 0: tie of 2 incl. the target -> 1/2; 1: hit; 2: target not among the max; 3: 1/2
    assert mx.tie_aware_hits(counts, y) == pytest.approx(2.0)
    assert mx.silent_count(silent) == 4 and mx.tied_count(counts) == 0
    assert mx.tied_count(torch.full((2, 3), 7.0)) == 2


def test_collapse_check_flags_silence_ties_and_chance_loss():
    ln4 = math.log(4)
    assert mx.collapse_check(1.0, 1.0, ln4, 4).collapsed
    assert "silent" in mx.collapse_check(1.0, 1.0, ln4, 4).reason
    assert mx.collapse_check(0.0, 0.95, 1.0, 4).collapsed  # all saturated alike
    assert mx.collapse_check(0.0, 0.1, ln4 * 1.005, 4).collapsed  # loss at ln C
    assert not mx.collapse_check(0.0, 0.1, 0.4, 4).collapsed


def _silent_network(data) -> SpikingNetwork:
    net = SpikingNetwork(
        NetworkConfig(
            kind="classify", n_in=data.n_in, n_hidden=8, n_out=data.n_out, n_micro=20,
            init="legacy",
        )
    )  # fmt: skip
    with torch.no_grad():
        net.syn_out.weight.fill_(-5.0)  # every output neuron driven down: no spike
    return net


def test_a_collapsed_network_is_detected_reported_and_warned(caplog):
    data = make_patterns(n_classes=4, n_steps=6, n_train=32, n_test=32, seed=0)
    net = _silent_network(data)
    split = evaluate_split(net, data.test_x, data.test_y, "classify", TrainConfig())
    assert split.check.collapsed and split.check.silent_fraction == 1.0
    assert split.accuracy == pytest.approx(0.25)  # chance, whatever the class-0 share
    assert split.loss == pytest.approx(math.log(4), rel=1e-6)
    with caplog.at_level(logging.WARNING, logger="bruno_lab.train.loop"):
        result = train(net, data, TrainConfig(epochs=1, lr=1e-6, fidelity_samples=0))
    assert result.collapsed and result.final is not None and result.final.collapsed
    assert result.final.test_silent_fraction == 1.0
    assert result.to_json()["collapsed"] is True
    assert any("collapsed" in r.getMessage() for r in caplog.records)


def test_parse_seeds():
    assert mx.parse_seeds("0-3") == [0, 1, 2, 3]
    assert mx.parse_seeds("1,4, 6-7") == [1, 4, 6, 7]
    for bad in ("", "3-1", "a", "1,1", "-2"):
        with pytest.raises(ValueError, match="seeds"):
            mx.parse_seeds(bad)


def test_mean_sd():
    s = mx.mean_sd([0.9, 0.8, 1.0])
    assert s["mean"] == pytest.approx(0.9) and s["sd"] == pytest.approx(0.1) and s["n"] == 3
    assert mx.mean_sd([0.5]) == {"mean": 0.5, "sd": 0.0, "n": 1}
    assert mx.format_mean_sd([0.9, 0.8, 1.0]) == "0.900 ± 0.100 (n=3)"


QUICK = ["--task", "patterns", "--hidden", "16", "--n-micro", "20", "--max-batches", "2"]


def test_cli_runs_seeds_and_reports_mean_and_sd():
    result = CliRunner().invoke(app, ["train", *QUICK, "--epochs", "1", "--seeds", "0-2", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["seeds"] == [0, 1, 2] and [r["seed"] for r in doc["runs"]] == [0, 1, 2]
    accs = [r["final"]["test_accuracy"] for r in doc["runs"]]
    summary = doc["summary"]["test_accuracy"]
    assert summary["n"] == 3 and summary["mean"] == pytest.approx(sum(accs) / 3)
    assert summary["sd"] == pytest.approx(torch.tensor(accs).std().item(), rel=1e-5)
    assert doc["summary"]["n_collapsed"] == sum(r["collapsed"] for r in doc["runs"])
    # every FeLIF run is evaluated on the device's neurons too, and the gap is summarised
    gaps = []
    for r in doc["runs"]:
        fid = r["fidelity"]
        assert fid["n_samples"] == r["n_test"]
        assert fid["gap"] == pytest.approx(fid["accuracy_trained"] - fid["accuracy_device"])
        # the network as trained on the same samples: the final test figure (batching aside)
        assert fid["accuracy_trained"] == pytest.approx(r["final"]["test_accuracy"], abs=0.02)
        gaps.append(fid["gap"])
    gap = doc["summary"]["fidelity_gap"]
    assert gap["n"] == 3 and gap["mean"] == pytest.approx(sum(gaps) / 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "2-1"], "--seeds"),
        (["--seeds", "0-1", "--out", "net.pt"], "one seed"),
        (["--felif-reset", "sometimes"], "--felif-reset"),
        (["--init", "random"], "--init"),
    ],
)
def test_cli_bad_seed_and_option_values_exit_2(monkeypatch, capsys, tmp_path, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bruno-lab", "train", *QUICK, "--epochs", "1", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "net.pt").exists()
