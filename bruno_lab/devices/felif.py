"""FeLIF neuron: a FeCap (HZO + interlayer) in parallel with a parasitic capacitance as membrane.

Equations (design, "Physics reference"; the FeCap terms are computed by ``fecap.py``)::

    Ctot*dV/dt = I_in - I_leak(V) - A*dP/dt          V clipped to [-5 V, 5 V]
    dP/dt      = (sign(E)*P_s - P)/tau(E)            P clipped to [-P_s, P_s]
    spike when V >= V_thr; then V -> V_reset (-1.5 V), P -> -P_s

One explicit Euler micro-step (``felif_euler_step``) is the reference. Discretisation choice: the
polarization current uses the *clipped* increment, ``I_p = A*(P_new - P)/dt``, so that
``Ctot*V + A*P`` is conserved exactly with no input and no leakage, even when a stiff step
overshoots ±P_s (with the unclipped ``A*dP/dt`` an overshoot dumps a non-physical charge on V).
For dt = 1 µs in the operating range the two forms agree (the clip is not reached).

BRUNO (``reference/bruno-method.md``): a network step of 1 ms is a *fine window* of 1000 micro-steps
of 1 µs with the input held, frozen once V >= V_thr (``felif_reference_window``; the fused fast
path ``felif_fine_window`` gives the same numbers), plus one differentiable *coarse* Euler step of
1 ms (``felif_coarse_step``) that carries the gradient. ``felif_simulate`` runs a spike train with
the reset applied at the coarse step after a spike (one step of refractoriness).

Shapes: state and input are ``(..., n_neurons)``; each parameter is ``(n_neurons,)`` (or
broadcastable), so a batch dim in front needs nothing special.
"""

# param_field() builds dataclasses.field(metadata=...) for the frozen parameter sets:
# ruff: noqa: RUF009
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import Tensor

from bruno_lab.devices import fecap
from bruno_lab.devices.params import DeviceParams, param_field

V_CLIP_V = 5.0
"""Membrane voltage clip of the design, V (keeps the stiff explicit step bounded)."""
VOLTAGE_CLIPS: tuple[str, ...] = ("hard", "straight-through")
"""How ``felif_euler_step`` clips V: value and gradient clipped, or value only."""


@dataclasses.dataclass(frozen=True)
class FeLIFParams(DeviceParams):
    """Per-neuron FeLIF parameters (tensors of shape ``(n,)``). Defaults: the design's."""

    area_m2: Tensor = param_field(25e-12, "m**2", 1e-16, 1e-6, "FeCap area")
    t_hzo_m: Tensor = param_field(10e-9, "m", 1e-9, 1e-7, "HZO (ferroelectric) thickness")
    t_int_m: Tensor = param_field(1.375e-9, "m", 0.0, 2e-8, "interlayer thickness")
    eps_hzo: Tensor = param_field(25.2, "", 1.0, 200.0, "relative permittivity of HZO")
    eps_int: Tensor = param_field(33.0, "", 1.0, 200.0, "relative permittivity of interlayer")
    e_a_v_m: Tensor = param_field(12.7e8, "V/m", 1e6, 1e11, "activation field")
    ps_c_m2: Tensor = param_field(0.22, "C/m**2", 1e-4, 2.0, "saturation polarization")
    tau0_s: Tensor = param_field(1e-13, "s", 1e-16, 1e-6, "switching time at infinite field")
    alpha: Tensor = param_field(1.3, "", 0.2, 10.0, "Merz-law exponent")
    soft_e_v_m: Tensor = param_field(5e-6, "V/m", 1e-12, 1e6, "field softening at E = 0")
    i0_a_m2: Tensor = param_field(1e-4, "A/m**2", 0.0, 1e6, "leakage saturation density")
    v_t_v: Tensor = param_field(0.32, "V", 0.01, 10.0, "leakage slope voltage")
    c_par_f: Tensor = param_field(15e-15, "F", 0.0, 1e-9, "parasitic capacitance")
    i_dsc_a: Tensor = param_field(10e-12, "A", 0.0, 1e-3, "constant discharge current")
    v_thr_v: Tensor = param_field(2.5, "V", 0.0, V_CLIP_V, "spike threshold")
    v_reset_v: Tensor = param_field(-1.5, "V", -V_CLIP_V, V_CLIP_V, "reset voltage after a spike")


class FeLIFState(NamedTuple):
    """What evolves per neuron: membrane (FeCap) voltage and ferroelectric polarization."""

    voltage_v: Tensor
    polarization_c_m2: Tensor


def felif_initial_state(
    params: FeLIFParams,
    shape: tuple[int, ...] | torch.Size,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> FeLIFState:
    """V = 0, P = -P_s (the later code of the paper), for a state of ``shape`` (..., n)."""
    ps = params.ps_c_m2
    dtype = dtype or ps.dtype
    device = device or ps.device
    v = torch.zeros(shape, dtype=dtype, device=device)
    pol = (-ps.to(dtype=dtype, device=device)).expand(shape).clone()
    return FeLIFState(v, pol)


def felif_euler_step(
    current_a: Tensor,
    state: FeLIFState,
    params: FeLIFParams,
    dt_s: float,
    *,
    voltage_clip: str = "hard",
) -> FeLIFState:
    """One explicit Euler step of ``dt_s`` seconds under input ``current_a`` (A); clips kept.

    Differentiable in the input, the state and the parameters. No threshold or reset here.
    ``voltage_clip``: ``hard`` (the value and its zero gradient beyond ±5 V) or
    ``straight-through`` (the same clipped value; the gradient of the unclipped step).
    """
    v, pol = state
    field = fecap.ferroelectric_field_v_m(v, pol, params)
    dp_dt = fecap.polarization_rate_c_m2_s(field, pol, params)
    ps = params.ps_c_m2
    pol_new = torch.minimum(torch.maximum(pol + dt_s * dp_dt, -ps), ps)
    i_p = params.area_m2 * (pol_new - pol) / dt_s
    i_net = current_a - fecap.leakage_current_a(v, params) - i_p
    v_raw = v + dt_s * i_net / fecap.linear_capacitance_f(params)
    v_new = v_raw.clamp(-V_CLIP_V, V_CLIP_V)
    if voltage_clip == "straight-through":
        v_new = v_raw + (v_new - v_raw).detach()
    elif voltage_clip != "hard":
        raise ValueError(f"voltage_clip {voltage_clip!r}: allowed {VOLTAGE_CLIPS}")
    return FeLIFState(v_new, pol_new)


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
    from bruno_lab.devices import felif_fast

    new_state, spike_step = felif_fast.fine_window(current_a, state, params, n_steps, dt_s)
    return new_state, spike_step >= 0


def felif_reset(state: FeLIFState, spiked: Tensor, params: FeLIFParams) -> FeLIFState:
    """After a spike: V -> V_reset, P -> -P_s (no gradient through the spike mask)."""
    spiked = spiked.detach().bool()
    v = torch.where(spiked, params.v_reset_v.to(state.voltage_v.dtype), state.voltage_v)
    pol = torch.where(spiked, -params.ps_c_m2.to(state.voltage_v.dtype), state.polarization_c_m2)
    return FeLIFState(v, pol)


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
    from bruno_lab.devices import felif_fast

    if state is None:
        state = felif_initial_state(params, current_a.shape[1:], current_a.dtype)
    out = torch.full(current_a.shape, -1, dtype=torch.int64, device=current_a.device)
    spiked = torch.zeros(current_a.shape[1:], dtype=torch.bool, device=current_a.device)
    micro_dt = dt_s / n_micro
    for t in range(current_a.shape[0]):
        state = felif_reset(state, spiked, params)
        state, step = felif_fast.fine_window(current_a[t], state, params, n_micro, micro_dt)
        spiked = step >= 0
        out[t] = step
    return out


def spike_times_s(micro_steps: Tensor, dt_s: float, n_micro: int) -> list[list[float]]:
    """Spike times (s) per neuron from ``spike_micro_steps``' output ``[T, n]``."""
    t_idx, n_idx = torch.nonzero(micro_steps >= 0, as_tuple=True)
    per = [[] for _ in range(micro_steps.shape[1])]
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
    **options: object,
) -> object:
    """Neurons under a piecewise-constant input: segment ``s`` holds ``current_a[s]`` (A, per
    neuron ``(S, n)`` or shared ``(S,)``) for ``n_steps[s]`` Euler micro-steps of ``dt_s[s]``,
    with threshold and immediate reset after every micro-step (the ``felif_euler_step`` +
    ``felif_reset`` loop), float64, C kernel. Returns a ``felif_sequence.SequenceResult`` (final
    state, interpolated spike times and steps, optional per-segment trace); ``options``: see
    ``felif_sequence.run_sequence`` (``record``, ``reset_at_crossing``, ``max_spikes``, ...)."""
    from bruno_lab.devices import felif_sequence

    if state is None:
        state = felif_initial_state(params, (params.v_thr_v.shape[-1],), torch.float64)
    return felif_sequence.run_sequence(current_a, dt_s, n_steps, params, state, **options)
