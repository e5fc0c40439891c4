"""The FeLIF neuron's leaf: parameters, state, the reference Euler micro-step and the reset.

Everything else about the neuron builds on this module (``felif`` for the windows, coarse step
and simulations, ``felif_fast`` and ``felif_sequence`` for the C kernels); it imports only the
FeCap physics (``fecap``) and the parameter machinery (``params``).

The membrane is a FeCap (HZO + interlayer) in parallel with a parasitic capacitance, so
``FeLIFParams`` *composes* a ``FeCapParams`` (field ``fecap``) and adds what makes it a neuron
(threshold and reset voltage). The FeCap fields a neuron card carries keep their names in the
flat namespace (``params.area_m2`` is ``params.fecap.area_m2``); the capacitor's imprint and
multi-domain spread are not part of the lumped neuron (they stay at their defaults, 0 V and
unused).

Equations (design, "Physics reference"; the FeCap terms are computed by ``fecap``)::

    Ctot*dV/dt = I_in - I_leak(V) - A*dP/dt          V clipped to [-5 V, 5 V]
    dP/dt      = (sign(E)*P_s - P)/tau(E)            P clipped to [-P_s, P_s]
    spike when V >= V_thr; then V -> V_reset (-1.5 V), P -> -P_s

Discretisation choice: the polarization current uses the *clipped* increment,
``I_p = A*(P_new - P)/dt``, so that ``Ctot*V + A*P`` is conserved exactly with no input and no
leakage, even when a stiff step overshoots ±P_s (with the unclipped ``A*dP/dt`` an overshoot
dumps a non-physical charge on V). For dt = 1 µs in the operating range the two forms agree.
"""

# param_field() builds dataclasses.field(metadata=...) for the frozen parameter sets:
# ruff: noqa: RUF009
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import Tensor

from bruno_lab.devices import fecap
from bruno_lab.devices.fecap import FeCapParams
from bruno_lab.devices.params import DeviceParams, component_field, param_field

V_CLIP_V = 5.0
"""Membrane voltage clip of the design, V (keeps the stiff explicit step bounded)."""
VOLTAGE_CLIPS: tuple[str, ...] = ("hard", "straight-through")
"""How ``felif_euler_step`` clips V: value and gradient clipped, or value only."""

NEURON_FECAP_FIELDS: tuple[str, ...] = (
    "area_m2",
    "t_hzo_m",
    "t_int_m",
    "eps_hzo",
    "eps_int",
    "e_a_v_m",
    "ps_c_m2",
    "tau0_s",
    "alpha",
    "soft_e_v_m",
    "i0_a_m2",
    "v_t_v",
    "c_par_f",
    "i_dsc_a",
)
"""The FeCap parameters of the lumped neuron (a FeLIF card's FeCap part, as in FeCapParams)."""


@dataclasses.dataclass(frozen=True, init=False)
class FeLIFParams(DeviceParams):
    """Per-neuron FeLIF parameters (tensors of shape ``(n,)``): the membrane's FeCap and the
    spike threshold and reset. Defaults: the design's. Built flat, ``FeLIFParams(area_m2=...,
    ..., v_reset_v=...)``, or from a capacitor, ``FeLIFParams(fecap=cap, v_thr_v=...,
    v_reset_v=...)``."""

    fecap: FeCapParams = component_field(FeCapParams, NEURON_FECAP_FIELDS)
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
    dt_s: float | Tensor,
    *,
    voltage_clip: str = "hard",
) -> FeLIFState:
    """One explicit Euler step of ``dt_s`` seconds under input ``current_a`` (A); clips kept.

    Differentiable in the input, the state and the parameters. No threshold or reset here.
    ``voltage_clip``: ``hard`` (the value and its zero gradient beyond ±5 V) or
    ``straight-through`` (the same clipped value; the gradient of the unclipped step).
    The C kernels (``kernels/felif_step.h``) transcribe exactly this function's values.
    """
    v, pol = state
    cap = params.fecap
    field = fecap.ferroelectric_field_v_m(v, pol, cap)
    dp_dt = fecap.polarization_rate_c_m2_s(field, pol, cap)
    ps = cap.ps_c_m2
    pol_new = torch.minimum(torch.maximum(pol + dt_s * dp_dt, -ps), ps)
    i_p = cap.area_m2 * (pol_new - pol) / dt_s
    i_net = current_a - fecap.leakage_current_a(v, cap) - i_p
    v_raw = v + dt_s * i_net / fecap.linear_capacitance_f(cap)
    v_new = v_raw.clamp(-V_CLIP_V, V_CLIP_V)
    if voltage_clip == "straight-through":
        v_new = v_raw + (v_new - v_raw).detach()
    elif voltage_clip != "hard":
        raise ValueError(f"voltage_clip {voltage_clip!r}: allowed {VOLTAGE_CLIPS}")
    return FeLIFState(v_new, pol_new)


def felif_reset(state: FeLIFState, spiked: Tensor, params: FeLIFParams) -> FeLIFState:
    """After a spike: V -> V_reset, P -> -P_s (no gradient through the spike mask)."""
    spiked = spiked.detach().bool()
    v = torch.where(spiked, params.v_reset_v.to(state.voltage_v.dtype), state.voltage_v)
    pol = torch.where(spiked, -params.ps_c_m2.to(state.voltage_v.dtype), state.polarization_c_m2)
    return FeLIFState(v, pol)


def kernel_constants(params: FeLIFParams) -> dict[str, Tensor]:
    """The per-neuron constants of the C kernels' Euler step, in the kernels' row order, computed
    by the same ``fecap`` functions the torch step calls (no equation restated)."""
    cap = params.fecap
    k_c, k_d = fecap.field_coefficients(cap)
    return {
        "k_c": k_c,
        "k_d": k_d,
        "e_a": cap.e_a_v_m,
        "soft_e": cap.soft_e_v_m,
        "alpha": cap.alpha,
        "tau0": cap.tau0_s,
        "ps": cap.ps_c_m2,
        "area": cap.area_m2,
        "i0a": cap.i0_a_m2 * cap.area_m2,
        "v_t": cap.v_t_v,
        "i_dsc": cap.i_dsc_a,
        "ctot": fecap.linear_capacitance_f(cap),
        "v_thr": params.v_thr_v,
        "v_reset": params.v_reset_v,
    }


def kernel_constant_rows(
    params: FeLIFParams, shape: torch.Size, dtype: torch.dtype
) -> tuple[Tensor, int]:
    """The constants as one contiguous ``[14, n_par]`` block for the kernels, which read neuron
    ``g`` of the flattened state from column ``g % n_par``: ``n_par`` is the neuron count when
    every parameter is per-neuron ``(n,)`` (or scalar), else the whole state is expanded."""
    raw = kernel_constants(params)
    n_last = shape[-1] if len(shape) else 1
    if all(t.ndim <= 1 and t.numel() in (1, n_last) for t in raw.values()):
        rows = [t.to(dtype).reshape(-1).expand(n_last) for t in raw.values()]
        return torch.stack(rows).contiguous(), n_last
    rows = [t.to(dtype).expand(shape).reshape(-1) for t in raw.values()]
    return torch.stack(rows).contiguous(), int(shape.numel())
