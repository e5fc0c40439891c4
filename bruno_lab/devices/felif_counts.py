"""A FeLIF network step as the device runs it: reset at each crossing, spikes counted.

BRUNO's fine window (``felif.felif_fine_window``) freezes a neuron at V_thr and resets it at the
next 1 ms step: at most one spike per step, so under a strong input the trained network fires
slower than the device, which resets at the crossing and integrates on (the simulated lab:
``felif.felif_run_sequence``). :func:`step_counts` runs one window with the device's reset
after every micro-step and returns the spike count of each neuron, so a network can be trained
(``FeLIFLayer(reset="at-crossing")``) and evaluated with the device's spike counts.

The work is done by ``kernels/felif_counts.c`` (its Euler step is ``kernels/felif_step.h``, the
one C transcription of ``felif_core.felif_euler_step``), float32 with the window kernel's fast
math or float64 with libm; without a compiler the reference step is looped in torch (logged
once): slower, the same numbers to rounding. Tested against the plain
``felif_euler_step`` + ``felif_reset`` loop and ``felif_run_sequence``.
"""

from __future__ import annotations

import ctypes

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

_FLAGS = {
    "f32": ("-O3", "-march=native", "-ffast-math", "-mrecip"),
    "f64": ("-O2", "-march=native", "-ffp-contract=off"),
}
_DEFINES = {"f32": ("FELIF_F32",), "f64": ()}


def _kernel(kind: str) -> ctypes.CDLL | None:
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    args = [i64, i64, i64, ptr, ptr, ptr, ptr, i64, ctypes.c_double, ptr]
    signatures = {"felif_counts": (args, None)}
    return ckernel.load("felif_counts.c", _FLAGS[kind], _DEFINES[kind], signatures)


def _torch_counts(
    current_a: Tensor, v: Tensor, pol: Tensor, params: FeLIFParams, n_steps: int, dt_s: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Fallback: the reference step and reset, vectorized over neurons."""
    count = torch.zeros(v.shape, dtype=torch.int64)
    state = FeLIFState(v, pol)
    for _ in range(n_steps):
        state = felif_euler_step(current_a, state, params, dt_s)
        hit = state.voltage_v >= params.v_thr_v.to(v.dtype)
        count += hit.to(torch.int64)
        state = felif_reset(state, hit, params)
    return state.voltage_v, state.polarization_c_m2, count


@torch.no_grad()
def step_counts(
    current_a: Tensor,
    state: FeLIFState,
    params: FeLIFParams,
    n_steps: int = 1000,
    dt_s: float = 1e-6,
) -> tuple[Tensor, FeLIFState]:
    """``n_steps`` micro-steps of ``dt_s`` under ``current_a`` (A) held, with threshold and reset
    after each: (spike counts as int64, new state), shapes ``(..., n)`` (params per neuron
    ``(n,)``); float32 or float64, CPU."""
    v0, p0 = state
    current_a = torch.as_tensor(current_a, dtype=v0.dtype, device=v0.device)
    shape = torch.broadcast_shapes(current_a.shape, v0.shape, p0.shape, params.v_thr_v.shape)
    cur = current_a.expand(shape).reshape(-1).contiguous()
    v = v0.expand(shape).reshape(-1).clone().contiguous()
    pol = p0.expand(shape).reshape(-1).clone().contiguous()
    lib = None
    if v.dtype in (torch.float32, torch.float64) and v.device.type == "cpu":
        lib = _kernel("f32" if v.dtype == torch.float32 else "f64")
    if lib is None:
        vv, pp, count = _torch_counts(
            cur.reshape(shape), v.reshape(shape), pol.reshape(shape), params, n_steps, dt_s
        )
        return count, FeLIFState(vv, pp)
    c, n_par = kernel_constant_rows(params, shape, v.dtype)
    count = torch.empty(v.numel(), dtype=torch.int32)
    if v.numel():
        lib.felif_counts(
            v.numel(), 0, n_par, cur.data_ptr(), v.data_ptr(), pol.data_ptr(), c.data_ptr(),
            n_steps, float(dt_s), count.data_ptr(),
        )  # fmt: skip
    return count.to(torch.int64).reshape(shape), FeLIFState(v.reshape(shape), pol.reshape(shape))
