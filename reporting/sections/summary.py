"""The report's first section: what was measured, what failed and why, the outcome."""

from __future__ import annotations

from reporting.data import ReportData
from reporting.model import Cell, Section
from reporting.records import DeploymentRecord, TrainingRecord, training_verdict


def build(
    data: ReportData, training: TrainingRecord | None, deployment: DeploymentRecord | None
) -> Section:
    f = data.frame
    s = Section("summary", "Summary")
    rows = []
    for protocol, g in f.groupby("protocol", sort=False):
        n_fail = int((g["status"] != "ok").sum())
        rows.append(
            [
                protocol,
                str(g["device_id"].nunique()),
                str(len(g)),
                Cell(str(n_fail), css="bad" if n_fail else ""),
            ]
        )
    s.table("protocols", ["protocol", "devices", "measurements", "failed"], rows)
    failed = f[f["status"] != "ok"]
    if len(failed):
        frows = [
            [f"{r.die_label}/{r.site}", r.protocol, Cell(str(r.error or r.status), css="bad")]
            for r in failed.itertuples(index=False)
        ]
        s.table(
            "failures",
            ["device", "protocol", "reason"],
            frows,
            f"{len(failed)} failed measurements and why.",
        )
    else:
        s.note("No measurement failed.", "good")
    if training is not None and training.history:
        v = training_verdict(training)
        s.note("Training: " + v.text, v.level)
    return s
