"""Per-cell fits of the RRAM compact model (``bruno_lab.devices.rram``) to the raw DC records.

What the DC records identify, and what they do not:

* ``v0_v`` (the I-V nonlinearity ``I = I0*exp(-g/g0)*sinh(V/V0)``): from the low-|V| parts of the
  ``rram_iv`` sweeps, where the gap does not move. A *state segment* is a maximal run of
  consecutive samples with ``|V| <= frozen_max_v`` (default 0.4 V, below the DC SET and RESET
  onsets): the tail of a SET sweep and the head of the following RESET sweep share the LRS, the
  tail of a RESET sweep and the head of the next SET sweep share the HRS. One batched
  Levenberg-Marquardt fit (``calibration.fitter``) per wafer fits, per cell, ``v0_v`` jointly
  with one prefactor per segment, parametrised as the segment's conductance at the read voltage
  (``I(V_read)/V_read``, S). Samples near the sweep's current compliance are left out (there
  the source, not the cell, sets the current). Residuals are weighted by a conductance noise
  ``sigma_I = (a + b*G)*|V|`` whose ``a, b`` are fitted over the wafer's segments after a first,
  relatively weighted pass; ``chi2_red`` is then a real goodness (about 1 for a good fit).
* ``i0_a``, ``g0_m`` and the gap: degenerate, only ``I0*exp(-g/g0)`` (the segment prefactor)
  is seen. Not fitted.
* ``v_form_v``: from the forming staircase via the model's forming kinetics. A pristine cell
  breaks down at the rate ``exp((V - V_form)/V_form_slope)/tau_form`` while a step is held
  (``delay_s`` settling plus the SMU's ``nplc`` aperture); the protocol sees the event at the
  first step whose reading reaches ``detect_frac`` of the compliance, i.e. when the cell formed
  before the last ``detect_frac`` of that step's aperture. The integrated hazard up to each
  step's detection point gives the distribution of the detected forming step for a given
  ``V_form``; per cell, ``v_form_v`` is fitted (batched LM) so that the *expected* detected
  voltage equals the observed one (mean-unbiased, unlike the single-event maximum likelihood,
  which sits 0.58 slope below), with ``v_form_slope_v`` and ``tau_form_s`` held at the model's
  defaults: one event per cell cannot tell them apart (only ``V_form - slope*ln(tau)`` and not
  the slope is seen). Its uncertainty is the spread of a single breakdown (std of the detected
  voltage under the fitted hazard), so the card's population spread is deconvolved from it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bruno_lab.devices.rram import RramParams, cell_current_a, forming_rate_per_s
from calibration.fitter import FitOptions, ParamSpec, fit_batched

log = logging.getLogger(__name__)

LINE_FREQUENCY_HZ = 50.0
"""Power-line frequency of the SMU's NPLC aperture (the lab's mains; the sim's too)."""
FROZEN_MAX_V = 0.4
"""Largest |V| of a DC sample used for the I-V fit: well below DC SET (~0.8 V) and RESET
(-0.5..-0.8 V) onsets, where the state stays put over a sweep step."""
NEAR_COMPLIANCE = 0.8
"""Samples with |I| above this fraction of the sweep's compliance are left out."""
MIN_SEGMENT_POINTS = 3
# Defaults of the protocols (rram_forming, rram_iv) for records that do not store their settings.
FORMING_DEFAULTS: dict[str, float] = {
    "delay_s": 1e-3,
    "nplc": 0.1,
    "detect_frac": 0.5,
    "compliance_a": 1e-4,
}
IV_DEFAULTS: dict[str, float] = {
    "set_compliance_a": 1e-4,
    "reset_compliance_a": 1e-3,
    "read_v": 0.2,
}


def _spec(name: str, log_scale: bool = False) -> ParamSpec:
    s = RramParams.specs()[name]
    return ParamSpec(name, s.low, s.high, log_scale=log_scale)


V0_SPEC = _spec("v0_v", log_scale=True)
V_FORM_SPEC = _spec("v_form_v")
SEGMENT_G_BOUNDS = (1e-10, 1e-1)


def _setting(parameters: Mapping[str, Any], name: str, defaults: Mapping[str, float]) -> float:
    try:
        value = float(parameters.get(name, defaults[name]))
    except (TypeError, ValueError):
        value = math.nan
    return value if math.isfinite(value) else float(defaults[name])


# ----- forming ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormingRecord:
    """One cell's forming staircase (the up-ramp) and where the event was detected."""

    voltage_v: np.ndarray  # up-ramp step voltages, V
    event: int  # index of the detected step, -1 if none
    dwell_s: float  # time each step is held (settling + aperture), s
    detect_s: float  # time into a step before which a breakdown is seen at that step, s


def forming_record(
    voltage_v: np.ndarray, current_a: np.ndarray, parameters: Mapping[str, Any]
) -> FormingRecord:
    """The up-ramp of a stored ``rram_forming`` trace and its detected forming step (the
    protocol's rule: the first step reaching ``detect_frac`` of the compliance)."""
    v = np.asarray(voltage_v, dtype=np.float64).reshape(-1)
    i = np.asarray(current_a, dtype=np.float64).reshape(-1)
    delay = _setting(parameters, "delay_s", FORMING_DEFAULTS)
    aperture = _setting(parameters, "nplc", FORMING_DEFAULTS) / LINE_FREQUENCY_HZ
    frac = _setting(parameters, "detect_frac", FORMING_DEFAULTS)
    limit = _setting(parameters, "compliance_a", FORMING_DEFAULTS)
    n_up = int(np.argmax(v)) + 1 if v.size else 0
    hit = np.flatnonzero(np.abs(i[:n_up]) >= frac * limit)
    return FormingRecord(
        voltage_v=v[:n_up],
        event=int(hit[0]) if hit.size else -1,
        dwell_s=delay + aperture,
        detect_s=delay + (1.0 - frac) * aperture,
    )


def _forming_moments(
    v_form: torch.Tensor,
    volts: torch.Tensor,
    mask: torch.Tensor,
    dwell: torch.Tensor,
    detect: torch.Tensor,
    slope_v: float,
    tau_s: float,
    censor_v: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the detected forming voltage [m] given ``v_form`` [m]."""
    # the device model's own breakdown rate, integrated over the staircase below
    rate = forming_rate_per_s(volts, v_form.unsqueeze(1), slope_v, tau_s)
    rate = torch.where(mask, rate, torch.zeros_like(rate))
    full = dwell.unsqueeze(1) * rate
    before = torch.cumsum(full, dim=1) - full
    hazard = before + detect.unsqueeze(1) * rate
    seen = -torch.expm1(-hazard)  # P(detected at or before step j)
    prev = torch.cat([torch.zeros_like(seen[:, :1]), seen[:, :-1]], dim=1)
    prob = torch.where(mask, seen - prev, torch.zeros_like(seen))
    # a cell not seen on the up-ramp counts as seen one step beyond its top (censored there),
    # so the mean stays monotonic in V_form up to the ramp's end
    rest = (1.0 - prob.sum(1)).clamp_min(0.0)
    mean = (prob * volts).sum(1) + rest * censor_v
    var = (prob * volts.pow(2)).sum(1) + rest * censor_v.pow(2) - mean.pow(2)
    return mean, var.clamp_min(0.0)


@dataclass
class FormingFit:
    """Per cell (in input order): fitted v_form_v, its 1-sigma uncertainty, goodness, flags."""

    v_form_v: np.ndarray
    stderr_v: np.ndarray
    goodness: list[dict[str, Any]] = field(default_factory=list)
    flags: list[list[str]] = field(default_factory=list)


def fit_forming(
    records: Sequence[FormingRecord],
    *,
    slope_v: float | None = None,
    tau_s: float | None = None,
    options: FitOptions | None = None,
) -> FormingFit:
    """Batched fit of ``v_form_v`` to every cell's detected forming step (cells without an event
    get NaN and the flag ``v_form_v:no event``)."""
    specs = RramParams.specs()
    slope = float(specs["v_form_slope_v"].default if slope_v is None else slope_v)
    tau = float(specs["tau_form_s"].default if tau_s is None else tau_s)
    n = len(records)
    out = FormingFit(np.full(n, math.nan), np.full(n, math.nan), [{} for _ in records], [])
    out.flags = [[] for _ in records]
    use = [k for k, r in enumerate(records) if r.event >= 0]
    for k in set(range(n)) - set(use):
        out.flags[k].append("v_form_v:no event")
    if not use:
        return out
    k_max = max(records[k].voltage_v.size for k in use)
    volts = np.zeros((len(use), k_max))
    mask = np.zeros((len(use), k_max), dtype=bool)
    for j, k in enumerate(use):
        r = records[k]
        volts[j, : r.voltage_v.size] = r.voltage_v
        mask[j, : r.voltage_v.size] = True
    v_t = torch.as_tensor(volts)
    m_t = torch.as_tensor(mask)
    dwell = torch.tensor([records[k].dwell_s for k in use], dtype=torch.float64)
    detect = torch.tensor([records[k].detect_s for k in use], dtype=torch.float64)
    censor = torch.tensor([_beyond_top(records[k].voltage_v) for k in use], dtype=torch.float64)
    observed = np.array([[records[k].voltage_v[records[k].event]] for k in use])

    def moments(v_form: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _forming_moments(
            v_form, v_t[idx], m_t[idx], dwell[idx], detect[idx], slope, tau, censor[idx]
        )

    def model(theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return moments(theta[:, 0], idx)[0].unsqueeze(1)

    all_idx = torch.arange(len(use))
    # Start from the observed step shifted by the offset of a cell formed at V_form = its step.
    with torch.no_grad():
        offset = model(torch.as_tensor(observed), all_idx)[:, 0].numpy()
    initial = observed[:, 0] + (observed[:, 0] - offset)
    initial = np.clip(initial, V_FORM_SPEC.lower + 1e-3, V_FORM_SPEC.upper - 1e-3)[:, None]
    opts = options or FitOptions(max_iter=30, ftol=1e-12, xtol=1e-10)
    # One number per cell: r2 is undefined, the goodness is the event's probability below.
    opts = dataclasses.replace(opts, bad_fit_r2=-math.inf, bad_fit_chi2=None)
    res = fit_batched(model, [V_FORM_SPEC], observed, initial, options=opts)
    vf = torch.as_tensor(res.params[:, 0])
    with torch.no_grad():
        h = 1e-4
        mean, var = moments(vf, all_idx)
        d_mean = (moments(vf + h, all_idx)[0] - moments(vf - h, all_idx)[0]) / (2 * h)
        stderr = var.sqrt() / d_mean.abs().clamp_min(1e-12)
        p_event = _event_probability(vf, v_t, m_t, dwell, detect, slope, tau, use, records)
    for j, k in enumerate(use):
        out.v_form_v[k] = float(vf[j])
        out.stderr_v[k] = float(stderr[j])
        out.goodness[k] = {
            "forming_step": int(records[k].event),
            "forming_event_probability": float(p_event[j]),
            "forming_residual_v": float(mean[j]) - float(observed[j, 0]),
            "forming_converged": bool(res.converged[j]),
        }
        out.flags[k] += [f"v_form_v:{f}" for f in res.flags[j]]
    return out


def _beyond_top(voltage_v: np.ndarray) -> float:
    """One step beyond the top of an up-ramp (where a cell not seen on the ramp is counted)."""
    v = np.asarray(voltage_v, dtype=np.float64)
    return float(v[-1] + (v[-1] - v[-2])) if v.size >= 2 else float(v[-1]) * 1.02


def _event_probability(
    vf: torch.Tensor,
    volts: torch.Tensor,
    mask: torch.Tensor,
    dwell: torch.Tensor,
    detect: torch.Tensor,
    slope: float,
    tau: float,
    use: list[int],
    records: Sequence[FormingRecord],
) -> torch.Tensor:
    """Probability of the observed step under the fitted hazard (its own goodness)."""
    rate = forming_rate_per_s(volts, vf.unsqueeze(1), slope, tau)
    rate = torch.where(mask, rate, torch.zeros_like(rate))
    full = dwell.unsqueeze(1) * rate
    hazard = torch.cumsum(full, dim=1) - full + detect.unsqueeze(1) * rate
    seen = -torch.expm1(-hazard)
    prev = torch.cat([torch.zeros_like(seen[:, :1]), seen[:, :-1]], dim=1)
    ev = torch.tensor([records[k].event for k in use])
    return (seen - prev)[torch.arange(ev.numel()), ev]


# ----- DC I-V ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IvRecord:
    """The frozen-state samples of one cell's DC sweeps: voltage, current, segment index."""

    voltage_v: np.ndarray
    current_a: np.ndarray
    segment: np.ndarray  # 0..n_segments-1 per sample
    n_segments: int
    read_v: float


def iv_record(
    voltage_v: np.ndarray,
    current_a: np.ndarray,
    parameters: Mapping[str, Any],
    frozen_max_v: float = FROZEN_MAX_V,
) -> IvRecord:
    """Split a stored ``rram_iv`` trace into state segments (maximal runs of consecutive samples
    with ``|V| <= frozen_max_v``), dropping 0 V samples, samples near the compliance of their
    polarity and segments with fewer than ``MIN_SEGMENT_POINTS`` samples."""
    v = np.asarray(voltage_v, dtype=np.float64).reshape(-1)
    i = np.asarray(current_a, dtype=np.float64).reshape(-1)
    if v.size != i.size:
        from bruno_lab.errors import DataError

        raise DataError(f"rram_iv: voltage_v ({v.size}) and current_a ({i.size}) differ in length")
    low = np.abs(v) <= frozen_max_v
    seg_id = np.cumsum(np.concatenate([[True], low[1:] != low[:-1]])) - 1
    limit = np.where(
        v >= 0,
        _setting(parameters, "set_compliance_a", IV_DEFAULTS),
        _setting(parameters, "reset_compliance_a", IV_DEFAULTS),
    )
    keep = low & (v != 0) & np.isfinite(i) & (np.abs(i) < NEAR_COMPLIANCE * limit)
    segs = [
        s for s in np.unique(seg_id[keep]) if np.sum(keep & (seg_id == s)) >= MIN_SEGMENT_POINTS
    ]
    keep &= np.isin(seg_id, segs)
    relabel = {s: k for k, s in enumerate(segs)}
    return IvRecord(
        voltage_v=v[keep],
        current_a=i[keep],
        segment=np.array([relabel[s] for s in seg_id[keep]], dtype=np.int64),
        n_segments=len(segs),
        read_v=_setting(parameters, "read_v", IV_DEFAULTS),
    )


def _iv_model(volts: torch.Tensor, segment: torch.Tensor, read_v: torch.Tensor) -> Any:
    """Predicted current [m, T] from (v0_v, G_read of each segment) [m, 1 + S]."""

    def model(theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        m = theta.shape[0]
        v = volts[idx]
        g_read = torch.gather(theta[:, 1:], 1, segment[idx])
        shape_params = RramParams.default(m, dtype=theta.dtype).replace(
            i0_a=torch.ones(m, 1, dtype=theta.dtype),
            g0_m=torch.full((m, 1), 1e-9, dtype=theta.dtype),
            v0_v=theta[:, :1],
        )
        zero = torch.zeros_like(v)
        vr = read_v[idx].unsqueeze(1)
        # the model's own I-V shape, scaled so that I(V_read)/V_read is the segment's G_read
        unit = cell_current_a(vr, torch.zeros_like(vr), shape_params)
        return g_read * vr * cell_current_a(v, zero, shape_params) / unit

    return model


@dataclass
class IvFit:
    """Per cell (in input order): v0_v, its uncertainty, segment conductances, goodness, flags."""

    v0_v: np.ndarray
    stderr_v: np.ndarray
    segment_g_siemens: list[np.ndarray]
    segment_g_stderr: list[np.ndarray]
    goodness: list[dict[str, Any]]
    flags: list[list[str]]
    noise_floor_siemens: float = math.nan
    noise_rel: float = math.nan


BAD_FIT_CHI2_FACTOR = 10.0


def fit_iv(records: Sequence[IvRecord], options: FitOptions | None = None) -> IvFit:
    """Batched fit of ``v0_v`` and one G_read per state segment over every cell with at least
    one segment; two passes (relative weights, then the wafer's conductance noise model)."""
    n = len(records)
    out = IvFit(
        np.full(n, math.nan),
        np.full(n, math.nan),
        [np.empty(0)] * n,
        [np.empty(0)] * n,
        [{} for _ in records],
        [[] for _ in records],
    )
    use = [k for k, r in enumerate(records) if r.n_segments >= 1]
    for k in set(range(n)) - set(use):
        out.flags[k].append("v0_v:no frozen I-V segment")
    if not use:
        return out
    t_max = max(records[k].voltage_v.size for k in use)
    s_max = max(records[k].n_segments for k in use)
    m = len(use)
    volts, amps = np.zeros((m, t_max)), np.zeros((m, t_max))
    seg = np.zeros((m, t_max), dtype=np.int64)
    mask = np.zeros((m, t_max), dtype=bool)
    g_init = np.full((m, s_max), 1e-5)
    for j, k in enumerate(use):
        r = records[k]
        t = r.voltage_v.size
        volts[j, :t], amps[j, :t], seg[j, :t] = r.voltage_v, r.current_a, r.segment
        mask[j, :t] = True
        for s in range(r.n_segments):
            sel = r.segment == s
            g_init[j, s] = float(np.median(np.abs(r.current_a[sel] / r.voltage_v[sel])))
    g_init = np.clip(g_init, SEGMENT_G_BOUNDS[0] * 1.01, SEGMENT_G_BOUNDS[1] * 0.99)
    read_v = torch.tensor([records[k].read_v for k in use], dtype=torch.float64)
    model = _iv_model(torch.as_tensor(volts), torch.as_tensor(seg), read_v)
    specs = [V0_SPEC] + [
        ParamSpec(f"g_read_seg{s}_siemens", *SEGMENT_G_BOUNDS, log_scale=True) for s in range(s_max)
    ]
    initial = np.concatenate([np.full((m, 1), RramParams.specs()["v0_v"].default), g_init], axis=1)
    opts = options or FitOptions(max_iter=60)
    # pass 1: a conductance noise relative to each segment's G
    g_pt = np.take_along_axis(g_init, seg, axis=1)
    sigma1 = 0.01 * g_pt * np.abs(volts) + 1e-12
    res1 = fit_batched(model, specs, amps, initial, sigma=sigma1, mask=mask, options=opts)
    # wafer noise model sigma_G = a + b*G from the segments' residual RMS (robust NNLS)
    with torch.no_grad():
        pred = model(torch.as_tensor(res1.params), torch.arange(m)).numpy()
    floor, rel = _noise_model(pred, amps, volts, seg, mask, res1.params[:, 1:])
    out.noise_floor_siemens, out.noise_rel = floor, rel
    g_fit = np.take_along_axis(res1.params[:, 1:], seg, axis=1)
    sigma2 = (floor + rel * g_fit) * np.abs(volts) + 1e-12
    res = fit_batched(model, specs, amps, res1.params, sigma=sigma2, mask=mask, options=opts)
    chi2_typ = float(np.nanmedian(res.chi2_red))
    for j, k in enumerate(use):
        ns = records[k].n_segments
        out.v0_v[k] = float(res.params[j, 0])
        out.stderr_v[k] = float(res.stderr[j, 0])
        out.segment_g_siemens[k] = res.params[j, 1 : 1 + ns].copy()
        out.segment_g_stderr[k] = res.stderr[j, 1 : 1 + ns].copy()
        # the degrees of freedom of this cell (the fitter counts the padded segments too)
        n_pts = int(mask[j].sum())
        chi2 = float(res.chi2_red[j]) * max(n_pts - len(specs), 1) / max(n_pts - 1 - ns, 1)
        out.goodness[k] = {
            "iv_chi2_red": chi2,
            "iv_rmse_a": float(res.rmse[j]),
            "iv_r2": float(res.r2[j]),
            "iv_n_points": n_pts,
            "iv_n_segments": ns,
            "iv_n_iter": int(res.n_iter[j]),
            "iv_converged": bool(res.converged[j]),
        }
        flags = [f for f in res.flags[j] if not f.startswith("at_bound")]
        at = [f for f in res.flags[j] if f.startswith("at_bound")]
        if at and "v0_v" in at[0].split(":", 1)[1].split(","):
            flags.append("at_bound")
        if chi2 > BAD_FIT_CHI2_FACTOR * max(chi2_typ, 1.0) and "bad_fit" not in flags:
            flags.append("bad_fit")
        out.flags[k] += [f"v0_v:{f}" for f in flags]
    return out


def _noise_model(
    pred: np.ndarray,
    amps: np.ndarray,
    volts: np.ndarray,
    seg: np.ndarray,
    mask: np.ndarray,
    g_seg: np.ndarray,
) -> tuple[float, float]:
    """(floor S, relative) of ``sigma_G = floor + rel*G`` over the wafer's segments."""
    from scipy.optimize import nnls

    resid_g = np.where(mask, (amps - pred) / np.where(mask, np.abs(volts), 1.0), np.nan)
    gs, rms = [], []
    for j in range(pred.shape[0]):
        for s in np.unique(seg[j][mask[j]]):
            sel = mask[j] & (seg[j] == s)
            if sel.sum() >= MIN_SEGMENT_POINTS + 1:
                # two parameters touch a segment (its G and the shared V0)
                dof = sel.sum() - 1.5
                rms.append(math.sqrt(float(np.sum(resid_g[j][sel] ** 2)) / dof))
                gs.append(float(g_seg[j, s]))
    g, r = np.asarray(gs), np.asarray(rms)
    if g.size < 2:
        return 0.0, 0.01
    keep = np.isfinite(g) & np.isfinite(r)
    coef = np.array([0.0, 0.01])
    for _ in range(3):  # refit without segments far off the line (a bad cell, a moving state)
        a = np.stack([np.ones(keep.sum()), g[keep]], 1)
        scale = np.array([max(float(np.median(r[keep])), 1e-15), 1.0])
        c, _ = nnls(a / scale, r[keep])
        coef = c / scale
        model = coef[0] + coef[1] * g
        keep = keep & (r <= 3.0 * np.maximum(model, 1e-15))
        if keep.sum() < 2:
            break
    floor, rel = float(coef[0]), float(coef[1])
    if floor <= 0 and rel <= 0:
        return 0.0, 0.01
    return floor, rel
