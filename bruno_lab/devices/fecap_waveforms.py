"""Standard FeCap measurement waveforms and the features a lab extracts from them.

Waveforms return ``(time_s [T], voltage_v [T])`` float64 tensors built from piecewise-linear
corners, sampled densely enough for ``fecap_simulate`` (edges keep their corners exactly).
``pv_loop_features`` is a pure function of a measured or simulated loop, used by calibration too.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from bruno_lab.errors import BadInputError


def triangle_waveform(
    amplitude_v: float, frequency_hz: float, n_periods: int = 2, points_per_period: int = 400
) -> tuple[Tensor, Tensor]:
    """Bipolar triangle 0 -> +A -> -A -> 0 per period (the P-V loop drive)."""
    if amplitude_v <= 0 or frequency_hz <= 0 or n_periods < 1 or points_per_period < 8:
        raise BadInputError("triangle: amplitude_v, frequency_hz > 0, n_periods >= 1 required")
    n = n_periods * points_per_period
    phase = torch.arange(n + 1, dtype=torch.float64) / points_per_period  # in periods
    frac = phase % 1.0
    tri = torch.where(frac < 0.25, 4 * frac, torch.where(frac < 0.75, 2 - 4 * frac, 4 * frac - 4))
    return phase / frequency_hz, amplitude_v * tri


def _piecewise(
    corners: list[tuple[float, float]], points_per_segment: int
) -> tuple[Tensor, Tensor]:
    times, volts = [corners[0][0]], [corners[0][1]]
    for (t0, v0), (t1, v1) in itertools.pairwise(corners):
        if t1 <= t0:
            continue
        m = points_per_segment if v0 == v1 else max(4, points_per_segment // 4)
        for i in range(1, m + 1):
            times.append(t0 + (t1 - t0) * i / m)
            volts.append(v0 + (v1 - v0) * i / m)
    return torch.tensor(times, dtype=torch.float64), torch.tensor(volts, dtype=torch.float64)


def pulse_waveform(
    amplitude_v: float,
    width_s: float,
    rise_s: float = 5e-9,
    rest_s: float | None = None,
    points_per_segment: int = 40,
) -> tuple[Tensor, Tensor]:
    """0 V, one trapezoidal pulse (``width_s`` at full amplitude, ``rise_s`` edges), 0 V rest."""
    rest = rest_s if rest_s is not None else max(width_s, 1e-6)
    corners = [(0.0, 0.0), (rest, 0.0), (rest + rise_s, amplitude_v)]
    corners += [(rest + rise_s + width_s, amplitude_v), (rest + 2 * rise_s + width_s, 0.0)]
    corners += [(2 * rest + 2 * rise_s + width_s, 0.0)]
    return _piecewise(corners, points_per_segment)


def pund_waveform(
    amplitude_v: float,
    width_s: float = 1e-6,
    rise_s: float = 50e-9,
    delay_s: float = 1e-6,
    points_per_segment: int = 40,
) -> tuple[Tensor, Tensor, dict[str, tuple[float, float]]]:
    """Pre-pole (-A), then P (+A), U (+A), N (-A), D (-A) pulses separated by ``delay_s`` at 0 V.

    Returns (time, voltage, windows) with windows[name] = (start_s, end_s) of each pulse."""
    corners: list[tuple[float, float]] = [(0.0, 0.0)]
    windows: dict[str, tuple[float, float]] = {}
    t = delay_s
    for name, sign in (("pre", -1.0), ("P", 1.0), ("U", 1.0), ("N", -1.0), ("D", -1.0)):
        corners += [(t, 0.0), (t + rise_s, sign * amplitude_v)]
        corners += [(t + rise_s + width_s, sign * amplitude_v), (t + 2 * rise_s + width_s, 0.0)]
        windows[name] = (t, t + 2 * rise_s + width_s + delay_s)
        t += 2 * rise_s + width_s + delay_s
    corners.append((t, 0.0))
    time_s, volt = _piecewise(corners, points_per_segment)
    return time_s, volt, windows


def _last_crossing(y: Tensor, x: Tensor, rising: bool) -> Tensor:
    """x where y last crosses 0 in the given direction (linear interpolation), NaN if never."""
    y0, y1 = y[..., :-1], y[..., 1:]
    hit = (y0 < 0) & (y1 >= 0) if rising else (y0 > 0) & (y1 <= 0)
    pos = torch.arange(hit.shape[-1], device=y.device).expand_as(hit)
    last = torch.where(hit, pos, -1).amax(-1, keepdim=True)
    i = last.clamp(min=0)
    a, b = y0.gather(-1, i), y1.gather(-1, i)
    xa, xb = x[..., :-1].gather(-1, i), x[..., 1:].gather(-1, i)
    frac = a / torch.where(a - b == 0, torch.ones_like(a), a - b)
    out = (xa + frac * (xb - xa)).squeeze(-1)
    return torch.where(last.squeeze(-1) >= 0, out, torch.full_like(out, float("nan")))


def pv_loop_features(voltage_v: Tensor, polarization_c_m2: Tensor) -> dict[str, Tensor]:
    """Pr+/Pr- (P at V = 0 coming down from +V / up from -V, C/m²), Vc+/Vc- (V where P crosses 0
    rising / falling, V) and imprint (Vc+ + Vc-)/2, V, from the last loop in the record.

    Batched over leading dims (``[..., T]``); NaN where a crossing is missing; differentiable
    through the interpolation (the crossing indices are chosen without gradient)."""
    v = torch.as_tensor(voltage_v)
    pol = torch.as_tensor(polarization_c_m2, dtype=v.dtype)
    v = v.expand_as(pol)
    vc_pos = _last_crossing(pol, v, rising=True)
    vc_neg = _last_crossing(pol, v, rising=False)
    return {
        "pr_pos_c_m2": _last_crossing(v, pol, rising=False),
        "pr_neg_c_m2": _last_crossing(v, pol, rising=True),
        "vc_pos_v": vc_pos,
        "vc_neg_v": vc_neg,
        "imprint_v": 0.5 * (vc_pos + vc_neg),
    }


def window_charge_c(time_s: Tensor, current_a: Tensor, window: tuple[float, float]) -> Tensor:
    """Charge (C) of ``current_a [..., T]`` integrated (trapezoid) over ``window`` = (t0, t1)."""
    mask = (time_s >= window[0]) & (time_s <= window[1])
    t = time_s[mask]
    return torch.trapezoid(current_a[..., mask], t, dim=-1)
