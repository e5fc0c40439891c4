"""The demo's report stage: ``OUT/report.html`` (``reporting``: one self-contained file) with
the wafer's characterization, the cards, the training and the deployment, plus the demo's
timings, notes and summary.

Training and deployment come from the demo's state: the history, the network saved by the
training stage (read back with the safe loader for the test-set confusion matrix), the
deployment record, the on-chip evaluation and the read-back conductances.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _training_statement(state: Any, task: dict[str, Any]) -> str:
    """What was trained, on which cards, with which seed, and whether it learned."""
    tr = dict(getattr(state, "training", {}) or {})
    what = tr.get("network") or (
        f"FeLIF network {task.get('n_channels')}-{state.size.n_hidden}-"
        f"{task.get('n_classes')}, {state.size.epochs} epochs on the patterns task"
    )
    text = f"{what}; RRAM synapses and FeLIF neurons from the wafer's cards."
    if tr.get("test_accuracy") is not None:
        verdict = "learned" if tr.get("learned") else "did NOT learn"
        if tr.get("collapsed"):
            verdict += " (collapsed: outputs uninformative)"
        text += (
            f" Seed {tr['seed']}: test accuracy {tr['test_accuracy']:.3f}, {verdict} "
            f"(learned: >= {tr.get('learned_threshold', 0.9)} without collapse)."
        )
        over = tr.get("test_accuracy_over_seeds") or {}
        if over.get("n", 0) > 1:
            text += (
                f" Over seeds {tr['seeds'][0]}-{tr['seeds'][-1]}: {over['mean']:.3f} ± "
                f"{over['sd']:.3f} (mean ± SD), {tr.get('n_learned')} of {over['n']} learned."
            )
    return text


def _training(state: Any) -> Any:
    from reporting.records import TrainingRecord, confusion_matrix

    task = dict(state.size.task)
    rec = TrainingRecord(
        history=list(state.history),
        n_classes=int(task.get("n_classes", 0)) or None,
        n_test=int(task.get("n_test", 0)) or None,
        description=_training_statement(state, task),
    )
    if state.network_path is not None and Path(state.network_path).exists():
        try:
            from bruno_lab.train.data.patterns import make_patterns
            from bruno_lab.train.io import load_network

            network = load_network(state.network_path)
            data = make_patterns(**task)
            rec.confusion = confusion_matrix(network, data.test_x, data.test_y, data.n_out)
        except Exception as exc:  # the matrix is an extra: never lose the report for it
            log.warning("demo report: confusion matrix: %s", exc)
            state.notes.append(f"confusion matrix: {type(exc).__name__}: {exc}")
    return rec


def _deployment(state: Any) -> Any:
    from reporting.records import DeploymentRecord

    path = state.deployment.get("record")
    if not path or not Path(path).exists():
        return None
    record = json.loads(Path(path).read_text())
    read = state.conductances.get("read_siemens")
    return DeploymentRecord(record, dict(state.evaluation) or None, list(read) if read else None)


def _demo_section(state: Any, summary: dict[str, Any]) -> Any:
    from reporting.model import Block, Cell, Section

    s = Section("demo", "The demo run", "Stage timings on this machine, notes, summary.json.")
    s.table(
        "demo-timings",
        ["stage", "wall time"],
        [[k, Cell(f"{v:.1f} s", css="num")] for k, v in state.timings_s.items()],
    )
    for note in state.notes:
        s.note(note, "warn")
    s.blocks.append(
        Block(
            "pre",
            id="summary-json",
            caption="summary.json",
            text=json.dumps(summary, indent=1, default=str),
        )
    )
    return s


def write_report(state: Any, summary: dict[str, Any], store: Any | None) -> Path:
    """Write ``out/report.html``; a report that cannot be built is noted and a minimal one
    (the demo's own section) is written, so the demo's other outputs are never lost."""
    from reporting.build import build_report, render_html
    from reporting.model import Report

    t0 = time.perf_counter()
    path = state.out / "report.html"
    report = None
    if store is not None and state.wafer:
        try:
            report = build_report(
                store,
                state.wafer,
                training=_training(state),
                deployment=_deployment(state),
                title="bruno-lab demo: wafer to network and back",
            )
        except Exception as exc:
            log.exception("demo report")
            state.notes.append(f"report: {type(exc).__name__}: {exc}")
    if report is None:
        report = Report("bruno-lab demo", state.wafer, "the wafer report could not be built", [])
    report.sections.append(_demo_section(state, summary))
    html = render_html(report, build_s=time.perf_counter() - t0)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
