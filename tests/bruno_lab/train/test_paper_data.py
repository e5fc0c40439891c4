"""SHD from its published HDF5 format (on small generated files), the synthetic Braille-shaped
task, and the paper table's per-cell summary."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bruno_lab.errors import DataError, MissingExtraError
from bruno_lab.train.data.braille_like import braille_shaped_data
from bruno_lab.train.data.shd import N_UNITS, SpikeBins, load_shd
from bruno_lab.train.loop import TrainConfig, train
from bruno_lab.train.network import NetworkConfig, build_network

h5py = pytest.importorskip("h5py")
ROOT = Path(__file__).resolve().parents[3]


def write_shd(path: Path, samples: list[tuple[list[float], list[int]]], labels: list[int]) -> None:
    """A file in SHD's published layout: vlen spikes/times (s) and spikes/units, labels, extra."""
    n = len(samples)
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(samples):
            times[i] = np.asarray(t, dtype=np.float32)
            units[i] = np.asarray(u, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_dataset("extra/speaker", data=np.zeros(n, dtype=np.uint16))


def _random_samples(n: int, seed: int) -> tuple[list[tuple[list[float], list[int]]], list[int]]:
    """Class c fires units near 35*c early in the sample (learnable), plus noise spikes."""
    rng = np.random.default_rng(seed)
    samples, labels = [], []
    for _ in range(n):
        c = int(rng.integers(0, 20))
        t = np.concatenate([rng.uniform(0, 0.5, 30), rng.uniform(0, 1.3, 20)])
        u = np.concatenate([35 * c + rng.integers(0, 35, 30), rng.integers(0, N_UNITS, 20)])
        samples.append((t.tolist(), u.tolist()))
        labels.append(c)
    return samples, labels


def test_shd_bins_counts_per_step_and_channel(tmp_path):
    path = tmp_path / "one.h5"
    # 10 ms steps: 0 and 4 ms share step 0, 15 ms is step 1, 999 ms step 99, 1.2 s is dropped
    samples = [([0.0, 0.004, 0.015, 0.999, 1.2], [0, 0, 1, 699, 5]), ([0.5], [3])]
    write_shd(path, [*samples, ([], []), ([], []), ([], [])], [7, 19, 0, 0, 0])  # empty ones too
    data = load_shd(path, seed=0)
    assert (data.n_train, data.n_test) == (4, 1)
    both = torch.cat([data.train_x.dense(), data.test_x[torch.arange(len(data.test_x))]])
    labels = torch.cat([data.train_y, data.test_y]).tolist()
    first = both[labels.index(7)]
    assert first.shape == (100, N_UNITS)
    assert first[0, 0] == 2 and first[1, 1] == 1 and first[99, 699] == 1 and first.sum() == 4
    second = both[labels.index(19)]
    assert second[50, 3] == 1 and second.sum() == 1
    assert data.n_in == N_UNITS and data.n_out == 20 and data.kind == "classify"
    pooled = load_shd(path, unit_pool=7, n_steps=4, max_time_s=2.0)
    allx = torch.cat([pooled.train_x[torch.arange(pooled.n_train)], pooled.test_x[[0]]])
    assert allx.shape[1:] == (4, 100) and allx.sum() == 6  # 1.2 s kept in 2 s
    assert allx[:, :, 699 // 7].sum() == 1
    assert pooled.n_in == 100


def test_shd_published_split_from_a_directory_and_seeded_split_of_one_file(tmp_path):
    tr, ytr = _random_samples(30, 0)
    te, yte = _random_samples(10, 1)
    write_shd(tmp_path / "shd_train.h5", tr, ytr)
    write_shd(tmp_path / "shd_test.h5", te, yte)
    data = load_shd(tmp_path)
    assert (data.n_train, data.n_test) == (30, 10) and data.meta["split"] == "published"
    assert data.train_y.tolist() == ytr and data.test_y.tolist() == yte
    one = load_shd(tmp_path / "shd_train.h5", seed=3)
    again = load_shd(tmp_path / "shd_train.h5", seed=3)
    assert (one.n_train, one.n_test) == (24, 6)
    assert torch.equal(one.test_y, again.test_y)
    assert sorted(one.train_y.tolist() + one.test_y.tolist()) == sorted(ytr)
    # lazy: a slice stays events, a tensor index is dense and equals the full densification
    part = data.train_x[:5]
    assert isinstance(part, SpikeBins) and len(part) == 5
    idx = torch.tensor([4, 0, 2])
    assert torch.equal(data.train_x[idx], data.train_x.dense()[idx])


def test_shd_trains_through_the_loop(tmp_path):
    tr, ytr = _random_samples(48, 0)
    te, yte = _random_samples(16, 1)
    write_shd(tmp_path / "shd_train.h5", tr, ytr)
    write_shd(tmp_path / "shd_test.h5", te, yte)
    data = load_shd(tmp_path, n_steps=20, unit_pool=35)
    net = build_network(
        NetworkConfig(kind="classify", n_in=data.n_in, n_hidden=32, n_out=20, neuron="lif")
    )
    result = train(net, data, TrainConfig(epochs=2, batch_size=16, fidelity_samples=0))
    assert len(result.history) == 2
    assert all(np.isfinite(m.test_loss) for m in result.history)


@pytest.mark.parametrize(
    "breaks,match",
    [
        ("no-labels", "no dataset 'labels'"),
        ("unit", "sample 1: units must be integers in 0..699"),
        ("label", "sample 0: label 20"),
        ("length", "same, non-zero length"),
    ],
)
def test_shd_bad_files_name_the_problem(tmp_path, breaks, match):
    path = tmp_path / "bad.h5"
    samples = [([0.1], [1]), ([0.2], [700 if breaks == "unit" else 2])]
    labels = [20 if breaks == "label" else 1, 2]
    write_shd(path, samples, labels)
    if breaks == "no-labels":
        with h5py.File(path, "a") as f:
            del f["labels"]
    if breaks == "length":
        with h5py.File(path, "a") as f:
            del f["labels"]
            f.create_dataset("labels", data=np.zeros(3, dtype=np.uint16))
    with pytest.raises(DataError, match=match):
        load_shd(path)


def test_shd_missing_pieces_are_named(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    write_shd(tmp_path / "d" / "shd_train.h5", [([0.1], [1])], [1])
    with pytest.raises(DataError, match=r"needs shd_test\.h5"):
        load_shd(tmp_path / "d")
    (tmp_path / "x.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="cannot open as HDF5"):
        load_shd(tmp_path / "x.h5")
    for name in list(sys.modules):
        if name == "h5py" or name.startswith("h5py."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingExtraError, match=r"h5py.*bruno-lab\[shd\]"):
        load_shd(tmp_path / "d" / "shd_train.h5")


def test_braille_shaped_data_is_the_braille_shape_and_learnable_by_templates():
    data = braille_shaped_data(540, 270)
    assert data.train_x.shape == (540, 102, 4) and data.n_out == 27
    assert data.meta["synthetic"] is True
    # nearest class mean on the training split beats chance by far: the classes are separable
    means = torch.stack([data.train_x[data.train_y == c].mean(0) for c in range(27)])
    d = ((data.test_x[:, None] - means[None]) ** 2).sum((2, 3))
    assert float((d.argmin(1) == data.test_y).float().mean()) > 0.5
    assert torch.equal(braille_shaped_data(10, 5).train_x, braille_shaped_data(10, 5).train_x)


def _paper_table():
    spec = importlib.util.spec_from_file_location("paper_table", ROOT / "benchmarks/paper_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_table_reports_mean_sd_and_collapses_per_cell(tmp_path, capsys):
    pt = _paper_table()
    out = tmp_path / "t.json"
    argv = ["--task", "braille-synthetic", "--neurons", "lif", "--bits", "3,fp32"]
    argv += ["--seeds", "0-1", "--epochs", "1", "--max-samples", "16", "--max-eval", "16"]
    argv += ["--max-steps", "8", "--json", str(out)]
    assert pt.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["synthetic"] is True and doc["budget"]["n_train"] == 16
    assert set(doc["summary"]) == {"lif/3", "lif/fp32"}
    cell = doc["summary"]["lif/3"]
    accs = [r["test_accuracy"] for r in doc["runs"] if r["bits"] == "3"]
    assert cell["test_accuracy"]["mean"] == pytest.approx(sum(accs) / 2)
    assert cell["seeds"] == [0, 1] and len(doc["runs"]) == 4
    assert "SYNTHETIC" in capsys.readouterr().out
    # collapses are counted per cell, not over the table
    runs = [
        {**doc["runs"][0], "seed": 0, "collapsed": True},
        {**doc["runs"][0], "seed": 1, "collapsed": False},
        {**doc["runs"][2], "seed": 0, "collapsed": False},
    ]
    summary = pt.summarize(runs)
    assert summary["lif/3"]["n_collapsed"] == 1 and summary["lif/3"]["collapsed_seeds"] == [0]
    assert summary["lif/fp32"]["n_collapsed"] == 0


def test_paper_table_evaluates_felif_networks_on_the_devices_neurons(tmp_path, capsys):
    pt = _paper_table()
    out = tmp_path / "t.json"
    argv = ["--task", "braille-synthetic", "--neurons", "felif", "--bits", "3", "--seeds", "0"]
    argv += ["--epochs", "1", "--max-samples", "8", "--max-eval", "6", "--max-steps", "6"]
    argv += ["--n-micro", "20", "--fidelity-samples", "4", "--json", str(out)]
    assert pt.main(argv) == 0
    doc = json.loads(out.read_text())
    (run,) = doc["runs"]
    fid = run["fidelity"]
    assert fid["n_samples"] == 4 and doc["budget"]["fidelity_samples"] == 4
    assert fid["gap"] == pytest.approx(fid["accuracy_trained"] - fid["accuracy_device"])
    assert doc["summary"]["felif/3"]["fidelity_gap"]["mean"] == pytest.approx(fid["gap"])
    assert "on the device's neurons" in capsys.readouterr().out


def test_train_cli_runs_shd_from_a_directory_and_names_a_missing_data_path(
    tmp_path, monkeypatch, capsys
):
    from typer.testing import CliRunner

    from bruno_lab.cli import app, main

    tr, ytr = _random_samples(20, 0)
    te, yte = _random_samples(8, 1)
    write_shd(tmp_path / "shd_train.h5", tr, ytr)
    write_shd(tmp_path / "shd_test.h5", te, yte)
    args = ["train", "--task", "shd", "--data", str(tmp_path), "--neuron", "lif", "--hidden", "8"]
    result = CliRunner().invoke(app, [*args, "--epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["n_train"], doc["n_test"]) == (20, 8) and doc["task"] == "shd"
    monkeypatch.setattr(sys, "argv", ["bruno-lab", "train", "--task", "shd", "--epochs", "1"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2 and "--task shd needs --data" in capsys.readouterr().err
