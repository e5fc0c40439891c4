"""Deployment: per cell the map's target against what write-verify reached and what the chip
read back, how many cells landed within tolerance, heat maps of target, reached and their
difference per tile, and the accuracy on chip (read-back conductances, and the array's own
analog matrix-vector products when the evaluation ran them) against software, with the spread
over read passes and rounding a reader can compare.

Fields read from the deployment record (``DeploymentRecord.record``), all optional except
``cells``: ``die`` (label or ``{label}``), ``run_id``, ``settings.verify.tolerance_siemens``,
``array_rows``/``array_cols`` (or ``array: {rows, cols}``); per cell
``target_conductance_siemens``, ``reached_conductance_siemens``, ``success``, ``attempts``,
``layer``, ``row``, ``col``, ``polarity`` (the weight matrix's cell) and, for a deployment onto
a 1T1R array, ``array_row``/``array_col`` (word line, bit line; also ``wordline``/``bitline``)
and ``tile`` (which array; also ``array``). Without array coordinates the tiles are the weight
matrices, one per layer and polarity. Accuracies (the evaluation's fields, else the record's):
``chip_accuracies``/``chip_accuracy``, ``mvm_accuracies``/``mvm_accuracy``,
``software_accuracy``, ``ideal_accuracy``, ``chance``, ``read_rms_error_siemens``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reporting.model import Cell, Section
from reporting.plotjson import axis, color, figure, layout
from reporting.records import DeploymentRecord, mean_spread
from reporting.units import fmt, pct

US = 1e6
MAX_TILES = 8  # tile heat maps drawn (the largest first); the rest are counted in a note
ROW_KEYS = ("array_row", "wordline", "word_line")
COL_KEYS = ("array_col", "bitline", "bit_line")
TILE_KEYS = ("tile", "array")
HEALTH = {0: "ok", 1: "stuck", 2: "unformed", 3: "out of window"}  # array_health's codes
ACCURACY_KEYS = (
    "chip_accuracies",
    "chip_accuracy",
    "mvm_accuracies",
    "mvm_accuracy",
    "software_accuracy",
    "ideal_accuracy",
    "chance",
    "read_rms_error_siemens",
    "readback_accuracy",
    "on_chip",
)


def _first(cell: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((cell[k] for k in keys if cell.get(k) is not None), None)


def _tiles(rec: DeploymentRecord) -> tuple[str, dict[Any, list[tuple[int, int, int]]]]:
    """('array' | 'matrix', tile -> [(cell index, row, column)]): the physical array
    coordinates when every cell has them, else the weight matrices (layer, polarity)."""
    cells = rec.cells
    phys = [(_first(c, ROW_KEYS), _first(c, COL_KEYS)) for c in cells]
    tiles: dict[Any, list[tuple[int, int, int]]] = {}
    if cells and all(r is not None and c is not None for r, c in phys):
        for i, (c, (r, k)) in enumerate(zip(cells, phys, strict=True)):
            tile = _first(c, TILE_KEYS)
            if not isinstance(tile, int | str):
                tile = 0 if tile is None else str(tile)
            tiles.setdefault(tile, []).append((i, int(r), int(k)))
        return "array", tiles
    if cells and all(c.get("row") is not None and c.get("col") is not None for c in cells):
        for i, c in enumerate(cells):
            key = (int(c.get("layer") or 0), str(c.get("polarity") or ""))
            tiles.setdefault(key, []).append((i, int(c["row"]), int(c["col"])))
        return "matrix", tiles
    return "none", {}


def _array_shape(rec: DeploymentRecord, members: list[tuple[int, int, int]]) -> tuple[int, int]:
    r = rec.record
    arr: dict[str, Any] = r["array"] if isinstance(r.get("array"), dict) else {}
    rows = r.get("array_rows") or arr.get("rows")
    cols = r.get("array_cols") or arr.get("cols")
    n_r = max(int(rows or 0), 1 + max(m[1] for m in members))
    n_c = max(int(cols or 0), 1 + max(m[2] for m in members))
    return n_r, n_c


def _placement_tiles(rec: DeploymentRecord) -> list[dict[str, Any]]:
    """The placement's tiles (``placement.tiles``: layer, array_rows, plus_cols; a plus column's
    minus partner is the next) as outline rectangles on the array."""
    placement = rec.record.get("placement")
    tiles = placement.get("tiles") if isinstance(placement, dict) else None
    out = []
    for t in tiles if isinstance(tiles, list) else []:
        try:
            rows = [int(v) for v in t["array_rows"]]
            cols = [int(v) for v in t["plus_cols"]]
        except (KeyError, TypeError, ValueError):
            continue
        if not rows or not cols:
            continue
        rect = {
            "type": "rect",
            "x0": min(cols) - 0.5,
            "x1": max(cols) + 1.5,
            "y0": min(rows) - 0.5,
            "y1": max(rows) + 0.5,
            "line": {"color": color(int(t.get("layer", 0))), "width": 1.5},
        }
        out.append({"layer": t.get("layer"), "rect": rect})
    return out


def _tile_title(kind: str, tile: Any, rec: DeploymentRecord) -> str:
    if kind == "array":
        arr = rec.record.get("array")
        if isinstance(arr, dict) and tile == 0 and arr.get("site") is not None:
            return f"the array at site {arr['site']}: target, reached, reached − target"
        return f"array {tile}: target, reached, reached − target"
    layer, pol = tile
    names = {int(lay.get("layer", -1)): lay.get("name") for lay in rec.record.get("layers") or []}
    name = names.get(layer)
    return f"layer {layer}{f' ({name})' if name else ''}, {pol or '?'} cells of the weight matrix"


def _tile_maps(
    s: Section,
    rec: DeploymentRecord,
    target: np.ndarray,
    reached: np.ndarray,
    status: np.ndarray,
    tol_us: float | None = None,
) -> None:
    """Per tile: target, reached (one colour scale) and reached − target (diverging), each cell
    at its array position (or weight-matrix position), missed cells marked."""
    kind, tiles = _tiles(rec)
    if not tiles:
        return
    order = sorted(tiles, key=lambda t: (-len(tiles[t]), str(t)))
    cells = rec.cells
    finite = np.isfinite(target) | np.isfinite(reached)
    hi = float(np.nanmax(np.concatenate([target[finite], reached[finite]]))) if finite.any() else 1
    err = reached - target
    # the error's colour scale: ± twice the verify tolerance (within it: pale; a miss: full
    # colour and its ×), else the 98th percentile, so one far miss does not wash out the rest
    fin = np.abs(err[np.isfinite(err)])
    lim = 2.0 * tol_us if tol_us else (float(np.percentile(fin, 98)) if fin.size else 1.0)
    lim = lim or 1.0
    for n, tile in enumerate(order[:MAX_TILES]):
        members = tiles[tile]
        n_r, n_c = (
            _array_shape(rec, members)
            if kind == "array"
            else (
                1 + max(m[1] for m in members),
                1 + max(m[2] for m in members),
            )
        )
        grids = [np.full((n_r, n_c), np.nan) for _ in range(3)]
        hover = [["" for _ in range(n_c)] for _ in range(n_r)]
        marks: dict[int, tuple[list[int], list[int]]] = {1: ([], []), 2: ([], [])}
        for i, r, c in members:
            grids[0][r, c], grids[1][r, c], grids[2][r, c] = target[i], reached[i], err[i]
            cell = cells[i]
            health = cell.get("health")
            hover[r][c] = (
                f"cell {cell.get('cell', i)} (layer {cell.get('layer', '?')}, weight "
                f"{cell.get('row', '?')},{cell.get('col', '?')} {cell.get('polarity', '')})<br>"
                f"target {fmt(target[i])} µS, reached {fmt(reached[i])} µS, "
                f"attempts {cell.get('attempts', '?')}"
                + (f"<br>survey: {HEALTH.get(health, health)}" if health else "")
                + ("<br>retargeted (compensates its partner)" if cell.get("compensated") else "")
                + {0: "", 1: "<br><b>missed</b>", 2: "<br><b>not programmed</b>"}[int(status[i])]
            )
            if status[i]:
                marks[int(status[i])][0].append(c)
                marks[int(status[i])][1].append(r)
        domains = ([0.0, 0.28], [0.345, 0.625], [0.72, 0.97])
        data: list[dict[str, Any]] = []
        for k, (grid, title) in enumerate(
            zip(grids, ("target", "reached", "reached − target"), strict=True)
        ):
            data.append(
                {
                    "type": "heatmap",
                    "z": np.where(np.isfinite(grid), grid, np.nan),
                    "xaxis": f"x{k + 1 if k else ''}",
                    "yaxis": f"y{k + 1 if k else ''}",
                    "coloraxis": "coloraxis2" if k == 2 else "coloraxis",
                    "customdata": hover,
                    "hovertemplate": f"{title}: %{{z:.3g}} µS<br>row %{{y}}, col %{{x}}<br>"
                    "%{customdata}<extra></extra>",
                    "hoverongaps": False,
                    "name": title,
                }
            )
        for code, (xs, ys) in marks.items():
            if not xs:
                continue
            for k in range(3):
                data.append(
                    {
                        "type": "scatter",
                        "mode": "markers",
                        "x": xs,
                        "y": ys,
                        "xaxis": f"x{k + 1 if k else ''}",
                        "yaxis": f"y{k + 1 if k else ''}",
                        "marker": {
                            "symbol": "x-thin" if code == 1 else "square-open",
                            "size": 6,
                            "color": "#d62728" if code == 1 else "#222",
                            "line": {"width": 1.5, "color": "#d62728" if code == 1 else "#222"},
                        },
                        "name": "missed" if code == 1 else "not programmed (unusable cell)",
                        "legendgroup": str(code),
                        "showlegend": k == 0,
                        "hoverinfo": "skip",
                    }
                )
        what = (
            ("row (word line)", "column (bit line)")
            if kind == "array"
            else (
                "row (output)",
                "column (input)",
            )
        )
        shapes: list[dict[str, Any]] = []
        if kind == "array":
            for t in _placement_tiles(rec):
                for k in range(3):
                    sx = f"{k + 1 if k else ''}"
                    shapes.append({**t["rect"], "xref": f"x{sx}", "yref": f"y{sx}"})
        lay: dict[str, Any] = {
            "shapes": shapes,
            "coloraxis": {
                "colorscale": "Viridis",
                "cmin": 0.0,
                "cmax": hi,
                "colorbar": {"title": {"text": "µS", "side": "top"}, "x": 0.64, "thickness": 12},
            },
            "coloraxis2": {
                "colorscale": "RdBu",
                "reversescale": True,
                "cmid": 0.0,
                "cmin": -lim,
                "cmax": lim,
                "colorbar": {"title": {"text": "µS", "side": "top"}, "x": 1.0, "thickness": 12},
            },
            "annotations": [
                {
                    "text": t,
                    "x": (d[0] + d[1]) / 2,
                    "y": 1.0,
                    "xref": "paper",
                    "yref": "paper",
                    "yanchor": "bottom",
                    "showarrow": False,
                    "font": {"size": 12},
                }
                for t, d in zip(("target", "reached", "reached − target"), domains, strict=True)
            ],
            "legend": {"orientation": "h", "x": 0.0, "y": -0.2, "yanchor": "top"},
        }
        for k, d in enumerate(domains):
            sx = f"{k + 1 if k else ''}"
            lay[f"xaxis{sx}"] = {
                **axis(what[1]),
                "domain": d,
                "anchor": f"y{sx}",
                "range": [-0.5, n_c - 0.5],
                "showgrid": False,
                "constrain": "domain",
            }
            lay[f"yaxis{sx}"] = {
                **axis(what[0] if k == 0 else ""),
                "anchor": f"x{sx}",
                "range": [n_r - 0.5, -0.5],
                "showgrid": False,
                "scaleanchor": f"x{sx}",
            }
        t_ok = int(sum(status[i] == 0 for i, _, _ in members))
        t_off = int(sum(status[i] == 2 for i, _, _ in members))
        t_err = np.array([err[i] for i, _, _ in members])
        t_err = t_err[np.isfinite(t_err)]
        rms = fmt(float(np.sqrt(np.mean(t_err**2)))) if t_err.size else "–"
        s.fig(
            f"deployment-tile-{n}",
            figure(
                data,
                layout(
                    _tile_title(kind, tile, rec),
                    height=min(520, 150 + 5 * max(n_r, 12)),
                    margin={"l": 60, "r": 40, "t": 60, "b": 90},
                    **lay,
                ),
            ),
            f"{len(members)} cells on {n_r} × {n_c}{' (array)' if kind == 'array' else ''}: "
            f"{t_ok} reached their target"
            + (f", {t_off} not programmed (□)" if t_off else "")
            + f"; RMS reached − target {rms} µS. Blank: no cell of the map; ×: missed"
            + ("; outlines: the placement's tiles (colour by layer)" if kind == "array" else "")
            + ". Hover a cell for its weight and attempts.",
            wide=True,
        )
    if len(order) > MAX_TILES:
        s.note(f"{len(order) - MAX_TILES} more tiles not drawn (the largest {MAX_TILES} are).")


def _cells(n: int) -> str:
    return "cell" if n == 1 else "cells"


def _accuracy(ev: dict[str, Any], many: str, one: str) -> tuple[float, float, int]:
    """(mean, SD, passes) of an accuracy given per pass (``many``) or once (``one``)."""
    vals = ev.get(many)
    if not isinstance(vals, list) or not vals:
        vals = [ev[one]] if ev.get(one) is not None else []
    m, sd = mean_spread([float(v) for v in vals if v is not None])
    return m, sd, len(vals)


def _acc_text(m: float, sd: float, n: int) -> str:
    if n > 1 and sd > 0:
        return f"{pct(m)} ± {100 * sd:.1f} (over {n} read passes)"
    if n > 1:
        return f"{pct(m)} (the same on all {n} read passes)"
    return pct(m)


def build(rec: DeploymentRecord | None) -> Section | None:
    if rec is None or not rec.cells:
        return None
    r = rec.record
    die = (r.get("die") or {}).get("label", r.get("die", "?"))
    arr = r.get("array") if isinstance(r.get("array"), dict) else None
    where = (
        f"the {arr.get('rows', '?')} × {arr.get('cols', '?')} 1T1R array"
        + (f" at site {arr['site']}" if arr.get("site") is not None else "")
        + f" of die {die}"
        if arr
        else f"die {die}"
    )
    s = Section(
        "deployment",
        "Deployment and on-chip evaluation",
        f"The network's programming map on {where} (run {r.get('run_id', '?')}): each "
        "logical cell formed and programmed by write-verify, then read back.",
    )
    cells = rec.cells
    # what write-verify aimed at: the map's target, or the target after stuck-cell
    # compensation (``programmed_target_siemens``; None: a cell left unprogrammed)
    unusable = np.array(
        ["programmed_target_siemens" in c and c["programmed_target_siemens"] is None for c in cells]
    )
    target = (
        np.array(
            [
                c["programmed_target_siemens"]
                if c.get("programmed_target_siemens") is not None
                else c.get("target_conductance_siemens", math.nan)
                for c in cells
            ],
            dtype=float,
        )
        * US
    )
    target[unusable] = math.nan
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
    ok = np.array([bool(c.get("success")) for c in cells]) & ~unusable
    settings = r.get("settings") or {}
    tol = (settings.get("verify") or {}).get("tolerance_siemens") or settings.get(
        "tolerance_siemens"
    )
    tol = rec.extra.get("tolerance_siemens", tol)
    n_unusable = int(unusable.sum())
    n, n_ok = len(cells) - n_unusable, int(ok.sum())
    miss = n - n_ok
    tol_txt = f" within ±{fmt(tol * US)} µS of target" if tol else " within tolerance"
    s.note(
        f"{n_ok} of {n} {'programmed ' if n_unusable else ''}cells reached their "
        f"target{tol_txt}"
        + (f"; {miss} missed (attempts ran out or the cell failed)." if miss else "."),
        "good" if miss == 0 else ("warn" if miss <= 0.1 * n else "bad"),
    )
    if n_unusable:
        n_comp = sum(bool(c.get("compensated")) for c in cells)
        s.note(
            f"{n_unusable} {_cells(n_unusable)} of the map not programmed: the array cell was "
            "unusable in the survey (stuck, unformed or out of window)"
            + (f"; {n_comp} partner {_cells(n_comp)} retargeted to compensate." if n_comp else "."),
            "warn",
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
    status = np.where(unusable, 2, np.where(ok, 0, 1))
    _tile_maps(s, rec, target, reached, status, tol * US if tol else None)
    # the evaluation's accuracies; a record that carries them itself (an array deployment
    # evaluated by the array's matrix-vector products) fills in what the evaluation lacks
    keys = ACCURACY_KEYS
    ev = {k: r[k] for k in keys if r.get(k) is not None} | dict(rec.evaluation or {})
    if not any(ev.get(k) is not None for k in keys):
        return s
    chip = _accuracy(ev, "chip_accuracies", "chip_accuracy")
    mvm = _accuracy(ev, "mvm_accuracies", "mvm_accuracy")
    chance = ev.get("chance")
    rows = []
    if mvm[2]:
        rows.append(
            [
                "on chip, analog matrix-vector products on the array",
                Cell(_acc_text(*mvm), css="num"),
            ]
        )
    how = str(ev.get("on_chip") or "conductances read back")
    if chip[2]:
        rows.append([f"on chip: {how}", Cell(_acc_text(*chip), css="num")])
    if ev.get("readback_accuracy") is not None:
        rows.append(
            [
                "read-back conductances in the software network",
                Cell(pct(ev["readback_accuracy"]), css="num"),
            ]
        )
    rows += [
        [
            "software (network with cells drawn from the card)",
            Cell(pct(ev.get("software_accuracy")), css="num"),
        ],
        ["ideal map (every cell at its target)", Cell(pct(ev.get("ideal_accuracy")), css="num")],
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
    for what, (m, _, n_pass) in (("On chip (analog MVM)", mvm), ("On chip", chip)):
        if not n_pass or not math.isfinite(m):
            continue
        if sw is not None and math.isfinite(sw):
            gap = 100 * (m - sw)
            s.note(
                f"{what} {pct(m)} against software {pct(sw)}: "
                f"{'+' if gap >= 0 else '−'}{abs(gap):.1f} points.",
                "info",
            )
        if chance is not None and m <= chance + 0.02:
            s.note(f"{what}: accuracy at chance ({pct(chance)}).", "bad")
    return s
