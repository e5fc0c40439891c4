"""RRAM card from 1T1R arrays: what only thousands of cells on one die can give.

Reads the array protocols' per-row records (``protocols/array_*.py``) of every ``rram_array``
device of a wafer and builds the RRAM card's ladder from them:

* **levels**: per target level of ``array_program_verify``, the cells that passed their verify
  and are healthy (``array_health`` status ok); their conductance is the mean of the
  ``array_conductance_map`` reads after programming (else the verify read). The mean over cells
  is the level's mean; the spread is the cells' spread with the read noise of the averaged reads
  removed (``var - mean(sigma_read(G)^2)/n_reads``, the read-noise model from
  ``array_read_noise``); 5th/95th percentiles; programming statistics (pulses per cell, success
  rate) per level;
* **read noise** and **relaxation**: ``calibration.stats`` on the sampled rows' repeated reads
  (``array_read_noise``) and retention reads (``array_retention``), each cell at the level it was
  programmed to;
* **spatial structure**: the forming-voltage map fitted by a plane in row and column plus random
  row and column effects (``SpatialTrend``): gradients per row and per column, row/column and
  per-cell spreads;
* **defects**: health-map fractions (stuck, unformed, out of window), rows and columns with more
  defects than a binomial allows (clusters);
* **transistor compliance**: per cell of ``array_compliance``, ``vth_v`` and ``beta_a_v2`` of the
  EKV saturation current (``bruno_lab.devices.one_t_one_r.saturation_current_a``, batched LM,
  ``calibration.fitter``) fitted to the SET-pulse currents at the gate voltages, ``slope_n`` and
  the temperature held (strong inversion sees only ``beta/n``).

The card's parameters are per-cell statistics (``n_devices`` is the number of cells):
``forming_voltage_v``, ``vth_v``, ``beta_a_v2``. Nothing here restates a device equation.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bruno_lab.cards import (
    ArrayDefects,
    ParameterStats,
    RramArrayStats,
    RramLadder,
    RramLevel,
    SpatialTrend,
    TransistorCompliance,
)
from bruno_lab.devices.one_t_one_r import TransistorParams, saturation_current_a
from bruno_lab.errors import DataError
from calibration.data import DeviceRecords, load_arrays
from calibration.fitter import FitOptions, ParamSpec, fit_batched
from calibration.seams import CalibrationStore
from calibration.stage import KindFit
from calibration.stats import LadderData, parameter_stats, rram_ladder

log = logging.getLogger(__name__)

MODEL_NAME = "rram-array"
OK, STUCK, UNFORMED, OUT_OF_WINDOW = 0, 1, 2, 3  # protocols.array_health's codes
MIN_CELLS_PER_LEVEL = 3
CLUSTER_SIGMAS = 4.0


@dataclass
class ArrayRecords:
    """One array's per-cell maps ``[rows, cols]`` (NaN or -1 where not measured) and samples."""

    device_id: int
    rows: int
    cols: int
    forming_v: np.ndarray
    status: np.ndarray
    level: np.ndarray
    target: np.ndarray
    reached: np.ndarray
    attempts: np.ndarray
    success: np.ndarray
    map_g: np.ndarray
    map_reads: int
    levels_siemens: list[float] = field(default_factory=list)
    scheme: str = "igvva"
    tolerance_siemens: float = math.nan
    read_v: float = 0.2
    read_noise: list[tuple[int, np.ndarray]] = field(default_factory=list)
    retention: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)
    compliance: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)
    measurement_ids: list[int] = field(default_factory=list)


def _shape(dev: DeviceRecords) -> tuple[int, int]:
    rows = int(dev.geometry.get("rows", 0) or 0)
    cols = int(dev.geometry.get("cols", 0) or 0)
    if rows < 1 or cols < 1:  # no geometry: the largest row and the arrays' length tell
        found = [int(r["scalars"].get("row", 0)) for rs in dev.rows.values() for r in rs]
        rows = max(found, default=-1) + 1
    return rows, cols


def load_array(store: CalibrationStore, dev: DeviceRecords) -> ArrayRecords:
    """Every ok array-protocol row of one array device, as maps."""
    rows, cols = _shape(dev)

    def by_row(protocol: str, names: tuple[str, ...]) -> list[tuple[dict[str, Any], dict]]:
        ok = dev.ok_rows(protocol)
        arrays = load_arrays(store, [r["measurement_id"] for r in ok], names) if ok else {}
        return [(r, arrays[r["measurement_id"]]) for r in ok]

    program = by_row(
        "array_program_verify",
        (
            "target_level",
            "target_conductance_siemens",
            "reached_conductance_siemens",
            "attempts",
            "success",
        ),
    )
    forming = by_row("array_forming", ("forming_voltage_v",))
    health = by_row("array_health", ("status",))
    maps = by_row("array_conductance_map", ("conductance_siemens",))
    if cols < 1:
        sizes = [a[next(iter(a))].shape[-1] for _, a in program + forming + health + maps]
        cols = max(sizes, default=0)
    if rows < 1 or cols < 1:
        raise DataError(f"array device {dev.device_id}: no array measurements with a size")
    nan = lambda: np.full((rows, cols), np.nan)  # noqa: E731
    out = ArrayRecords(
        dev.device_id,
        rows,
        cols,
        forming_v=nan(),
        status=np.full((rows, cols), -1),
        level=np.full((rows, cols), -1),
        target=nan(),
        reached=nan(),
        attempts=np.zeros((rows, cols)),
        success=np.zeros((rows, cols), dtype=bool),
        map_g=nan(),
        map_reads=0,
    )

    def row_of(record: dict[str, Any]) -> int:
        return int(record["parameters"].get("row", record["scalars"].get("row", -1)))

    for record, a in forming:
        out.forming_v[row_of(record)] = a["forming_voltage_v"]
    for record, a in health:
        out.status[row_of(record)] = a["status"]
    for record, a in program:
        r = row_of(record)
        out.level[r] = a["target_level"]
        out.target[r] = a["target_conductance_siemens"]
        out.reached[r] = a["reached_conductance_siemens"]
        out.attempts[r] = a["attempts"]
        out.success[r] = a["success"] > 0
        p = record["parameters"]
        out.levels_siemens = list(p.get("levels_siemens") or out.levels_siemens)
        out.scheme = str(p.get("scheme", out.scheme))
        out.tolerance_siemens = float(p.get("tolerance_siemens", out.tolerance_siemens))
        out.read_v = float(p.get("read_v", out.read_v))
    for record, a in maps:
        out.map_g[row_of(record)] = a["conductance_siemens"]
        out.map_reads = int(record["parameters"].get("n_reads", 1))
    for record, a in by_row("array_read_noise", ("conductance_siemens",)):
        out.read_noise.append((row_of(record), np.atleast_2d(a["conductance_siemens"])))
    for record, a in by_row("array_retention", ("time_s", "conductance_siemens")):
        out.retention.append((row_of(record), a["time_s"], np.atleast_2d(a["conductance_siemens"])))
    for record, a in by_row("array_compliance", ("gate_v", "current_a")):
        out.compliance.append((row_of(record), a["gate_v"], np.atleast_2d(a["current_a"])))
    out.measurement_ids = sorted(r["measurement_id"] for rs in dev.rows.values() for r in rs)
    return out


# ----- spatial structure --------------------------------------------------------------------


def spatial_trend(values: np.ndarray, quantity: str, unit: str) -> SpatialTrend | None:
    """Plane ``a + b*row + c*col`` by least squares over the finite cells, then random row and
    column effects (the mean residual of each row/column, its variance less what the per-cell
    rest alone would give) and the per-cell spread about plane and effects."""
    v = np.asarray(values, dtype=np.float64)
    grid = np.indices(v.shape)
    rows, cols = grid[0], grid[1]
    ok = np.isfinite(v)
    if ok.sum() < 10:
        return None
    design = np.stack([np.ones(ok.sum()), rows[ok], cols[ok]], 1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, v[ok], rcond=None)
    resid = np.full(v.shape, np.nan)
    resid[ok] = v[ok] - design @ coef
    row_eff = np.array([np.nanmean(r) if np.isfinite(r).sum() >= 3 else 0.0 for r in resid])
    col_eff = np.array([np.nanmean(c) if np.isfinite(c).sum() >= 3 else 0.0 for c in resid.T])
    rest = resid - row_eff[:, None] - col_eff[None, :]
    cell_var = float(np.nanvar(rest, ddof=1))
    per_row = np.maximum(np.isfinite(resid).sum(1), 1)
    per_col = np.maximum(np.isfinite(resid).sum(0), 1)
    row_var = float(np.var(row_eff, ddof=1)) - cell_var * float(np.mean(1.0 / per_row))
    col_var = float(np.var(col_eff, ddof=1)) - cell_var * float(np.mean(1.0 / per_col))
    return SpatialTrend(
        quantity=quantity,
        unit=unit,
        mean=float(np.nanmean(v)),
        per_row=float(coef[1]),
        per_col=float(coef[2]),
        row_sigma=math.sqrt(max(row_var, 0.0)),
        col_sigma=math.sqrt(max(col_var, 0.0)),
        cell_sigma=math.sqrt(max(cell_var, 0.0)),
        n_cells=int(ok.sum()),
    )


# ----- transistor compliance -----------------------------------------------------------------


def fit_compliance(gates_v: np.ndarray, current_a: np.ndarray) -> dict[str, np.ndarray]:
    """Per cell (rows of ``current_a [n, G]``), ``vth_v`` and ``beta_a_v2`` of the EKV
    saturation current through the measured SET-pulse currents; cells whose currents do not
    rise with the gate (unformed, stuck) are NaN."""
    i = np.asarray(current_a, dtype=np.float64)
    g = np.asarray(gates_v, dtype=np.float64)
    use = (i[:, -1] > 10e-6) & np.all(np.diff(i, axis=1) > 0, axis=1)
    n_use = int(use.sum())
    out = {
        k: np.full(i.shape[0], np.nan) for k in ("vth_v", "beta_a_v2", "vth_stderr", "beta_stderr")
    }
    if n_use == 0:
        return out
    y = i[use]
    defaults = TransistorParams.specs()
    slope_n = defaults["slope_n"].default
    # start: the square law, sqrt(I) linear in the gate
    root = np.sqrt(y)
    slope = np.polyfit(g, root.T, 1)
    vth0 = np.clip(-slope[1] / slope[0], -0.4, 2.9)
    beta0 = np.clip(2 * slope_n * slope[0] ** 2, 1e-6, 0.9)
    gates_t = torch.as_tensor(g)[None, :]

    def model(theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        m = theta.shape[0]
        fet = TransistorParams.default(m, dtype=theta.dtype).replace(
            vth_v=theta[:, :1],
            beta_a_v2=theta[:, 1:2],
            slope_n=torch.full((m, 1), slope_n, dtype=theta.dtype),
            temperature_k=torch.full((m, 1), defaults["temperature_k"].default, dtype=theta.dtype),
        )
        return saturation_current_a(gates_t.expand(m, -1), fet)

    specs = [
        ParamSpec("vth_v", defaults["vth_v"].low, defaults["vth_v"].high),
        ParamSpec(
            "beta_a_v2", defaults["beta_a_v2"].low, defaults["beta_a_v2"].high, log_scale=True
        ),
    ]
    # a relative weight: the currents span a decade, each point counts alike
    res = fit_batched(
        model,
        specs,
        y,
        np.stack([vth0, beta0], 1),
        sigma=np.maximum(0.01 * y, 1e-9),
        options=FitOptions(max_iter=60),
    )
    out["vth_v"][use], out["beta_a_v2"][use] = res.params[:, 0], res.params[:, 1]
    out["vth_stderr"][use], out["beta_stderr"][use] = res.stderr[:, 0], res.stderr[:, 1]
    return out


# ----- the ladder ----------------------------------------------------------------------------


def _read_noise_data(arrays: list[ArrayRecords]) -> LadderData:
    """The sampled rows' repeated and retention reads, each cell labelled by its level, plus
    one verify entry per programmed cell, in ``calibration.stats``'s form."""
    cells: list[np.ndarray] = []
    parts: dict[str, list[np.ndarray]] = {
        k: []
        for k in (
            "v_cell",
            "v_level",
            "v_target",
            "v_reached",
            "v_success",
            "r_cell",
            "r_level",
            "r_g",
            "t_cell",
            "t_level",
            "t_time",
            "t_g",
        )
    }
    offset = 0
    for a in arrays:
        ids = offset + np.arange(a.rows * a.cols).reshape(a.rows, a.cols)
        programmed = a.level >= 0
        parts["v_cell"].append(ids[programmed])
        parts["v_level"].append(a.level[programmed])
        parts["v_target"].append(a.target[programmed])
        parts["v_reached"].append(a.reached[programmed])
        parts["v_success"].append(a.success[programmed].astype(np.float64))
        usable = (a.status == OK) | (a.status < 0)
        for row, reads in a.read_noise:
            keep = (a.level[row] >= 0) & usable[row]
            n = reads.shape[0]
            parts["r_cell"].append(np.repeat(ids[row][keep][None], n, 0).reshape(-1))
            parts["r_level"].append(np.repeat(a.level[row][keep][None], n, 0).reshape(-1))
            parts["r_g"].append(reads[:, keep].reshape(-1))
        for row, times, reads in a.retention:
            keep = (a.level[row] >= 0) & usable[row]
            n = reads.shape[0]
            parts["t_cell"].append(np.repeat(ids[row][keep][None], n, 0).reshape(-1))
            parts["t_level"].append(np.repeat(a.level[row][keep][None], n, 0).reshape(-1))
            parts["t_time"].append(np.repeat(times[:, None], keep.sum(), 1).reshape(-1))
            parts["t_g"].append(reads[:, keep].reshape(-1))
        cells.append(ids)
        offset += a.rows * a.cols

    def cat(name: str, dtype: Any = np.float64) -> np.ndarray:
        return np.concatenate(parts[name]).astype(dtype) if parts[name] else np.empty(0, dtype)

    return LadderData(
        verify_cell=cat("v_cell", np.int64),
        verify_level=cat("v_level", np.int64),
        verify_target_siemens=cat("v_target"),
        verify_reached_siemens=cat("v_reached"),
        verify_success=cat("v_success"),
        read_cell=cat("r_cell", np.int64),
        read_level=cat("r_level", np.int64),
        read_siemens=cat("r_g"),
        retention_cell=cat("t_cell", np.int64),
        retention_level=cat("t_level", np.int64),
        retention_time_s=cat("t_time"),
        retention_siemens=cat("t_g"),
        read_voltage_v=arrays[0].read_v,
    )


def _levels(arrays: list[ArrayRecords], noise: Any) -> list[RramLevel]:
    """Per target level: the healthy cells that passed verify, their post-programming reads."""
    ladder = arrays[0].levels_siemens
    by_level: dict[int, dict[str, list[np.ndarray]]] = {}
    for a in arrays:
        g = np.where(np.isfinite(a.map_g), a.map_g, a.reached)
        n_reads = a.map_reads if np.isfinite(a.map_g).any() else 1
        usable = (a.status == OK) | (a.status < 0)
        for k in np.unique(a.level[a.level >= 0]):
            targeted = (a.level == k) & usable
            ok = targeted & a.success & np.isfinite(g)
            entry = by_level.setdefault(int(k), {"g": [], "n": [], "att": [], "tried": []})
            entry["g"].append(g[ok])
            entry["n"].append(np.full(int(ok.sum()), n_reads))
            entry["att"].append(a.attempts[ok])
            entry["tried"].append(np.array([targeted.sum()]))
    levels: list[RramLevel] = []
    order = sorted(by_level, key=lambda k: ladder[k] if k < len(ladder) else k)
    for k in order:
        e = by_level[k]
        g, n = np.concatenate(e["g"]), np.concatenate(e["n"])
        if g.size < MIN_CELLS_PER_LEVEL:
            continue
        var = float(np.var(g, ddof=1))
        if noise is not None:  # the averaged reads' own noise is not cell-to-cell spread
            var -= float(np.mean((noise.floor_siemens + noise.slope_rel * g) ** 2 / n))
        attempts = np.concatenate(e["att"])
        levels.append(
            RramLevel(
                index=len(levels),
                mean_siemens=float(np.mean(g)),
                sigma_siemens=math.sqrt(max(var, 0.0)),
                n_cells=int(g.size),
                p05_siemens=float(np.percentile(g, 5)),
                p95_siemens=float(np.percentile(g, 95)),
                mean_attempts=float(np.mean(attempts)),
                p95_attempts=float(np.percentile(attempts, 95)),
                success_rate=float(g.size / max(int(np.sum(e["tried"])), 1)),
            )
        )
    return levels


def _defects(arrays: list[ArrayRecords]) -> ArrayDefects | None:
    mapped = [a for a in arrays if (a.status >= 0).any()]
    if not mapped:
        return None
    status = np.concatenate([a.status[a.status >= 0] for a in mapped])
    n = status.size
    bad_rows = bad_cols = 0
    p_bad = float(np.mean(status != OK))
    for a in mapped:
        bad = (a.status != OK) & (a.status >= 0)
        for counts, size in ((bad.sum(1), a.cols), (bad.sum(0), a.rows)):
            limit = size * p_bad + CLUSTER_SIGMAS * math.sqrt(
                max(size * p_bad * (1 - p_bad), 1e-12)
            )
            if counts is bad.sum(1):
                bad_rows += int(np.sum(counts > limit + 1))
            else:
                bad_cols += int(np.sum(counts > limit + 1))
    g_stuck = np.concatenate([a.map_g[a.status == STUCK] for a in mapped])
    g_stuck = g_stuck[np.isfinite(g_stuck)]
    return ArrayDefects(
        n_cells=int(n),
        stuck_fraction=float(np.mean(status == STUCK)),
        unformed_fraction=float(np.mean(status == UNFORMED)),
        out_of_window_fraction=float(np.mean(status == OUT_OF_WINDOW)),
        stuck_conductance_siemens=max(0.0, float(np.mean(g_stuck))) if g_stuck.size else 0.0,
        clustered_rows=bad_rows,
        clustered_cols=bad_cols,
    )


def _compliance(arrays: list[ArrayRecords]) -> tuple[TransistorCompliance | None, dict]:
    gates, currents = [], []
    for a in arrays:
        for _, g, i in a.compliance:
            gates.append(g)
            currents.append(i.T)  # [cols, n_gates]
    if not currents:
        return None, {}
    g0 = gates[0]
    same = [c for g, c in zip(gates, currents, strict=True) if np.array_equal(g, g0)]
    fitted = fit_compliance(g0, np.concatenate(same))
    ok = np.isfinite(fitted["vth_v"])
    if ok.sum() < 3:
        return None, {}
    defaults = TransistorParams.specs()
    vth = parameter_stats(fitted["vth_v"][ok], "V", stderr=fitted["vth_stderr"][ok])
    beta = parameter_stats(fitted["beta_a_v2"][ok], "A/V**2", stderr=fitted["beta_stderr"][ok])
    return (
        TransistorCompliance(
            vth_v=vth,
            beta_a_v2=beta,
            slope_n=defaults["slope_n"].default,
            temperature_k=defaults["temperature_k"].default,
            gate_range_v=[float(g0.min()), float(g0.max())],
        ),
        {"vth_v": vth, "beta_a_v2": beta},
    )


def array_ladder(arrays: list[ArrayRecords]) -> tuple[RramLadder, dict[str, ParameterStats]]:
    """The RRAM ladder and the card's per-cell parameter statistics from the arrays."""
    if not any((a.level >= 0).any() for a in arrays):
        raise DataError("no array_program_verify records: cannot build the level ladder")
    data = _read_noise_data(arrays)
    base = rram_ladder(data, n_cells=int(data.verify_cell.size))
    levels = _levels(arrays, base.read_noise)
    if len(levels) < 2:
        raise DataError(f"array ladder: {len(levels)} level(s) with {MIN_CELLS_PER_LEVEL}+ cells")
    defects = _defects(arrays)
    compliance, fet_stats = _compliance(arrays)
    spatial = []
    forming = np.concatenate([a.forming_v for a in arrays if a.rows == arrays[0].rows], axis=1)
    trend = spatial_trend(np.where(forming > 0, forming, np.nan), "forming_voltage_v", "V")
    if trend is not None:
        spatial.append(trend)
    a0 = arrays[0]
    stats = RramArrayStats(
        n_arrays=len(arrays),
        rows=a0.rows,
        cols=a0.cols,
        n_cells=int(sum(a.rows * a.cols for a in arrays)),
        scheme=a0.scheme,
        tolerance_siemens=a0.tolerance_siemens if math.isfinite(a0.tolerance_siemens) else 1e-6,
        mean_attempts=float(np.mean(np.concatenate([a.attempts[a.level >= 0] for a in arrays]))),
        spatial=spatial,
        defects=defects,
        compliance=compliance,
    )
    stuck = base.stuck_fraction
    stuck_g = base.stuck_conductance_siemens
    if defects is not None:
        stuck = defects.stuck_fraction + defects.unformed_fraction
        stuck_g = defects.stuck_conductance_siemens * defects.stuck_fraction / max(stuck, 1e-12)
    ladder = base.model_copy(
        update={
            "levels": levels,
            "stuck_fraction": stuck,
            "stuck_conductance_siemens": stuck_g,
            "array": stats,
        }
    )
    ladder = RramLadder.model_validate(ladder.model_dump())  # re-check the ordering of levels
    params: dict[str, ParameterStats] = dict(fet_stats)
    v_form = forming[forming > 0]
    if v_form.size >= 3:
        params["forming_voltage_v"] = parameter_stats(v_form, "V")
    return ladder, params


def fit_array(store: CalibrationStore, devices: list[DeviceRecords]) -> KindFit:
    """The stage of ``calibration.pipeline`` for ``rram_array`` devices: one fit entry per array
    (its summary numbers), and in ``extra["card"]`` the RRAM card's statistics over cells."""
    out = KindFit(model_name=MODEL_NAME, specs=[])
    arrays: list[ArrayRecords] = []
    for dev in devices:
        try:
            a = load_array(store, dev)
        except DataError as exc:
            out.add_defective(dev, [f"defective:{exc}"])
            continue
        arrays.append(a)
        programmed = a.level >= 0
        summary = {
            "n_cells": float(a.rows * a.cols),
            "success_rate": float(a.success[programmed].mean()) if programmed.any() else 0.0,
            "mean_attempts": float(a.attempts[programmed].mean()) if programmed.any() else 0.0,
        }
        if np.isfinite(a.forming_v).any():
            summary["mean_forming_voltage_v"] = float(
                np.nanmean(np.where(a.forming_v > 0, a.forming_v, np.nan))
            )
        out.add_values(dev, a.measurement_ids, summary, {}, {"source": MODEL_NAME}, [])
    if not arrays:
        raise DataError(
            "no usable rram_array device: " + "; ".join(fl for f in out.fits for fl in f.flags)
        )
    ladder, params = array_ladder(arrays)
    # the cells measured (health-mapped, programmed or mapped), not the arrays' size: a card
    # from 8 rows of a 64x64 array speaks for 512 cells
    n_cells = sum(
        int(np.sum((a.status >= 0) | (a.level >= 0) | np.isfinite(a.map_g))) for a in arrays
    )
    n_bad = round(ladder.stuck_fraction * n_cells)
    out.rram = ladder
    out.extra["card"] = {
        "device_kind": "rram",
        "n_devices": max(n_cells - n_bad, 1),
        "n_defective": n_bad,
        "parameters": {k: v.model_dump() for k, v in params.items()},
        "correlations": None,
    }
    out.extra["units"] = {k: v.unit for k, v in params.items()}
    out.extra["notes"] = (
        f"from {len(arrays)} 1T1R array(s) of {arrays[0].rows}x{arrays[0].cols} cells "
        "(calibration.array_fit): levels from the post-programming conductance map of the "
        "healthy cells that passed verify, spreads less the averaged reads' noise; read noise "
        "and relaxation on the sampled rows; forming-voltage spatial trend; health-map defects; "
        "EKV compliance fits (slope_n and temperature held). Parameters are per-cell statistics."
    )
    log.info("array card: %d arrays, %d levels", len(arrays), len(ladder.levels))
    return out
