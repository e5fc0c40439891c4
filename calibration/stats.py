"""Population statistics of fitted device parameters and the RRAM level ladder.

Pure functions on numpy arrays (SI units), so they are tested on synthetic populations without
a database. ``parameter_stats`` picks the distribution family by likelihood (normal against
lognormal), drops gross outliers by a median/MAD rule, and can remove the fit noise from the
spread (``var_population = var_observed - mean(stderr^2)``): a fitted parameter is the device's
value plus the fit's error, and on noisy data the observed spread is otherwise too wide.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from bruno_lab.cards import (
    Correlations,
    ParameterStats,
    RramLadder,
    RramLevel,
    RramReadNoise,
    RramRelaxation,
)

log = logging.getLogger(__name__)

OUTLIER_MADS = 8.0
T = TypeVar("T")


def robust_inliers(values: np.ndarray, n_mads: float = OUTLIER_MADS) -> np.ndarray:
    """Mask of finite values within ``n_mads`` scaled MADs of the median (all if MAD is 0)."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    if ok.sum() < 3:
        return ok
    med = np.median(values[ok])
    mad = 1.4826 * np.median(np.abs(values[ok] - med))
    if mad == 0:
        return ok
    return ok & (np.abs(values - med) <= n_mads * mad)


def choose_family(values: np.ndarray) -> str:
    """'lognormal' if all values are positive and its log-likelihood beats the normal's."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 3 or np.any(v <= 0) or np.std(v) == 0:
        return "normal"
    sd = np.std(v)
    ll_norm = -v.size * (math.log(sd) + 0.5 * math.log(2 * math.pi) + 0.5)
    lv = np.log(v)
    sl = np.std(lv)
    if sl == 0:
        return "normal"
    # log-likelihood of v under lognormal = normal ll of log v minus the Jacobian sum(log v)
    ll_log = -v.size * (math.log(sl) + 0.5 * math.log(2 * math.pi) + 0.5) - float(lv.sum())
    return "lognormal" if ll_log > ll_norm else "normal"


def parameter_stats(
    values: np.ndarray,
    unit: str,
    *,
    stderr: np.ndarray | None = None,
    deconvolve: bool = True,
) -> ParameterStats:
    """Mean, spread and family of one parameter over devices (NaNs and outliers dropped)."""
    v = np.asarray(values, dtype=np.float64)
    keep = robust_inliers(v)
    if keep.sum() == 0:
        raise ValueError("no finite values to summarise")
    x = v[keep]
    mean = float(np.mean(x))
    var = float(np.var(x, ddof=1)) if x.size > 1 else 0.0
    if deconvolve and stderr is not None:
        se = np.asarray(stderr, dtype=np.float64)[keep]
        se = se[np.isfinite(se)]
        if se.size:
            var = max(var - float(np.mean(se**2)), 0.0)
    return ParameterStats(
        unit=unit,
        mean=mean,
        std=math.sqrt(var),
        family=choose_family(x),
        n_devices=int(x.size),
    )


def correlations(table: Mapping[str, np.ndarray]) -> Correlations | None:
    """Pearson correlations between parameters with spread, over devices finite in all."""
    names = [k for k, v in table.items() if np.nanstd(np.asarray(v, dtype=np.float64)) > 0]
    if len(names) < 2:
        return None
    mat = np.stack([np.asarray(table[k], dtype=np.float64) for k in names], axis=1)
    rows = np.all(np.isfinite(mat), axis=1)
    for k in range(mat.shape[1]):
        rows &= robust_inliers(mat[:, k])
    if rows.sum() < 3:
        return None
    c = np.corrcoef(mat[rows], rowvar=False)
    c = np.clip((c + c.T) / 2, -1.0, 1.0)
    np.fill_diagonal(c, 1.0)
    return Correlations(names=names, matrix=[[float(x) for x in row] for row in c])


@dataclass(frozen=True)
class LadderData:
    """RRAM population data gathered from the stored records (SI units, one entry per sample).

    verify_*: one entry per (cell, target level) from program-and-verify;
    read_*: one entry per repeated read; retention_*: one entry per retention read.
    Cell ids are any integers identifying a device.
    """

    verify_cell: np.ndarray
    verify_level: np.ndarray
    verify_target_siemens: np.ndarray
    verify_reached_siemens: np.ndarray
    verify_success: np.ndarray
    read_cell: np.ndarray
    read_level: np.ndarray
    read_siemens: np.ndarray
    retention_cell: np.ndarray
    retention_level: np.ndarray
    retention_time_s: np.ndarray
    retention_siemens: np.ndarray
    read_voltage_v: float


def stuck_cells(data: LadderData, min_span_rel: float = 0.2) -> np.ndarray:
    """Cells whose reached conductance barely moves across targets spanning the ladder.

    A cell is stuck when it never verified and the spread of its reached conductances is below
    ``min_span_rel`` of the targets' spread (it ignores programming).
    """
    out = []
    for cell in np.unique(data.verify_cell):
        m = data.verify_cell == cell
        tgt_span = np.ptp(data.verify_target_siemens[m])
        got_span = np.ptp(data.verify_reached_siemens[m])
        never = not np.any(data.verify_success[m] > 0)
        if tgt_span > 0 and got_span < min_span_rel * tgt_span and never:
            out.append(cell)
    return np.asarray(out, dtype=np.int64)


def _fit_read_noise(data: LadderData, stuck: np.ndarray) -> RramReadNoise:
    """sigma = floor + slope*G, nonnegative least squares over (cell, level) groups."""
    from scipy.optimize import nnls

    keep = ~np.isin(data.read_cell, stuck)
    g_means, g_stds = [], []
    cells, levels, g = data.read_cell[keep], data.read_level[keep], data.read_siemens[keep]
    for key in np.unique(np.stack([cells, levels], 1), axis=0):
        m = (cells == key[0]) & (levels == key[1])
        if m.sum() >= 3:
            g_means.append(np.mean(g[m]))
            g_stds.append(np.std(g[m], ddof=1))
    if len(g_means) < 2:
        raise ValueError("read noise needs repeated reads on at least two (cell, level) pairs")
    gm, gs = np.asarray(g_means), np.asarray(g_stds)
    a = np.stack([np.ones_like(gm), gm], 1)
    scale = np.array([np.median(gs) or 1.0, 1.0])
    coef, _ = nnls(a / scale * 1.0, gs)  # columns rescaled for conditioning
    floor, slope = coef / scale
    return RramReadNoise(floor_siemens=float(floor), slope_rel=float(slope))


def _fit_relaxation(data: LadderData, stuck: np.ndarray) -> RramRelaxation:
    """Mean relative drift per decade and the added spread per decade after the first read."""
    keep = ~np.isin(data.retention_cell, stuck) & (data.retention_time_s > 0)
    cell, lvl = data.retention_cell[keep], data.retention_level[keep]
    t, g = data.retention_time_s[keep], data.retention_siemens[keep]
    if t.size == 0:
        raise ValueError("relaxation needs retention reads")
    t0 = float(np.min(t))
    rel, dec, g0s, dg = [], [], [], []
    for key in np.unique(np.stack([cell, lvl], 1), axis=0):
        m = (cell == key[0]) & (lvl == key[1])
        order = np.argsort(t[m])
        tm, gm = t[m][order], g[m][order]
        if tm.size < 2 or gm[0] <= 0:
            continue
        d = np.log10(tm / t0)
        rel.append(gm / gm[0] - 1.0)
        dec.append(d)
        g0s.append(np.full_like(gm, gm[0]))
        dg.append(gm - gm[0])
    if not rel:
        raise ValueError("relaxation needs at least two reads per cell and level")
    r, d, g0, dgv = (np.concatenate(x) for x in (rel, dec, g0s, dg))
    use = d > 0
    drift = float(np.sum(r[use] * d[use]) / np.sum(d[use] ** 2)) if use.any() else 0.0
    # spread around the drift line, grown linearly with decades: sigma_d = s*d
    resid = dgv - g0 * drift * d
    s2 = float(np.sum(resid[use] ** 2 * d[use] ** 2) / np.sum(d[use] ** 4)) if use.any() else 0.0
    return RramRelaxation(t0_s=t0, drift_rel_per_decade=drift, sigma_siemens_per_decade=s2**0.5)


def _optional(
    fit: Callable[[LadderData, np.ndarray], T], data: LadderData, stuck: np.ndarray
) -> T | None:
    """``fit(data, stuck)``, or None when the data do not allow it (a ``ValueError``)."""
    try:
        return fit(data, stuck)
    except ValueError as exc:
        log.warning("rram ladder without %s: %s", fit.__name__.removeprefix("_fit_"), exc)
        return None


def rram_ladder(
    data: LadderData, *, known_stuck: Sequence[int] = (), n_cells: int | None = None
) -> RramLadder:
    """Level ladder after verify (successful, non-stuck cells), read noise, relaxation, stuck rate.

    ``known_stuck`` adds cells the protocols already reported stuck (possibly without arrays);
    ``n_cells`` is the number of cells tried (default: the cells in the verify data).

    Levels are grouped by the protocol's target level and ordered by target conductance,
    index 0 the lowest. The read-noise model needs repeated reads (``read_*``) on at least two
    (cell, level) pairs and the relaxation at least two retention reads per (cell, level); where
    the data do not allow them they are None (logged), the rest of the ladder is still built.
    """
    stuck = np.union1d(stuck_cells(data), np.asarray(list(known_stuck), dtype=np.int64))
    if n_cells is None:
        n_cells = np.union1d(np.unique(data.verify_cell), stuck).size
    keep = ~np.isin(data.verify_cell, stuck) & (data.verify_success > 0)
    level_ids = np.unique(data.verify_level)
    mean_target = [np.mean(data.verify_target_siemens[data.verify_level == k]) for k in level_ids]
    levels: list[RramLevel] = []
    for k in level_ids[np.argsort(mean_target)]:
        m = keep & (data.verify_level == k)
        if m.sum() == 0:
            continue
        reached = data.verify_reached_siemens[m]
        levels.append(
            RramLevel(
                index=len(levels),
                mean_siemens=float(np.mean(reached)),
                sigma_siemens=float(np.std(reached, ddof=1)) if reached.size > 1 else 0.0,
                n_cells=int(reached.size),
            )
        )
    stuck_g = 0.0
    stuck_rows = np.isin(data.verify_cell, stuck)
    if stuck_rows.any():
        # a never-formed cell reads as the instrument's noise around 0 S: its mean may come out
        # a few pS below zero, which no conductance is
        stuck_g = max(0.0, float(np.mean(data.verify_reached_siemens[stuck_rows])))
    return RramLadder(
        read_voltage_v=data.read_voltage_v,
        levels=levels,
        read_noise=_optional(_fit_read_noise, data, stuck),
        relaxation=_optional(_fit_relaxation, data, stuck),
        stuck_fraction=float(stuck.size / n_cells) if n_cells else 0.0,
        stuck_conductance_siemens=stuck_g,
    )


def population_parameters(
    values: Mapping[str, np.ndarray],
    units: Mapping[str, str],
    stderr: Mapping[str, np.ndarray] | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, ParameterStats]:
    """``parameter_stats`` for every named parameter (spread deconvolved when stderr given)."""
    out = {}
    for name in names or list(values):
        se = None if stderr is None else stderr.get(name)
        out[name] = parameter_stats(values[name], units.get(name, ""), stderr=se)
    return out
