"""Synapse layers: float, the paper's quantized RRAM (3/4/8 bits) and device mode on a card.

One network forward (one sequence) is one "inference": the paper mode draws new stochastic
rounding per sequence; the device mode maps the float shadow weights to level pairs and
programmed conductances per sequence (the per-cell deviates stay those drawn at construction),
and reads the array afresh at every network step (fresh read noise on every read). Gradients are
straight-through to the float shadow weights in both quantized modes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from bruno_lab.cards import RramLadder
from bruno_lab.errors import BadInputError
from bruno_lab.train import rram
from bruno_lab.train.quant import quantize_stochastic

SynapseMode = Literal["fp32", "paper3", "paper4", "paper8", "device"]
SYNAPSE_MODES: tuple[str, ...] = ("fp32", "paper3", "paper4", "paper8", "device")


class Synapse(nn.Module):
    """Dense synapse ``y = x @ W_eff.T (+ bias)`` with ``W_eff`` per mode (see module doc).

    ``x`` is (B, in) for one step or (T, B, in) for a sequence; device mode then reads the array
    once per step. Call :meth:`prepare` once per sequence (the network does) before ``forward``.
    """

    # the per-cell deviates drawn at construction, registered as buffers when there is a ladder
    program_eps: Tensor
    relax_eps: Tensor
    stuck: Tensor

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        mode: str,
        init_generator: torch.Generator,
        noise_seed: int,
        init_scale: float = 1.0,
        bias: bool = False,
        ladder: RramLadder | None = None,
        relaxation_time_s: float = 0.0,
        name: str = "synapse",
    ) -> None:
        super().__init__()
        if mode not in SYNAPSE_MODES:
            raise BadInputError(f"synapse mode {mode!r}: allowed {', '.join(SYNAPSE_MODES)}")
        if mode == "device":
            if ladder is None:
                raise BadInputError("synapse mode 'device' needs an RRAM model card (--card)")
            if ladder.relaxation is None and relaxation_time_s > 0:
                raise BadInputError(
                    f"relaxation time {relaxation_time_s:g} s: the RRAM card has no relaxation "
                    "model (its wafer had no rram_retention records); use 0 or another card"
                )
        self.mode, self.name, self.n_in, self.n_out = mode, name, n_in, n_out
        bound = init_scale / math.sqrt(n_in)
        w = (torch.rand(n_out, n_in, generator=init_generator) * 2.0 - 1.0) * bound
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None
        self.noise_generator = torch.Generator().manual_seed(noise_seed)
        self.relaxation_time_s = relaxation_time_s
        self.ladder = ladder
        self.stats = rram.LadderStats.from_ladder(ladder) if ladder is not None else None
        if self.stats is not None:
            draws = rram.draw_cells((n_out, n_in), self.stats, self.noise_generator)
            self.register_buffer("program_eps", draws.program_eps)
            self.register_buffer("relax_eps", draws.relax_eps)
            self.register_buffer("stuck", draws.stuck)
        self.measured_conductance_siemens: Tensor | None = None
        self.measured_weight_per_siemens: float | None = None
        self.analog_matvec: Callable[[Tensor], Tensor] | None = None
        self._seq_weight: Tensor | None = None
        self._g_prog: Tensor | None = None
        self._scale: float = 1.0

    @property
    def bits(self) -> int | None:
        return int(self.mode[5:]) if self.mode.startswith("paper") else None

    def draws(self) -> rram.CellDraws:
        return rram.CellDraws(self.program_eps, self.relax_eps, self.stuck)

    def level_pairs(self) -> tuple[Tensor, float]:
        """Target level indices (2, out, in) [plus, minus] and the layer's weight per siemens."""
        assert self.stats is not None
        scale = rram.weight_per_siemens(self.weight, self.stats)
        levels = rram.nearest_level_pairs(
            self.weight.detach() / scale, self.stats.level_mean_siemens
        )
        return levels, scale

    def programmed_conductance(self) -> Tensor:
        """Conductances (2, out, in) in siemens the cells hold at ``relaxation_time_s``."""
        assert self.stats is not None
        levels, self._scale = self.level_pairs()
        return rram.programmed_conductance(levels, self.draws(), self.stats, self.relaxation_time_s)

    def set_measured_conductance(self, g_siemens: Tensor | None, weight_per_siemens: float) -> None:
        """Use conductances read back from an array (2, out, in) instead of simulated cells."""
        self.measured_conductance_siemens = g_siemens
        self.measured_weight_per_siemens = weight_per_siemens

    def set_analog_matvec(self, matvec: Callable[[Tensor], Tensor] | None) -> None:
        """Compute ``x @ W.T`` with ``matvec`` (``(N, in) -> (N, out)``: a crossbar's analog
        matrix-vector product on the chip) instead of simulated cells; ``None`` undoes it.
        The bias stays digital. For inference only (no gradient flows through a chip)."""
        self.analog_matvec = matvec

    def prepare(self) -> None:
        """Per-sequence draws: stochastic rounding (paper) or programmed conductances (device)."""
        if self.mode == "fp32":
            self._seq_weight = self.weight
        elif self.mode == "device":
            if self.measured_conductance_siemens is not None:
                self._g_prog = self.measured_conductance_siemens
                self._scale = float(self.measured_weight_per_siemens or 1.0)
            else:
                self._g_prog = self.programmed_conductance()
        else:
            bits = self.bits
            assert bits is not None
            self._seq_weight = quantize_stochastic(self.weight, bits, self.noise_generator)

    def _device_weight(self, n_reads: int | None) -> Tensor:
        assert self._g_prog is not None and self.stats is not None
        if self.measured_conductance_siemens is not None:
            g = (
                self._g_prog
                if n_reads is None
                else self._g_prog.expand(n_reads, *self._g_prog.shape)
            )
        else:
            g = rram.read_conductance(self._g_prog, self.stats, self.noise_generator, n_reads)
        w_dev = rram.pair_to_weight(g, self._scale)
        return self.weight + (w_dev - self.weight).detach()

    def forward(self, x: Tensor) -> Tensor:
        if self.analog_matvec is not None:
            y = self.analog_matvec(x.reshape(-1, self.n_in)).reshape(*x.shape[:-1], self.n_out)
            y = y.to(x.dtype)
        elif self.mode == "device":
            if self._g_prog is None:
                self.prepare()
            if x.dim() == 3:
                w = self._device_weight(x.shape[0])
                y = torch.einsum("tbi,toi->tbo", x, w)
            else:
                y = x @ self._device_weight(None).T
        else:
            if self._seq_weight is None:
                self.prepare()
            assert self._seq_weight is not None
            y = x @ self._seq_weight.T
        return y if self.bias is None else y + self.bias
