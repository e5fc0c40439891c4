"""Leaky integrate-and-fire layers, the usual baselines (Norse style).

Pure step functions over NamedTuples; the modules only hold trainable decays and wrap the steps.
Dynamics per network step (dimensionless network units, one step = one network time step, 1 ms
in every task here), as in the BRUNO paper's Braille baseline:

    m <- a*m + (1 - a)*i          (membrane)
    i <- b*i + (1 - b)*x          (synaptic current; x = input of this step)
    s  = H(m - 1)                 (SuperSpike surrogate)
    m <- m - s_detached * 1       (subtractive reset, gradient stopped)

``a`` and ``b`` are trained per neuron and kept in [0.5, 1]: the network projects them back
after every optimizer step (``project_``), so they never sit outside the range where the
step's clamp would zero their gradient (the clamp in the step only guards hand-made values).
The recurrent variant adds ``W_rec @ s_{t-1}`` to ``x``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from bruno_lab.train.surrogate import superspike

DECAY_MIN = 0.5
DECAY_MAX = 1.0


class LIFParams(NamedTuple):
    """Per-neuron decays per network step (dimensionless) and the threshold."""

    decay_membrane: Tensor
    decay_current: Tensor
    threshold: float = 1.0


class LIFState(NamedTuple):
    """Membrane value ``m`` and synaptic current ``i`` (network units), shape (batch, neurons)."""

    membrane: Tensor
    current: Tensor


def lif_initial_state(batch: int, n: int, *, like: Tensor) -> LIFState:
    """All-zero state on ``like``'s device and dtype."""
    zeros = torch.zeros(batch, n, dtype=like.dtype, device=like.device)
    return LIFState(zeros, zeros.clone())


def lif_step(x: Tensor, state: LIFState, params: LIFParams) -> tuple[Tensor, LIFState]:
    """One network step of the LIF neuron: returns ``(spikes, new_state)``."""
    a = params.decay_membrane.clamp(DECAY_MIN, DECAY_MAX)
    b = params.decay_current.clamp(DECAY_MIN, DECAY_MAX)
    m = a * state.membrane + (1.0 - a) * state.current
    i = b * state.current + (1.0 - b) * x
    s = superspike(m - params.threshold)
    m = m - s.detach() * params.threshold
    return s, LIFState(m, i)


class LIFLayer(nn.Module):
    """A layer of LIF neurons driven by a precomputed input sequence (T, B, n)."""

    def __init__(self, n: int, *, generator: torch.Generator) -> None:
        super().__init__()
        self.n = n
        # Decays start spread over [0.6, 0.9] (time constants of about 2.5..10 steps).
        self.decay_membrane = nn.Parameter(0.6 + 0.3 * torch.rand(n, generator=generator))
        self.decay_current = nn.Parameter(0.6 + 0.3 * torch.rand(n, generator=generator))

    def params(self) -> LIFParams:
        return LIFParams(self.decay_membrane, self.decay_current)

    @torch.no_grad()
    def project_(self) -> None:
        """Decays back into [DECAY_MIN, DECAY_MAX] (in place)."""
        self.decay_membrane.clamp_(DECAY_MIN, DECAY_MAX)
        self.decay_current.clamp_(DECAY_MIN, DECAY_MAX)

    def forward(self, x: Tensor) -> Tensor:
        """Spikes (T, B, n) for inputs (T, B, n)."""
        p = self.params()
        state = lif_initial_state(x.shape[1], self.n, like=x)
        out = []
        for x_t in x.unbind(0):  # unbind: one backward node (x[t] fills a zero x per step)
            s, state = lif_step(x_t, state, p)
            out.append(s)
        return torch.stack(out)


class RecurrentLIFLayer(LIFLayer):
    """LIF neurons with a recurrent synapse: input of step t adds ``recurrent(s_{t-1})``."""

    def __init__(self, n: int, recurrent: nn.Module, *, generator: torch.Generator) -> None:
        super().__init__(n, generator=generator)
        self.recurrent = recurrent

    def forward(self, x: Tensor) -> Tensor:
        p = self.params()
        state = lif_initial_state(x.shape[1], self.n, like=x)
        s = torch.zeros_like(state.membrane)
        out = []
        for x_t in x.unbind(0):
            s, state = lif_step(x_t + self.recurrent(s), state, p)
            out.append(s)
        return torch.stack(out)
