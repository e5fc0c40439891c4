"""``bruno-lab demo``: the whole loop on the simulated lab, from wafer to network and back.

Starts the simulated lab (``protocols/examples/demo_truth.yaml``), characterizes FeCap and
RRAM test structures on a few dies through the orchestrator into ``OUT/lab.db``, fits model
cards, trains a small FeLIF network with device-mode RRAM synapses against the RRAM card,
deploys it onto the centre die's RRAM array (program-and-verify, one measurement per cell),
reads it back and evaluates it on chip, and writes ``OUT/report.html`` and
``OUT/summary.json``. Progress on stderr throughout; ``--json`` prints the summary.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from bruno_lab.commands.options import JsonOption, ThreadsOption


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def build_summary(state: Any) -> dict[str, Any]:
    """The machine-readable outcome: ids, accuracies, timings, paths."""
    ev = state.evaluation
    return {
        "out": str(state.out),
        "db": state.db_url,
        "quick": state.quick,
        "seed": state.seed,
        "wafer": state.wafer,
        "characterization": {"run_id": state.run_id, **state.run_summary},
        "cards": {
            k: {
                key: v[key]
                for key in ("card_id", "card_version", "n_devices", "n_defective", "path")
            }
            for k, v in state.cards.items()
        },
        "network": str(state.network_path),
        "training": {
            "epochs": len(state.history),
            "final": state.history[-1] if state.history else None,
            **state.training,
        },
        "deployment": state.deployment,
        "accuracy": {
            "software": ev.get("software_accuracy"),
            "ideal_map": ev.get("ideal_accuracy"),
            "on_chip": ev.get("chip_accuracy"),
            "on_chip_per_pass": ev.get("chip_accuracies"),
            "chance": ev.get("chance"),
        },
        "evaluation": ev,
        "timings_s": state.timings_s,
        "notes": state.notes,
        "report": str(state.out / "report.html"),
    }


def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder (created).")] = Path("demo-out"),
    quick: Annotated[
        bool, typer.Option("--quick", help="A reduced demo (2 dies, a tiny network): for tests.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Wafer and training seed.")] = 1,
    threads: ThreadsOption = 1,
    as_json: JsonOption = False,
) -> None:
    """Run the whole loop on the simulated lab and write OUT/report.html and OUT/summary.json."""
    import json

    import torch
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from bruno_lab.commands.demo_pipeline import run_demo
    from bruno_lab.commands.demo_report import write_report
    from bruno_lab.extras import require_extra
    from bruno_lab.safeio import check_output_dir
    from bruno_lab.store import open_store

    check_output_dir(out, "--out")
    # the demo ends with its report: without the extra, say so now, not after every stage
    require_extra("report", "the demo's HTML report")
    torch.set_num_threads(threads)
    console = Console(stderr=True)
    t0 = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("demo", total=None)
        last = {"stage": ""}

        def progress(description: str, completed: float | None, total: float | None) -> None:
            stage = description.split(" ", 1)[0]
            if stage != last["stage"]:
                if last["stage"]:
                    bar.console.print(f"[green]done[/green] {last['stage']}")
                last["stage"] = stage
            bar.update(task, description=description, completed=completed or 0, total=total)

        state = run_demo(out, quick=quick, seed=seed, progress=progress)
        bar.console.print(f"[green]done[/green] {last['stage']}")
        bar.update(task, description="report", completed=0, total=None)
        t_report = time.perf_counter()
        summary = build_summary(state)
        store = open_store(state.db_url)
        try:
            write_report(state, summary, store)
        finally:
            store.close()
        state.timings_s["report"] = round(time.perf_counter() - t_report, 3)
        state.timings_s["total"] = round(time.perf_counter() - t0, 3)
        summary = build_summary(state)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if as_json:
        from bruno_lab.cli import emit_json

        emit_json(summary)
        return
    acc = summary["accuracy"]
    console.print(
        f"accuracy in software {acc['software']:.3f}, ideal map {acc['ideal_map']:.3f}, "
        f"on chip {acc['on_chip']:.3f} (chance {acc['chance']}); "
        f"report {out / 'report.html'} ({state.timings_s['total']:.0f} s)"
    )
