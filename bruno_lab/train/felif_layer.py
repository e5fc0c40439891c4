"""A FeLIF layer trained with BRUNO, or with full / checkpointed BPTT through every micro-step.

The neuron's equations live in ``bruno_lab.devices.felif``; this module only composes them.
One network step of ``step_s`` (1 ms) under an input current held over the step:

* ``bruno``: the fine forward (``felif_fine_window``: ``n_micro`` Euler micro-steps, no graph,
  V and P frozen once V >= V_thr), one differentiable coarse step (``felif_coarse_step``), and the
  straight-through merge ``x = x_coarse + stopgrad(x_fine - x_coarse)``: the value is the fine
  one, the gradient the coarse step's. The graph holds one node per network step. The coarse
  step's ±5 V clip is straight-through by default (``coarse_clip``): one 1 ms Euler step moves V
  by ~1.75 V per nA while a spike within a step needs ~13 nA, so a hard clip zeroes the gradient
  exactly on the steps that spike (``hard`` keeps that old behaviour for comparison).
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

import logging
from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from bruno_lab.devices.felif import (
    VOLTAGE_CLIPS,
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

log = logging.getLogger(__name__)

Method = Literal["bruno", "bptt", "bptt-ckpt"]
METHODS: tuple[str, ...] = ("bruno", "bptt", "bptt-ckpt")
COARSE_GRADIENTS: tuple[str, ...] = ("hold-switching", "full")
COARSE_CLIPS: tuple[str, ...] = VOLTAGE_CLIPS
"""The coarse step's ±5 V clip: ``straight-through`` (default) or ``hard`` (the old one)."""
HOLD_TAU0_S = 1e30
"""tau0 in the coarse step's gradient path for ``hold-switching``: switching rate ~ 0 there."""
GRAD_BOUND = 1e6
"""Bound on the gradient carried between network steps (per unit of V or P)."""


def coarse_params(params: FeLIFParams, coarse_gradient: str) -> FeLIFParams:
    """Parameters for the coarse step: as given (``full``: the whole Jacobian of the 1 ms Euler
    step, which explodes through the stiff switching rate) or with the switching held
    (``hold-switching``: tau0 -> 1e30 s, so the coarse gradient is that of the membrane with its
    leakage and input, P carried straight through; the paper's variant (a) taken one step
    further). Only the gradient depends on this: the value is always the fine window's."""
    if coarse_gradient == "full":
        return params
    if coarse_gradient == "hold-switching":
        return params.replace(tau0_s=HOLD_TAU0_S)
    raise BadInputError(f"coarse gradient {coarse_gradient!r}: allowed {COARSE_GRADIENTS}")


def _bounded(t: Tensor) -> Tensor:
    """Identity whose gradient is made finite and bounded (a stiff step can overflow float32)."""
    if t.requires_grad:
        t.register_hook(lambda g: torch.nan_to_num(g).clamp(-GRAD_BOUND, GRAD_BOUND))
    return t


def bruno_step(
    current_a: Tensor,
    state: FeLIFState,
    params: FeLIFParams,
    step_s: float,
    n_micro: int,
    grad_params: FeLIFParams | None = None,
    voltage_clip: str = "straight-through",
) -> tuple[Tensor, FeLIFState]:
    """One BRUNO network step: (spikes, state) with fine values and coarse-step gradients.
    ``grad_params`` (default ``params``) are those of the coarse step (see ``coarse_params``);
    ``voltage_clip`` is the coarse step's ±5 V clip (``straight-through``: the gradient of the
    unclipped step, since the fine window supplies the value; ``hard``: the old behaviour,
    zero gradient for any step driven beyond ±5 V, i.e. above a few nA)."""
    with torch.no_grad():
        detached = FeLIFState(state.voltage_v.detach(), state.polarization_c_m2.detach())
        fine, _ = felif_fine_window(current_a.detach(), detached, params, n_micro, step_s / n_micro)
    coarse = felif_coarse_step(
        current_a, state, grad_params or params, step_s, voltage_clip=voltage_clip
    )
    v = _bounded(coarse.voltage_v + (fine.voltage_v - coarse.voltage_v).detach())
    pol = coarse.polarization_c_m2 + (fine.polarization_c_m2 - coarse.polarization_c_m2).detach()
    pol = _bounded(pol)
    return superspike(v - params.v_thr_v), FeLIFState(v, pol)


def fine_window_autograd(
    current_a: Tensor,
    voltage_v: Tensor,
    polarization_c_m2: Tensor,
    params: FeLIFParams,
    n_micro: int,
    dt_s: float,
) -> tuple[Tensor, Tensor]:
    """``n_micro`` differentiable Euler micro-steps, frozen from V >= V_thr on: (V, P).

    The gradient carried between micro-steps is bounded (``_bounded``): through the stiff
    switching it can grow by orders of magnitude per micro-step and overflow float32 (NaN)."""
    thr = params.v_thr_v
    v, pol = voltage_v, polarization_c_m2
    frozen = (v >= thr).detach()
    for _ in range(n_micro):
        v_new, pol_new = felif_euler_step(current_a, FeLIFState(v, pol), params, dt_s)
        v = _bounded(torch.where(frozen, v, v_new))
        pol = _bounded(torch.where(frozen, pol, pol_new))
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
        # reentrant: the forward runs without a graph, so neither the saved tensors nor the
        # graph's nodes of the 1000 micro-steps are kept (with tiny tensors the nodes dominate)
        v, pol = checkpoint(window, *args, use_reentrant=True)
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
    """``n`` neurons: the card's means (defaults where absent) with its device-to-device spread.

    Card parameters that are not FeLIF model parameters (derived figures a calibration may add)
    are ignored with a warning; correlations between parameters are not used (independent
    draws, as in the paper)."""
    known = set(FeLIFParams.specs())
    means, sigma_rel = dict(means or {}), dict(sigma_rel or {})
    ignored = sorted((set(means) | set(sigma_rel)) - known)
    if ignored:
        log.warning("FeLIF card: ignoring parameters that FeLIFParams does not have: %s", ignored)
    means = {k: v for k, v in means.items() if k in known}
    sigma_rel = {k: v for k, v in sigma_rel.items() if k in known and v > 0}
    mean = FeLIFParams.from_json(means, n=1, dtype=torch.float64, where="FeLIF card")
    pop = sample_population(mean, sigma_rel, n, generator)
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
        coarse_gradient: str = "hold-switching",
        coarse_clip: str = "straight-through",
    ) -> None:
        super().__init__()
        coarse_params(params, coarse_gradient)  # validates the name
        if coarse_clip not in COARSE_CLIPS:
            raise BadInputError(f"coarse clip {coarse_clip!r}: allowed {', '.join(COARSE_CLIPS)}")
        self.coarse_clip = coarse_clip
        if method not in METHODS:
            raise BadInputError(f"method {method!r}: allowed {', '.join(METHODS)}")
        if n_micro < 1:
            raise BadInputError(f"n_micro must be >= 1, got {n_micro}")
        self.method, self.step_s, self.n_micro = method, step_s, n_micro
        self.input_scale_a = input_scale_a
        self.coarse_gradient = coarse_gradient
        self.n = params.n_devices
        self._names = list(FeLIFParams.specs())
        for name in self._names:  # device parameters: state, never trained
            self.register_buffer(f"p_{name}", getattr(params, name).detach().clone())

    def params(self) -> FeLIFParams:
        return FeLIFParams(**{name: getattr(self, f"p_{name}") for name in self._names})

    def forward(self, x: Tensor) -> Tensor:
        """Spikes (T, B, n) for input (T, B, n) in network units (times ``input_scale_a`` A)."""
        p = self.params()
        p_coarse = coarse_params(p, self.coarse_gradient)
        state = felif_initial_state(p, x.shape[1:], dtype=x.dtype)
        spike = torch.zeros_like(state.voltage_v)
        out = []
        for t in range(x.shape[0]):
            state = felif_reset(state, spike, p)
            current_a = x[t] * self.input_scale_a
            if self.method == "bruno" or not torch.is_grad_enabled():
                # without a graph every method has the same values: use the fast path
                spike, state = bruno_step(
                    current_a, state, p, self.step_s, self.n_micro, p_coarse, self.coarse_clip
                )
            else:
                spike, state = bptt_step(
                    current_a, state, p, self.step_s, self.n_micro, self.method == "bptt-ckpt"
                )
            out.append(spike)
        return torch.stack(out)
