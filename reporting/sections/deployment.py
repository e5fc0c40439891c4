"""Deployment: per cell the map's target against what write-verify reached and what the chip
read back, how many cells landed within tolerance, and the accuracy on chip against software,
with the spread over read passes and rounding a reader can compare."""

from __future__ import annotations

import math

import numpy as np

from reporting.model import Cell, Section
from reporting.plotjson import axis, figure, layout
from reporting.records import DeploymentRecord, mean_spread
from reporting.units import fmt, pct

US = 1e6


def build(rec: DeploymentRecord | None) -> Section | None:
    if rec is None or not rec.cells:
        return None
    r = rec.record
    die = (r.get("die") or {}).get("label", r.get("die", "?"))
    s = Section(
        "deployment",
        "Deployment and on-chip evaluation",
        f"The network's programming map on die {die} (run {r.get('run_id', '?')}): each "
        "logical cell formed and programmed by write-verify, then read back.",
    )
    cells = rec.cells
    target = np.array([c.get("target_conductance_siemens", math.nan) for c in cells]) * US
    reached = (
        np.array(
            [
                c.get("reached_conductance_siemens")
                if c.get("reached_conductance_siemens") is not None
                else math.nan
                for c in cells
            ]
        )
        * US
    )
    ok = np.array([bool(c.get("success")) for c in cells])
    tol = (r.get("settings") or {}).get("verify", {}).get("tolerance_siemens")
    tol = rec.extra.get("tolerance_siemens", tol)
    n, n_ok = len(cells), int(ok.sum())
    miss = n - n_ok
    tol_txt = f" within ±{fmt(tol * US)} µS of target" if tol else " within tolerance"
    s.note(
        f"{n_ok} of {n} cells reached their target{tol_txt}"
        + (f"; {miss} missed (attempts ran out or the cell failed)." if miss else "."),
        "good" if miss == 0 else ("warn" if miss <= 0.1 * n else "bad"),
    )
    traces = [
        {
            "type": "scatter",
            "mode": "markers",
            "x": target[ok],
            "y": reached[ok],
            "marker": {"size": 7, "color": "#1f77b4"},
            "name": "reached (within tolerance)",
        },
        {
            "type": "scatter",
            "mode": "markers",
            "x": target[~ok],
            "y": reached[~ok],
            "marker": {"size": 10, "symbol": "x", "color": "#d62728"},
            "name": "missed",
        },
    ]
    if rec.read_siemens is not None and len(rec.read_siemens) == n:
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": target,
                "y": np.asarray(rec.read_siemens) * US,
                "marker": {"size": 6, "symbol": "circle-open", "color": "#ff7f0e"},
                "name": "read back (first pass)",
            }
        )
    hi = float(np.nanmax(np.concatenate([target, reached]))) * 1.08 if n else 1.0
    traces.append(
        {
            "type": "scatter",
            "mode": "lines",
            "x": [0, hi],
            "y": [0, hi],
            "line": {"dash": "dot", "color": "#555"},
            "name": "target = measured",
        }
    )
    s.fig(
        "deployment-target-reached",
        figure(
            traces,
            layout(
                "target vs reached",
                xaxis=axis("target (µS)", range=[0, hi]),
                yaxis=axis("measured (µS)", range=[0, hi]),
            ),
        ),
        "Each point is one logical cell of the map.",
    )
    err = reached - target
    s.fig(
        "deployment-error",
        figure(
            [
                {
                    "type": "histogram",
                    "x": err[np.isfinite(err)],
                    "nbinsx": 30,
                    "marker": {"color": "#1f77b4"},
                    "name": "reached − target",
                }
            ],
            layout("programming error", xaxis=axis("reached − target (µS)"), yaxis=axis("cells")),
        ),
        f"RMS {fmt(float(np.sqrt(np.nanmean(err**2))))} µS over "
        f"{int(np.isfinite(err).sum())} cells.",
    )
    ev = rec.evaluation
    if ev:
        chip = ev.get("chip_accuracies") or (
            [ev["chip_accuracy"]] if ev.get("chip_accuracy") is not None else []
        )
        m, sd = mean_spread(chip)
        if len(chip) > 1 and sd > 0:
            chip_txt = f"{pct(m)} ± {100 * sd:.1f} (over {len(chip)} read passes)"
        elif len(chip) > 1:
            chip_txt = f"{pct(m)} (the same on all {len(chip)} read passes)"
        else:
            chip_txt = pct(m)
        chance = ev.get("chance")
        rows = [
            ["on chip (conductances read back)", Cell(chip_txt, css="num")],
            [
                "software (network with cells drawn from the card)",
                Cell(pct(ev.get("software_accuracy")), css="num"),
            ],
            [
                "ideal map (every cell at its target)",
                Cell(pct(ev.get("ideal_accuracy")), css="num"),
            ],
            ["chance", Cell(pct(chance), css="num")],
        ]
        if ev.get("read_rms_error_siemens") is not None:
            rows.append(
                [
                    "read-back RMS error vs target",
                    Cell(f"{fmt(ev['read_rms_error_siemens'] * US)} µS", css="num"),
                ]
            )
        s.table("deployment-accuracy", ["test accuracy", "value"], rows)
        sw = ev.get("software_accuracy")
        if sw is not None and math.isfinite(m):
            gap = 100 * (m - sw)
            s.note(
                f"On chip {pct(m)} against software {pct(sw)}: "
                f"{'+' if gap >= 0 else '−'}{abs(gap):.1f} points.",
                "info",
            )
        if chance is not None and math.isfinite(m) and m <= chance + 0.02:
            s.note("On-chip accuracy is at chance.", "bad")
    return s
