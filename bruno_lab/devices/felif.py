"""FeLIF neuron: the public face of the model (windows, coarse step, spike trains, sequences).

The parameters, state, reference Euler micro-step and reset live in the leaf ``felif_core``
(imported here, so ``felif.FeLIFParams`` etc. are the same objects); the equations are in its
docstring and, for the FeCap terms, in ``fecap``.

BRUNO (``reference/bruno-method.md``): a network step of 1 ms is a *fine window* of 1000 micro-steps
of 1 µs with the input held, frozen once V >= V_thr (``felif_reference_window``; the fused fast
path ``felif_fine_window`` gives the same numbers), plus one differentiable *coarse* Euler step of
1 ms (``felif_coarse_step``) that carries the gradient. ``felif_simulate`` runs a spike train with
the reset applied at the coarse step after a spike (one step of refractoriness);
``felif_run_sequence`` resets at once (the device on a bench).

Shapes: state and input are ``(..., n_neurons)``; each parameter is ``(n_neurons,)`` (or
broadcastable), so a batch dim in front needs nothing special.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bruno_lab.devices import felif_fast, felif_sequence
from bruno_lab.devices.felif_core import (
    V_CLIP_V,
    VOLTAGE_CLIPS,
    FeLIFParams,
    FeLIFState,
    felif_euler_step,
    felif_initial_state,
    felif_reset,
)
from bruno_lab.devices.felif_sequence import SequenceResult

__all__ = [
    "VOLTAGE_CLIPS",
    "V_CLIP_V",
    "FeLIFParams",
    "FeLIFState",
    "SequenceResult",
    "felif_coarse_step",
    "felif_euler_step",
    "felif_fine_window",
    "felif_fine_windows",
    "felif_initial_state",
    "felif_reference_window",
    "felif_reset",
    "felif_run_sequence",
    "felif_simulate",
    "spike_micro_steps",
    "spike_times_s",
]


def felif_coarse_step(
    current_a: Tensor,
    state: FeLIFState,
    params: FeLIFParams,
    dt_s: float = 1e-3,
    *,
    voltage_clip: str = "hard",
) -> FeLIFState:
    """One differentiable Euler step of the same equations over a whole network step (BRUNO's
    gradient path; its value is replaced by the fine window's in the straight-through merge).
    One 1 ms step moves V by ~1.75 V per nA, so the hard clip zeroes the gradient of every step
    driven by more than a few nA: BRUNO uses ``voltage_clip="straight-through"``."""
    return felif_euler_step(current_a, state, params, dt_s, voltage_clip=voltage_clip)


@torch.no_grad()
def felif_reference_window(
    current_a: Tensor,
    state: FeLIFState,
    params: FeLIFParams,
    n_steps: int = 1000,
    dt_s: float = 1e-6,
) -> tuple[FeLIFState, Tensor]:
    """``n_steps`` Euler micro-steps with the input held; a neuron's V and P are frozen from the
    micro-step at which V >= V_thr. Returns (state, spiked bool). The plain loop: the reference
    every faster path is tested against."""
    current_a = torch.as_tensor(current_a, dtype=state.voltage_v.dtype)
    shape = torch.broadcast_shapes(current_a.shape, state.voltage_v.shape)
    v = state.voltage_v.expand(shape).clone()
    pol = state.polarization_c_m2.expand(shape).clone()
    spiked = v >= params.v_thr_v
    for _ in range(n_steps):
        v_new, pol_new = felif_euler_step(current_a, FeLIFState(v, pol), params, dt_s)
        v = torch.where(spiked, v, v_new)
        pol = torch.where(spiked, pol, pol_new)
        spiked = spiked | (v >= params.v_thr_v)
    return FeLIFState(v, pol), spiked


def felif_fine_window(
    current_a: Tensor,
    state: FeLIFState,
    params: FeLIFParams,
    n_steps: int = 1000,
    dt_s: float = 1e-6,
) -> tuple[FeLIFState, Tensor]:
    """The fused fast path of ``felif_reference_window`` (no autograd; float32 or float64; any
    batch shape ``(..., n)``). Tolerance against the reference: see ``felif_fast``."""
    new_state, spike_step = felif_fast.fine_window(current_a, state, params, n_steps, dt_s)
    return new_state, spike_step >= 0


@torch.no_grad()
def felif_simulate(
    current_a: Tensor,
    params: FeLIFParams,
    dt_s: float = 1e-3,
    n_micro: int = 1000,
    state: FeLIFState | None = None,
) -> Tensor:
    """Spike trains (float 0/1, shape ``[T, ..., n]``) for inputs ``current_a [T, ..., n]`` (A)
    held over each coarse step of ``dt_s``; a neuron that spiked is reset at the next step."""
    times = spike_micro_steps(current_a, params, dt_s, n_micro, state)
    return (times >= 0).to(current_a.dtype)


@torch.no_grad()
def spike_micro_steps(
    current_a: Tensor,
    params: FeLIFParams,
    dt_s: float = 1e-3,
    n_micro: int = 1000,
    state: FeLIFState | None = None,
) -> Tensor:
    """Like ``felif_simulate`` but returns, per coarse step, the index (0-based) of the micro-step
    whose end V crossed V_thr, or -1: spike time = (t*n_micro + index + 1)*dt_s/n_micro."""
    if state is None:
        state = felif_initial_state(params, current_a.shape[1:], current_a.dtype)
    out = felif_fast.fine_windows(current_a, state, params, n_micro, dt_s / n_micro, record=False)
    return out.spike_step


def felif_fine_windows(
    current_a: Tensor,
    state: FeLIFState,
    params: FeLIFParams,
    n_steps: int = 1000,
    dt_s: float = 1e-6,
) -> tuple[FeLIFState, Tensor, FeLIFState]:
    """BRUNO's fine forward of a whole sequence in one call: ``T`` windows (``current_a`` is
    ``(T, ..., n)``, held over each), a neuron that spiked reset at the start of the next window.
    Returns (the state at the end of every window ``(T, ..., n)``, frozen at a crossing; spiked
    ``(T, ..., n)`` bool; the state after the last window). The same numbers as ``T`` calls of
    ``felif_fine_window`` with ``felif_reset`` in between, without the per-step round trips."""
    out = felif_fast.fine_windows(current_a, state, params, n_steps, dt_s, record=True)
    assert out.voltage_v is not None and out.polarization_c_m2 is not None
    return FeLIFState(out.voltage_v, out.polarization_c_m2), out.spike_step >= 0, out.state


def spike_times_s(micro_steps: Tensor, dt_s: float, n_micro: int) -> list[list[float]]:
    """Spike times (s) per neuron from ``spike_micro_steps``' output ``[T, n]``."""
    t_idx, n_idx = torch.nonzero(micro_steps >= 0, as_tuple=True)
    per: list[list[float]] = [[] for _ in range(micro_steps.shape[1])]
    micro_dt = dt_s / n_micro
    for t, i in zip(t_idx.tolist(), n_idx.tolist(), strict=True):
        per[i].append((t * n_micro + int(micro_steps[t, i]) + 1) * micro_dt)
    return per


def felif_run_sequence(
    current_a: Tensor,
    dt_s: Tensor,
    n_steps: Tensor,
    params: FeLIFParams,
    state: FeLIFState | None = None,
    **options: Any,
) -> SequenceResult:
    """Neurons under a piecewise-constant input: segment ``s`` holds ``current_a[s]`` (A, per
    neuron ``(S, n)`` or shared ``(S,)``) for ``n_steps[s]`` Euler micro-steps of ``dt_s[s]``,
    with threshold and immediate reset after every micro-step (the ``felif_euler_step`` +
    ``felif_reset`` loop), float64, C kernel. Returns a ``SequenceResult`` (final
    state, interpolated spike times and steps, optional per-segment trace); ``options``: see
    ``felif_sequence.run_sequence`` (``record``, ``reset_at_crossing``, ``max_spikes``, ...)."""
    if state is None:
        state = felif_initial_state(params, (params.v_thr_v.shape[-1],), torch.float64)
    return felif_sequence.run_sequence(current_a, dt_s, n_steps, params, state, **options)
