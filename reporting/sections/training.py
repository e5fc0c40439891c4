"""Training: loss and accuracy per epoch with chance, the test confusion matrix, and a plain
verdict when the network did not learn beyond chance or collapsed onto one class."""

from __future__ import annotations

from typing import Any

import numpy as np

from reporting.model import Section
from reporting.plotjson import axis, figure, layout
from reporting.records import TrainingRecord, training_verdict


def build(rec: TrainingRecord | None) -> Section | None:
    if rec is None or not rec.history:
        return None
    s = Section("training", "Training", rec.description)
    v = training_verdict(rec)
    s.note(v.text, v.level)
    ep = [h["epoch"] for h in rec.history]
    traces: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": ep,
            "y": [h.get("train_loss") for h in rec.history],
            "name": "train loss",
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": ep,
            "y": [h.get("test_loss") for h in rec.history],
            "name": "test loss",
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": ep,
            "xaxis": "x2",
            "yaxis": "y2",
            "y": [100 * h.get("train_accuracy", float("nan")) for h in rec.history],
            "name": "train accuracy",
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": ep,
            "xaxis": "x2",
            "yaxis": "y2",
            "y": [100 * h.get("test_accuracy", float("nan")) for h in rec.history],
            "name": "test accuracy",
        },
    ]
    if rec.n_classes:
        ln_c = float(np.log(rec.n_classes))
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": [ep[0], ep[-1]],
                "y": [ln_c, ln_c],
                "line": {"dash": "dot", "color": "#777"},
                "name": f"ln {rec.n_classes} (uniform output)",
            }
        )
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": [ep[0], ep[-1]],
                "xaxis": "x2",
                "yaxis": "y2",
                "y": [100 / rec.n_classes] * 2,
                "line": {"dash": "dot", "color": "#000"},
                "name": "chance",
            }
        )
    lay = layout(
        "training curves",
        xaxis={**axis("epoch"), "domain": [0, 0.45]},
        yaxis=axis("cross-entropy loss"),
        xaxis2={**axis("epoch"), "domain": [0.56, 1], "anchor": "y2"},
        yaxis2={**axis("accuracy (%)"), "anchor": "x2", "range": [0, 101]},
    )
    s.fig("training-curves", figure(traces, lay), "", wide=True)
    if rec.confusion:
        m = np.asarray(rec.confusion)
        n = m.shape[0]
        row = m.sum(axis=1, keepdims=True)
        frac = np.where(row > 0, m / np.maximum(row, 1), 0.0)
        text = [[f"{int(m[i, j])}<br>{100 * frac[i, j]:.0f} %" for j in range(n)] for i in range(n)]
        s.fig(
            "training-confusion",
            figure(
                [
                    {
                        "type": "heatmap",
                        "z": frac * 100,
                        "x": list(range(n)),
                        "y": list(range(n)),
                        "text": text,
                        "texttemplate": "%{text}",
                        "colorscale": [[0, "#f7fbff"], [0.5, "#6baed6"], [1, "#08306b"]],
                        "xgap": 2,
                        "ygap": 2,
                        "zmin": 0,
                        "zmax": 100,
                        "colorbar": {"title": {"text": "% of class"}},
                        "hovertemplate": "true %{y}, predicted %{x}: %{text}<extra></extra>",
                    }
                ],
                layout(
                    "confusion matrix (test set)",
                    height=360,
                    xaxis={
                        **axis("predicted class"),
                        "dtick": 1,
                        "range": [-0.5, n - 0.5],
                        "showgrid": False,
                        "constrain": "domain",
                    },
                    yaxis={
                        **axis("true class"),
                        "dtick": 1,
                        "range": [n - 0.5, -0.5],
                        "showgrid": False,
                        "scaleanchor": "x",
                    },
                ),
            ),
            f"{int(m.sum())} test samples; each row sums to its class.",
        )
    return s
