"""Plotly figures as plain JSON documents (no plotly.graph_objects: building dicts is fast and
the page's plotly.js validates them), with numeric arrays written at 4 significant digits."""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

import numpy as np

SIG_DIGITS = 4
FONT = {"family": "Helvetica, Arial, sans-serif", "size": 12}


def _number(x: float) -> str:
    if not math.isfinite(x):
        return "null"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.{SIG_DIGITS}g}"


def _encode(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "b":
            return json.dumps(obj.tolist())
        if obj.dtype.kind in "iu":
            return (
                "[" + ",".join(str(int(v)) for v in obj.reshape(-1)) + "]"
                if obj.ndim == 1
                else ("[" + ",".join(_encode(row) for row in obj) + "]")
            )
        if obj.dtype.kind == "f":
            if obj.ndim == 1:
                return "[" + ",".join(_number(float(v)) for v in obj) + "]"
            return "[" + ",".join(_encode(row) for row in obj) + "]"
        return json.dumps(obj.tolist())
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(_encode(v) for v in obj) + "]"
    if isinstance(obj, bool | np.bool_) or obj is None:
        return json.dumps(None if obj is None else bool(obj))
    if isinstance(obj, float | np.floating):
        return _number(float(obj))
    if isinstance(obj, int | np.integer):
        return str(int(obj))
    return json.dumps(obj, ensure_ascii=False)


def dumps(fig: dict[str, Any]) -> str:
    """The figure as JSON text safe to put inside a ``<script type="application/json">``."""
    return _encode(fig).replace("</", "<\\/")


def layout(title: str = "", *, height: int = 360, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 14}, "x": 0.02, "xanchor": "left"},
        "height": height,
        "margin": {"l": 64, "r": 24, "t": 40 if title else 16, "b": 52},
        "font": FONT,
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "hovermode": "closest",
        "legend": {"font": {"size": 11}},
    }
    base.update(extra)
    return base


def axis(title: str, *, log: bool = False, **extra: Any) -> dict[str, Any]:
    ax: dict[str, Any] = {
        "title": {"text": title},
        "showline": True,
        "linecolor": "#444",
        "mirror": True,
        "ticks": "outside",
        "gridcolor": "#e8e8e8",
        "zeroline": False,
        "exponentformat": "SI" if log else "none",
        "separatethousands": False,
    }
    if log:
        ax["type"] = "log"
    ax.update(extra)
    return ax


def figure(data: list[dict[str, Any]], lay: dict[str, Any]) -> dict[str, Any]:
    return {"data": data, "layout": lay}


def ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted finite values and their cumulative probability in % (midpoint plotting)."""
    v = np.sort(np.asarray(values, dtype=float)[np.isfinite(values)])
    if v.size == 0:
        return v, v
    return v, 100.0 * (np.arange(1, v.size + 1) - 0.5) / v.size


def padded_range(
    values: list[np.ndarray] | np.ndarray, *, log: bool = False, pad: float = 0.06
) -> list[float] | None:
    """An axis range around the finite ``values`` (positive ones on a log axis, where plotly
    takes log10 bounds) with ``pad`` of the span either side, so a curve that starts or ends
    on the extreme value is not drawn on the axis line; None when there is nothing to show."""
    arrs = values if isinstance(values, list) else [values]
    v = np.concatenate([np.asarray(a, dtype=float).reshape(-1) for a in arrs]) if arrs else None
    if v is None:
        return None
    v = v[np.isfinite(v) & ((v > 0) if log else True)]
    if v.size == 0:
        return None
    lo, hi = (np.log10(v.min()), np.log10(v.max())) if log else (float(v.min()), float(v.max()))
    span = hi - lo or (0.5 if log else (abs(hi) * 0.1 or 1.0))
    return [float(lo - pad * span), float(hi + pad * span)]


def decimate(n: int, keep: int) -> slice:
    """A stride that keeps about ``keep`` of ``n`` samples."""
    return slice(None, None, max(1, n // max(keep, 1)))


PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
)


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js as shipped inside the installed ``plotly`` package (never fetched)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()
