"""BRUNO against full BPTT and checkpointed BPTT on the same FeLIF network and data.

Network and data: the synthetic spatio-temporal pattern task (4 classes, 20 input channels,
L network steps of 1 ms), 20 -> 32 LIF -> 4 FeLIF output neurons (spike-count readout), the
same seeds for every method; 1000 micro-steps of 1 µs per network step. Full BPTT keeps the
graph of every micro-step, 1000*L of them, so L is kept short (5..20 ms) to run on 2 cores in a
few minutes.

Each (L, method) runs in its own subprocess, so that peak memory is the process's own:
``ru_maxrss`` after training minus ``ru_maxrss`` after set-up (data, network, one forward and
backward on a 1 ms sequence) -- the resident-set growth, quantised by the allocator -- and the
bytes of the distinct storages autograd saved for the backward pass (``saved_tensors_hooks``),
the graph's own size.
Time per epoch is the median over epochs (forward, backward, step and the no-graph test pass).

Accuracy at equal epochs over seeds (``--seeds``, e.g. ``0-4``): seed s draws the data (patterns
seed s) and the network (seed s, physical init calibrated on its first batch); every method
trains the same network on the same batches for the same epochs. Per (L, method) the summary
gives the test accuracy as mean ± SD over seeds, BRUNO's accuracy minus BPTT's per seed (paired)
and the memory and time ratios to BPTT as the median over seeds.

    .venv/bin/python benchmarks/bruno_vs_bptt.py                 # L = 5, 10 ms; 2 epochs
    .venv/bin/python benchmarks/bruno_vs_bptt.py --sizes 5,10,20 --epochs 3 --json
    nice -n 10 .venv/bin/python benchmarks/bruno_vs_bptt.py --sizes 5,10 --epochs 4 --seeds 0-4
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from typing import Any

METHODS = ("bruno", "bptt", "bptt-ckpt")


def worker(method: str, steps: int, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one method at one L from one seed in this process; return its figures."""
    import torch

    from bruno_lab.train.data.patterns import make_patterns
    from bruno_lab.train.loop import TrainConfig, train
    from bruno_lab.train.memory import peak_rss_bytes
    from bruno_lab.train.network import NetworkConfig, SpikingNetwork

    torch.set_num_threads(1)
    data = make_patterns(n_steps=steps, n_train=args.n_train, n_test=args.n_test, seed=seed)
    net = SpikingNetwork(
        NetworkConfig(
            kind="classify",
            n_in=data.n_in,
            n_hidden=args.hidden,
            n_out=data.n_out,
            neuron="felif",
            method=method,
            n_micro=args.n_micro,
            seed=seed,
        )
    )
    # warm-up on a 1 ms sequence: loads the fine-window kernel and starts autograd's engine
    warm = net(data.train_x[: args.batch, :1].transpose(0, 1))
    warm.sum().backward()
    net.zero_grad(set_to_none=True)
    # an optimizer's first step imports and initialises ~40 MB of torch machinery: do it here
    dummy = torch.zeros(1, requires_grad=True)
    dummy.grad = torch.ones(1)
    torch.optim.Adamax([dummy]).step()
    del warm
    baseline = peak_rss_bytes()
    cfg = TrainConfig(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch, seed=seed, fidelity_samples=0
    )
    result = train(net, data, cfg)
    peak = peak_rss_bytes()
    final = result.history[-1]
    return {
        "method": method,
        "steps": steps,
        "seed": seed,
        "collapsed": result.collapsed,
        "peak_rss_growth_bytes": max(0, peak - baseline),
        "autograd_saved_bytes": max(m.saved_tensor_bytes for m in result.history),
        "time_per_epoch_s": statistics.median(m.time_s for m in result.history),
        "test_accuracy": final.test_accuracy,
        "test_loss": final.test_loss,
        "train_loss": final.train_loss,
    }


def _run_worker(method: str, steps: int, seed: int, argv: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", method, "--sizes", str(steps)]
    cmd += ["--seeds", str(seed), *argv]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _header(args: argparse.Namespace) -> str:
    import torch

    return (
        f"# bruno_vs_bptt  device=cpu dtype=float32 torch={torch.__version__} threads=1 "
        f"hidden={args.hidden} outputs=4 FeLIF batch={args.batch} n_train={args.n_train} "
        f"n_test={args.n_test} epochs={args.epochs} micro-steps/ms={args.n_micro} "
        f"L(ms)={args.sizes} seeds={args.seeds} lr={args.lr}"
    )


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (L, method): accuracy mean ± SD over seeds, the paired accuracy difference to BPTT,
    and the median over seeds of the memory and time ratios to BPTT."""
    from bruno_lab.train.metrics import mean_sd

    out = []
    for steps in dict.fromkeys(r["steps"] for r in rows):
        at_l = [r for r in rows if r["steps"] == steps]
        ref = {r["seed"]: r for r in at_l if r["method"] == "bptt"}
        for method in dict.fromkeys(r["method"] for r in at_l):
            rs = [r for r in at_l if r["method"] == method]
            cell: dict[str, Any] = {
                "steps": steps,
                "method": method,
                "seeds": [r["seed"] for r in rs],
                "test_accuracy": mean_sd(r["test_accuracy"] for r in rs),
                "test_loss": mean_sd(r["test_loss"] for r in rs),
                "n_collapsed": sum(bool(r["collapsed"]) for r in rs),
                "time_per_epoch_s": _median(r["time_per_epoch_s"] for r in rs),
            }
            for key in ("saved_vs_bptt", "rss_vs_bptt", "time_vs_bptt"):
                cell[key] = _median(r.get(key, math.nan) for r in rs)
            paired = [r["test_accuracy"] - ref[r["seed"]]["test_accuracy"] for r in rs
                      if r["seed"] in ref]  # fmt: skip
            cell["accuracy_minus_bptt"] = mean_sd(paired)
            out.append(cell)
    return out


def _median(values: Any) -> float:
    vals = [float(v) for v in values if not math.isnan(float(v))]
    return statistics.median(vals) if vals else math.nan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5,10", help="Sequence lengths L in ms (steps).")
    parser.add_argument("--epochs", type=int, default=2, help="Epochs; time is their median.")
    parser.add_argument("--repeats", type=int, default=None, help="Alias of --epochs.")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n-train", type=int, default=32)
    parser.add_argument("--n-test", type=int, default=64)
    parser.add_argument("--n-micro", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=2e-2)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--seeds", default="1", help="Seeds (e.g. 0-4): data and network of each run."
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats is not None:
        args.epochs = args.repeats
    from bruno_lab.train.metrics import parse_seeds

    sizes = [int(s) for s in args.sizes.split(",")]
    seeds = parse_seeds(args.seeds)
    if args.worker:
        print(json.dumps(worker(args.worker, sizes[0], seeds[0], args)))
        return 0
    passthrough = [
        "--epochs",
        str(args.epochs),
        "--hidden",
        str(args.hidden),
        "--batch",
        str(args.batch),
        "--n-train",
        str(args.n_train),
        "--n-test",
        str(args.n_test),
        "--n-micro",
        str(args.n_micro),
        "--lr",
        str(args.lr),
    ]
    rows = []
    for steps, seed in ((L, s) for L in sizes for s in seeds):
        by_method = {m: _run_worker(m, steps, seed, passthrough) for m in args.methods.split(",")}
        ref = by_method.get("bptt")
        for row in by_method.values():
            print(
                f"L={steps} seed {seed} {row['method']}: acc {row['test_accuracy']:.3f} "
                f"{row['time_per_epoch_s']:.1f} s/epoch",
                file=sys.stderr,
                flush=True,
            )
            if ref:
                row["saved_vs_bptt"] = row["autograd_saved_bytes"] / ref["autograd_saved_bytes"]
                row["rss_vs_bptt"] = (
                    row["peak_rss_growth_bytes"] / ref["peak_rss_growth_bytes"]
                    if ref["peak_rss_growth_bytes"]
                    else float("nan")
                )
                row["time_vs_bptt"] = row["time_per_epoch_s"] / ref["time_per_epoch_s"]
            rows.append(row)
    summary = summarize(rows)
    if args.json:
        doc = {"header": _header(args), "summary": summary, "rows": rows}
        print(json.dumps(doc, indent=2))
        return 0
    print(_header(args))
    cols = (
        "L_ms",
        "seed",
        "method",
        "rss_growth_MiB",
        "autograd_MiB",
        "s/epoch",
        "test_acc",
        "test_loss",
        "autograd/bptt",
        "rss/bptt",
        "time/bptt",
    )
    print(" ".join(f"{c:>14}" for c in cols))
    for r in rows:
        vals = (
            r["steps"],
            r["seed"],
            r["method"],
            r["peak_rss_growth_bytes"] / 2**20,
            r["autograd_saved_bytes"] / 2**20,
            r["time_per_epoch_s"],
            r["test_accuracy"],
            r["test_loss"],
            r.get("saved_vs_bptt", float("nan")),
            r.get("rss_vs_bptt", float("nan")),
            r.get("time_vs_bptt", float("nan")),
        )
        print(" ".join(f"{v:>14.4g}" if isinstance(v, float) else f"{v:>14}" for v in vals))
    print("\nover seeds: test accuracy mean ± SD [collapsed], paired accuracy minus BPTT's, "
          "median ratios to BPTT")  # fmt: skip
    for c in summary:
        acc, diff = c["test_accuracy"], c["accuracy_minus_bptt"]
        print(
            f"L={c['steps']:>3} {c['method']:>10}: acc {acc['mean']:.3f} ± {acc['sd']:.3f} "
            f"[{c['n_collapsed']}/{len(c['seeds'])}]  minus bptt {diff['mean']:+.3f} ± "
            f"{diff['sd']:.3f}  autograd/bptt {c['saved_vs_bptt']:.4f}  rss/bptt "
            f"{c['rss_vs_bptt']:.4f}  time/bptt {c['time_vs_bptt']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
