"""The fused fine-window kernel behind ``felif.felif_fine_window`` and
``felif.felif_fine_windows`` (no autograd).

Chosen path (measured against numpy, eager torch and torch.compile; see
``benchmarks/felif_fine_forward.py``): the C kernel ``kernels/felif_window.c`` (its Euler step is
``kernels/felif_step.h``, the one C transcription of ``felif_core.felif_euler_step``), built once
per precision by ``ckernel`` and loaded through ctypes. One call runs ``T`` consecutive windows
of a sequence (resets in between), so a network layer crosses into C once per sequence, not once
per step. The neurons are split into slices over ``kernel_threads()`` persistent Python threads
(ctypes releases the GIL). Inside, 128 lanes advance together one micro-step per iteration (gcc
vectorizes the step across lanes with AVX2/FMA), each lane following its own neuron through its
own windows: a neuron that spiked (frozen for the rest of its window) is never stepped again in
that window, and a lane that finishes takes the next neuron (``benchmarks/train_speed.py``).

* float64: libm ``pow``/``exp``/``expm1``, no FMA contraction; agrees with the torch reference
  loop to rounding.
* float32: polynomial ``exp2``/``log2`` approximations (``kernels/felif_math.h``). Tested
  tolerance against the float64 reference loop: the same neurons spike, at the same micro-step
  within ±2 steps, over several windows with resets; V within 2e-3 V and P within 1e-4 C/m²
  after a window.

If the kernel cannot be built (no gcc, compile error) a vectorized torch loop is used instead, with
one logged warning: slower, never different numbers (it is the reference step, run under no_grad).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import torch
from torch import Tensor

from bruno_lab.devices import ckernel
from bruno_lab.devices.felif_core import (
    FeLIFParams,
    FeLIFState,
    felif_euler_step,
    felif_reset,
    kernel_constant_rows,
)
from bruno_lab.errors import BadInputError

_FLAGS = {
    "f32": ("-O3", "-march=native", "-ffast-math", "-mrecip"),
    "f64": ("-O2", "-march=native", "-ffp-contract=off"),
}
_DEFINES = {"f32": ("FELIF_F32",), "f64": ()}
ENV_THREADS = "BRUNO_LAB_KERNEL_THREADS"
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def kernel(kind: str) -> ctypes.CDLL | None:
    """The loaded window kernel for ``"f32"`` or ``"f64"`` (built on first use), or None."""
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    args = [i64, i64, i64, i64, i64, ptr, ptr, ptr, ptr, i64, ctypes.c_double, ptr, ptr, ptr]
    signatures = {"felif_windows": (args, None)}
    return ckernel.load("felif_window.c", _FLAGS[kind], _DEFINES[kind], signatures)


def kernel_threads() -> int:
    """Threads the kernels split neurons over: ``$BRUNO_LAB_KERNEL_THREADS`` if set, else
    ``torch.get_num_threads()``. Set it apart to run torch's own (small) ops on one thread while
    the fine windows use every core: torch's intra-op threads cost more than they save on the
    small tensors of a network step."""
    raw = os.environ.get(ENV_THREADS)
    if raw:
        try:
            value = int(raw)
        except ValueError as exc:
            raise BadInputError(f"${ENV_THREADS} = {raw!r} is not an integer") from exc
        if value < 1:
            raise BadInputError(f"${ENV_THREADS} must be >= 1, got {value}")
        return value
    return torch.get_num_threads()


class Windows(NamedTuple):
    """What ``fine_windows`` returns: the state after the last window (frozen at a crossing,
    not reset), per window the spike micro-step (or -1) and, if recorded, the state at its end."""

    state: FeLIFState
    spike_step: Tensor
    voltage_v: Tensor | None
    polarization_c_m2: Tensor | None


def _torch_windows(
    current_a: Tensor,
    v: Tensor,
    pol: Tensor,
    params: FeLIFParams,
    n_steps: int,
    dt_s: float,
    record: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """Fallback: the reference Euler step, vectorized over neurons, window after window."""
    thr = params.v_thr_v.to(v.dtype)
    steps, vs, ps = [], [], []
    spiked = torch.zeros(v.shape, dtype=torch.bool, device=v.device)
    for t in range(current_a.shape[0]):
        v, pol = felif_reset(FeLIFState(v, pol), spiked, params)
        step = torch.where(v >= thr, 0, -1).to(torch.int64)
        spiked = step >= 0
        for k in range(n_steps):
            if k % 64 == 0 and bool(spiked.all()):
                break
            v_new, pol_new = felif_euler_step(current_a[t], FeLIFState(v, pol), params, dt_s)
            v = torch.where(spiked, v, v_new)
            pol = torch.where(spiked, pol, pol_new)
            now = (~spiked) & (v >= thr)
            step = torch.where(now, k, step)
            spiked = spiked | now
        steps.append(step)
        if record:
            vs.append(v)
            ps.append(pol)
    v_out = torch.stack(vs) if record else None
    p_out = torch.stack(ps) if record else None
    return v, pol, torch.stack(steps), v_out, p_out


@torch.no_grad()
def fine_windows(
    current_a: Tensor,
    state: tuple[Tensor, Tensor],
    params: FeLIFParams,
    n_steps: int,
    dt_s: float,
    record: bool = True,
) -> Windows:
    """``T = current_a.shape[0]`` windows of ``n_steps`` micro-steps of ``dt_s``, window ``t``
    holding ``current_a[t]`` (A); a neuron that spiked in a window is reset (V -> V_reset,
    P -> -P_s) at the start of the next. Within a window: as ``felif_reference_window`` (frozen
    from the crossing on). Shapes: ``current_a`` ``(T, ...)`` broadcast with the state and the
    parameters. The same numbers as ``T`` calls of ``fine_window`` with resets in between."""
    v0, p0 = state
    current_a = torch.as_tensor(current_a, dtype=v0.dtype, device=v0.device)
    if current_a.ndim < 1:
        raise BadInputError("fine_windows: current_a needs a leading window dim (T, ...)")
    shape = torch.broadcast_shapes(current_a.shape[1:], v0.shape, p0.shape, params.v_thr_v.shape)
    n_win = current_a.shape[0]
    cur = current_a.expand(n_win, *shape)
    v = v0.expand(shape).clone()
    pol = p0.expand(shape).clone()
    if v.dtype in (torch.float32, torch.float64) and v.device.type == "cpu":
        result = _run_kernel(cur, v, pol, params, n_steps, dt_s, shape, record)
        if result is not None:
            return result
    v, pol, step, v_out, p_out = _torch_windows(cur, v, pol, params, n_steps, dt_s, record)
    return Windows(FeLIFState(v, pol), step, v_out, p_out)


def fine_window(
    current_a: Tensor | float,
    state: tuple[Tensor, Tensor],
    params: FeLIFParams,
    n_steps: int,
    dt_s: float,
) -> tuple[FeLIFState, Tensor]:
    """Advance ``n_steps`` micro-steps of ``dt_s``; returns ((V, P), spike step or -1).

    The spike step is the 0-based micro-step after which V >= V_thr (0 if already there at entry);
    from then on V and P are frozen, exactly as in ``felif_reference_window``.
    """
    v0 = state[0]
    current_a = torch.as_tensor(current_a, dtype=v0.dtype, device=v0.device)
    out = fine_windows(current_a.unsqueeze(0), state, params, n_steps, dt_s, record=False)
    return out.state, out.spike_step[0]


def _run_kernel(
    cur: Tensor,
    v: Tensor,
    pol: Tensor,
    params: FeLIFParams,
    n_steps: int,
    dt_s: float,
    shape: torch.Size,
    record: bool,
) -> Windows | None:
    """Run the kernel on contiguous copies; None if no kernel is available."""
    lib = kernel("f32" if v.dtype == torch.float32 else "f64")
    if lib is None:
        return None
    n = v.numel()
    n_win = cur.shape[0]
    c, n_par = kernel_constant_rows(params, shape, v.dtype)
    cur_c = cur.reshape(n_win, n).contiguous()
    v_c = v.reshape(-1).contiguous()
    p_c = pol.reshape(-1).contiguous()
    step = torch.empty((n_win, n), dtype=torch.int32)
    v_out = torch.empty((n_win, n), dtype=v.dtype) if record else None
    p_out = torch.empty((n_win, n), dtype=v.dtype) if record else None
    args = (
        lib.felif_windows, n_par, n_win, n, cur_c, v_c, p_c, c, n_steps, dt_s, step, v_out, p_out
    )  # fmt: skip
    n_threads = max(1, min(kernel_threads(), n // 64))
    if n_threads == 1 or n == 0:
        _call(0, n, *args)
    else:
        # a few slices per thread, so a thread the OS descheduled does not hold up the rest
        n_chunks = min(4 * n_threads, max(n_threads, n // 512))
        bounds = [i * n // n_chunks for i in range(n_chunks)] + [n]
        pairs = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
        pool = _executor(n_threads)
        for f in [pool.submit(_call, a, b, *args) for a, b in pairs]:
            f.result()
    state = FeLIFState(v_c.reshape(shape), p_c.reshape(shape))
    step64 = step.to(torch.int64).reshape(n_win, *shape)
    if record:
        assert v_out is not None and p_out is not None
        return Windows(state, step64, v_out.reshape(n_win, *shape), p_out.reshape(n_win, *shape))
    return Windows(state, step64, None, None)


def _executor(n_threads: int) -> ThreadPoolExecutor:
    """One pool of worker threads per process (idle threads cost nothing; they end with it)."""
    global _pool
    with _lock:
        if _pool is None or _pool._max_workers < n_threads:
            _pool = ThreadPoolExecutor(n_threads, thread_name_prefix="felif-kernel")
        return _pool


def _call(
    a: int,
    b: int,
    fn: Callable[..., None],
    n_par: int,
    n_win: int,
    stride: int,
    cur: Tensor,
    v: Tensor,
    p: Tensor,
    c: Tensor,
    n_steps: int,
    dt_s: float,
    step: Tensor,
    v_out: Tensor | None,
    p_out: Tensor | None,
) -> None:
    """Neurons [a, b) of the flattened state (pointers offset; constants indexed globally)."""
    if b <= a:
        return
    isz = cur.element_size()

    def at(t: Tensor | None, size: int) -> int | None:
        return None if t is None else t.data_ptr() + a * size

    fn(
        b - a,
        a,
        n_par,
        n_win,
        stride,
        at(cur, isz),
        at(v, isz),
        at(p, isz),
        c.data_ptr(),
        n_steps,
        float(dt_s),
        at(step, 4),
        at(v_out, isz),
        at(p_out, isz),
    )
