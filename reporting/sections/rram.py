"""RRAM: maps per die (forming, SET/RESET, LRS/HRS, stuck cells), cumulative distributions of
HRS/LRS and of every programmed level, sigma per level, read noise against conductance with the
card's fitted model, retention over log time with the card's relaxation, the endurance window,
and, when a plan measured 1T1R arrays, their conductance maps.

Only the selected (characterization) runs enter: cells a deployment programmed to a network's
targets are not the population's levels. The card's models are evaluated with the code that
uses them (``RramReadNoise.sigma_siemens``, ``bruno_lab.train.rram.programmed_conductance``).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from reporting.data import ReportData
from reporting.model import Cell, Section
from reporting.plotjson import axis, color, ecdf, figure, layout, padded_range
from reporting.sections.common import (
    add_map,
    device_die,
    devices_of_kind,
    failures_by_die,
    scalar_by_device,
)
from reporting.units import Quantity, fmt
from reporting.wafermap import wafer_map

if TYPE_CHECKING:
    from bruno_lab.cards import RramLadder

log = logging.getLogger(__name__)

PROTOCOLS = (
    "rram_forming",
    "rram_iv",
    "rram_program_verify",
    "rram_read_noise",
    "rram_retention",
    "rram_endurance",
    "rram_pulsed",
)
US = 1e6  # S -> µS


LOG_FLOOR_US = 1e-3  # on a log conductance axis, reads at or below 1 nS (0, noise) sit here


class _RramCard(NamedTuple):
    """The wafer's latest RRAM card: its version and its ladder."""

    version: int
    ladder: RramLadder


def _rram_card(data: ReportData) -> _RramCard | None:
    """The wafer's latest RRAM card, None when it has none."""
    row = data.cards.get("rram")
    if row is None:
        return None
    ladder = row.card().rram
    return None if ladder is None else _RramCard(row.version, ladder)


def _cdf_trace(
    name: str, values: np.ndarray, i: int, dash: str = "solid", *, floor: float | None = None
) -> dict[str, Any]:
    """A cumulative distribution: steps through every value, each value marked (one cell or a
    few are still visible). ``floor``: values below it are drawn at it (a log axis)."""
    xs, ps = ecdf(values)
    n_low = int((xs <= floor).sum()) if floor is not None else 0
    if floor is not None:
        xs = np.maximum(xs, floor)
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "x": xs,
        "y": ps,
        "line": {"shape": "hv", "color": color(i), "dash": dash, "width": 2},
        "marker": {"size": 5 if xs.size <= 60 else 0, "color": color(i)},
        "name": f"{name} (n = {xs.size}{f', {n_low} at ≤ 1 nS' if n_low else ''})",
    }


def _cdf_axis(traces: list[dict[str, Any]], title: str, *, log: bool = False) -> dict[str, Any]:
    return axis(title, log=log, range=padded_range([t["x"] for t in traces], log=log))


def _hrs_lrs(s: Section, data: ReportData) -> None:
    traces = []
    iv = data.arrays("rram_iv", ("g_lrs_cycle_siemens", "g_hrs_cycle_siemens"))
    if iv:
        lrs = np.concatenate([a["g_lrs_cycle_siemens"] for a in iv.values()]) * US
        hrs = np.concatenate([a["g_hrs_cycle_siemens"] for a in iv.values()]) * US
        traces += [
            _cdf_trace("LRS, DC cycling", lrs, 0, floor=LOG_FLOOR_US),
            _cdf_trace("HRS, DC cycling", hrs, 1, floor=LOG_FLOOR_US),
        ]
    en = data.arrays("rram_endurance", ("g_lrs_siemens", "g_hrs_siemens"))
    if en:
        lrs = np.concatenate([a["g_lrs_siemens"] for a in en.values()]) * US
        hrs = np.concatenate([a["g_hrs_siemens"] for a in en.values()]) * US
        traces += [
            _cdf_trace("LRS, endurance checkpoints", lrs, 0, "dot", floor=LOG_FLOOR_US),
            _cdf_trace("HRS, endurance checkpoints", hrs, 1, "dot", floor=LOG_FLOOR_US),
        ]
    if not traces:
        return
    s.fig(
        "rram-hrs-lrs-cdf",
        figure(
            traces,
            layout(
                "HRS and LRS: cumulative distributions",
                xaxis=_cdf_axis(traces, "conductance at read (µS)", log=True),
                yaxis={**axis("cumulative (%)"), "range": [0, 100]},
            ),
        ),
        "Every read after SET (LRS) and after RESET (HRS), over all cycles of every cell; a "
        "read at or below 1 nS (an unformed or open cell) is drawn at 1 nS.",
    )


# protocols whose records hold per-cell write-verify outcomes (a test cell's levels, or every
# cell of a 1T1R array as rows x columns): the level distributions pool them all
VERIFY_PROTOCOLS = ("rram_program_verify", "array_program")
VERIFY_ARRAYS = (
    "target_level",
    "target_conductance_siemens",
    "reached_conductance_siemens",
    "success",
)


def _verify(data: ReportData) -> tuple[np.ndarray, ...] | None:
    """(cell, level, target, reached, success) over every verified cell, flattened."""
    dev_of = data.device_of()
    cols: list[list[np.ndarray]] = [[], [], [], [], []]
    for protocol in VERIFY_PROTOCOLS:
        for mid, a in data.arrays(protocol, VERIFY_ARRAYS).items():
            n = a["target_level"].size
            base = dev_of.get(mid, -1)
            # an array's cells are told apart by their index within the measurement
            cell = (
                np.full(n, base)
                if protocol == "rram_program_verify"
                else (base * 1_000_000 + np.arange(n))
            )
            cols[0].append(cell)
            for k, name in enumerate(VERIFY_ARRAYS, start=1):
                cols[k].append(np.asarray(a[name]).reshape(-1))
    if not cols[0]:
        return None
    return tuple(np.concatenate(c) for c in cols)


def _levels(s: Section, data: ReportData) -> None:
    v = _verify(data)
    if v is None:
        return
    cell, _level, target, reached, ok = v
    ok = ok > 0
    # a level is a target conductance (to 0.1 µS): test cells and arrays may use other ladders
    key = np.round(target * 1e7).astype(np.int64)
    order = np.unique(key)
    traces = []
    rows = []
    card = _rram_card(data)
    if card is not None and len(card.ladder.levels) != order.size:
        card = None  # another ladder than the card's: no level-by-level comparison
    means, sigmas, card_m, card_s = [], [], [], []
    for i, k in enumerate(order):
        m = key == k
        g_ok = reached[m & ok] * US
        tgt = float(np.mean(target[m])) * US
        traces.append(_cdf_trace(f"L{i} ({fmt(tgt)} µS)", g_ok, i))
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": [tgt, tgt],
                "y": [0, 100],
                "line": {"color": color(i), "dash": "dot", "width": 1},
                "showlegend": False,
                "hoverinfo": "skip",
            }
        )
        mu = float(np.mean(g_ok)) if g_ok.size else math.nan
        sd = float(np.std(g_ok, ddof=1)) if g_ok.size > 1 else math.nan
        means.append(mu)
        sigmas.append(sd)
        lv = card.ladder.levels[i] if card is not None and i < len(card.ladder.levels) else None
        card_m.append(lv.mean_siemens * US if lv else math.nan)
        card_s.append(lv.sigma_siemens * US if lv else math.nan)
        n_fail = int((m & ~ok).sum())
        rows.append(
            [
                f"L{i}",
                Cell(fmt(tgt), css="num"),
                Cell(fmt(mu), css="num"),
                Cell(fmt(sd), css="num"),
                Cell(str(int(g_ok.size)), css="num"),
                Cell(str(n_fail), css="num bad" if n_fail else "num"),
                Cell(fmt(card_m[-1]) if lv else "–", css="num"),
                Cell(fmt(card_s[-1]) if lv else "–", css="num"),
            ]
        )
    s.fig(
        "rram-level-cdf",
        figure(
            traces,
            layout(
                "programmed levels after write-verify: cumulative distributions",
                xaxis=_cdf_axis(traces, "conductance after verify (µS)"),
                yaxis={**axis("cumulative (%)"), "range": [0, 100]},
            ),
        ),
        f"Cells that reached each target (dotted: the target), {np.unique(cell).size} cells of "
        "the selected runs.",
        wide=False,
    )
    sig = [
        {
            "type": "scatter",
            "mode": "markers+lines",
            "x": means,
            "y": sigmas,
            "marker": {"size": 9},
            "name": "measured σ (cell to cell)",
        },
    ]
    if card is not None:
        sig.append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": card_m,
                "y": card_s,
                "marker": {
                    "size": 11,
                    "symbol": "diamond-open",
                    "color": "#d62728",
                    "line": {"width": 2},
                },
                "name": f"card v{card.version}",
            }
        )
    s.fig(
        "rram-sigma-level",
        figure(
            sig,
            layout(
                "σ per level",
                xaxis=axis("level mean (µS)"),
                yaxis={**axis("σ after verify (µS)"), "rangemode": "tozero"},
            ),
        ),
        "Spread of the reached conductance per level; the card's ladder for comparison.",
    )
    s.table(
        "rram-levels",
        [
            "level",
            "target µS",
            "mean µS",
            "σ µS",
            "cells reached",
            "missed",
            "card mean µS",
            "card σ µS",
        ],
        rows,
        "Per level, the cells of the selected runs that reached their target within the "
        "verify tolerance; 'missed': attempts ran out.",
    )


def _read_noise(s: Section, data: ReportData) -> None:
    rn = data.arrays("rram_read_noise", ("level_mean_siemens", "level_std_siemens"))
    if not rn:
        return
    dev_of = data.device_of()
    bad = _defective(data)
    traces: list[dict[str, Any]] = []
    for defective in (False, True):
        got = [a for mid, a in rn.items() if (dev_of.get(mid) in bad) == defective]
        if not got:
            continue
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": np.concatenate([a["level_mean_siemens"] for a in got]) * US,
                "y": np.concatenate([a["level_std_siemens"] for a in got]) * US,
                "marker": {"size": 7, "color": "#999" if defective else "#1f77b4"},
                "name": f"flagged defective ({len(got)} cells)"
                if defective
                else f"measured ({len(got)} cells)",
            }
        )
    g = np.concatenate([a["level_mean_siemens"] for a in rn.values()]) * US
    card = _rram_card(data)
    cap = "Standard deviation of repeated reads of one programmed state against its mean."
    if card is not None and card.ladder.read_noise is not None:
        noise = card.ladder.read_noise
        grid = np.linspace(0.0, max(float(np.nanmax(g)) * 1.1, 1.0), 50)
        model = [noise.sigma_siemens(x / US) * US for x in grid]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": grid,
                "y": model,
                "line": {"color": "#d62728", "width": 2},
                "name": f"card v{card.version}: σ = {fmt(noise.floor_siemens * 1e9)} nS"
                f" + {fmt(100 * noise.slope_rel)} % · G",
            }
        )
    s.fig(
        "rram-read-noise",
        figure(
            traces,
            layout(
                "read noise vs conductance",
                xaxis=axis("mean conductance (µS)"),
                yaxis={**axis("read-to-read σ (µS)"), "rangemode": "tozero"},
            ),
        ),
        cap,
    )


def _retention(s: Section, data: ReportData) -> None:
    ret = data.arrays("rram_retention", ("time_s", "level", "conductance_siemens"))
    if not ret:
        return
    traces: list[dict[str, Any]] = []
    first: dict[int, list[float]] = {}
    labels: set[Any] = set()
    dev_of = data.device_of()
    bad = _defective(data)
    for mid, a in ret.items():
        defective = dev_of.get(mid) in bad
        for k in np.unique(a["level"]):
            m = a["level"] == k
            t, g = a["time_s"][m], a["conductance_siemens"][m]
            if t.size < 2:
                continue
            group = "defective" if defective else int(k)
            if not defective:  # a stuck or unformed cell is not the level's starting point
                first.setdefault(int(k), []).append(float(g[0]))
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "x": t,
                    "y": g * US,
                    "line": {
                        "color": "#999" if defective else color(int(k)),
                        "width": 1,
                        "dash": "dot" if defective else "solid",
                    },
                    "marker": {"size": 4},
                    "opacity": 0.7,
                    "name": "flagged defective cell (fit)"
                    if defective
                    else f"level {int(k)}, each cell",
                    "legendgroup": f"m{group}",
                    "showlegend": group not in labels,
                }
            )
            labels.add(group)
    if not traces:
        return
    card = _rram_card(data)
    cap = "Read conductance after programming (one line per cell and level)."
    if card is not None and card.ladder.relaxation is not None and first:
        t_all = np.concatenate([a["time_s"] for a in ret.values()])
        t0 = float(t_all[t_all > 0].min())
        grid = np.geomspace(t0, float(t_all.max()), 40)
        for k, g0s in sorted(first.items()):
            g0 = float(np.median(g0s))
            mean, band = _card_relaxation(card.ladder, g0, grid, t0)
            traces += [
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": grid,
                    "y": (mean - band) * US,
                    "line": {"width": 0},
                    "showlegend": False,
                    "hoverinfo": "skip",
                },
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": grid,
                    "y": (mean + band) * US,
                    "fill": "tonexty",
                    "fillcolor": "rgba(214,39,40,0.15)",
                    "line": {"width": 0},
                    "name": "card: ±1σ",
                    "legendgroup": "card",
                    "showlegend": k == min(first),
                },
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": grid,
                    "y": mean * US,
                    "line": {"color": "#d62728", "width": 2},
                    "legendgroup": "card",
                    "name": f"card v{card.version}: relaxation",
                    "showlegend": k == min(first),
                },
            ]
        cap += (
            " Red: the card's relaxation from each level's median first read (cells flagged "
            "defective by their fit left out), evaluated by the trainer's model "
            "(bruno_lab.train.rram)."
        )
    s.fig(
        "rram-retention",
        figure(
            traces,
            layout(
                "retention",
                xaxis=axis("time after programming (s)", log=True),
                yaxis=axis("conductance (µS)"),
            ),
        ),
        cap,
    )


def _defective(data: ReportData) -> set[int]:
    """Devices whose fit flags them defective (stuck, never formed): not the population."""
    return {
        dev
        for dev, fit in data.fits.items()
        if any(str(f).startswith("defective") for f in (fit.flags or []))
    }


def _card_relaxation(
    ladder: RramLadder, g0_siemens: float, time_s: np.ndarray, t_first_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """The card's conductance (S) at ``time_s`` of a cell that read ``g0_siemens`` at
    ``t_first_s``, and its ±1σ, from ``bruno_lab.train.rram.programmed_conductance``."""
    import dataclasses

    import torch

    from bruno_lab.train.rram import CellDraws, LadderStats, programmed_conductance

    stats = dataclasses.replace(
        LadderStats.from_ladder(ladder, dtype=torch.float64),
        level_mean_siemens=torch.tensor([1.0], dtype=torch.float64),
        level_sigma_siemens=torch.tensor([0.0], dtype=torch.float64),
        stuck_fraction=0.0,
    )
    lv = torch.zeros(2, dtype=torch.long)
    draws = CellDraws(
        torch.zeros(2, dtype=torch.float64),
        torch.tensor([0.0, 1.0], dtype=torch.float64),
        torch.zeros(2, dtype=torch.bool),
    )
    ref = float(programmed_conductance(lv, draws, stats, t_first_s)[0])
    vals = np.array([programmed_conductance(lv, draws, stats, float(t)).numpy() for t in time_s])
    # drift is relative: a level of 1 S scaled to g0; the spread per decade is absolute (S)
    mean = vals[:, 0] / ref * g0_siemens
    band = np.abs(vals[:, 1] - vals[:, 0])
    return mean, band


def _endurance(s: Section, data: ReportData) -> None:
    en = data.arrays("rram_endurance", ("cycle", "g_lrs_siemens", "g_hrs_siemens"))
    if not en:
        return
    traces = []
    for j, a in enumerate(en.values()):
        for name, key, c in (("LRS", "g_lrs_siemens", 0), ("HRS", "g_hrs_siemens", 1)):
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "x": a["cycle"],
                    "y": np.where(a[key] > 0, a[key] * US, np.nan),
                    "line": {"color": color(c), "width": 1},
                    "marker": {"size": 4},
                    "opacity": 0.6,
                    "name": name,
                    "legendgroup": name,
                    "showlegend": j == 0,
                }
            )
    closed = scalar_by_device(data, "rram_endurance", "n_cycles_to_close")
    n_open = len(en) - len(closed)
    s.fig(
        "rram-endurance",
        figure(
            traces,
            layout(
                "endurance: memory window",
                xaxis=axis("SET/RESET cycles", log=True),
                yaxis=axis("conductance (µS)", log=True),
            ),
        ),
        f"{len(en)} cells; window closed on {len(closed)} (median at "
        f"{fmt(float(np.median(list(closed.values())))) if closed else '–'} cycles), still open "
        f"on {n_open} at the last checkpoint.",
    )


def _stuck_map(s: Section, data: ReportData) -> None:
    cells = devices_of_kind(data, "rram")
    pv = data.rows("rram_program_verify", ok=None)
    if pv.empty:
        return
    tried = {int(d) for d in pv["device_id"]}
    stuck = set()
    for dev in tried:
        fit = data.fits.get(dev)
        if fit is not None and any(f.startswith("defective:stuck") for f in fit.flags or []):
            stuck.add(dev)
    for r in pv[pv["status"] != "ok"].itertuples(index=False):
        if "no switching" in str(r.error or ""):
            stuck.add(int(r.device_id))
    die_of = device_die(data)
    per: dict[tuple[int, int], list[int]] = {}
    for dev in cells:
        if dev in tried:
            per.setdefault(die_of[dev], []).append(1 if dev in stuck else 0)
    values = {d: float(sum(v)) / len(v) for d, v in per.items()}
    labels = {d: f"{sum(v)}/{len(v)}" for d, v in per.items()}
    q = Quantity("stuck_fraction", "stuck cells", "", 1.0)
    fig = wafer_map(
        "stuck cells per die",
        q,
        data.dies,
        values,
        failed=failures_by_die(data, ("rram_program_verify",)),
    )
    heat = fig["data"][1]
    heat["colorscale"] = [[0, "#f2f2f2"], [1, "#d62728"]]
    heat["zmin"], heat["zmax"] = 0.0, 1.0
    xs, ys = heat["x"], heat["y"]
    for (x, y), text in labels.items():
        heat["text"][ys.index(y)][xs.index(x)] = text
    s.fig(
        "rram-stuck-map",
        fig,
        f"Cells that ignored programming (stuck) of the cells tried per die: {len(stuck)} of "
        f"{len(tried)} on the wafer.",
    )


def _voltages(s: Section, data: ReportData) -> None:
    series = [
        ("forming", scalar_by_device(data, "rram_forming", "forming_voltage_v")),
        ("SET", scalar_by_device(data, "rram_iv", "set_voltage_v")),
        (
            "|RESET|",
            {k: -v for k, v in scalar_by_device(data, "rram_iv", "reset_voltage_v").items()},
        ),
    ]
    traces = [_cdf_trace(n, np.array(list(v.values())), i) for i, (n, v) in enumerate(series) if v]
    if traces:
        s.fig(
            "rram-voltage-cdf",
            figure(
                traces,
                layout(
                    "switching voltages: cumulative distributions",
                    xaxis=_cdf_axis(traces, "voltage (V)"),
                    yaxis={**axis("cumulative (%)"), "range": [0, 100]},
                ),
            ),
            "Forming voltage of the staircase, median SET and RESET voltage of the DC cycles.",
        )


MAX_ARRAY_MAPS = 3  # per array protocol: the maps of its latest measurement


def _array_maps(s: Section, data: ReportData) -> None:
    """Conductance heat maps of 1T1R arrays: the measured 2-D conductance arrays (rows x
    columns, in S; targets are not measurements) of each ``array_*`` protocol's latest record."""
    protocols = sorted({p for p in data.frame["protocol"] if str(p).startswith("array_")})
    for protocol in protocols:
        rows = data.rows(protocol, ok=True)
        for r in rows.tail(1).itertuples(index=False):
            mid = int(r.measurement_id)
            names = data.store.array_names(mid)
            grids = {n: u for n, u in names.items() if u == "S" and not n.startswith("target")}
            got = data.store.load_arrays(mid, list(grids)) if grids else {}
            maps = [(n, g) for n, (g, _) in sorted(got.items()) if g.ndim == 2][:MAX_ARRAY_MAPS]
            for name, g in maps:
                s.fig(
                    f"rram-array-{mid}-{name}",
                    figure(
                        [
                            {
                                "type": "heatmap",
                                "z": g * US,
                                "colorscale": "Viridis",
                                "colorbar": {"title": {"text": "µS"}},
                                "hovertemplate": "row %{y}, col %{x}: %{z:.3g} µS<extra></extra>",
                            }
                        ],
                        layout(
                            f"{protocol}: {name} on die {r.die_label}",
                            height=420,
                            xaxis=axis("column (bit line)"),
                            yaxis={**axis("row (word line)"), "autorange": "reversed"},
                        ),
                    ),
                    f"{g.shape[0]} × {g.shape[1]} cells of the array on die {r.die_label}.",
                )


def build(data: ReportData) -> Section | None:
    if "rram" not in data.kinds():
        return None
    s = Section(
        "rram",
        "RRAM",
        "Resistive memory test cells (and arrays): forming, DC switching, write-verify levels, "
        "read noise, retention, endurance. Characterization runs only.",
    )
    for name, protocol, title in (
        ("forming_voltage_v", "rram_forming", "forming voltage"),
        ("set_voltage_v", "rram_iv", "SET voltage"),
        ("reset_voltage_v", "rram_iv", "RESET voltage"),
        ("g_lrs_siemens", "rram_iv", "G LRS (median over cycles)"),
        ("g_hrs_siemens", "rram_iv", "G HRS (median over cycles)"),
    ):
        add_map(
            s,
            data,
            f"rram-map-{name}",
            title,
            name,
            scalar_by_device(data, protocol, name),
            PROTOCOLS,
        )
    _stuck_map(s, data)
    _hrs_lrs(s, data)
    _voltages(s, data)
    _levels(s, data)
    _read_noise(s, data)
    _retention(s, data)
    _endurance(s, data)
    _array_maps(s, data)
    if "rram" not in data.cards:
        s.note("No RRAM model card for this wafer.", "warn")
    return s if s.blocks else None
