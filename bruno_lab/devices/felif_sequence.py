"""FeLIF neurons under a piecewise-constant input sequence, with threshold and reset (no autograd).

The input is a sequence of *segments*: segment ``s`` holds the current ``current_a[s]`` (per
neuron) for ``n_steps[s]`` explicit Euler micro-steps of ``dt_s[s]`` each. After every micro-step
a neuron whose V reached V_thr spikes and is reset (V -> V_reset, P -> -P_s) at once, exactly as a
loop of ``felif.felif_euler_step`` + ``felif.felif_reset`` does (the simulated lab's bench, a
device's own membrane). The spike time reported is the crossing of V_thr interpolated linearly
inside the micro-step (a smooth function of the parameters, for fitting), together with the
global micro-step index.

``reset_at_crossing=True`` instead resets at the interpolated crossing, holds the reset state for
``hold_fraction`` of a micro-step and then goes on (the rest of that micro-step first), so later
spikes are smooth in the parameters too (not only the first). With ``hold_fraction=0.5`` this is
the plain loop's reset on average: the loop resets at the end of the crossing micro-step, on
average half a micro-step after the crossing; a spike then differs from the loop's by less than a
micro-step of input, with no drift.

The work is done by a float64 C kernel (source below: the same transcription of
``felif_euler_step`` as ``felif_ccall``'s window kernel, with the constants computed by the same
``fecap`` functions through ``felif_fast.kernel_constant_rows``), built once with gcc into the
same cache as the window kernel. Without a compiler the torch reference step is looped instead
(logged once): slower, the same numbers to rounding.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#define X_MAX 80.0
#define LEAK_EXP_MAX 40.0
#define V_CLIP 5.0
/* constants order: k_c k_d e_a soft_e alpha tau0 ps area i0a v_t i_dsc ctot v_thr v_reset */
static inline void euler(double I, double dt, double *V, double *P, const double *k) {
    double v0 = *V, p0 = *P;
    double E = v0 * k[0] - p0 * k[1];
    double x = pow(k[2] / (fabs(E) + k[3]), k[4]);
    x = x > X_MAX ? X_MAX : x;
    double rate = exp(-x) / k[5];
    double ps = k[6];
    double tgt = E > 0.0 ? ps : (E < 0.0 ? -ps : 0.0);
    double pn = p0 + dt * ((tgt - p0) * rate);
    pn = fmin(fmax(pn, -ps), ps);
    double arg = v0 / k[9]; arg = arg > LEAK_EXP_MAX ? LEAK_EXP_MAX : arg;
    double sg = v0 > 0.0 ? 1.0 : (v0 < 0.0 ? -1.0 : 0.0);
    double leak = (k[8] * expm1(arg) + k[10]) * sg;
    double ip = k[7] * (pn - p0) / dt;
    double vn = v0 + dt * (I - leak - ip) / k[11];
    vn = vn > V_CLIP ? V_CLIP : (vn < -V_CLIP ? -V_CLIP : vn);
    *V = vn; *P = pn;
}

/* Neuron g (of n) reads its constants from column g % np of c [14, np] and its current from
   cur[s*n + g]. Segment s: n_steps[s] micro-steps of dt[s], starting at time t_seg[s] and at
   global micro-step index k_seg[s]. */
void felif_sequence_f64(int64_t n, int64_t np, const double *c, int64_t n_seg,
                        const double *cur, const double *dt, const int64_t *n_steps,
                        const double *t_seg, const int64_t *k_seg,
                        double *v, double *p, int32_t reset_at_crossing, double hold_fraction,
                        double *trace_v, double *trace_p,
                        int64_t max_spikes, double *spike_t, int64_t *spike_k,
                        int64_t *n_spikes, const int64_t *stop_after,
                        const int64_t *start_step) {
    for (int64_t g = 0; g < n; g++) {
        double k[14];
        for (int r = 0; r < 14; r++) k[r] = c[r * np + g % np];
        double th = k[12], vr = k[13], ps = k[6];
        double V = v[g], P = p[g];
        int64_t ns = 0, stop = stop_after ? stop_after[g] : 0;
        int64_t k0 = start_step ? start_step[g] : 0;  /* held (no evolution) before it */
        double debt = 0.0;  /* time still held in the reset state after a spike */
        int64_t s = 0;
        for (; s < n_seg; s++) {
            double I = cur[s * n + g], h = dt[s];
            int64_t m = n_steps[s];
            int64_t j0 = k0 > k_seg[s] ? k0 - k_seg[s] : 0;
            if (h > 0.0) for (int64_t j = j0; j < m; j++) {
                double hh = h;  /* the part of this micro-step the neuron evolves */
                if (debt > 0.0) {
                    if (debt >= h) { debt -= h; continue; }
                    hh = h - debt; debt = 0.0;
                }
                double vb = V;
                euler(I, hh, &V, &P, k);
                if (V >= th) {
                    double f = (V > vb) ? (th - vb) / (V - vb) : 1.0;
                    f = f < 0.0 ? 0.0 : (f > 1.0 ? 1.0 : f);
                    if (ns < max_spikes) {
                        spike_t[g * max_spikes + ns] = t_seg[s] + (double)j * h + (h - hh) + f * hh;
                        spike_k[g * max_spikes + ns] = k_seg[s] + j;
                    }
                    ns++;
                    V = vr; P = -ps;
                    if (reset_at_crossing) {
                        double rest = (1.0 - f) * hh, hold = hold_fraction * h;
                        if (rest > hold) {
                            euler(I, rest - hold, &V, &P, k);
                            if (V >= th) { V = vr; P = -ps; }  /* pathological: reset again */
                        } else {
                            debt = hold - rest;
                        }
                    }
                    if (stop > 0 && ns >= stop) break;
                }
            }
            if (trace_v) { trace_v[s * n + g] = V; trace_p[s * n + g] = P; }
            if (stop > 0 && ns >= stop) { s++; break; }
        }
        if (trace_v) for (; s < n_seg; s++) { trace_v[s * n + g] = NAN; trace_p[s * n + g] = NAN; }
        v[g] = V; p[g] = P; n_spikes[g] = ns;
    }
}
"""
_FLAGS = ["-O2", "-march=native", "-ffp-contract=off", "-fPIC"]
_lock = threading.Lock()
_lib: list[ctypes.CDLL | None] = []


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
    with _lock:
        if not _lib:
            try:
                _lib.append(_build())
            except (OSError, subprocess.SubprocessError) as exc:
                detail = getattr(exc, "stderr", "") or str(exc)
                log.warning(
                    "FeLIF sequence C kernel unavailable (%s); using the torch loop", detail
                )
                _lib.append(None)
        return _lib[0]


def _build() -> ctypes.CDLL:
    from bruno_lab.devices.felif_ccall import _cache_dir, _cpu_flags

    key = hashlib.sha256((_SOURCE + " ".join(_FLAGS) + _cpu_flags()).encode()).hexdigest()[:16]
    so_path = _cache_dir() / f"felif_sequence_{key}.so"
    if not so_path.exists():
        with tempfile.TemporaryDirectory(dir=_cache_dir()) as tmp:
            c_path, o_path, tmp_so = Path(tmp) / "k.c", Path(tmp) / "k.o", Path(tmp) / "k.so"
            c_path.write_text(_SOURCE)
            run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
            subprocess.run(["gcc", *_FLAGS, "-c", str(c_path), "-o", str(o_path)], **run)
            subprocess.run(["gcc", "-shared", str(o_path), "-o", str(tmp_so), "-lm"], **run)
            tmp_so.replace(so_path)  # atomic: concurrent builders never see half a file
        log.info("built FeLIF sequence kernel %s", so_path)
    lib = ctypes.CDLL(str(so_path))
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.felif_sequence_f64.argtypes = [i64, i64, ptr, i64, ptr, ptr, ptr, ptr, ptr, ptr, ptr]
    lib.felif_sequence_f64.argtypes += [ctypes.c_int32, ctypes.c_double, ptr, ptr, i64]
    lib.felif_sequence_f64.argtypes += [ptr, ptr, ptr, ptr, ptr]
    lib.felif_sequence_f64.restype = None
    return lib


def _constants(params: object, n: int) -> tuple[Tensor, int]:
    from bruno_lab.devices.felif_fast import kernel_constant_rows

    c, n_par = kernel_constant_rows(params, torch.Size([n]), torch.float64)
    reset = params.v_reset_v.to(torch.float64).reshape(-1).expand(n_par)
    return torch.cat([c, reset.unsqueeze(0)]).contiguous(), n_par


@torch.no_grad()
def run_sequence(
    current_a: Tensor | np.ndarray,
    dt_s: Tensor | np.ndarray,
    n_steps: Tensor | np.ndarray,
    params: object,
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
        c, n_par = _constants(params, n)

        def ptr(t: Tensor | None) -> int | None:
            return None if t is None else t.data_ptr()

        lib.felif_sequence_f64(
            n, n_par, ptr(c), n_seg, ptr(cur), ptr(dts), ptr(steps), ptr(t_seg), ptr(k_seg),
            ptr(v), ptr(p), int(bool(reset_at_crossing)), float(hold_fraction),
            ptr(tr_v), ptr(tr_p),
            kmax, ptr(spike_t), ptr(spike_k), ptr(n_spk), ptr(stop), ptr(start),
        )  # fmt: skip
    return SequenceResult(v, p, spike_t, spike_k, n_spk, tr_v, tr_p)


def _torch_sequence(
    params, reset_at_crossing, hold_fraction, kmax, cur, dts, steps, t_seg, k_seg, v, p, tr_v, tr_p,
    spike_t, spike_k, n_spk, stop, start,
) -> None:  # fmt: skip
    """Fallback with the reference step (vectorized over neurons; fills the outputs in place)."""
    from bruno_lab.devices.felif import FeLIFState, felif_euler_step

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
        if tr_v is not None:
            tr_v[s] = torch.where(live_before, v, torch.full_like(v, float("nan")))
            tr_p[s] = torch.where(live_before, p, torch.full_like(p, float("nan")))
