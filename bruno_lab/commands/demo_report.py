"""The demo's self-contained ``report.html`` (every PNG embedded as base64) and ``summary.json``.

Plots: the calibration report's (P-V loops and PUND against fits, RRAM level histograms, wafer
maps; ``calibration.report.write_report``), plus the training curves, the deployment's target
vs reached vs read-back conductances, and the software-vs-chip accuracy.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path
from typing import Any

from bruno_lab.extras import require_extra

log = logging.getLogger(__name__)


def _plt() -> Any:
    require_extra("plot", "the report's PNG plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training(history: list[dict[str, Any]], out: Path) -> Path:
    """Loss and accuracy per epoch (train and test)."""
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(epochs, [h["test_loss"] for h in history], "s-", label="test")
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss", title="training loss")
    ax2.plot(epochs, [h["train_accuracy"] for h in history], "o-", label="train")
    ax2.plot(epochs, [h["test_accuracy"] for h in history], "s-", label="test")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax1, ax2):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "training_curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_deployment(conductances: dict[str, Any], out: Path) -> Path:
    """Per cell: the map's target, what program-and-verify reached, what the chip read back."""
    import numpy as np

    plt = _plt()
    target = np.asarray(conductances.get("target_siemens", []), dtype=float) * 1e6
    reached = np.asarray(conductances.get("reached_siemens", []), dtype=float) * 1e6
    read = np.asarray(conductances.get("read_siemens", []), dtype=float) * 1e6
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    cells = np.arange(target.size)
    ax1.plot(cells, target, "k_", ms=10, label="target")
    ax1.plot(cells, reached, "o", ms=4, label="reached (verify)")
    if read.size:
        ax1.plot(cells, read, "x", ms=4, label="read back")
    ax1.set(xlabel="logical cell (map order)", ylabel="conductance (µS)", title="deployed cells")
    ax1.set_yscale("symlog", linthresh=10)
    ax1.legend(fontsize=8)
    lim = max(float(np.nanmax(target)) if target.size else 1.0, 1.0) * 1.3
    ax2.plot([0, lim], [0, lim], "k:", lw=1)
    ax2.plot(target, reached, "o", ms=4, label="reached")
    if read.size:
        ax2.plot(target, read, "x", ms=4, label="read back")
    ax2.set(
        xlabel="target (µS)",
        ylabel="measured (µS)",
        title="target vs chip",
        xlim=(0, lim),
        ylim=(0, lim),
    )
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path = out / "deployment_conductances.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_accuracy(evaluation: dict[str, Any], out: Path) -> Path:
    """Software, ideal-map and on-chip test accuracy, with chance."""
    plt = _plt()
    names = ["software\n(card's cells)", "ideal map\n(targets)", "on chip\n(read back)"]
    values = [
        evaluation["software_accuracy"],
        evaluation["ideal_accuracy"],
        evaluation["chip_accuracy"],
    ]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    bars = ax.bar(names, values, color=["#4c72b0", "#8172b2", "#dd8452"])
    for bar, v in zip(bars, values, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, v + 0.01, f"{v:.3f}", ha="center")
    if evaluation.get("chance") is not None:
        ax.axhline(evaluation["chance"], color="k", ls=":", label="chance")
        ax.legend()
    ax.set(ylabel="test accuracy", ylim=(0, 1.1), title="software vs chip")
    fig.tight_layout()
    path = out / "accuracy.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    title = html.escape(path.stem.replace("_", " "))
    return (
        f'<figure><img alt="{title}" src="data:image/png;base64,{data}">'
        f"<figcaption>{title}</figcaption></figure>"
    )


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"


def write_report(state: Any, summary: dict[str, Any], store: Any | None) -> Path:
    """Write the PNGs under ``out/plots`` and the self-contained ``out/report.html``."""
    out = state.out
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    calib: list[Path] = []
    if store is not None:
        from calibration.report import write_report as calibration_plots

        try:
            calib = calibration_plots(store, state.wafer, plots)
        except Exception as exc:  # a plot that cannot be drawn must not lose the report
            log.warning("calibration plots: %s", exc)
            state.notes.append(f"calibration plots: {type(exc).__name__}: {exc}")
    ours = [plot_training(state.history, plots), plot_deployment(state.conductances, plots)]
    if state.evaluation:
        ours.append(plot_accuracy(state.evaluation, plots))
    ev, dep = state.evaluation, state.deployment
    results = [
        (
            "accuracy in software (network with the card's simulated cells)",
            ev.get("software_accuracy"),
        ),
        ("accuracy with the ideal map (every cell at its target)", ev.get("ideal_accuracy")),
        ("accuracy on chip (conductances read back, mean over passes)", ev.get("chip_accuracy")),
        ("on-chip accuracy per read pass", ev.get("chip_accuracies")),
        ("chance", ev.get("chance")),
        ("cells deployed / within tolerance", f"{dep.get('n_cells')} / {dep.get('n_success')}"),
        ("die", dep.get("die")),
        ("characterization run id / deployment run id", f"{state.run_id} / {dep.get('run_id')}"),
        (
            "cards",
            ", ".join(
                f"{k}: id {v['card_id']} v{v['card_version']}" for k, v in state.cards.items()
            ),
        ),
    ]
    timings = [(k, f"{v:.1f} s") for k, v in state.timings_s.items()]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in state.notes) or "<li>none</li>"
    sections = [
        "<h2>Result: software vs chip</h2>",
        _table(results),
        *(_img(p) for p in ours[:0:-1]),  # accuracy, then the deployed conductances
        "<h2>Training</h2>",
        _img(ours[0]),
        "<h2>Characterization and calibration</h2>",
        "<p>P-V loops and PUND currents against the fitted model, RRAM level histograms, wafer "
        "maps of the fitted parameters (calibration report).</p>",
        *(_img(p) for p in calib),
        "<h2>Timings</h2>",
        _table(timings),
        "<h2>Notes</h2>",
        f"<ul>{notes}</ul>",
        "<h2>summary.json</h2>",
        f"<pre>{html.escape(json.dumps(summary, indent=1, default=str))}</pre>",
    ]
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 8px;"
        "text-align:left}figure{display:inline-block;margin:6px}img{max-width:960px}"
        "pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:auto}"
    )
    doc = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>bruno-lab demo</title>"
        f"<style>{style}</style></head><body><h1>bruno-lab demo: wafer to network and back</h1>"
        + "".join(sections)
        + "</body></html>"
    )
    path = out / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path
