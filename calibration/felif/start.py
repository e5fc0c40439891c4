"""Global start of the FeLIF fit, independent of any population guess.

A device-independent table of the mean inter-spike on-time at each trial's amplitude over a log
grid of (P_s, t_hzo), from the reset state at a few phases of a pulse (one kernel call per
table), coarse over the fit bounds, then fine over the box holding every device's coarse
optimum; each table's cubic interpolation is searched on a fine mesh against each device's
measured mean on-times.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from scipy.interpolate import RegularGridInterpolator

from bruno_lab.devices.felif import FeLIFParams, FeLIFState, felif_run_sequence
from calibration.felif.options import FelifFitOptions
from calibration.felif.records import FelifData
from calibration.felif.segments import on_time_ext, on_time_s
from calibration.felif.spec import FELIF_FIT_SPECS


def isi_table(
    theta: np.ndarray,
    area: float,
    amps: np.ndarray,
    seg: Mapping[str, np.ndarray],
    cap_s: float,
    n_phases: int,
) -> np.ndarray:
    """Mean on-time from reset to the next spike, theta [G, 2] -> [G, K] (inf: none by cap_s).

    One kernel call for every grid point x amplitude x phase: the reset state placed
    ``n_phases`` different micro-steps into the train's first pulse, run to the next spike."""
    micro = float(seg["micro_dt_s"][0])
    on = np.concatenate([seg["trial_on"], seg["ext_on"]])
    steps = np.concatenate([seg["trial_steps"], seg["ext_steps"]])
    j_on = int(np.flatnonzero(on > 0)[0])
    k0 = int(steps[:j_on].sum())
    phases = np.arange(min(n_phases, int(steps[j_on])))
    last = int(np.searchsorted(np.cumsum(steps) * micro, k0 * micro + cap_s)) + 1
    on, steps = on[:last], steps[:last]
    g, k, p = len(theta), len(amps), len(phases)
    th = np.repeat(theta, k * p, axis=0)
    amp = np.tile(np.repeat(amps, p), g)
    start = k0 + np.tile(phases, g * k)
    m = th.shape[0]
    f64 = torch.float64
    params = FeLIFParams.default(m, dtype=f64).replace(
        ps_c_m2=torch.as_tensor(th[:, 0]),
        t_hzo_m=torch.as_tensor(th[:, 1]),
        area_m2=torch.full((m,), float(area), dtype=f64),
    )
    cur = torch.as_tensor(on).unsqueeze(1) * torch.as_tensor(amp)
    res = felif_run_sequence(
        cur, torch.full_like(cur[:, 0], micro), torch.as_tensor(steps), params,
        FeLIFState(params.v_reset_v.clone(), -params.ps_c_m2.clone()), reset_at_crossing=True,
        hold_fraction=0.5, max_spikes=1, stop_after=torch.ones(m, dtype=torch.int64),
        start_step=torch.as_tensor(start),
    )  # fmt: skip
    t = res.spike_times_s[:, 0].numpy()
    tau = on_time_s(np.nan_to_num(t, nan=np.inf), on, steps, micro) - on_time_s(
        start * micro, on, steps, micro
    )
    tau = np.where(np.isfinite(t), tau, np.inf)
    return tau.reshape(g, k, p).mean(2)


def measured_isi(data: FelifData) -> tuple[np.ndarray, np.ndarray]:
    """Per device and trial: mean measured inter-spike on-time (NaN: < 2 spikes) and count."""
    micro = float(data.seg["micro_dt_s"][0])
    t_end = float(data.seg["trial_end_s"][0])
    mean = np.full(data.amps.shape, np.nan)
    count = np.zeros(data.amps.shape, dtype=np.int64)
    for i, per in enumerate(data.times):
        for k, t in enumerate(per):
            if t.size >= 2:
                tau = on_time_ext(t[[0, -1]], data.seg, micro, t_end)
                mean[i, k] = (tau[1] - tau[0]) / (t.size - 1)
                count[i, k] = t.size - 1
    return mean, count


def table_search(
    data: FelifData,
    rows: np.ndarray,
    box: np.ndarray,
    shape: tuple[int, int],
    options: FelifFitOptions,
) -> np.ndarray:
    """Best (log P_s, log t_hzo) of devices ``rows`` (same area and amplitudes) in ``box``
    [[lo, lo], [hi, hi]] by the mean inter-spike on-times: table on a ``shape`` log grid, its
    cubic interpolation searched on a mesh of ``options.mesh`` points per axis."""
    isi, count = measured_isi(data)
    isi, count = isi[rows], count[rows]
    axes = [np.linspace(box[0, j], box[1, j], shape[j]) for j in range(2)]
    ga, gb = np.meshgrid(*axes, indexing="ij")
    theta = np.exp(np.stack([ga.ravel(), gb.ravel()], 1))
    cap = (
        options.table_cap_factor
        * float(np.nanmax(isi))
        * float(np.max(data.seg["trial_steps"]))
        / max(float(np.min(data.seg["trial_steps"])), 1.0)
        + 1e-4
    )
    tab = isi_table(
        theta, data.area[rows[0]], data.amps[rows[0]], data.seg, cap, options.table_phases
    )
    log_tab = np.log(np.minimum(tab, 2.0 * cap)).reshape(*shape, -1)
    mesh = [np.linspace(box[0, j], box[1, j], options.mesh) for j in range(2)]
    ma, mb = np.meshgrid(*mesh, indexing="ij")
    pts = np.stack([ma.ravel(), mb.ravel()], 1)
    method = "cubic" if min(shape) >= 4 else "linear"
    pred = np.stack(
        [
            RegularGridInterpolator(axes, log_tab[..., k], method=method)(pts)
            for k in range(log_tab.shape[-1])
        ],
        1,
    )  # [M, K] log on-time
    # relative error of the mean on-time per trial, weighted by its count of intervals
    weight = np.where(count > 0, count.astype(np.float64) ** 2, 0.0)
    log_isi = np.log(np.where(count > 0, isi, 1.0))
    cost = np.zeros((rows.size, pts.shape[0]))
    for k in range(pred.shape[1]):
        cost += weight[:, k : k + 1] * (pred[None, :, k] - log_isi[:, k : k + 1]) ** 2
    return np.asarray(pts[np.argmin(cost, 1)])


def global_start(data: FelifData, options: FelifFitOptions) -> np.ndarray:
    """Each device's start (log P_s, log t_hzo) from the inter-spike table, independent of any
    population guess (coarse over the fit bounds, then fine over the box of the coarse optima).
    """
    lo = np.log([s.lower for s in FELIF_FIT_SPECS])
    hi = np.log([s.upper for s in FELIF_FIT_SPECS])
    n = data.y.shape[0]
    start = np.zeros((n, 2))
    key = np.concatenate([data.area[:, None], data.amps], 1)
    for row in np.unique(key, axis=0):
        rows = np.flatnonzero(np.all(key == row, axis=1))
        coarse = table_search(data, rows, np.stack([lo, hi]), options.table_coarse, options)
        margin = options.table_margin_log
        box = np.stack([coarse.min(0) - margin, coarse.max(0) + margin])
        box = np.clip(box, lo, hi)
        start[rows] = table_search(data, rows, box, options.table_fine, options)
    return start
