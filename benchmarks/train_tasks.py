"""Task figures: chorales (and Braille with --data) for FeLIF+BRUNO, LIF and recurrent LIF at
fp32 and 3-bit paper synapses: final test loss/accuracy and time per epoch.

Chorales: next-step prediction on music21's Bach chorales (docs/datasets.md), frame-level mean
binary cross-entropy per key (first 5 steps ignored) and the frame accuracy TP/(TP+FP+FN); by
default a subset (--max-sequences, --max-steps) so that the table runs in minutes on 2 cores:
the paper trains 100 epochs on all 229 training chorales. Braille: 27-class test accuracy.
The first run parses the chorale corpus once (minutes) into the cache.

    .venv/bin/python benchmarks/train_tasks.py
    .venv/bin/python benchmarks/train_tasks.py --max-sequences 0 --epochs 20 --json  # all
    .venv/bin/python benchmarks/train_tasks.py --tasks braille --data braille.pkl
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

NEURONS = ("felif", "lif", "rlif")
SYNAPSES = ("fp32", "paper3")


def run_one(task: str, neuron: str, synapse: str, args: argparse.Namespace, data: Any) -> dict:
    from bruno_lab.train.loop import TrainConfig, train
    from bruno_lab.train.network import NetworkConfig, SpikingNetwork
    from bruno_lab.train.tasks import DEFAULTS

    d = DEFAULTS[task]
    net = SpikingNetwork(
        NetworkConfig(
            kind=d.kind,
            n_in=data.n_in,
            n_hidden=args.hidden or d.n_hidden,
            n_out=data.n_out,
            neuron=neuron,
            synapse=synapse,
            seed=args.seed,
            n_micro=args.n_micro,
            init_scale_in=d.init_in[neuron],
            init_scale_out=d.init_out[neuron],
            encoder_tiles=d.encoder_tiles,
        )
    )
    cfg = TrainConfig(
        epochs=args.epochs, lr=args.lr or d.lr, batch_size=d.batch_size, seed=args.seed
    )
    result = train(net, data, cfg)
    final = result.history[-1]
    return {
        "task": task,
        "neuron": neuron,
        "method": "bruno" if neuron == "felif" else "bptt-1ms",
        "synapse": synapse,
        "epochs": args.epochs,
        "test_loss": final.test_loss,
        "test_accuracy": final.test_accuracy,
        "train_loss": final.train_loss,
        "time_per_epoch_s": statistics.median(m.time_s for m in result.history),
        "test_loss_by_epoch": [m.test_loss for m in result.history],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="chorales", help="chorales and/or braille")
    parser.add_argument("--data", default=None, help="Braille pickle (needed for braille).")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=None, help="Alias of --epochs.")
    parser.add_argument("--max-sequences", type=int, default=30, help="0: all chorales.")
    parser.add_argument("--max-steps", type=int, default=64, help="0: whole chorales.")
    parser.add_argument("--sizes", default=None, help="Hidden sizes, e.g. 150 (default: task's).")
    parser.add_argument("--n-micro", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--neurons", default=",".join(NEURONS))
    parser.add_argument("--synapses", default=",".join(SYNAPSES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats is not None:
        args.epochs = args.repeats
    import torch

    from bruno_lab.train.tasks import load_task

    torch.set_num_threads(1)
    hidden_sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [0]
    rows = []
    for task in args.tasks.split(","):
        if task == "braille" and not args.data:
            print("# braille skipped: no --data", file=sys.stderr)
            continue
        data = load_task(
            task,
            data_path=args.data,
            seed=args.seed,
            max_sequences=args.max_sequences or None,
            max_steps=args.max_steps or None,
        )
        for hidden in hidden_sizes:
            args.hidden = hidden or None
            for neuron in args.neurons.split(","):
                for synapse in args.synapses.split(","):
                    row = run_one(task, neuron, synapse, args, data)
                    row["n_train"], row["n_test"] = data.n_train, data.n_test
                    rows.append(row)
                    print(f"# done {task} {neuron} {synapse}", file=sys.stderr, flush=True)
    header = (
        f"# train_tasks  device=cpu dtype=float32 torch={torch.__version__} threads=1 "
        f"epochs={args.epochs} lr={args.lr} micro-steps/ms={args.n_micro} "
        f"max_sequences={args.max_sequences} max_steps={args.max_steps} seed={args.seed}"
    )
    if args.json:
        print(json.dumps({"header": header, "rows": rows}, indent=2))
        return 0
    print(header)
    cols = ("task", "neuron", "synapse", "n_train", "n_test", "test_loss", "test_acc", "s/epoch")
    print(" ".join(f"{c:>10}" for c in cols))
    for r in rows:
        vals = (
            r["task"],
            r["neuron"],
            r["synapse"],
            r["n_train"],
            r["n_test"],
            r["test_loss"],
            r["test_accuracy"],
            r["time_per_epoch_s"],
        )
        print(" ".join(f"{v:>10.4g}" if isinstance(v, float) else f"{v:>10}" for v in vals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
