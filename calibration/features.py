"""Feature extraction: pure functions from stored raw arrays (SI units) to per-device features.

Measurement analysis only (zero crossings, integrals, jumps, slopes); no device equation is
restated here. Each function checks its input and raises ``DataError`` naming what is wrong, so a
corrupt or truncated array becomes a clear message instead of a silent NaN.
"""

from __future__ import annotations

import math

import numpy as np

from bruno_lab.errors import DataError


def _vec(x: np.ndarray, name: str, *, min_len: int = 2) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size < min_len:
        raise DataError(f"{name}: needs at least {min_len} samples, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name}: contains non-finite values")
    return a


def _crossings(x: np.ndarray, y: np.ndarray, level: float = 0.0) -> np.ndarray:
    """x where y crosses ``level`` (linear interpolation between samples)."""
    s = y - level
    above = s > 0  # a sample exactly at the level counts as below: 0 -> + is a crossing
    idx = np.nonzero(above[:-1] != above[1:])[0]
    if idx.size == 0:
        return np.empty(0)
    x0, x1, y0, y1 = x[idx], x[idx + 1], s[idx], s[idx + 1]
    den = np.where(y1 != y0, y1 - y0, 1.0)
    return x0 - y0 * (x1 - x0) / den


def pv_loop_features(voltage_v: np.ndarray, polarization_c_m2: np.ndarray) -> dict[str, float]:
    """Pr+, Pr- (P at V = 0 coming from +V and from -V), Vc+, Vc- (V at P = 0 on the rising
    and falling branches) and imprint (Vc+ + Vc-)/2 of a measured dynamic-hysteresis loop.

    Branches are told apart by the sign of dV/dt. With several periods the medians are taken.
    """
    v = _vec(voltage_v, "voltage_v", min_len=8)
    p = _vec(polarization_c_m2, "polarization_c_m2", min_len=8)
    if v.size != p.size:
        raise DataError(f"voltage_v ({v.size}) and polarization_c_m2 ({p.size}) differ in length")
    dv = _direction(v)
    out: dict[str, float] = {}
    for sign, tag in ((1.0, "pos"), (-1.0, "neg")):
        branch = np.sign(dv) == sign
        # contiguous runs of one branch, so crossings never bridge two branches
        edges = np.flatnonzero(np.diff(branch.astype(np.int8))) + 1
        segments = np.split(np.arange(v.size), edges)
        vc: list[float] = []
        pr: list[float] = []
        for seg in segments:
            if seg.size < 3 or not branch[seg[0]]:
                continue
            vc.extend(_crossings(v[seg], p[seg]))
            pr.extend(_crossings(p[seg], v[seg]))
        # rising branch (dV/dt > 0) crosses P = 0 at Vc+; P at V=0 there is Pr- (from -V)
        out[f"vc_{tag}_v"] = float(np.median(vc)) if vc else math.nan
        out[f"pr_{'neg' if tag == 'pos' else 'pos'}_c_m2"] = (
            float(np.median(pr)) if pr else math.nan
        )
    out["imprint_v"] = 0.5 * (out["vc_pos_v"] + out["vc_neg_v"])
    return out


def _direction(v: np.ndarray) -> np.ndarray:
    """Sign of dV/dt that survives a quantized voltage (runs of equal samples): the slope over
    a window of ~1% of the trace, zeros filled with the previous direction."""
    w = max(1, v.size // 100)
    idx = np.arange(v.size)
    d = np.sign(v[np.minimum(idx + w, v.size - 1)] - v[np.maximum(idx - w, 0)])
    nz = np.flatnonzero(d)
    if nz.size == 0:
        return d
    fill = np.maximum.accumulate(np.where(d != 0, idx, 0))
    d = d[fill]
    d[: nz[0]] = d[nz[0]]
    return d


def integrate_charge_c(time_s: np.ndarray, current_a: np.ndarray) -> np.ndarray:
    """Cumulative charge (trapezoid) of a current trace, C, starting at 0."""
    t = _vec(time_s, "time_s")
    i = _vec(current_a, "current_a")
    if t.size != i.size:
        raise DataError(f"time_s ({t.size}) and current_a ({i.size}) differ in length")
    if np.any(np.diff(t) <= 0):
        raise DataError("time_s must increase strictly")
    q = np.concatenate([[0.0], np.cumsum(0.5 * (i[1:] + i[:-1]) * np.diff(t))])
    return q


def firing_rates_hz(
    input_current_a: np.ndarray,
    spike_times_s: np.ndarray,
    spike_trial: np.ndarray,
    duration_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-trial firing rate (spikes/duration, Hz) and first-spike time (NaN if none), s."""
    i_in = _vec(input_current_a, "input_current_a", min_len=1)
    st = np.asarray(spike_times_s, dtype=np.float64).reshape(-1)
    tr = np.asarray(spike_trial, dtype=np.int64).reshape(-1)
    if st.size != tr.size:
        raise DataError(f"spike_times_s ({st.size}) and spike_trial ({tr.size}) differ")
    if tr.size and (tr.min() < 0 or tr.max() >= i_in.size):
        raise DataError(f"spike_trial out of range 0..{i_in.size - 1}")
    if not duration_s > 0:
        raise DataError(f"duration_s must be > 0, got {duration_s}")
    counts = np.bincount(tr, minlength=i_in.size).astype(np.float64)
    first = np.full(i_in.size, np.nan)
    for k in range(i_in.size):
        m = tr == k
        if m.any():
            first[k] = float(st[m].min())
    return counts / duration_s, first


def forming_voltage_v(
    voltage_v: np.ndarray, current_a: np.ndarray, jump_rel: float = 10.0
) -> float:
    """Voltage of the first abrupt current rise (|I| grows by ``jump_rel`` x between samples,
    after the trace has left the noise floor); NaN if the cell never formed."""
    v = _vec(voltage_v, "voltage_v")
    i = np.abs(_vec(current_a, "current_a"))
    if v.size != i.size:
        raise DataError(f"voltage_v ({v.size}) and current_a ({i.size}) differ in length")
    floor = max(float(np.median(i[: max(3, i.size // 10)])), 1e-15)
    ratio = i[1:] / np.maximum(i[:-1], floor)
    hit = np.nonzero((ratio > jump_rel) & (i[1:] > 10 * floor))[0]
    return float(v[hit[0] + 1]) if hit.size else math.nan


def iv_switching_voltages(
    voltage_v: np.ndarray, current_a: np.ndarray, cycle_index: np.ndarray, jump_rel: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per DC cycle: SET voltage (first large |I| rise at V > 0) and RESET voltage (first large
    |I| drop at V < 0), V; NaN where a cycle shows none."""
    v = _vec(voltage_v, "voltage_v")
    i = np.abs(_vec(current_a, "current_a"))
    c = np.asarray(cycle_index, dtype=np.int64).reshape(-1)
    if not v.size == i.size == c.size:
        raise DataError("voltage_v, current_a and cycle_index differ in length")
    cycles = np.unique(c)
    v_set, v_reset = np.full(cycles.size, np.nan), np.full(cycles.size, np.nan)
    v_min = 0.05 * float(np.max(np.abs(v))) if v.size else 0.0
    for k, cyc in enumerate(cycles):
        m = (c == cyc) & (np.abs(v) >= v_min)  # near 0 V the conductance is noise
        vv, ii = v[m], np.maximum(i[m], 1e-15)
        if vv.size < 2:
            continue
        g = ii / np.abs(vv)
        up = np.nonzero((g[1:] / g[:-1] > jump_rel) & (vv[1:] > 0))[0]
        down = np.nonzero((g[:-1] / g[1:] > jump_rel) & (vv[1:] < 0))[0]
        if up.size:
            v_set[k] = vv[up[0] + 1]
        if down.size:
            v_reset[k] = vv[down[0] + 1]
    return v_set, v_reset


def endurance_cycles_to_close(
    cycle: np.ndarray, g_lrs_siemens: np.ndarray, g_hrs_siemens: np.ndarray, min_ratio: float
) -> float:
    """First cycle count at which the window G_LRS/G_HRS falls below ``min_ratio``; NaN if never."""
    cyc = _vec(cycle, "cycle", min_len=1)
    lrs = _vec(g_lrs_siemens, "g_lrs_siemens", min_len=1)
    hrs = np.maximum(_vec(g_hrs_siemens, "g_hrs_siemens", min_len=1), 1e-30)
    closed = np.nonzero(lrs / hrs < min_ratio)[0]
    return float(cyc[closed[0]]) if closed.size else math.nan


def kinetics_table(
    width_s: np.ndarray, amplitude_v: np.ndarray, switched_polarization_c_m2: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (width, amplitude, switched P) triplets of a switching-kinetics measurement."""
    w = _vec(width_s, "width_s", min_len=1)
    a = _vec(amplitude_v, "amplitude_v", min_len=1)
    p = _vec(switched_polarization_c_m2, "switched_polarization_c_m2", min_len=1)
    if not w.size == a.size == p.size:
        raise DataError("width_s, amplitude_v and switched_polarization_c_m2 differ in length")
    if np.any(w <= 0):
        raise DataError("width_s must be > 0")
    return w, a, p
