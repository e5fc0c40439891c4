"""The FeLIF protocol's pulse trains as run-length segments, and spike times as pulse on-times.

A spike time ``t`` is mapped to the pulse on-time accumulated in its trial up to ``t``: ``tau``
is continuous where ``t`` jumps (a spike that slips past the end of one pulse fires at the start
of the next, a jump in ``t`` of the pulse gap but little in ``tau``), which is why the fit
compares on-times, not times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import overload

import numpy as np
import torch

DEFAULT_MAX_MICRO_STEP_S = 1e-6


def _on_pattern(width_s: float, period_s: float, t_s: np.ndarray) -> np.ndarray:
    return (t_s % period_s) < width_s


def train_segments(
    width_s: float,
    period_s: float,
    trial_s: float,
    samples_per_pulse: int,
    extend_s: float,
    max_micro_step_s: float = DEFAULT_MAX_MICRO_STEP_S,
) -> dict[str, np.ndarray]:
    """Run-length segments (on 0/1, micro-steps) of one trial and of its continuation.

    The AWG plays ``n = round(trial_s*rate)`` samples, the first and last at 0 (the protocol's
    waveform); the model holds each sample interval at its end-point value (the bench's)."""
    rate = samples_per_pulse / width_s
    n = round(trial_s * rate)
    t = np.arange(n) / rate
    on = _on_pattern(width_s, period_s, t)
    on[0] = on[-1] = False
    sub = max(1, int(np.ceil((1.0 / rate) / max_micro_step_s - 1e-9)))
    micro = 1.0 / rate / sub
    n_ext = max(1, round(extend_s * rate))
    t_ext = (n + np.arange(n_ext)) / rate
    on_ext = _on_pattern(width_s, period_s, t_ext)
    out = {"micro_dt_s": np.array([micro]), "trial_end_s": np.array([(n - 1) / rate])}
    for name, seq in (("trial", on[1:]), ("ext", on_ext)):
        change = np.flatnonzero(np.diff(seq.astype(np.int8))) + 1
        starts = np.concatenate([[0], change])
        lengths = np.diff(np.concatenate([starts, [seq.size]]))
        out[f"{name}_on"] = seq[starts].astype(np.float64)
        out[f"{name}_steps"] = (lengths * sub).astype(np.int64)
    return out


@overload
def on_time_s(
    t_s: torch.Tensor, on: np.ndarray, steps: np.ndarray, micro_dt_s: float
) -> torch.Tensor: ...
@overload
def on_time_s(
    t_s: np.ndarray, on: np.ndarray, steps: np.ndarray, micro_dt_s: float
) -> np.ndarray: ...
def on_time_s(
    t_s: np.ndarray | torch.Tensor, on: np.ndarray, steps: np.ndarray, micro_dt_s: float
) -> np.ndarray | torch.Tensor:
    """Pulse on-time accumulated from the start of the segments up to ``t_s``, s."""
    edges = np.concatenate([[0.0], np.cumsum(steps) * micro_dt_s])
    cum = np.concatenate([[0.0], np.cumsum(on * steps) * micro_dt_s])
    if torch.is_tensor(t_s):
        x = t_s.detach().numpy()
        return torch.as_tensor(np.interp(x, edges, cum), dtype=t_s.dtype)
    return np.asarray(np.interp(t_s, edges, cum))


def on_time_ext(
    t_s: np.ndarray, seg: Mapping[str, np.ndarray], micro: float, t_end: float
) -> np.ndarray:
    """On-time of times inside the trial or in its continuation (from ``t_end``); NaN -> inf."""
    t_s = np.where(np.isnan(t_s), np.inf, t_s)
    in_trial = on_time_s(np.minimum(t_s, t_end), seg["trial_on"], seg["trial_steps"], micro)
    after = np.clip(t_s - t_end, 0.0, 1e300)
    return in_trial + on_time_s(after, seg["ext_on"], seg["ext_steps"], micro)


def ext_end_tau(seg: Mapping[str, np.ndarray], micro: float, tau_end: float) -> float:
    """On-time at the end of the continuation (a spike never found counts there)."""
    return tau_end + float(np.sum(seg["ext_on"] * seg["ext_steps"]) * micro)
