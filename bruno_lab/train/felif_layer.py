"""A FeLIF layer trained with BRUNO, or with full / checkpointed BPTT through every micro-step.

The neuron's equations live in ``bruno_lab.devices.felif``; this module only composes them.
One network step of ``step_s`` (1 ms) under an input current held over the step:

* ``bruno``: the fine forward (``felif_fine_window``: ``n_micro`` Euler micro-steps, no graph,
  V and P frozen once V >= V_thr), one differentiable coarse step (``felif_coarse_step``), and the
  straight-through merge ``x = x_coarse + stopgrad(x_fine - x_coarse)``: the value is the fine
  one, the gradient the coarse step's. The graph holds one node per network step.
* ``bptt``: the same micro-steps (``felif_euler_step``) with autograd through all of them.
* ``bptt-ckpt``: as ``bptt`` with each network step's window recomputed in the backward pass
  (``torch.utils.checkpoint``): only the window boundaries are kept.

In every method the spike is ``H(V - V_thr)`` with the SuperSpike surrogate, and the reset
(V -> V_reset, P -> -P_s, ``felif_reset``) happens at the start of the next step from the
previous step's spike with the gradient stopped through the spike mask.

Input: network units times ``input_scale_a`` amperes (the paper's unit scaling S: a network
value of 1 is ``input_scale_a`` A, 1/S).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from bruno_lab.devices.felif import (
    FeLIFParams,
    FeLIFState,
    felif_coarse_step,
    felif_euler_step,
    felif_fine_window,
    felif_initial_state,
    felif_reset,
)
from bruno_lab.devices.params import sample_population
from bruno_lab.errors import BadInputError
from bruno_lab.train.surrogate import superspike

Method = Literal["bruno", "bptt", "bptt-ckpt"]
METHODS: tuple[str, ...] = ("bruno", "bptt", "bptt-ckpt")


def bruno_step(
    current_a: Tensor, state: FeLIFState, params: FeLIFParams, step_s: float, n_micro: int
) -> tuple[Tensor, FeLIFState]:
    """One BRUNO network step: (spikes, state) with fine values and coarse-step gradients."""
    with torch.no_grad():
        detached = FeLIFState(state.voltage_v.detach(), state.polarization_c_m2.detach())
        fine, _ = felif_fine_window(current_a.detach(), detached, params, n_micro, step_s / n_micro)
    coarse = felif_coarse_step(current_a, state, params, step_s)
    v = coarse.voltage_v + (fine.voltage_v - coarse.voltage_v).detach()
    pol = coarse.polarization_c_m2 + (fine.polarization_c_m2 - coarse.polarization_c_m2).detach()
    return superspike(v - params.v_thr_v), FeLIFState(v, pol)


def fine_window_autograd(
    current_a: Tensor,
    voltage_v: Tensor,
    polarization_c_m2: Tensor,
    params: FeLIFParams,
    n_micro: int,
    dt_s: float,
) -> tuple[Tensor, Tensor]:
    """``n_micro`` differentiable Euler micro-steps, frozen from V >= V_thr on: (V, P)."""
    thr = params.v_thr_v
    v, pol = voltage_v, polarization_c_m2
    frozen = (v >= thr).detach()
    for _ in range(n_micro):
        v_new, pol_new = felif_euler_step(current_a, FeLIFState(v, pol), params, dt_s)
        v = torch.where(frozen, v, v_new)
        pol = torch.where(frozen, pol, pol_new)
        frozen = frozen | (v >= thr).detach()
    return v, pol


def bptt_step(
    current_a: Tensor,
    state: FeLIFState,
    params: FeLIFParams,
    step_s: float,
    n_micro: int,
    checkpointed: bool = False,
) -> tuple[Tensor, FeLIFState]:
    """One network step with autograd through every micro-step (optionally checkpointed)."""
    args = (current_a, state.voltage_v, state.polarization_c_m2)
    dt = step_s / n_micro

    def window(i: Tensor, v: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        return fine_window_autograd(i, v, p, params, n_micro, dt)

    if checkpointed:
        v, pol = checkpoint(window, *args, use_reentrant=False)
    else:
        v, pol = window(*args)
    return superspike(v - params.v_thr_v), FeLIFState(v, pol)


def felif_params_from_cards(
    n: int,
    means: Mapping[str, float] | None,
    sigma_rel: Mapping[str, float] | None,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> FeLIFParams:
    """``n`` neurons: the card's means (defaults where absent) with its device-to-device spread."""
    mean = FeLIFParams.from_json(dict(means or {}), n=1, dtype=torch.float64, where="FeLIF card")
    pop = sample_population(mean, dict(sigma_rel or {}), n, generator)
    return pop.to(dtype=dtype)


class FeLIFLayer(nn.Module):
    """FeLIF neurons over a sequence of input currents (T, B, n) in network units."""

    def __init__(
        self,
        params: FeLIFParams,
        *,
        method: str = "bruno",
        step_s: float = 1e-3,
        n_micro: int = 1000,
        input_scale_a: float = 1e-8,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise BadInputError(f"method {method!r}: allowed {', '.join(METHODS)}")
        if n_micro < 1:
            raise BadInputError(f"n_micro must be >= 1, got {n_micro}")
        self.method, self.step_s, self.n_micro = method, step_s, n_micro
        self.input_scale_a = input_scale_a
        self.n = params.n_devices
        self._names = list(FeLIFParams.specs())
        for name in self._names:  # device parameters: state, never trained
            self.register_buffer(f"p_{name}", getattr(params, name).detach().clone())

    def params(self) -> FeLIFParams:
        return FeLIFParams(**{name: getattr(self, f"p_{name}") for name in self._names})

    def forward(self, x: Tensor) -> Tensor:
        """Spikes (T, B, n) for input (T, B, n) in network units (times ``input_scale_a`` A)."""
        p = self.params()
        state = felif_initial_state(p, x.shape[1:], dtype=x.dtype)
        spike = torch.zeros_like(state.voltage_v)
        out = []
        for t in range(x.shape[0]):
            state = felif_reset(state, spike, p)
            current_a = x[t] * self.input_scale_a
            if self.method == "bruno" or not torch.is_grad_enabled():
                # without a graph every method has the same values: use the fast path
                spike, state = bruno_step(current_a, state, p, self.step_s, self.n_micro)
            else:
                spike, state = bptt_step(
                    current_a, state, p, self.step_s, self.n_micro, self.method == "bptt-ckpt"
                )
            out.append(spike)
        return torch.stack(out)
