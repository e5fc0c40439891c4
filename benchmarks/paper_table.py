"""The BRUNO paper's tables: neuron x bit width (fp32, 8, 4, 3) x seeds on one task, under a budget.

Every cell trains the paper's network (``bruno_lab.train.paper``: architecture, loss, Adamax
(0.9, 0.995), schedule) once per seed and reports the final epoch's test figures as mean ± SD
over seeds, with the runs that collapsed counted per cell (``train.metrics``: outputs silent or
tied on >= 90 % of the test samples, or a classification loss at ln C) and, for spiking hidden
layers, the hidden spike rate (a silent hidden layer leaves only the readout's bias).

Tasks: ``chorales`` (music21's corpus, cached; frame accuracy TP/(TP+FP+FN) and mean per-key
BCE), ``braille`` (``--data`` the published pickle; 27-class accuracy), ``braille-synthetic``
(NOT the Braille data: ``data.braille_like``, the same shape, for budgeted runs without it).

Budget (the paper: chorales 100 epochs on 229 sequences, Braille 150 epochs on 4320 samples, 50
seeds): ``--epochs``, ``--max-sequences``/``--max-samples`` (training items, the first of the
fixed split), ``--max-eval`` (validation and test items), ``--max-steps`` (crop every item to
its first steps), ``--max-batches`` (per epoch). Everything used goes into the JSON, with the
git commit, the load average and the wall time per run.

    nice -n 10 .venv/bin/python benchmarks/paper_table.py --task chorales --neurons felif,lif \\
        --bits 3,fp32 --seeds 0-4 --epochs 8 --max-sequences 100 --max-steps 64 --json t.json
    .venv/bin/python benchmarks/paper_table.py --merge a.json b.json   # one table of several
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from bruno_lab.train import paper
from bruno_lab.train.data import TaskData
from bruno_lab.train.metrics import mean_sd, parse_seeds

ROOT = Path(__file__).resolve().parent.parent
BUDGET_KEYS = ("epochs", "max_sequences", "max_samples", "max_eval", "max_steps", "max_batches")
BUDGET_KEYS += ("lr", "felif_bias_rate", "n_micro", "fidelity_samples")
HIDDEN_RATE_ITEMS = 8
"""Test items the hidden spike rate is measured on."""


def load_data(args: argparse.Namespace) -> TaskData:
    """The task's data, cut to the budget (the first items of each fixed split)."""
    if args.task == "chorales":
        from bruno_lab.train.data.chorales import load_chorales

        data = load_chorales(max_steps=args.max_steps, cache=args.cache_dir)
    elif args.task == "braille":
        if args.data is None:
            raise SystemExit("--task braille needs --data FILE (the published pickle)")
        from bruno_lab.train.data.braille import load_braille

        data = load_braille(args.data, seed=args.data_seed)
    else:
        from bruno_lab.train.data.braille_like import braille_shaped_data

        data = braille_shaped_data(noise=args.synthetic_noise)
    return cut(data, args.max_sequences or args.max_samples, args.max_eval, args.max_steps)


def cut(data: TaskData, n_train: int | None, n_eval: int | None, n_steps: int | None) -> TaskData:
    """The first ``n_train`` training and ``n_eval`` validation/test items, each cropped to
    ``n_steps`` steps (classification; the chorale loader crops its own)."""

    def first(items: Any, n: int | None) -> Any:
        if items is None or n is None:
            return items
        return items[:n]

    def crop(x: Any) -> Any:
        if x is None or n_steps is None or data.kind != "classify":
            return x
        return x[:, :n_steps]

    return replace(
        data,
        train_x=crop(first(data.train_x, n_train)),
        train_y=first(data.train_y, n_train),
        test_x=crop(first(data.test_x, n_eval)),
        test_y=first(data.test_y, n_eval),
        valid_x=crop(first(data.valid_x, n_eval)),
        valid_y=first(data.valid_y, n_eval),
    )


def references(data: TaskData, skip_steps: int = 5) -> dict[str, float]:
    """What no learning needs, on the test split: for the chorales, the BCE of predicting each
    key's training frequency (a network that learned only its readout bias) and the frame
    accuracy of repeating the input frame (chords last several eighth notes); for a
    classification, chance."""
    if data.kind != "sequence":
        return {"chance_accuracy": 1.0 / data.n_out}
    p = torch.cat([y for y in data.train_y]).mean(0).clamp(1e-6, 1 - 1e-6)
    logit = torch.log(p / (1 - p))
    losses, tp, fp, fn = [], 0, 0, 0
    for x, y in zip(data.test_x, data.test_y, strict=True):
        x, y = x[skip_steps:], y[skip_steps:]
        if not len(y):
            continue
        losses.append(
            float(torch.nn.functional.binary_cross_entropy_with_logits(logit.expand_as(y), y))
        )
        on, target = x > 0, y > 0
        tp += int((on & target).sum())
        fp += int((on & ~target).sum())
        fn += int((~on & target).sum())
    return {
        "key_frequency_loss": sum(losses) / max(len(losses), 1),
        "repeat_input_frame_accuracy": tp / max(tp + fp + fn, 1),
    }


def hidden_rate(net: torch.nn.Module, data: TaskData) -> float:
    """Mean hidden spikes per neuron and step on the first test items (NaN without spikes)."""
    from bruno_lab.train.network import SpikingNetwork

    if not isinstance(net, SpikingNetwork) and getattr(net.config, "cell", "") != "snu":
        return math.nan
    net.eval()
    with torch.no_grad():
        if data.kind == "sequence":
            rates = [
                float(_hidden(net, x.unsqueeze(1)).mean()) for x in data.test_x[:HIDDEN_RATE_ITEMS]
            ]
            return sum(rates) / max(len(rates), 1)
        x = data.test_x[: 4 * HIDDEN_RATE_ITEMS].transpose(0, 1)
        return float(_hidden(net, x).mean())


def _hidden(net: Any, x: torch.Tensor) -> torch.Tensor:
    return net.hidden_spikes(x) if hasattr(net, "hidden_spikes") else net.hidden_states(x)


def run_cell_seed(
    task: str, neuron: str, bits: str, seed: int, data: TaskData, args: argparse.Namespace
) -> dict[str, Any]:
    from bruno_lab.train.loop import train

    torch.manual_seed(seed)
    config = paper.network_config(
        task, neuron, bits, seed, n_in=data.n_in, n_out=data.n_out,
        felif_bias_rate=args.felif_bias_rate, n_micro=args.n_micro,
    )  # fmt: skip
    net = paper.build(config)
    # fidelity_samples: test items also run on the device's neurons (0: none; train.fidelity)
    budget: dict[str, Any] = {"fidelity_samples": args.fidelity_samples}
    for key in ("epochs", "max_batches", "lr"):
        if getattr(args, key) is not None:
            budget[key] = getattr(args, key)
    cfg = paper.train_config(task, seed, **budget)
    t0 = time.perf_counter()
    # train.loop.train takes any network with what it uses (see train.baselines)
    result = train(net, data, cfg)  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    final = result.final
    assert final is not None
    last_silent = final.test_silent_fraction
    return {
        "neuron": neuron,
        "bits": bits,
        "seed": seed,
        "test_accuracy": final.test_accuracy,
        "test_loss": final.test_loss,
        "train_loss": final.train_loss,
        "collapsed": result.collapsed,
        "test_silent_fraction": last_silent,
        "test_tied_fraction": final.test_tied_fraction,
        "hidden_rate": hidden_rate(net, data),
        "fidelity": dict(result.fidelity),
        "epochs": len(result.history),
        "wall_s": wall,
        "history": [asdict(m) for m in result.history],
        "train_config": asdict(cfg),
        "network_config": config.to_json(),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± SD per (neuron, bits) cell and its collapsed seeds."""
    cells: dict[str, Any] = {}
    for r in runs:
        cells.setdefault(f"{r['neuron']}/{r['bits']}", []).append(r)
    out = {}
    for key, rs in cells.items():
        out[key] = {
            "neuron": rs[0]["neuron"],
            "bits": rs[0]["bits"],
            "seeds": [r["seed"] for r in rs],
            "test_accuracy": mean_sd(r["test_accuracy"] for r in rs),
            "test_loss": mean_sd(r["test_loss"] for r in rs),
            "hidden_rate": mean_sd(r["hidden_rate"] for r in rs),
            "fidelity_gap": mean_sd((r.get("fidelity") or {}).get("gap", math.nan) for r in rs),
            "n_collapsed": sum(bool(r["collapsed"]) for r in rs),
            "collapsed_seeds": [r["seed"] for r in rs if r["collapsed"]],
            "wall_s": mean_sd(r["wall_s"] for r in rs),
        }
    return out


def _fmt(stat: dict[str, Any], digits: int, scale: float = 1.0) -> str:
    if not stat["n"]:
        return "-"
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['sd'] * scale:.{digits}f}"


def print_table(doc: dict[str, Any]) -> None:
    summary = doc["summary"]
    neurons = list(dict.fromkeys(c["neuron"] for c in summary.values()))
    bits = [b for b in paper.SYNAPSES if any(c["bits"] == b for c in summary.values())]
    task = doc["task"]
    acc = "frame accuracy %" if task == "chorales" else "test accuracy %"
    synthetic = " (SYNTHETIC data of the Braille shape, not Braille)" if "synthetic" in task else ""
    print(f"{task}{synthetic}: {acc}, mean ± SD over seeds [collapsed/seeds]; test loss below")
    print(f"budget: {json.dumps(doc['budget'])}")
    width = 26
    print("neuron".ljust(12) + "".join(f"{b:>{width}}" for b in bits))
    for key, digits, scale in (("test_accuracy", 1, 100.0), ("test_loss", 4, 1.0)):
        for n in neurons:
            row = n.ljust(12)
            for b in bits:
                c = summary.get(f"{n}/{b}")
                if c is None:
                    row += f"{'':>{width}}"
                    continue
                tag = f" [{c['n_collapsed']}/{len(c['seeds'])}]" if key == "test_accuracy" else ""
                row += f"{_fmt(c[key], digits, scale) + tag:>{width}}"
            print(row)
        print()
    rates = {k: c["hidden_rate"] for k, c in summary.items() if c["hidden_rate"]["n"]}
    if rates:
        print("hidden spikes per neuron and step: " + ", ".join(
            f"{k} {_fmt(v, 3)}" for k, v in rates.items()
        ))  # fmt: skip
    gaps = {k: c["fidelity_gap"] for k, c in summary.items() if c.get("fidelity_gap", {}).get("n")}
    if gaps:
        print("accuracy as trained minus on the device's neurons: " + ", ".join(
            f"{k} {_fmt(v, 4)}" for k, v in gaps.items()
        ))  # fmt: skip
    refs = doc.get("references") or {}
    if "key_frequency_loss" in refs:
        print(
            f"without learning (test split): loss of the key frequencies "
            f"{refs['key_frequency_loss']:.4f}; frame accuracy of repeating the input frame "
            f"{100 * refs['repeat_input_frame_accuracy']:.1f} %"
        )
    elif "chance_accuracy" in refs:
        print(f"chance: {100 * refs['chance_accuracy']:.1f} %")
    print(f"commit {doc['commit']}, wall {doc['wall_s']:.0f} s, load {doc['loadavg']}")


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def merge(paths: list[str]) -> dict[str, Any]:
    """One document of several runs of the same task (e.g. one process per bit width)."""
    docs = [json.loads(Path(p).read_text()) for p in paths]
    tasks = {d["task"] for d in docs}
    if len(tasks) != 1:
        raise SystemExit(f"--merge: documents of different tasks {sorted(tasks)}")
    runs = [r for d in docs for r in d["runs"]]
    refs = docs[0].get("references")
    if refs is None:  # a document written before they were: recompute from its budget
        budget = docs[0]["budget"]
        ns = argparse.Namespace(
            task=docs[0]["task"], data=None, data_seed=0, synthetic_noise=0.5, cache_dir=None,
            **{k: budget.get(k) for k in ("max_sequences", "max_samples", "max_eval", "max_steps")},
        )  # fmt: skip
        refs = references(load_data(ns))
    return {
        "task": docs[0]["task"],
        "budget": docs[0]["budget"],
        "budgets_equal": all(d["budget"] == docs[0]["budget"] for d in docs),
        "commit": ", ".join(sorted({d["commit"] for d in docs})),
        "loadavg": [d["loadavg"] for d in docs],
        "wall_s": max(d["wall_s"] for d in docs),
        "merged_from": paths,
        "references": refs,
        "summary": summarize(runs),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="chorales", choices=list(paper.TASKS))
    ap.add_argument("--neurons", default="felif,lif")
    ap.add_argument("--bits", default="fp32,8,4,3", help="of fp32, 8, 4, 3")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--epochs", type=int, default=None, help="default: the paper's")
    ap.add_argument("--max-sequences", type=int, default=None, help="chorales: training items")
    ap.add_argument("--max-samples", type=int, default=None, help="classification: training items")
    ap.add_argument("--max-eval", type=int, default=None, help="validation and test items")
    ap.add_argument("--max-steps", type=int, default=None, help="crop items to this many steps")
    ap.add_argument("--max-batches", type=int, default=None, help="per epoch")
    ap.add_argument("--lr", type=float, default=None, help="default: the paper's")
    ap.add_argument("--felif-bias-rate", type=float, default=0.0, help="0: the paper's (none)")
    ap.add_argument("--n-micro", type=int, default=1000)
    ap.add_argument(
        "--fidelity-samples",
        type=int,
        default=0,
        help="FeLIF networks: test items also run on the device's neurons (reset at each "
        "crossing), reporting the accuracy gap (0: skip; it costs float64 micro-steps)",
    )
    ap.add_argument("--data", type=Path, default=None, help="braille: the published pickle")
    ap.add_argument("--data-seed", type=int, default=0, help="braille: split permutation")
    ap.add_argument("--synthetic-noise", type=float, default=0.5)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="write the document here")
    ap.add_argument("--merge", nargs="+", default=None, help="print one table of these JSONs")
    args = ap.parse_args(argv)
    if args.merge:
        doc = merge(args.merge)
        if args.json:
            args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print_table(doc)
        return 0
    torch.set_num_threads(args.threads)
    neurons = [n.strip() for n in args.neurons.split(",") if n.strip()]
    bits = [b.strip() for b in args.bits.split(",") if b.strip()]
    seeds = parse_seeds(args.seeds)
    for n in neurons:  # names checked before any work
        for b in bits:
            paper.network_config(args.task, n, b, 0, n_in=1, n_out=2)
    budget = {k: getattr(args, k) for k in BUDGET_KEYS}
    budget["epochs"] = args.epochs or paper.TASKS[args.task].epochs
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    commit = git_commit()  # the code that runs (a commit made during the run is not it)
    data = load_data(args)
    budget |= {"n_train": data.n_train, "n_valid": data.n_valid, "n_test": data.n_test}
    runs = []
    for n in neurons:
        for b in bits:
            for s in seeds:
                r = run_cell_seed(args.task, n, b, s, data, args)
                runs.append(r)
                flag = "  COLLAPSED" if r["collapsed"] else ""
                print(
                    f"{n}/{b} seed {s}: acc {r['test_accuracy']:.4f} loss {r['test_loss']:.4f}"
                    f" hidden rate {r['hidden_rate']:.3f} {r['wall_s']:.0f} s{flag}",
                    file=sys.stderr,
                    flush=True,
                )
    doc = {
        "task": args.task,
        "synthetic": args.task == "braille-synthetic",
        "budget": budget,
        "neurons": neurons,
        "bits": bits,
        "seeds": seeds,
        "commit": commit,
        "loadavg": [load_before, os.getloadavg()],
        "wall_s": time.perf_counter() - t0,
        "torch": torch.__version__,
        "references": references(data),
        "summary": summarize(runs),
        "runs": runs,
    }
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print_table(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
