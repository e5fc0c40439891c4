"""Initialisation in physical units: every layer starts where its neurons respond.

FeLIF layers, from the FeLIF card (``bruno_lab.devices.felif_figures``):

* input scale: one network unit is the current that brings the layer's mean neuron from rest
  to threshold in one network step, ``charge_to_spike / step_s`` (12.4 nA at the design's
  defaults: 1.43 pC on the membrane plus 11 pC of polarization switching);
* bias: each neuron's DC current source starts at its own rheobase for one spike per
  ``1/bias_rate`` steps (so device spread does not leave some neurons silent and others
  saturated at initialisation), in network units;
* weights: set from the data (below) so the synaptic drive's spread is ``drive_std`` units.

LIF layers (threshold 1 in network units): weights set from the data so the layer fires at
``hidden_rate`` spikes per neuron and step.

The data-dependent part (:func:`calibrate_from_data`) scales each row of each weight matrix
(one postsynaptic neuron) in network order on one batch, with the layers before it already
calibrated: a FeLIF neuron on the spread of its input current, a LIF neuron (by bisection) on
its firing rate, so that no neuron starts silent or saturated. Without it a layer's scale
depends on how many presynaptic neurons fire, which the card cannot know.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from bruno_lab.devices.felif import FeLIFParams
from bruno_lab.devices.felif_figures import charge_to_spike_c, rheobase_a

if TYPE_CHECKING:
    from bruno_lab.train.network import SpikingNetwork

log = logging.getLogger(__name__)

GAIN_SPREAD = 2.0
"""Per-neuron calibration gains stay within this factor of their layer's median."""


@dataclass(frozen=True)
class FeLIFScales:
    """A FeLIF layer's scales from its devices (per neuron, SI units) and its input scale."""

    charge_to_spike_c: Tensor
    bias_current_a: Tensor
    input_scale_a: float

    @property
    def bias_units(self) -> Tensor:
        """The bias currents in network units (what the layer's ``bias`` holds)."""
        return self.bias_current_a / self.input_scale_a


def felif_scales(
    params: FeLIFParams, step_s: float, bias_rate: float, rel_tol: float = 1e-2
) -> FeLIFScales:
    """Input scale (A per network unit) and per-neuron bias currents of a FeLIF layer: the bias
    of neuron i is its rheobase for a spike within ``1/bias_rate`` steps from rest (0 A for
    ``bias_rate`` 0)."""
    q = charge_to_spike_c(params).to(torch.float64)
    scale = float(q.mean()) / step_s
    if bias_rate > 0:
        bias = rheobase_a(params, step_s / bias_rate, rel_tol=rel_tol)
    else:
        bias = torch.zeros_like(q)
    return FeLIFScales(q.float(), bias.float(), scale)


@dataclass
class CalibrationTargets:
    """What :func:`calibrate_from_data` aims at (see the module docstring)."""

    hidden_rate: float = 0.1
    drive_std: float = 0.5

    def validate(self) -> None:
        if not 0 < self.hidden_rate < 1 or not self.drive_std > 0:
            raise ValueError("hidden_rate must be in (0, 1) and drive_std > 0")


def _bisect_gains(measure: Any, target: float, n: int, lo: float = 1e-3, hi: float = 1e4) -> Tensor:
    """Per-neuron gains g (n,) with measure(g)[i] ~ target, for measure increasing in each
    g[i] (bisection in log g, all neurons at once; a neuron out of reach ends at a bound)."""
    low = torch.full((n,), math.log(lo), dtype=torch.float64)
    high = torch.full((n,), math.log(hi), dtype=torch.float64)
    for _ in range(24):  # bracket ratio 1e7 -> 1.01 in 24 halvings of log g
        mid = 0.5 * (low + high)
        below = measure(mid.exp()) < target
        low = torch.where(below, mid, low)
        high = torch.where(below, high, mid)
    return (0.5 * (low + high)).exp()


@torch.no_grad()
def calibrate_from_data(
    network: SpikingNetwork, x: Tensor, targets: CalibrationTargets | None = None
) -> dict[str, float]:
    """Scale the network's weight matrices (in place) so each layer starts in its active range
    on the batch ``x`` (classification (B, T, C), sequence (T, K)); returns the gain applied to
    each matrix and the rates reached (hidden spikes per neuron-step, output too)."""

    targets = targets or CalibrationTargets()
    targets.validate()
    was_training = network.training
    network.eval()
    seq = network.config.kind == "sequence"
    xs = x.unsqueeze(1) if seq else x.transpose(0, 1)  # (T, B, C)
    for s in network.synapses():
        s.prepare()
    if network.encoder is not None:
        xs = network.encoder(xs)
    report: dict[str, float] = {}
    hidden = network.hidden
    g_in = _calibrate_synapse(network.syn_in, xs, hidden, targets)
    h = hidden(network.syn_in(xs))
    report["gain_input"] = float(g_in.mean())
    report["hidden_rate"] = float(h.mean())
    report["hidden_silent_fraction"] = float((h.sum((0, 1)) == 0).float().mean())
    out_layer = network.output
    if out_layer is not None:
        g_out = _calibrate_synapse(network.syn_out, h, out_layer, targets)
        y = out_layer(network.syn_out(h))
        report["gain_output"] = float(g_out.mean())
        report["output_rate"] = float(y.mean())
        report["output_silent_fraction"] = float((y.sum((0, 1)) == 0).float().mean())
    for s in network.synapses():
        s.prepare()
    network.train(was_training)
    return report


def _calibrate_synapse(synapse: Any, x: Tensor, layer: Any, targets: CalibrationTargets) -> Tensor:
    """Scale each row of ``synapse`` (one postsynaptic neuron) in place so that neuron starts in
    its active range on ``x`` (T, B, in): a FeLIF neuron's synaptic drive spreads by
    ``drive_std`` network units, a LIF neuron fires at ``hidden_rate``. Returns the row gains.

    Rows are set on the float weights; a quantized synapse (one scale per layer: the rows are
    coupled through max|W|) then gets one common factor so the layer as a whole meets the
    target in its own mode (the rounding and the cells' deviates included)."""
    from bruno_lab.train.felif_layer import FeLIFLayer

    w0 = synapse.weight.detach().clone()
    felif = isinstance(layer, FeLIFLayer)
    noise = synapse.noise_generator.get_state()

    def apply(g: Tensor) -> None:
        # the same rounding / read-noise draws for every candidate gain (a smooth bisection)
        synapse.noise_generator.set_state(noise)
        synapse.weight.copy_(w0 * g.to(w0.dtype).unsqueeze(1))
        synapse.prepare()

    def drive_std(g: Tensor) -> Tensor:
        apply(g)
        return synapse(x).reshape(-1, synapse.n_out).std(0).to(torch.float64)

    def rate(g: Tensor) -> Tensor:
        apply(g)
        return layer(synapse(x)).mean((0, 1)).to(torch.float64)

    def float_drive(g: Tensor) -> Tensor:  # the float weights, whatever the synapse's mode
        return x @ (w0 * g.to(w0.dtype).unsqueeze(1)).T

    if felif:
        std = float_drive(torch.ones(synapse.n_out)).reshape(-1, synapse.n_out).std(0)
        std = std.to(torch.float64)
        if bool((std == 0).any()):
            log.warning("init: FeLIF neurons without synaptic drive on this batch")
        gains = torch.where(std > 0, targets.drive_std / std.clamp_min(1e-30), 1.0)
    else:

        def float_rate(g: Tensor) -> Tensor:
            return layer(float_drive(g)).mean((0, 1)).to(torch.float64)

        gains = _bisect_gains(float_rate, targets.hidden_rate, synapse.n_out)
    # a neuron whose drive is almost never positive would need a huge gain (and then fire on
    # rare coincidences with huge weights): keep every gain within GAIN_SPREAD of the median
    median = float(gains.median())
    gains = gains.clamp(median / GAIN_SPREAD, median * GAIN_SPREAD)
    if synapse.mode != "fp32":
        if felif:
            measure = lambda f: drive_std(gains * f).mean().reshape(1)  # noqa: E731
            target = targets.drive_std
        else:
            measure = lambda f: rate(gains * f).mean().reshape(1)  # noqa: E731
            target = targets.hidden_rate
        gains = gains * _bisect_gains(measure, target, 1, lo=0.1, hi=10.0)
    apply(gains)
    return gains
