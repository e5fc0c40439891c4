"""The fused fine-window kernel behind ``felif.felif_fine_window`` (no autograd).

Chosen path (measured against numpy, eager torch and torch.compile; see
``benchmarks/felif_fine_forward.py``): a C kernel (source in ``felif_ccall.py``) compiled once with
gcc into a per-user cache dir and loaded through ctypes; the neurons are split into
``torch.get_num_threads()`` ranges run by a persistent pool of Python threads (ctypes releases the
GIL). Inside, blocks of 128 neurons advance together through the micro-steps so that gcc
vectorizes the block with AVX2/FMA (the time loop is inside, the state stays in L1); a block stops
as soon as all its neurons have spiked. The one-time build costs about a second of gcc; later
processes load the cached ``.so``.

* float64: libm ``exp``/``log``/``expm1``; agrees with the torch reference loop to rounding.
* float32: polynomial ``exp2``/``log2`` approximations (relative error below 1e-8 and absolute
  below 2e-8 before float32 rounding, i.e. within a few ulps). Tested tolerance against the
  float64 reference loop: the same neurons spike, at the same micro-step within ±2 steps, over
  several windows with resets; V within 2e-3 V and P within 1e-4 C/m² after a window.

If the kernel cannot be built (no gcc, compile error) a vectorized torch loop is used instead, with
one logged warning: slower, never different numbers (it is the reference step, run under no_grad).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from bruno_lab.devices import fecap

log = logging.getLogger(__name__)


def _torch_window(
    current_a: Tensor, v: Tensor, pol: Tensor, params: object, n_steps: int, dt_s: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Fallback: the reference Euler step, vectorized over neurons, recording the spike step."""
    from bruno_lab.devices.felif import FeLIFState, felif_euler_step

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
    params: object,
    n_steps: int,
    dt_s: float,
) -> tuple[tuple[Tensor, Tensor], Tensor]:
    """Advance ``n_steps`` micro-steps of ``dt_s``; returns ((V, P), spike step or -1).

    The spike step is the 0-based micro-step after which V >= V_thr (0 if already there at entry);
    from then on V and P are frozen, exactly as in ``felif_reference_window``.
    """
    from bruno_lab.devices.felif import FeLIFState

    v0, p0 = state
    current_a = torch.as_tensor(current_a, dtype=v0.dtype, device=v0.device)
    shape = torch.broadcast_shapes(current_a.shape, v0.shape, p0.shape, params.v_thr_v.shape)
    cur = current_a.expand(shape)
    v = v0.expand(shape).clone()
    pol = p0.expand(shape).clone()
    if v.dtype in (torch.float32, torch.float64) and v.device.type == "cpu":
        from bruno_lab.devices import felif_ccall

        result = felif_ccall.run(cur, v, pol, params, n_steps, dt_s, shape)
        if result is not None:
            v, pol, step = result
            return FeLIFState(v, pol), step
    v, pol, step = _torch_window(cur, v, pol, params, n_steps, dt_s)
    return FeLIFState(v, pol), step


def kernel_constant_rows(
    params: object, shape: torch.Size, dtype: torch.dtype
) -> tuple[Tensor, int]:
    """The constants as one contiguous ``[13, n_par]`` block for the kernel, which reads neuron
    ``g`` of the flattened state from column ``g % n_par``: ``n_par`` is the neuron count when
    every parameter is per-neuron ``(n,)`` (or scalar), else the whole state is expanded."""
    raw = _raw_constants(params)
    n_last = shape[-1] if len(shape) else 1
    per_neuron = all(t.ndim <= 1 and t.numel() in (1, n_last) for t in raw.values())
    if per_neuron:
        rows = [t.to(dtype).reshape(-1).expand(n_last) for t in raw.values()]
        return torch.stack(rows).contiguous(), n_last
    full = kernel_constants(params, shape, dtype)
    return torch.stack([t.reshape(-1) for t in full.values()]).contiguous(), int(shape.numel())


def kernel_constants(params: object, shape: torch.Size, dtype: torch.dtype) -> dict[str, Tensor]:
    """Per-neuron constants of the fused step, expanded to ``shape`` and contiguous."""
    return {k: t.to(dtype).expand(shape).contiguous() for k, t in _raw_constants(params).items()}


def _raw_constants(params: object) -> dict[str, Tensor]:
    """Computed by the same ``fecap`` functions the reference calls (no equation restated)."""
    k_c, k_d = fecap.field_coefficients(params)
    ctot = fecap.linear_capacitance_f(params)
    return {
        "k_c": k_c,
        "k_d": k_d,
        "e_a": params.e_a_v_m,
        "soft_e": params.soft_e_v_m,
        "alpha": params.alpha,
        "tau0": params.tau0_s,
        "ps": params.ps_c_m2,
        "area": params.area_m2,
        "i0a": params.i0_a_m2 * params.area_m2,
        "v_t": params.v_t_v,
        "i_dsc": params.i_dsc_a,
        "ctot": ctot,
        "v_thr": params.v_thr_v,
    }
