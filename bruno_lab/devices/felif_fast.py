"""The fused fine-window kernel behind ``felif.felif_fine_window`` (no autograd).

Chosen path (measured against numpy, eager torch and torch.compile; see
``benchmarks/felif_fine_forward.py``): the C kernel ``kernels/felif_window.c`` (its Euler step is
``kernels/felif_step.h``, the one C transcription of ``felif_core.felif_euler_step``), built once
per precision by ``ckernel`` and loaded through ctypes; the neurons are split into
``torch.get_num_threads()`` ranges run by a persistent pool of Python threads (ctypes releases
the GIL). Inside, blocks of 128 neurons advance together through the micro-steps so that gcc
vectorizes the block with AVX2/FMA; a block stops as soon as all its neurons have spiked.

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
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

from bruno_lab.devices import ckernel
from bruno_lab.devices.felif_core import (
    FeLIFParams,
    FeLIFState,
    felif_euler_step,
    kernel_constant_rows,
)

_FLAGS = {
    "f32": ("-O3", "-march=native", "-ffast-math", "-mrecip"),
    "f64": ("-O2", "-march=native", "-ffp-contract=off"),
}
_DEFINES = {"f32": ("FELIF_F32",), "f64": ()}
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def kernel(kind: str) -> ctypes.CDLL | None:
    """The loaded window kernel for ``"f32"`` or ``"f64"`` (built on first use), or None."""
    lib = ckernel.load("felif_window.c", _FLAGS[kind], _DEFINES[kind])
    if lib is not None and not getattr(lib, "_bruno_typed", False):
        ptr, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.felif_window.argtypes = [i64, i64, i64, ptr, ptr, ptr, ptr, i64, ctypes.c_double, ptr]
        lib.felif_window.restype = None
        lib._bruno_typed = True
    return lib


def _torch_window(
    current_a: Tensor, v: Tensor, pol: Tensor, params: FeLIFParams, n_steps: int, dt_s: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Fallback: the reference Euler step, vectorized over neurons, recording the spike step."""
    thr = params.v_thr_v.to(v.dtype)
    step = torch.where(v >= thr, 0, -1).to(torch.int64)
    spiked = step >= 0
    for k in range(n_steps):
        v_new, pol_new = felif_euler_step(current_a, FeLIFState(v, pol), params, dt_s)
        v = torch.where(spiked, v, v_new)
        pol = torch.where(spiked, pol, pol_new)
        now = (~spiked) & (v >= thr)
        step = torch.where(now, k, step)
        spiked = spiked | now
        if k % 64 == 63 and bool(spiked.all()):
            break
    return v, pol, step


@torch.no_grad()
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
    v0, p0 = state
    current_a = torch.as_tensor(current_a, dtype=v0.dtype, device=v0.device)
    shape = torch.broadcast_shapes(current_a.shape, v0.shape, p0.shape, params.v_thr_v.shape)
    cur = current_a.expand(shape)
    v = v0.expand(shape).clone()
    pol = p0.expand(shape).clone()
    if v.dtype in (torch.float32, torch.float64) and v.device.type == "cpu":
        result = _run_kernel(cur, v, pol, params, n_steps, dt_s, shape)
        if result is not None:
            v, pol, step = result
            return FeLIFState(v, pol), step
    v, pol, step = _torch_window(cur, v, pol, params, n_steps, dt_s)
    return FeLIFState(v, pol), step


def _run_kernel(
    cur: Tensor,
    v: Tensor,
    pol: Tensor,
    params: FeLIFParams,
    n_steps: int,
    dt_s: float,
    shape: torch.Size,
) -> tuple[Tensor, Tensor, Tensor] | None:
    """Run the kernel in place on contiguous copies; None if no kernel is available."""
    lib = kernel("f32" if v.dtype == torch.float32 else "f64")
    if lib is None:
        return None
    n = v.numel()
    c, n_par = kernel_constant_rows(params, shape, v.dtype)
    cur_c = cur.reshape(-1).contiguous()
    v_c = v.reshape(-1).contiguous()
    p_c = pol.reshape(-1).contiguous()
    step = torch.empty(n, dtype=torch.int32)
    args = (lib.felif_window, n_par, cur_c, v_c, p_c, c, n_steps, dt_s, step)
    n_threads = max(1, min(torch.get_num_threads(), n // 256))
    if n_threads == 1 or n == 0:
        _call(0, n, *args)
    else:
        # a few chunks per thread, so a thread the OS descheduled does not hold up the window
        n_chunks = max(n_threads, min(4 * n_threads, n // 2048))
        bounds = [(i * n // n_chunks) // 128 * 128 for i in range(n_chunks)] + [n]
        pairs = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
        pool = _executor(n_threads)
        for f in [pool.submit(_call, a, b, *args) for a, b in pairs]:
            f.result()
    return v_c.reshape(shape), p_c.reshape(shape), step.to(torch.int64).reshape(shape)


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
    fn: ctypes._CFuncPtr,
    n_par: int,
    cur: Tensor,
    v: Tensor,
    p: Tensor,
    c: Tensor,
    n_steps: int,
    dt_s: float,
    step: Tensor,
) -> None:
    """Neurons [a, b) of the flattened state (pointers offset; constants indexed globally)."""
    if b <= a:
        return
    isz = cur.element_size()
    fn(
        b - a,
        a,
        n_par,
        cur.data_ptr() + a * isz,
        v.data_ptr() + a * isz,
        p.data_ptr() + a * isz,
        c.data_ptr(),
        n_steps,
        float(dt_s),
        step.data_ptr() + a * 4,
    )
