"""The networks of the tasks, built from a JSON-able config and optional model cards.

``classify`` (Braille, patterns; after the BRUNO paper's Braille network):
    input [-> fixed encoder] -> Synapse(in, H) -> hidden LIF (recurrent LIF for ``rlif``)
    -> Synapse(H, out) -> output neurons (FeLIF for ``felif``, LIF otherwise);
    logits = output spike counts over the sequence.
``sequence`` (chorales; after the paper's chorale network):
    input -> Synapse(in, H) -> hidden FeLIF (``felif``, no recurrent weights) / LIF / recurrent LIF
    -> Synapse(H, out, with bias) -> per-step logits.

Every dense and recurrent matrix is a :class:`Synapse` in the chosen mode; biases stay float.
FeLIF device parameters come from a FeLIF card (means and device-to-device spread) or the
design's defaults; they are buffers, never trained.

Initialisation (``init``): ``physical`` (default) takes the FeLIF layer's input scale and its
neurons' bias currents from the card (``bruno_lab.train.init``; a network unit is the current
that spikes in one step) and leaves the weight scales to :func:`init.calibrate_from_data` at the
start of training; ``legacy`` is the former ``init_scale * U(-1, 1)/sqrt(fan_in)`` with
``input_scale_a`` as given and no bias. A saved config without ``init`` is a legacy network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from bruno_lab.cards import ModelCardBody
from bruno_lab.devices.felif import FeLIFParams
from bruno_lab.errors import BadInputError
from bruno_lab.train import init as physical_init
from bruno_lab.train.felif_layer import RESETS, FeLIFLayer, felif_params_from_cards
from bruno_lab.train.lif import LIFLayer, RecurrentLIFLayer
from bruno_lab.train.synapse import Synapse

NEURONS: tuple[str, ...] = ("felif", "lif", "rlif")
KINDS: tuple[str, ...] = ("classify", "sequence")
INITS: tuple[str, ...] = ("physical", "legacy")
REDRAWS: tuple[str, ...] = ("none", "card", "paper")
"""FeLIF devices redrawn at every training forward: not at all, with the card's spreads, or
the paper's protocol (``felif_redraw_sigma`` on A, E_a, P_s, I0, t_hzo and t_int)."""
PAPER_SPREAD_PARAMS: tuple[str, ...] = (
    "area_m2",
    "e_a_v_m",
    "ps_c_m2",
    "i0_a_m2",
    "t_hzo_m",
    "t_int_m",
)
_LEGACY = {"init": "legacy", "felif_bias_rate": 0.0}
"""Values of fields a config saved before they existed had in effect."""


@dataclass
class NetworkConfig:
    """Everything needed to rebuild a network (saved with its weights)."""

    kind: str
    n_in: int
    n_hidden: int
    n_out: int
    neuron: str = "felif"
    method: str = "bruno"
    synapse: str = "fp32"
    seed: int = 0
    step_s: float = 1e-3
    n_micro: int = 1000
    input_scale_a: float = 1e-8  # legacy init only; physical: from the FeLIF card
    init_scale_in: float = 1.0  # legacy init only
    init_scale_out: float = 1.0  # legacy init only
    relaxation_time_s: float = 0.0
    encoder_tiles: int = 0  # >0: the Braille encoder (tile channels, fixed gain and offset)
    coarse_gradient: str = "hold-switching"  # BRUNO's coarse-step gradient (felif_layer)
    coarse_clip: str = "straight-through"  # the coarse step's ±5 V clip ("hard": the old one)
    init: str = "physical"  # see the module docstring
    felif_bias_rate: float = 0.2  # FeLIF bias: rheobase for a spike per 1/rate steps (0: none)
    felif_reset: str = "next-step"  # or "at-crossing" (felif_layer.RESETS)
    felif_redraw: str = "none"  # REDRAWS
    felif_redraw_sigma: float = 0.1  # the paper's sigma for felif_redraw="paper"

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise BadInputError(f"network kind {self.kind!r}: allowed {', '.join(KINDS)}")
        if self.neuron not in NEURONS:
            raise BadInputError(f"--neuron {self.neuron!r}: allowed {', '.join(NEURONS)}")
        for name in ("n_in", "n_hidden", "n_out", "n_micro"):
            if getattr(self, name) < 1:
                raise BadInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.input_scale_a > 0 or not self.step_s > 0:
            raise BadInputError("input_scale_a and step_s must be > 0")
        if self.relaxation_time_s < 0:
            raise BadInputError(f"relaxation time must be >= 0 s, got {self.relaxation_time_s}")
        for name, value, allowed in (
            ("init", self.init, INITS),
            ("felif_reset", self.felif_reset, RESETS),
            ("felif_redraw", self.felif_redraw, REDRAWS),
        ):
            if value not in allowed:
                raise BadInputError(f"{name} {value!r}: allowed {', '.join(allowed)}")
        if not 0 <= self.felif_bias_rate <= 1:
            raise BadInputError(f"felif_bias_rate must be in [0, 1], got {self.felif_bias_rate}")
        if not 0 <= self.felif_redraw_sigma < 1:
            raise BadInputError(
                f"felif_redraw_sigma must be in [0, 1), got {self.felif_redraw_sigma}"
            )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetworkConfig:
        """From ``to_json``'s dict; fields it lacks take the value they had before they existed
        (a file saved before ``init`` is a legacy network), else the default."""
        return cls(**{**_LEGACY, **data})


class BrailleEncoder(nn.Module):
    """The paper's encoding: tile channels ``tiles`` times, output ``g*(x + b)`` (fixed, random)."""

    gain: Tensor  # buffers (register_buffer)
    offset: Tensor

    def __init__(self, n_channels: int, tiles: int, generator: torch.Generator) -> None:
        super().__init__()
        self.tiles = tiles
        n = n_channels * tiles
        self.register_buffer("gain", 0.184 * torch.randn(n, generator=generator))
        self.register_buffer("offset", torch.randn(n, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        return self.gain * (x.repeat(1, 1, self.tiles) + self.offset)


class SpikingNetwork(nn.Module):
    """See the module docstring. ``forward(x (T, B, in))`` -> logits (B, out) or (T, B, out)."""

    def __init__(
        self,
        config: NetworkConfig,
        *,
        rram_card: ModelCardBody | None = None,
        felif_card: ModelCardBody | None = None,
    ) -> None:
        super().__init__()
        config.validate()
        if rram_card is not None and rram_card.rram is None:
            raise BadInputError("the RRAM card given has no `rram` ladder")
        if felif_card is not None and felif_card.device_kind != "felif":
            raise BadInputError(f"expected a felif card, got a {felif_card.device_kind} card")
        self.config, self.rram_card, self.felif_card = config, rram_card, felif_card
        gen = torch.Generator().manual_seed(config.seed)
        ladder = rram_card.rram if rram_card is not None else None
        seed = config.seed * 1000

        def syn(n_in: int, n_out: int, name: str, scale: float, bias: bool = False) -> Synapse:
            nonlocal seed
            seed += 1
            return Synapse(
                n_in,
                n_out,
                mode=config.synapse,
                init_generator=gen,
                noise_seed=seed,
                init_scale=scale,
                bias=bias,
                ladder=ladder,
                relaxation_time_s=config.relaxation_time_s,
                name=name,
            )

        n_in = config.n_in
        self.encoder: BrailleEncoder | None = None
        if config.encoder_tiles > 0:
            self.encoder = BrailleEncoder(config.n_in, config.encoder_tiles, gen)
            n_in = config.n_in * config.encoder_tiles
        h, o = config.n_hidden, config.n_out
        physical = config.init == "physical"
        scale_in = 1.0 if physical else config.init_scale_in
        scale_out = 1.0 if physical else config.init_scale_out
        self.syn_in = syn(n_in, h, "input", scale_in)
        self.syn_rec: Synapse | None = None
        if config.neuron == "rlif":
            self.syn_rec = syn(h, h, "recurrent", 0.5)
        sequence = config.kind == "sequence"
        self.syn_out = syn(h, o, "output", scale_out, bias=sequence)
        felif_n = h if sequence else o
        if config.neuron == "felif":
            felif = self._felif_layer(felif_n, felif_card, gen)
        if sequence:
            self.hidden = felif if config.neuron == "felif" else self._lif(h, gen)
            self.output = None
        else:
            self.hidden = self._lif(h, gen)
            self.output = felif if config.neuron == "felif" else LIFLayer(o, generator=gen)

        if config.init == "physical":
            # weights are scaled on data at the start of training (init.calibrate_from_data)
            self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))

    def _felif_layer(self, n: int, card: ModelCardBody | None, gen: torch.Generator) -> FeLIFLayer:
        config = self.config
        means = card.means() if card else None
        sigma_rel = card.sigma_rel() if card else None
        params = felif_params_from_cards(n, means, sigma_rel, gen)
        input_scale_a, bias = config.input_scale_a, None
        if config.init == "physical":
            scales = physical_init.felif_scales(params, config.step_s, config.felif_bias_rate)
            input_scale_a = scales.input_scale_a
            bias = scales.bias_units if config.felif_bias_rate > 0 else None
        spread: dict[str, float] = {}
        if config.felif_redraw == "card":
            spread = dict(sigma_rel or {})
        elif config.felif_redraw == "paper":
            spread = dict.fromkeys(PAPER_SPREAD_PARAMS, config.felif_redraw_sigma)
        spread_mean = None
        if spread:
            spread_mean = felif_params_from_cards(n, means, None, gen)
            spread = {k: v for k, v in spread.items() if k in FeLIFParams.specs()}
        return FeLIFLayer(
            params,
            method=config.method,
            step_s=config.step_s,
            n_micro=config.n_micro,
            input_scale_a=input_scale_a,
            coarse_gradient=config.coarse_gradient,
            coarse_clip=config.coarse_clip,
            reset=config.felif_reset,
            bias_init=bias,
            spread_mean=spread_mean,
            spread_sigma_rel=spread,
            spread_seed=config.seed * 1000 + 999,
        )

    def felif_layers(self) -> list[FeLIFLayer]:
        """The network's FeLIF layers (hidden and/or output)."""
        return [m for m in (self.hidden, self.output) if isinstance(m, FeLIFLayer)]

    def needs_calibration(self) -> bool:
        """True for a physically initialised network whose weights were not yet scaled on data."""
        flag = getattr(self, "calibrated", None)
        return flag is not None and not bool(flag)

    def calibrate(
        self, x: Tensor, targets: physical_init.CalibrationTargets | None = None
    ) -> dict[str, float]:
        """Scale the weights on the batch ``x`` (``init.calibrate_from_data``) and mark the
        network calibrated (saved with it: a later ``train`` does not redo it)."""
        report = physical_init.calibrate_from_data(self, x, targets)
        flag = getattr(self, "calibrated", None)
        if flag is not None:
            flag.fill_(True)
        return report

    def project_(self) -> None:
        """Constrained parameters back into their ranges (after an optimizer step)."""
        for m in self.modules():
            if isinstance(m, LIFLayer):
                m.project_()

    def _lif(self, n: int, gen: torch.Generator) -> nn.Module:
        if self.syn_rec is not None:
            return RecurrentLIFLayer(n, self.syn_rec, generator=gen)
        return LIFLayer(n, generator=gen)

    def synapses(self) -> list[Synapse]:
        """The dense/recurrent matrices in programming-map order: input, recurrent, output."""
        return [s for s in (self.syn_in, self.syn_rec, self.syn_out) if s is not None]

    def forward(self, x: Tensor) -> Tensor:
        for s in self.synapses():
            s.prepare()
        if self.encoder is not None:
            x = self.encoder(x)
        hidden = self.hidden(self.syn_in(x))
        y = self.syn_out(hidden)
        if self.output is None:
            return y
        return self.output(y).sum(0)

    def hidden_spikes(self, x: Tensor) -> Tensor:
        """Hidden-layer spikes (T, B, H), for diagnostics."""
        for s in self.synapses():
            s.prepare()
        if self.encoder is not None:
            x = self.encoder(x)
        return self.hidden(self.syn_in(x))


def build_network(
    config: NetworkConfig, cards: Mapping[str, ModelCardBody] | None = None
) -> SpikingNetwork:
    """The network of ``config`` against model cards by device kind: ``rram`` (required for
    device-mode synapses) and ``felif`` (FeLIF neurons; the design's defaults without one). A
    ``fecap`` card (what a calibration of the whole wafer also returns) is not used by the
    network and is ignored; a card filed under the wrong kind is bad input."""
    cards = {k: v for k, v in (cards or {}).items() if k != "fecap"}
    unknown = sorted(set(cards) - {"rram", "felif"})
    if unknown:
        raise BadInputError(f"cards {unknown}: the network uses an rram and/or a felif card")
    for kind, card in cards.items():
        if card.device_kind != kind:
            raise BadInputError(f"the card given as {kind!r} is a {card.device_kind} card")
    if config.synapse == "device" and "rram" not in cards:
        raise BadInputError("device-mode synapses need an RRAM model card")
    return SpikingNetwork(config, rram_card=cards.get("rram"), felif_card=cards.get("felif"))
