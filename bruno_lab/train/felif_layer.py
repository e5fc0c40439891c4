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
    felif_fine_windows,
    felif_initial_state,
    felif_reset,
    felif_run_sequence,
)
from bruno_lab.devices.felif_counts import step_counts
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
    fine: FeLIFState | None = None,
) -> tuple[Tensor, FeLIFState]:
    """One BRUNO network step: (spikes, state) with fine values and coarse-step gradients.
    ``grad_params`` (default ``params``) are those of the coarse step (see ``coarse_params``);
    ``voltage_clip`` is the coarse step's ±5 V clip (``straight-through``: the gradient of the
    unclipped step, since the fine window supplies the value; ``hard``: the old behaviour,
    zero gradient for any step driven beyond ±5 V, i.e. above a few nA)."""
    if fine is None:  # else: this step's window, computed for the whole sequence at once
        with torch.no_grad():
            detached = FeLIFState(state.voltage_v.detach(), state.polarization_c_m2.detach())
            dt_s = step_s / n_micro
            fine, _ = felif_fine_window(current_a.detach(), detached, params, n_micro, dt_s)
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


RESETS: tuple[str, ...] = ("next-step", "at-crossing")
"""When a FeLIF neuron resets: BRUNO's ``next-step`` (frozen at V_thr for the rest of the 1 ms
window, reset at the next step: at most one spike per step) or the device's ``at-crossing``
(reset after the micro-step that crosses, then integrate on: the spikes of a step are counted,
as the simulated lab's device does; ``felif_counts.step_counts``)."""


def window_at_crossing(
    current_a: Tensor, state: FeLIFState, params: FeLIFParams, n_micro: int, dt_s: float
) -> tuple[Tensor, FeLIFState]:
    """One network step of ``n_micro`` micro-steps with the device's reset after every crossing
    (``felif_counts.step_counts``, no graph): (spike counts, state), shapes (..., n)."""
    detached = FeLIFState(state.voltage_v.detach(), state.polarization_c_m2.detach())
    counts, new = step_counts(current_a.detach(), detached, params, n_micro, dt_s)
    return counts.to(current_a.dtype), new


def bruno_step_at_crossing(
    current_a: Tensor,
    state: FeLIFState,
    params: FeLIFParams,
    step_s: float,
    n_micro: int,
    grad_params: FeLIFParams | None = None,
    voltage_clip: str = "straight-through",
    fine: FeLIFState | None = None,
) -> tuple[Tensor, FeLIFState]:
    """A BRUNO step whose values are the device's (reset at each crossing, spikes counted): the
    count's gradient is the one ``bruno_step`` gives its spike (SuperSpike at V_thr where the
    neuron spiked, at V - V_thr where it did not, through the coarse step); after a spike the
    state's gradient is stopped (a reset), elsewhere it is the coarse step's."""
    counts, fine = window_at_crossing(current_a, state, params, n_micro, step_s / n_micro)
    coarse = felif_coarse_step(
        current_a, state, grad_params or params, step_s, voltage_clip=voltage_clip
    )
    spiked = counts > 0
    x = coarse.voltage_v - params.v_thr_v
    x_value = torch.where(spiked, torch.zeros_like(fine.voltage_v), fine.voltage_v - params.v_thr_v)
    spike = superspike(x + (x_value - x).detach())
    counts = spike + (counts - spike).detach()
    v = coarse.voltage_v + (fine.voltage_v - coarse.voltage_v).detach()
    pol = coarse.polarization_c_m2 + (fine.polarization_c_m2 - coarse.polarization_c_m2).detach()
    v = _bounded(torch.where(spiked, fine.voltage_v, v))
    pol = _bounded(torch.where(spiked, fine.polarization_c_m2, pol))
    return counts, FeLIFState(v, pol)


class FeLIFLayer(nn.Module):
    """FeLIF neurons over a sequence of input currents (T, B, n) in network units.

    The current into neuron i at step t is ``(x[t, :, i] + bias[i]) * input_scale_a`` A: the
    bias (``bias_init``, network units; trained) is a DC current source per neuron. With
    ``spread_sigma_rel`` the devices are redrawn at every training forward around
    ``spread_mean`` (``theta = mu*(1 + sigma*eps)``, the paper's hardware-aware protocol); the
    devices of evaluation are always ``params`` (the population drawn once, as on one chip).
    """

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
        reset: str = "next-step",
        bias_init: Tensor | None = None,
        spread_mean: FeLIFParams | None = None,
        spread_sigma_rel: Mapping[str, float] | None = None,
        spread_seed: int = 0,
    ) -> None:
        super().__init__()
        coarse_params(params, coarse_gradient)  # validates the name
        if coarse_clip not in COARSE_CLIPS:
            raise BadInputError(f"coarse clip {coarse_clip!r}: allowed {', '.join(COARSE_CLIPS)}")
        if reset not in RESETS:
            raise BadInputError(f"FeLIF reset {reset!r}: allowed {', '.join(RESETS)}")
        if method not in METHODS:
            raise BadInputError(f"method {method!r}: allowed {', '.join(METHODS)}")
        if reset == "at-crossing" and method != "bruno":
            raise BadInputError("reset 'at-crossing' is a BRUNO option (method 'bruno')")
        if n_micro < 1:
            raise BadInputError(f"n_micro must be >= 1, got {n_micro}")
        self.method, self.step_s, self.n_micro = method, step_s, n_micro
        self.coarse_clip, self.reset = coarse_clip, reset
        self.input_scale_a = input_scale_a
        self.coarse_gradient = coarse_gradient
        self.n = params.n_devices
        self._names = list(FeLIFParams.specs())
        for name in self._names:  # device parameters: state, never trained
            self.register_buffer(f"p_{name}", getattr(params, name).detach().clone())
        self.bias = None if bias_init is None else nn.Parameter(bias_init.detach().clone())
        self.spread_sigma_rel = {k: float(v) for k, v in (spread_sigma_rel or {}).items() if v}
        self.spread_mean = spread_mean
        if self.spread_sigma_rel and spread_mean is None:
            raise BadInputError("redrawing FeLIF devices needs the card's means (spread_mean)")
        self.spread_generator = torch.Generator().manual_seed(spread_seed)
        self.device_faithful = False  # forward() runs device_forward() (train.fidelity)

    def params(self) -> FeLIFParams:
        """The layer's devices (those of evaluation)."""
        return FeLIFParams(**{name: getattr(self, f"p_{name}") for name in self._names})

    def forward_params(self) -> FeLIFParams:
        """The devices of this forward: a fresh draw in training with a spread, else ``params``."""
        p = self.params()
        if not (self.training and self.spread_sigma_rel):
            return p
        assert self.spread_mean is not None
        drawn = sample_population(self.spread_mean, self.spread_sigma_rel, self.n,
                                  self.spread_generator)  # fmt: skip
        return drawn.to(dtype=p.v_thr_v.dtype, device=p.v_thr_v.device)

    def bias_current_a(self) -> Tensor | None:
        """The DC bias current of each neuron, A (None without biases)."""
        return None if self.bias is None else self.bias.detach() * self.input_scale_a

    @torch.no_grad()
    def device_forward(self, x: Tensor, max_spikes_per_step: int = 16) -> Tensor:
        """Spike counts (T, B, n) of the layer's devices under the same input currents, run as
        the simulated lab runs a device: ``felif_run_sequence`` (float64; threshold and reset
        after every micro-step), each sequence from rest. No graph."""
        f64 = torch.float64
        t_len, batch, n = x.shape
        drive = x if self.bias is None else x + self.bias
        current = (drive.detach().to(f64) * self.input_scale_a).reshape(t_len, batch * n)
        p = self.params().to(dtype=f64)
        params = FeLIFParams(**{k: getattr(p, k).repeat(batch) for k in p.specs()})
        state = felif_initial_state(params, (batch * n,), dtype=f64)
        k_max = max_spikes_per_step * t_len
        result = felif_run_sequence(
            current,
            torch.full((t_len,), self.step_s / self.n_micro, dtype=f64),
            torch.full((t_len,), self.n_micro, dtype=torch.int64),
            params,
            state,
            max_spikes=k_max,
        )
        if bool((result.n_spikes > k_max).any()):
            raise RuntimeError(f"a neuron fired more than {max_spikes_per_step} times per step")
        steps = result.spike_steps  # (B*n, K) global micro-step index, -1 padding
        valid = steps >= 0
        t_idx = torch.where(valid, steps // self.n_micro, 0)
        counts = torch.zeros(batch * n, t_len, dtype=f64)
        counts.scatter_add_(1, t_idx, valid.to(f64))
        return counts.T.reshape(t_len, batch, n).to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Spikes (T, B, n) for input (T, B, n) in network units (times ``input_scale_a`` A);
        with ``reset="at-crossing"`` (or ``device_faithful``) spike counts per step."""
        if self.device_faithful:
            return self.device_forward(x)
        p = self.forward_params()
        p_coarse = coarse_params(p, self.coarse_gradient)
        state = felif_initial_state(p, x.shape[1:], dtype=x.dtype)
        spike = torch.zeros_like(state.voltage_v)
        currents_a = (x if self.bias is None else x + self.bias) * self.input_scale_a
        fast = self.method == "bruno" or not torch.is_grad_enabled()
        fines: list[FeLIFState | None] = [None] * x.shape[0]
        if fast and self.reset != "at-crossing":
            # the fine values never depend on the gradient path: every window of the sequence in
            # one kernel call (resets inside), each from the previous fine state; then only the
            # coarse steps step by step (benchmarks/train_speed.py)
            with torch.no_grad():
                (fine_v, fine_p), _, _ = felif_fine_windows(
                    currents_a.detach(), state, p, self.n_micro, self.step_s / self.n_micro
                )
            fines = [FeLIFState(v, q) for v, q in zip(fine_v, fine_p, strict=True)]
        out = []
        for t, current_a in enumerate(currents_a.unbind(0)):  # unbind: one backward node
            if self.reset == "at-crossing":
                spike, state = bruno_step_at_crossing(
                    current_a, state, p, self.step_s, self.n_micro, p_coarse, self.coarse_clip
                )
                out.append(spike)
                continue
            state = felif_reset(state, spike, p)
            if fast:
                # without a graph every method has the same values: use the fast path
                spike, state = bruno_step(
                    current_a, state, p, self.step_s, self.n_micro, p_coarse, self.coarse_clip,
                    fine=fines[t],
                )  # fmt: skip
            else:
                spike, state = bptt_step(
                    current_a, state, p, self.step_s, self.n_micro, self.method == "bptt-ckpt"
                )
            out.append(spike)
        return torch.stack(out)
