"""``bruno-lab train``: train a spiking network (FeLIF/LIF, BRUNO/BPTT, RRAM synapses)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bruno_lab.commands.options import (
    CoarseClipName,
    CoarseGradientName,
    DbOption,
    FelifRedrawName,
    FelifResetName,
    JsonOption,
    MethodName,
    NeuronName,
    SynapseName,
    TaskName,
    ThreadsOption,
)
from bruno_lab.limits import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_HIDDEN,
    MAX_N_MICRO,
    finite,
)


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def _load_cards(specs: list[str], db: str | None) -> dict[str, Any]:
    """Cards by device kind from ``--card`` values: a .json/.yaml file, a database id, or a
    kind (``rram``, ``felif``; ``rram:WAFER`` for one wafer's) = that kind's newest card."""
    from bruno_lab.cards import load_card_file
    from bruno_lab.errors import BadInputError

    cards: dict[str, Any] = {}
    for spec in specs:
        path = Path(spec)
        kind, _, wafer = spec.partition(":")
        if path.suffix.lower() in {".json", ".yaml", ".yml"}:
            card = load_card_file(path)
        elif kind in ("rram", "felif"):
            card = _newest_card(db, kind, wafer or None)
        else:
            try:
                card_id = int(spec)
            except ValueError:
                raise BadInputError(
                    f"--card {spec!r}: give rram or felif (the newest such card; rram:WAFER "
                    "for one wafer's), a card id (integer) or a .json/.yaml file"
                ) from None
            from bruno_lab.store import open_store_for_cli

            store = open_store_for_cli(db)
            try:
                card = store.get_model_card(card_id).card()
            finally:
                store.close()
        if card.device_kind in cards:
            raise BadInputError(f"--card: two {card.device_kind} cards given")
        cards[card.device_kind] = card
    if "fecap" in cards:
        raise BadInputError("--card: a fecap card is not used by the trainer (felif or rram)")
    return cards


def _newest_card(db: str | None, kind: str, wafer: str | None) -> Any:
    """The newest ``kind`` card (of ``wafer``, else of the one wafer or lot that has such
    cards); several candidates without a wafer named is bad input listing them."""
    from bruno_lab.errors import BadInputError
    from bruno_lab.store import open_store_for_cli

    store = open_store_for_cli(db)
    try:
        rows = store.list_model_cards(kind=kind, scope_id=wafer)
        scopes = sorted({r.scope_id for r in rows})
        if not rows:
            where = f" for {wafer!r}" if wafer else ""
            raise BadInputError(f"--card {kind}: no {kind} card{where} in the database (run fit)")
        if len(scopes) > 1:
            raise BadInputError(
                f"--card {kind}: {kind} cards exist for {', '.join(scopes)}; "
                f"say which: --card {kind}:{scopes[0]}"
            )
        newest = max(rows, key=lambda r: (r.created_at, r.version))
        return newest.card()
    finally:
        store.close()


def train(
    task: Annotated[
        TaskName, typer.Option("--task", help="The task (docs/datasets.md).")
    ] = TaskName.PATTERNS,
    neuron: Annotated[
        NeuronName, typer.Option("--neuron", help="Output (classify) or hidden (sequence) neurons.")
    ] = NeuronName.FELIF,
    method: Annotated[
        MethodName, typer.Option("--method", help="How FeLIF layers are trained.")
    ] = MethodName.BRUNO,
    synapse: Annotated[
        SynapseName,
        typer.Option("--synapse", help="fp32, the paper's N-bit quantization, or RRAM devices."),
    ] = SynapseName.FP32,
    card: Annotated[
        list[str] | None,
        typer.Option(
            "--card",
            help="rram / felif (the newest such card; rram:WAFER for one wafer's), a card id or "
            "a .json/.yaml file; repeat for rram and felif.",
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Braille pickle; SHD dir or .h5.")
    ] = None,
    epochs: Annotated[
        int, typer.Option("--epochs", min=0, max=MAX_EPOCHS, help="Training epochs.")
    ] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Network, data-split and noise seed.")] = 0,
    seeds: Annotated[
        str | None,
        typer.Option(
            "--seeds",
            help="Run several seeds (e.g. 0-9 or 0,3,5; each as --seed S) and report mean ± SD.",
        ),
    ] = None,
    hidden: Annotated[
        int | None, typer.Option("--hidden", min=1, max=MAX_HIDDEN, help="Hidden units.")
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option("--lr", help="Adamax learning rate.", callback=finite(0, 10, lo_open=True)),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", min=1, max=MAX_BATCH, help="Samples per batch (task's default)."
        ),
    ] = None,
    max_batches: Annotated[
        int | None,
        typer.Option(
            "--max-batches", min=1, help="At most this many batches per epoch (quick runs)."
        ),
    ] = None,
    n_micro: Annotated[
        int,
        typer.Option(
            "--n-micro", min=1, max=MAX_N_MICRO, help="Micro-steps per 1 ms network step."
        ),
    ] = 1000,
    init: Annotated[
        str,
        typer.Option(
            "--init",
            help="physical (FeLIF card: input scale, bias currents; weights from data) or legacy.",
        ),
    ] = "physical",
    input_scale_a: Annotated[
        float,
        typer.Option(
            "--input-scale-a",
            help="Amperes per network unit into FeLIF (--init legacy).",
            callback=finite(0, 1.0, lo_open=True),
        ),
    ] = 1e-8,
    felif_reset: Annotated[
        FelifResetName,
        typer.Option(
            "--felif-reset", help="next-step (BRUNO: one spike per step) or at-crossing (device)."
        ),
    ] = FelifResetName.NEXT_STEP,
    felif_redraw: Annotated[
        FelifRedrawName,
        typer.Option(
            "--felif-redraw",
            help="Redraw FeLIF devices every batch: none, card (its spreads) or paper (0.1).",
        ),
    ] = FelifRedrawName.NONE,
    coarse_gradient: Annotated[
        CoarseGradientName,
        typer.Option(
            "--coarse-gradient",
            help="BRUNO coarse-step gradient: hold-switching (default) or full (explodes).",
        ),
    ] = CoarseGradientName.HOLD_SWITCHING,
    coarse_clip: Annotated[
        CoarseClipName,
        typer.Option(
            "--coarse-clip",
            help="BRUNO coarse step's ±5 V clip: straight-through (default) or hard (old).",
        ),
    ] = CoarseClipName.STRAIGHT_THROUGH,
    relax_time_s: Annotated[
        float,
        typer.Option(
            "--relax-time-s",
            help="Device mode: read this long after programming.",
            callback=finite(0, 1e12),
        ),
    ] = 0.0,
    max_sequences: Annotated[
        int | None, typer.Option("--max-sequences", min=3, help="Chorales: use only this many.")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=2, help="Chorales: crop sequences.")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Chorale cache (default XDG cache).")
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Write a resumable checkpoint per epoch.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from --checkpoint.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Save the trained network.")] = None,
    nir_out: Annotated[
        Path | None, typer.Option("--nir", help="Export the network to NIR.")
    ] = None,
    map_out: Annotated[
        Path | None, typer.Option("--programming-map", help="Write the programming map (device).")
    ] = None,
    threads: ThreadsOption = 1,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a network; progress per epoch on stderr, final metrics with --json (with --seeds:
    every seed's, and mean ± SD over seeds; a collapsed run is reported)."""
    import math
    import time

    import torch
    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress

    from bruno_lab.errors import BadInputError
    from bruno_lab.train.felif_layer import METHODS, RESETS
    from bruno_lab.train.loop import TrainConfig
    from bruno_lab.train.loop import train as run_training
    from bruno_lab.train.memory import peak_rss_bytes
    from bruno_lab.train.network import INITS, NEURONS, REDRAWS, NetworkConfig, build_network
    from bruno_lab.train.synapse import SYNAPSE_MODES
    from bruno_lab.train.tasks import DEFAULTS, TASKS, load_task

    for name, value, allowed in (
        ("--task", task, TASKS),
        ("--neuron", neuron, NEURONS),
        ("--method", method, METHODS),
        ("--synapse", synapse, SYNAPSE_MODES),
        ("--init", init, INITS),
        ("--felif-reset", felif_reset, RESETS),
        ("--felif-redraw", felif_redraw, REDRAWS),
    ):
        if value not in allowed:
            raise BadInputError(f"{name} {value!r}: allowed {', '.join(allowed)}")
    from bruno_lab.train.felif_layer import COARSE_GRADIENTS

    if coarse_gradient not in COARSE_GRADIENTS:
        raise BadInputError(
            f"--coarse-gradient {coarse_gradient!r}: allowed {', '.join(COARSE_GRADIENTS)}"
        )
    from bruno_lab.train.felif_layer import COARSE_CLIPS

    if coarse_clip not in COARSE_CLIPS:
        raise BadInputError(f"--coarse-clip {coarse_clip!r}: allowed {', '.join(COARSE_CLIPS)}")
    from bruno_lab.safeio import check_output_path

    # every output path is checked before any work (an existing directory, a bad parent)
    for option, path in (("--out", out), ("--nir", nir_out), ("--programming-map", map_out),
                         ("--checkpoint", checkpoint)):  # fmt: skip
        if path is not None:
            check_output_path(path, option)
    if resume and checkpoint is None:
        raise BadInputError("--resume needs --checkpoint PATH")
    if seeds is not None:
        from bruno_lab.train.metrics import parse_seeds

        try:
            seed_list = parse_seeds(seeds)
        except ValueError as exc:
            raise BadInputError(f"--seeds: {exc}") from None
        if len(seed_list) > 1 and (out or nir_out or map_out or checkpoint):
            raise BadInputError(
                "--out, --nir, --programming-map and --checkpoint name one file: give one seed"
            )
    else:
        seed_list = [seed]
    torch.set_num_threads(threads)
    console = Console(stderr=True)
    cards = _load_cards(card or [], db)
    if synapse == "device" and "rram" not in cards:
        raise BadInputError("--synapse device needs an RRAM model card (--card)")
    d = DEFAULTS[task]

    def run_seed(s: int) -> tuple[dict[str, Any], Any]:
        t_start = time.perf_counter()
        task_data = load_task(
            task,
            data_path=data,
            seed=s,
            max_sequences=max_sequences,
            max_steps=max_steps,
            cache=cache_dir,
        )
        net_cfg = NetworkConfig(
            kind=d.kind,
            n_in=task_data.n_in,
            n_hidden=hidden or d.n_hidden,
            n_out=task_data.n_out,
            neuron=neuron,
            method=method,
            synapse=synapse,
            seed=s,
            n_micro=n_micro,
            input_scale_a=input_scale_a,
            init_scale_in=d.init_in[neuron],
            init_scale_out=d.init_out[neuron],
            relaxation_time_s=relax_time_s,
            encoder_tiles=d.encoder_tiles,
            coarse_gradient=coarse_gradient,
            coarse_clip=coarse_clip,
            init=init,
            felif_reset=felif_reset,
            felif_redraw=felif_redraw,
        )
        network = build_network(net_cfg, cards)
        train_cfg = TrainConfig(
            epochs=epochs,
            lr=lr or d.lr,
            batch_size=batch_size or d.batch_size,
            seed=s,
            max_batches=max_batches,
        )
        baseline_rss = peak_rss_bytes()
        tag = f"seed {s}: " if len(seed_list) > 1 else ""

        def on_epoch(m: Any) -> None:
            console.print(
                f"{tag}epoch {m.epoch}/{epochs}  train loss {m.train_loss:.4f} "
                f"acc {m.train_accuracy:.3f}  test loss {m.test_loss:.4f} "
                f"acc {m.test_accuracy:.3f}  {m.time_s:.1f} s"
                + ("  COLLAPSED" if m.collapsed else "")
            )

        per_epoch = (
            task_data.n_train
            if task_data.kind == "sequence"
            else math.ceil(task_data.n_train / train_cfg.batch_size)
        )
        if max_batches is not None:
            per_epoch = min(per_epoch, max_batches)
        with Progress(
            *Progress.get_default_columns(), MofNCompleteColumn(), console=console, transient=True
        ) as bar:
            job = bar.add_task("training batches", total=per_epoch * epochs)

            def on_epoch_bar(m: Any) -> None:
                bar.update(job, completed=per_epoch * m.epoch)
                on_epoch(m)

            result = run_training(
                network,
                task_data,
                train_cfg,
                checkpoint_path=checkpoint,
                resume=resume,
                on_epoch=on_epoch_bar,
                on_batch=lambda: bar.advance(job),
            )
        peak_rss = peak_rss_bytes()
        final = result.final
        metrics = {
            "task": task,
            "neuron": neuron,
            "method": method,
            "synapse": synapse,
            "seed": s,
            "epochs": len(result.history),
            "final": None if final is None else final.__dict__,
            "collapsed": result.collapsed,
            "init": result.init,
            # the test split on the device's neurons (reset at each crossing) beside the
            # network as trained, and the accuracy gap (train.fidelity; FeLIF networks)
            "fidelity": result.fidelity,
            "peak_rss_bytes": peak_rss,
            "peak_rss_above_baseline_bytes": max(0, peak_rss - baseline_rss),
            "autograd_saved_bytes": max((m.saved_tensor_bytes for m in result.history), default=0),
            "time_s": time.perf_counter() - t_start,
            "time_per_epoch_s": (
                sum(m.time_s for m in result.history) / len(result.history)
                if result.history
                else 0.0
            ),
            "n_train": task_data.n_train,
            "n_test": task_data.n_test,
            "cards": {
                k: {
                    "scope_id": c.scope_id,
                    "model_name": c.model_name,
                    "model_version": c.model_version,
                }
                for k, c in cards.items()
            },
            "history": result.to_json()["history"],
        }
        return metrics, network

    runs = []
    for s in seed_list:
        metrics, network = run_seed(s)
        runs.append(metrics)
        if metrics["collapsed"]:
            console.print(f"[bold red]seed {s}: the network collapsed[/] (outputs uninformative)")
    metrics = runs[0]
    outputs: dict[str, str] = {}
    if out is not None:
        from bruno_lab.train.io import save_network

        save_network(out, network, metrics)
        outputs["network"] = str(out)
    if nir_out is not None:
        from bruno_lab.train.nir_export import write_nir

        write_nir(network, nir_out)
        outputs["nir"] = str(nir_out)
    if map_out is not None:
        from bruno_lab.train.io import write_programming_map

        write_programming_map(network, map_out)
        outputs["programming_map"] = str(map_out)
    metrics["outputs"] = outputs
    if seeds is not None:
        from bruno_lab.train.metrics import mean_sd

        finals = [r["final"] or {} for r in runs]
        doc: dict[str, Any] = {
            "task": task,
            "neuron": neuron,
            "method": method,
            "synapse": synapse,
            "seeds": seed_list,
            "summary": {
                key: mean_sd(f.get(key, math.nan) for f in finals)
                for key in ("test_accuracy", "test_loss", "train_accuracy", "train_loss")
            }
            | {
                "n_collapsed": sum(bool(r["collapsed"]) for r in runs),
                "time_s": mean_sd(r["time_s"] for r in runs),
                "fidelity_gap": mean_sd(
                    r["fidelity"].get("gap", math.nan) for r in runs if r["fidelity"]
                ),
            },
            "runs": runs,
        }
    else:
        doc = metrics
    if as_json:
        from bruno_lab.cli import emit_json

        emit_json(doc)
    elif seeds is not None:
        acc = doc["summary"]["test_accuracy"]
        console.print(
            f"done: {len(seed_list)} seeds, test acc {acc['mean']:.3f} ± {acc['sd']:.3f}, "
            f"{doc['summary']['n_collapsed']} collapsed"
        )
    elif metrics["final"] is not None:
        final = metrics["final"]
        console.print(
            f"done: test acc {final['test_accuracy']:.3f}, test loss {final['test_loss']:.4f}, "
            f"peak RSS +{metrics['peak_rss_above_baseline_bytes'] / 2**20:.1f} MiB, "
            f"{metrics['time_s']:.1f} s"
        )
    for r in runs:
        fid = r["fidelity"]
        if fid and not as_json:
            console.print(
                f"seed {r['seed']}: on the device's neurons (reset at each crossing, "
                f"{fid['n_samples']} test samples): acc {fid['accuracy_device']:.3f} vs "
                f"{fid['accuracy_trained']:.3f} as trained (gap {fid['gap']:+.3f}); FeLIF "
                f"spikes per neuron-step {fid['felif_rate_device']:.3f} vs "
                f"{fid['felif_rate_trained']:.3f}"
            )
