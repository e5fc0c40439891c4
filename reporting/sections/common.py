"""Helpers the sections share: per-device scalars, die lookups, failures per die, map blocks."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from reporting.data import ReportData
from reporting.model import Section
from reporting.units import quantity
from reporting.wafermap import per_die, wafer_map


def device_die(data: ReportData) -> dict[int, tuple[int, int]]:
    return {
        int(r.device_id): (int(r.die_x), int(r.die_y)) for r in data.devices.itertuples(index=False)
    }


def device_label(data: ReportData) -> dict[int, str]:
    return {
        int(r.device_id): f"{r.die_label}/{r.site}" for r in data.devices.itertuples(index=False)
    }


def devices_of_kind(data: ReportData, kind: str) -> list[int]:
    d = data.devices
    return [int(i) for i in d[d["kind"] == kind]["device_id"]]


def scalar_by_device(
    data: ReportData, protocol: str, name: str, *, index: int | None = None
) -> dict[int, float]:
    """device id -> median of scalar ``name`` over its ok ``protocol`` rows (``index``: only the
    rows with that key index, e.g. one pv_loop frequency)."""
    rows = data.rows(protocol, ok=True)
    if name not in rows.columns or rows.empty:
        return {}
    if index is not None:
        rows = rows[rows["key"].fillna("").str.endswith(f"/{protocol}/{index}")]
    out: dict[int, float] = {}
    for dev, group in rows.groupby("device_id"):
        vals = group[name].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            out[int(dev)] = float(np.median(vals))
    return out


def fit_param_by_device(data: ReportData, kind: str, name: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for dev in devices_of_kind(data, kind):
        fit = data.fits.get(dev)
        if fit is None:
            continue
        v = (fit.parameters or {}).get(name)
        if v is not None and math.isfinite(v):
            out[dev] = float(v)
    return out


def failures_by_die(data: ReportData, protocols: Iterable[str]) -> dict[tuple[int, int], list[str]]:
    """die -> reasons of the failed measurements of ``protocols`` on it."""
    f = data.frame
    f = f[f["protocol"].isin(list(protocols)) & (f["status"] != "ok")]
    out: dict[tuple[int, int], list[str]] = {}
    for r in f.itertuples(index=False):
        out.setdefault((int(r.die_x), int(r.die_y)), []).append(
            f"site {r.site} {r.protocol}: {r.error or r.status}"
        )
    return out


def add_map(
    section: Section,
    data: ReportData,
    fig_id: str,
    title: str,
    name: str,
    values: dict[int, float],
    protocols: Iterable[str],
    caption: str = "",
) -> bool:
    """A wafer map of per-device ``values`` (SI, quantity ``name``); False when empty."""
    if not values:
        return False
    by_die, counts = per_die(values, device_die(data))
    q = quantity(name, list(values.values()))
    fig = wafer_map(
        title, q, data.dies, by_die, counts=counts, failed=failures_by_die(data, protocols)
    )
    n_multi = max(counts.values()) if counts else 1
    how = "the median of the die's devices" if n_multi > 1 else "the die's device"
    section.fig(fig_id, fig, caption or f"{q.title}: {how}; red frame: a failed measurement.")
    return True


def card_params(data: ReportData, kind: str) -> dict[str, Any]:
    """name -> ParameterStats of the kind's latest card (empty without a card)."""
    card = data.cards.get(kind)
    return dict(card.card().parameters) if card is not None else {}


def percentile_band(samples: np.ndarray, lo: float = 16.0, hi: float = 84.0) -> tuple[Any, Any]:
    return np.nanpercentile(samples, lo, axis=0), np.nanpercentile(samples, hi, axis=0)
