"""The BRUNO paper's non-FeLIF baselines of the chorale task: SNU, GRU and LSTM layers.

Architecture as the paper's chorale network: ``n_in -> recurrent layer (n_hidden) -> linear
n_hidden -> n_out with bias`` (per-step logits, kind ``sequence``). Every dense and recurrent
matrix is a :class:`Synapse` in the chosen mode (fp32 or the paper's 3/4/8-bit quantized, or
device mode on an RRAM card), biases stay float, as for the spiking networks. The FeLIF (BRUNO
and full BPTT) and LIF (with and without recurrent weights) networks of the same task are
``network.SpikingNetwork`` (``bruno_lab.train.paper`` builds each from its name).

* ``gru``/``lstm``: the cells of ``torch.nn.GRU``/``torch.nn.LSTM`` (gate order r, z, n and
  i, f, g, o; both input and recurrent biases; the same U(-1/sqrt(H), 1/sqrt(H)) initialisation)
  written out step by step so that their matrices can be quantized; in fp32 they equal torch's
  (a test copies the weights into torch's modules).
* ``snu``: the spiking neural unit with recurrent weights (Woźniak et al., Nat. Mach. Intell.
  2020): ``s_t = relu(W x_t + H y_{t-1} + decay * s_{t-1} * (1 - y_{t-1}))``,
  ``y_t = step(s_t + b)`` with the SuperSpike surrogate (as every spike here), ``b`` a trained
  per-neuron bias started at -1 (threshold 1) and ``decay`` fixed at ``snu_decay``.

A :class:`BaselineNetwork` has what ``train.loop.train`` uses of a network (``config.kind``,
``config.init``, ``config.n_out``, ``synapses``, ``felif_layers``, ``needs_calibration``,
``project_``), so the same loop, loss, metrics and schedule train it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from bruno_lab.cards import ModelCardBody
from bruno_lab.errors import BadInputError
from bruno_lab.train.surrogate import superspike
from bruno_lab.train.synapse import Synapse

CELLS: tuple[str, ...] = ("snu", "gru", "lstm")
GATES = {"snu": 1, "gru": 3, "lstm": 4}


@dataclass
class BaselineConfig:
    """Everything needed to rebuild a baseline network."""

    cell: str
    n_in: int
    n_hidden: int
    n_out: int
    synapse: str = "fp32"
    seed: int = 0
    snu_decay: float = 0.8
    kind: str = "sequence"
    init: str = "legacy"  # absolute learning rates in train.loop (no physical calibration)

    def validate(self) -> None:
        if self.cell not in CELLS:
            raise BadInputError(f"baseline cell {self.cell!r}: allowed {', '.join(CELLS)}")
        if self.kind != "sequence":
            raise BadInputError(f"baseline networks are sequence networks, not {self.kind!r}")
        for name in ("n_in", "n_hidden", "n_out"):
            if getattr(self, name) < 1:
                raise BadInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.snu_decay < 1:
            raise BadInputError(f"snu_decay must be in [0, 1), got {self.snu_decay}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class BaselineNetwork(nn.Module):
    """See the module docstring. ``forward(x (T, B, in))`` -> logits (T, B, out)."""

    def __init__(self, config: BaselineConfig, *, rram_card: ModelCardBody | None = None) -> None:
        super().__init__()
        config.validate()
        if config.synapse == "device" and (rram_card is None or rram_card.rram is None):
            raise BadInputError("device-mode synapses need an RRAM model card with a ladder")
        self.config = config
        gen = torch.Generator().manual_seed(config.seed)
        ladder = rram_card.rram if rram_card is not None else None
        h, g = config.n_hidden, GATES[config.cell] * config.n_hidden
        gated = config.cell != "snu"
        seed = config.seed * 1000

        def syn(n_in: int, n_out: int, name: str, bias: bool) -> Synapse:
            nonlocal seed
            seed += 1
            # torch's RNN initialisation: every matrix and bias U(-1/sqrt(H), 1/sqrt(H))
            scale = math.sqrt(n_in / h) if gated else 1.0
            s = Synapse(
                n_in, n_out, mode=config.synapse, init_generator=gen, noise_seed=seed,
                init_scale=scale, bias=bias, ladder=ladder, name=name,
            )  # fmt: skip
            if bias and s.bias is not None and gated:
                with torch.no_grad():
                    s.bias.copy_((torch.rand(n_out, generator=gen) * 2 - 1) / math.sqrt(h))
            return s

        self.syn_in = syn(config.n_in, g, "input", bias=gated)
        self.syn_rec = syn(h, g, "recurrent", bias=gated)
        self.syn_out = syn(h, config.n_out, "output", bias=True)
        self.snu_bias: nn.Parameter | None = None
        if config.cell == "snu":
            self.snu_bias = nn.Parameter(torch.full((h,), -1.0))

    def synapses(self) -> list[Synapse]:
        """The matrices in programming-map order: input, recurrent, output."""
        return [self.syn_in, self.syn_rec, self.syn_out]

    def felif_layers(self) -> list[nn.Module]:
        """None: a baseline has no FeLIF neurons (no device-neuron evaluation)."""
        return []

    def needs_calibration(self) -> bool:
        return False

    def project_(self) -> None:
        """Nothing is constrained."""

    def hidden_states(self, x: Tensor) -> Tensor:
        """The recurrent layer's outputs (T, B, H): spikes for SNU, h for GRU/LSTM."""
        for synapse in self.synapses():
            synapse.prepare()
        drive = self.syn_in(x)  # (T, B, G*H), all steps at once
        batch, h = x.shape[1], self.config.n_hidden
        zeros = torch.zeros(batch, h, dtype=drive.dtype)
        out: list[Tensor] = []
        cell = self.config.cell
        if cell == "snu":
            assert self.snu_bias is not None
            s, y = zeros, zeros
            for d in drive.unbind(0):
                s = torch.relu(d + self.syn_rec(y) + self.config.snu_decay * s * (1.0 - y))
                y = superspike(s + self.snu_bias)
                out.append(y)
        elif cell == "gru":
            hid = zeros
            for d in drive.unbind(0):
                ir, iz, inn = d.chunk(3, dim=-1)
                hr, hz, hn = self.syn_rec(hid).chunk(3, dim=-1)
                r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                n = torch.tanh(inn + r * hn)
                hid = (1.0 - z) * n + z * hid
                out.append(hid)
        else:
            hid, c = zeros, zeros
            for d in drive.unbind(0):
                gates = d + self.syn_rec(hid)
                i, f, gg, o = gates.chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
                hid = torch.sigmoid(o) * torch.tanh(c)
                out.append(hid)
        return torch.stack(out)

    def forward(self, x: Tensor) -> Tensor:
        return self.syn_out(self.hidden_states(x))
