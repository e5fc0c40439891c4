"""FeLIF neurons under a piecewise-constant input sequence, with threshold and reset (no autograd).

The input is a sequence of *segments*: segment ``s`` holds the current ``current_a[s]`` (per
neuron) for ``n_steps[s]`` explicit Euler micro-steps of ``dt_s[s]`` each. After every micro-step
a neuron whose V reached V_thr spikes and is reset (V -> V_reset, P -> -P_s) at once, exactly as
a loop of ``felif_core.felif_euler_step`` + ``felif_core.felif_reset`` does (the simulated lab's
bench, a device's own membrane). The spike time reported is the crossing of V_thr interpolated
linearly inside the micro-step (a smooth function of the parameters, for fitting), together with
the global micro-step index.

``reset_at_crossing=True`` instead resets at the interpolated crossing, holds the reset state for
``hold_fraction`` of a micro-step and then goes on (the rest of that micro-step first), so later
spikes are smooth in the parameters too (not only the first). With ``hold_fraction=0.5`` this is
the plain loop's reset on average: the loop resets at the end of the crossing micro-step, on
average half a micro-step after the crossing; a spike then differs from the loop's by less than a
micro-step of input, with no drift.

The work is done by the float64 C kernel ``kernels/felif_sequence.c`` (its Euler step is
``kernels/felif_step.h``, shared with the window kernel; the constants are computed by the same
``fecap`` functions through ``felif_core.kernel_constant_rows``), built once by ``ckernel``.
Without a compiler the torch reference step is looped instead (logged once): slower, the same
numbers to rounding.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bruno_lab.devices import ckernel
from bruno_lab.devices.felif_core import (
    FeLIFParams,
    FeLIFState,
    felif_euler_step,
    kernel_constant_rows,
)

_FLAGS = ("-O2", "-march=native", "-ffp-contract=off")


@dataclass
class SequenceResult:
    """What ``run_sequence`` returns (tensors; ``n`` neurons, ``S`` segments, ``K`` max spikes).

    ``voltage_v``/``polarization_c_m2``: final state ``(n,)``; ``trace_*``: state after each
    segment ``(S, n)`` (None unless asked; NaN after a neuron stopped); ``spike_times_s``
    ``(n, K)`` interpolated crossing times (NaN padding); ``spike_steps`` ``(n, K)`` global
    micro-step indices (-1 padding); ``n_spikes`` ``(n,)`` every spike, also beyond ``K``.
    """

    voltage_v: Tensor
    polarization_c_m2: Tensor
    spike_times_s: Tensor
    spike_steps: Tensor
    n_spikes: Tensor
    trace_voltage_v: Tensor | None = None
    trace_polarization_c_m2: Tensor | None = None


def _kernel() -> ctypes.CDLL | None:
    """The sequence kernel (built on first use by ``ckernel``), or None without a compiler."""
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    args = [i64, i64, ptr, i64, ptr, ptr, ptr, ptr, ptr, ptr, ptr]
    args += [ctypes.c_int32, ctypes.c_double, ptr, ptr, i64, ptr, ptr, ptr, ptr, ptr]
    return ckernel.load("felif_sequence.c", _FLAGS, signatures={"felif_sequence": (args, None)})


@torch.no_grad()
def run_sequence(
    current_a: Tensor | np.ndarray,
    dt_s: Tensor | np.ndarray,
    n_steps: Tensor | np.ndarray,
    params: FeLIFParams,
    state: tuple[Tensor, Tensor],
    *,
    reset_at_crossing: bool = False,
    hold_fraction: float = 0.0,
    record: bool = False,
    max_spikes: int = 64,
    stop_after: Tensor | np.ndarray | None = None,
    t0_s: float = 0.0,
    start_step: Tensor | np.ndarray | None = None,
) -> SequenceResult:
    """Float64, CPU. ``current_a`` ``(S, n)`` or ``(S,)`` (A), ``dt_s`` and ``n_steps`` ``(S,)``;
    ``params`` per neuron ``(n,)`` (or scalars); ``state`` (V, P) ``(n,)``. ``stop_after``
    ``(n,)``: a neuron stops at that many spikes (0: never). ``start_step`` ``(n,)``: a neuron
    is held in its state until that global micro-step (0: from the start). Times count from
    ``t0_s``."""
    f64 = torch.float64
    v = torch.as_tensor(state[0], dtype=f64).reshape(-1).clone().contiguous()
    p = torch.as_tensor(state[1], dtype=f64).reshape(-1).clone().contiguous()
    n = v.numel()
    cur = torch.as_tensor(current_a, dtype=f64)
    cur = (cur.unsqueeze(1) if cur.ndim == 1 else cur).expand(-1, n).contiguous()
    n_seg = cur.shape[0]
    dts = torch.as_tensor(dt_s, dtype=f64).reshape(-1).expand(n_seg).contiguous()
    steps = torch.as_tensor(n_steps, dtype=torch.int64).reshape(-1).expand(n_seg).contiguous()
    steps = torch.where(dts > 0, steps, torch.zeros_like(steps))
    seg_span = dts * steps.to(f64)
    t_seg = (t0_s + torch.cumsum(seg_span, 0) - seg_span).contiguous()
    k_seg = (torch.cumsum(steps, 0) - steps).contiguous()
    stop = None
    if stop_after is not None:
        stop = torch.as_tensor(stop_after, dtype=torch.int64).reshape(-1).expand(n).contiguous()
    start = None
    if start_step is not None:
        start = torch.as_tensor(start_step, dtype=torch.int64).reshape(-1).expand(n).contiguous()
    kmax = max(1, int(max_spikes))
    spike_t = torch.full((n, kmax), float("nan"), dtype=f64)
    spike_k = torch.full((n, kmax), -1, dtype=torch.int64)
    n_spk = torch.zeros(n, dtype=torch.int64)
    tr_v = torch.empty((n_seg, n), dtype=f64) if record else None
    tr_p = torch.empty((n_seg, n), dtype=f64) if record else None
    args = (cur, dts, steps, t_seg, k_seg, v, p, tr_v, tr_p, spike_t, spike_k, n_spk, stop, start)
    lib = _kernel() if n else None
    if lib is None:
        _torch_sequence(params, reset_at_crossing, hold_fraction, kmax, *args)
    else:
        c, n_par = kernel_constant_rows(params, torch.Size([n]), f64)

        def ptr(t: Tensor | None) -> int | None:
            return None if t is None else t.data_ptr()

        lib.felif_sequence(
            n, n_par, ptr(c), n_seg, ptr(cur), ptr(dts), ptr(steps), ptr(t_seg), ptr(k_seg),
            ptr(v), ptr(p), int(bool(reset_at_crossing)), float(hold_fraction),
            ptr(tr_v), ptr(tr_p),
            kmax, ptr(spike_t), ptr(spike_k), ptr(n_spk), ptr(stop), ptr(start),
        )  # fmt: skip
    return SequenceResult(v, p, spike_t, spike_k, n_spk, tr_v, tr_p)


def _torch_sequence(
    params: FeLIFParams, reset_at_crossing: bool, hold_fraction: float, kmax: int,
    cur: Tensor, dts: Tensor, steps: Tensor, t_seg: Tensor, k_seg: Tensor, v: Tensor, p: Tensor,
    tr_v: Tensor | None, tr_p: Tensor | None, spike_t: Tensor, spike_k: Tensor, n_spk: Tensor,
    stop: Tensor | None, start: Tensor | None,
) -> None:  # fmt: skip
    """Fallback with the reference step (vectorized over neurons; fills the outputs in place)."""
    f64 = torch.float64
    th = params.v_thr_v.to(f64).expand(v.shape)
    vr = params.v_reset_v.to(f64).expand(v.shape)
    ps = params.ps_c_m2.to(f64).expand(v.shape)
    live = torch.ones_like(v, dtype=torch.bool)
    debt = torch.zeros_like(v)
    rows = torch.arange(v.numel())

    def step(cur_s: Tensor, vv: Tensor, pp: Tensor, hh: Tensor) -> tuple[Tensor, Tensor]:
        """Euler step of ``hh`` (per neuron); where ``hh`` is 0 the state stays."""
        vn, pn = felif_euler_step(cur_s, FeLIFState(vv, pp), params, hh.clamp_min(1e-300))
        return torch.where(hh > 0, vn, vv), torch.where(hh > 0, pn, pp)

    for s in range(cur.shape[0]):
        live_before = live.clone()
        h = float(dts[s])
        for j in range(int(steps[s])):
            go = live if start is None else live & (start <= int(k_seg[s]) + j)
            hh = torch.where(go, (h - debt).clamp_min(0.0), torch.zeros_like(v))
            debt = torch.where(go, (debt - h).clamp_min(0.0), debt)
            vb = v.clone()
            vn, pn = step(cur[s], v, p, hh)
            hit = (hh > 0) & (vn >= th)
            frac = ((th - vb) / (vn - vb)).where(vn > vb, torch.ones_like(vb)).clamp(0.0, 1.0)
            slot = n_spk.clamp(max=kmax - 1)
            record = hit & (n_spk < kmax)
            when = float(t_seg[s]) + j * h + (h - hh) + frac * hh
            spike_t[rows[record], slot[record]] = when[record]
            spike_k[rows[record], slot[record]] = int(k_seg[s]) + j
            n_spk += hit.to(torch.int64)
            vn, pn = torch.where(hit, vr, vn), torch.where(hit, -ps, pn)
            if reset_at_crossing and bool(hit.any()):
                rest = (1.0 - frac) * hh - hold_fraction * h
                v2, p2 = step(cur[s], vn, pn, torch.where(hit, rest.clamp_min(0.0), 0.0))
                again = hit & (v2 >= th)
                v2, p2 = torch.where(again, vr, v2), torch.where(again, -ps, p2)
                vn, pn = torch.where(hit, v2, vn), torch.where(hit, p2, pn)
                debt = torch.where(hit, (-rest).clamp_min(0.0), debt)
            v.copy_(vn)
            p.copy_(pn)
            if stop is not None:
                live = live & ~((stop > 0) & (n_spk >= stop))
        if tr_v is not None and tr_p is not None:
            tr_v[s] = torch.where(live_before, v, torch.full_like(v, float("nan")))
            tr_p[s] = torch.where(live_before, p, torch.full_like(p, float("nan")))
