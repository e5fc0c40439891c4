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


def _training(state: Any) -> Any:
    from reporting.records import TrainingRecord, confusion_matrix

    task = dict(state.size.task)
    rec = TrainingRecord(
        history=list(state.history),
        n_classes=int(task.get("n_classes", 0)) or None,
        n_test=int(task.get("n_test", 0)) or None,
        description=(
            f"FeLIF network {task.get('n_channels')}-{state.size.n_hidden}-"
            f"{task.get('n_classes')} with device-mode RRAM synapses (the wafer's cards), "
            f"BRUNO, {state.size.epochs} epochs on the patterns task "
            f"({task.get('n_train')} training, {task.get('n_test')} test samples)."
        ),
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
