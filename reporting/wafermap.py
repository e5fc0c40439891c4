"""Wafer maps as device engineers draw them: the wafer outline with its flat, every die of the
map at its (column, row), the die's value written in it, one colour bar in engineering units,
failed dies outlined in red with their reasons on hover, dies not measured in grey.

The store knows dies by their prober (column, row) and, when the run recorded it, the whole
wafer map; the outline is the circle around the map's die corners (the map holds the dies that
fit inside the usable disc), and the flat is drawn at 6 o'clock, the orientation of the maps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from reporting.plotjson import figure, layout
from reporting.units import Quantity, fmt

FLAT_DEPTH = 0.06  # flat's distance inside the circle, as a fraction of the radius


def outline_path(cx: float, cy: float, r: float) -> str:
    """SVG path of a circle with a flat at the bottom (y grows downwards on the map)."""
    d = r * (1.0 - FLAT_DEPTH)
    half = math.acos(d / r)  # half-angle of the flat, from straight down
    # angles measured from +x, counter-clockwise in screen terms with y down: bottom is +pi/2
    start, stop = math.pi / 2 + half, math.pi / 2 - half + 2 * math.pi
    pts = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in np.linspace(start, stop, 160)]
    path = "M " + " L ".join(f"{x:.3f},{y:.3f}" for x, y in pts)
    return path + " Z"  # closing segment is the flat


def wafer_geometry(dies: Mapping[tuple[int, int], str]) -> tuple[float, float, float]:
    """(centre x, centre y, radius) in die pitches, from the map's die corners."""
    xs = np.array([x for x, _ in dies], dtype=float)
    ys = np.array([y for _, y in dies], dtype=float)
    cx, cy = (xs.min() + xs.max()) / 2.0, (ys.min() + ys.max()) / 2.0
    corner = np.hypot(np.abs(xs - cx) + 0.5, np.abs(ys - cy) + 0.5).max()
    return float(cx), float(cy), float(corner * 1.04 + 0.25)


def wafer_map(
    title: str,
    q: Quantity,
    dies: Mapping[tuple[int, int], str],
    values: Mapping[tuple[int, int], float],
    *,
    counts: Mapping[tuple[int, int], int] | None = None,
    failed: Mapping[tuple[int, int], list[str]] | None = None,
    categorical: Mapping[float, str] | None = None,
    height: int = 380,
) -> dict[str, Any]:
    """A wafer-map figure of ``values`` per die (SI units in, ``q``'s display unit shown).

    ``counts``: devices behind each die's value (shown on hover); ``failed``: die -> reasons.
    """
    failed = failed or {}
    all_dies = dict(dies)
    for d in (*values, *failed):
        all_dies.setdefault(d, f"{d[0]},{d[1]}")
    xs = sorted({x for x, _ in all_dies})
    ys = sorted({y for _, y in all_dies})
    x0, x1, y0, y1 = xs[0], xs[-1], ys[0], ys[-1]
    nx, ny = x1 - x0 + 1, y1 - y0 + 1
    z: list[list[float | None]] = [[None] * nx for _ in range(ny)]
    text = [[""] * nx for _ in range(ny)]
    hover = [[""] * nx for _ in range(ny)]
    present: list[list[float | None]] = [[None] * nx for _ in range(ny)]
    for (x, y), label in all_dies.items():
        present[y - y0][x - x0] = 0.0
        hover[y - y0][x - x0] = f"die {label} (col {x}, row {y})<br>not measured"
    shown = q.scale([v for v in values.values()]) if values else np.empty(0)
    for ((x, y), v), s in zip(values.items(), shown, strict=True):
        label = all_dies[(x, y)]
        n = (counts or {}).get((x, y))
        txt = categorical.get(v, fmt(s)) if categorical is not None else fmt(float(s))
        z[y - y0][x - x0] = float(s) if math.isfinite(s) else None
        text[y - y0][x - x0] = txt
        extra = f" (median of {n} devices)" if n and n > 1 else ""
        hover[y - y0][x - x0] = (
            f"die {label} (col {x}, row {y})<br>{q.label}: {txt} {q.unit}{extra}"
        )
    for (x, y), reasons in failed.items():
        h = hover[y - y0][x - x0]
        hover[y - y0][x - x0] = (
            h + "<br><b>failed</b>: " + "<br>".join(r[:140] for r in reasons[:4])
        )
    xs_axis = list(range(x0, x1 + 1))
    ys_axis = list(range(y0, y1 + 1))
    finite = shown[np.isfinite(shown)] if shown.size else shown
    trace: dict[str, Any] = {
        "type": "heatmap",
        "x": xs_axis,
        "y": ys_axis,
        "z": z,
        "text": text,
        "texttemplate": "%{text}",
        "textfont": {"size": 11},
        "customdata": hover,
        "hovertemplate": "%{customdata}<extra></extra>",
        "xgap": 2,
        "ygap": 2,
        "colorscale": q.colorscale,
        # the unit above the bar: beside it, a rotated "V" reads as part of a tick ("2.4 V")
        "colorbar": {"title": {"text": q.unit or q.label, "side": "top"}, "thickness": 14},
        "hoverongaps": False,
    }
    if q.diverging and finite.size:
        m = float(np.max(np.abs(finite))) or 1.0
        trace.update(zmid=0.0, zmin=-m, zmax=m, reversescale=True)
    elif finite.size and float(finite.max() - finite.min()) <= 1e-9 * max(
        abs(float(finite.max())), 1e-30
    ):
        v = float(finite[0])  # one value everywhere: a colour bar around it, not 0..2v
        span = abs(v) * 0.05 or 1.0
        trace.update(zmin=v - span, zmax=v + span)
    if categorical is not None:
        trace["showscale"] = False
    background = {
        "type": "heatmap",
        "x": xs_axis,
        "y": ys_axis,
        "z": present,
        "colorscale": [[0, "#e6e6e6"], [1, "#e6e6e6"]],
        "showscale": False,
        "xgap": 2,
        "ygap": 2,
        "hoverinfo": "skip",
    }
    cx, cy, r = wafer_geometry(all_dies)
    shapes: list[dict[str, Any]] = [
        {
            "type": "path",
            "path": outline_path(cx, cy, r),
            "line": {"color": "#333", "width": 1.5},
            "layer": "below",
        }
    ]
    for x, y in failed:
        shapes.append(
            {
                "type": "rect",
                "x0": x - 0.47,
                "x1": x + 0.47,
                "y0": y - 0.47,
                "y1": y + 0.47,
                "line": {"color": "#d62728", "width": 2.5},
            }
        )
    data = [background, trace]
    if failed:
        data.append(
            {
                "type": "scatter",
                # in the die's corner: the die's value stays readable
                "x": [x + 0.3 for x, _ in failed],
                "y": [y - 0.3 for _, y in failed],
                "mode": "markers",
                "marker": {"symbol": "x-thin", "size": 6, "line": {"width": 2, "color": "#d62728"}},
                "name": "failed measurement",
                "hoverinfo": "skip",
                "showlegend": True,
            }
        )
    pad = 0.3
    lay = layout(
        title,
        height=height,
        xaxis={
            "range": [cx - r - pad, cx + r + pad],
            "showgrid": False,
            "zeroline": False,
            "tickmode": "array",
            "tickvals": xs_axis,
            "title": {"text": "column"},
            "constrain": "domain",
        },
        yaxis={
            "range": [cy + r + pad, cy - r - pad],
            "showgrid": False,
            "zeroline": False,
            "tickmode": "array",
            "tickvals": ys_axis,
            "title": {"text": "row"},
            "scaleanchor": "x",
            "scaleratio": 1,
        },
        shapes=shapes,
        margin={"l": 50, "r": 20, "t": 40, "b": 40},
        legend={"orientation": "h", "y": -0.12, "font": {"size": 10}},
        annotations=[
            {
                "x": cx,
                "y": cy + r * (1 - FLAT_DEPTH),
                "text": "flat",
                "showarrow": False,
                "yshift": 9,
                "font": {"size": 10, "color": "#555"},
            }
        ],
    )
    return figure(data, lay)


def per_die(
    device_values: Mapping[int, float], device_die: Mapping[int, tuple[int, int]]
) -> tuple[dict[tuple[int, int], float], dict[tuple[int, int], int]]:
    """Median per die of per-device values (finite ones) and how many devices each holds."""
    groups: dict[tuple[int, int], list[float]] = {}
    for dev, v in device_values.items():
        if v is not None and math.isfinite(v) and dev in device_die:
            groups.setdefault(device_die[dev], []).append(float(v))
    return (
        {d: float(np.median(v)) for d, v in groups.items()},
        {d: len(v) for d, v in groups.items()},
    )
