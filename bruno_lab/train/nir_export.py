"""Export a trained network to NIR (Neuromorphic Intermediate Representation, ``nir`` >= 1.0).

NIR is continuous-time (seconds); every node here is also exact for a simulation at the
network's step ``dt_s`` (graph and node metadata), which is how the trained network computes.
Mapping (docs/nir.md gives the measured agreement):

* the Braille encoder -> ``Affine`` (tiling matrix times gain, bias gain*offset);
* each synapse -> ``Linear`` or ``Affine`` with the *deployed* weights: fp32 the float weights;
  paperN round-to-nearest on the layer's levels (no stochastic draw); device the level-pair
  means times the layer's weight per siemens (no programming noise). The DC bias current of
  the FeLIF neurons it drives (network units) is that synapse's ``Affine`` bias;
* LIF -> ``CubaLIF`` with ``tau_mem = dt/(1 - a)``, ``tau_syn = dt/(1 - b)``, ``r = 1``,
  ``v_threshold = 1``, ``v_reset = 0`` (our update is CubaLIF's forward-Euler step at ``dt``;
  our reset subtracts the threshold, which NIR cannot say: metadata ``reset``);
* FeLIF -> ``IF`` on its *effective charge*. At the step's time scale the neuron integrates
  its input charge: the membrane's ``C_tot*V`` plus the polarization switching ``A*P``, and it
  spikes once both are spent (``felif_figures.charge_to_spike_c``: 1.43 pC + 11 pC = 12.4 pC
  from rest, 13.3 pC from the reset state, at the design's defaults). The node's ``v`` is that
  charge over ``C_eff = charge_to_spike/V_thr`` (about 8.7x C_tot): ``r = input_scale_a/C_eff``
  (V/s per network unit), ``v_threshold = V_thr`` and ``v_reset = V_thr*(1 - q_reset/q_rest)``
  so that a spike from the reset state takes ``q_reset``. At ``dt`` the IF fires at most once
  per step and discards the overshoot, as BRUNO's neuron does (frozen at V_thr, reset at the
  next step). Leakage (16 pA at threshold) is left out, and so is the -5 V clip: below
  ``v_min`` (metadata; ``C_tot*5 V`` below rest, ``felif_figures.clip_charge_c``) the device
  discards input charge, which no NIR 1.0 node can express. The exact FeLIF parameters stay in
  the metadata (``bruno_lab_neuron = "felif"``, ``felif_params``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bruno_lab.devices.felif_figures import charge_to_spike_c, clip_charge_c
from bruno_lab.extras import require_extra
from bruno_lab.train import rram
from bruno_lab.train.felif_layer import FeLIFLayer
from bruno_lab.train.lif import DECAY_MAX, DECAY_MIN, LIFLayer
from bruno_lab.train.network import SpikingNetwork
from bruno_lab.train.quant import levels_per_side
from bruno_lab.train.synapse import Synapse

FORMAT = 2
"""Graph metadata ``bruno_lab_nir_format``: 2 is the FeLIF node on its effective charge (1, no
field: ``r`` from C_tot alone, per step, ~9x too excitable)."""


def deployed_weight(syn: Synapse) -> torch.Tensor:
    """The weights a deployment realises on average (no stochastic draws), (out, in)."""
    w = syn.weight.detach()
    if syn.mode == "fp32":
        return w.clone()
    if syn.mode == "device":
        assert syn.stats is not None
        levels, scale = syn.level_pairs()
        g = syn.stats.level_mean_siemens[levels]
        return rram.pair_to_weight(g, scale)
    m = levels_per_side(syn.bits or 32)
    step = w.abs().max() / m
    return (w / step).round().clamp(-m, m) * step if float(step) > 0 else w.clone()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).numpy()


def _synapse_node(syn: Synapse, neurons: Any) -> Any:
    """``syn`` with the DC bias current of the FeLIF ``neurons`` it drives (network units)."""
    import nir

    meta = {"bruno_lab_synapse_mode": syn.mode}
    w = _np(deployed_weight(syn))
    bias = None if syn.bias is None else syn.bias.detach().to(torch.float64)
    if isinstance(neurons, FeLIFLayer) and neurons.bias is not None:
        felif_bias = neurons.bias.detach().to(torch.float64)
        bias = felif_bias if bias is None else bias + felif_bias
        meta["bias_includes"] = "the FeLIF neurons' DC bias currents"
    if bias is not None:
        return nir.Affine(weight=w, bias=_np(bias), metadata=meta)
    return nir.Linear(weight=w, metadata=meta)


def felif_if_parameters(layer: FeLIFLayer) -> dict[str, np.ndarray]:
    """The FeLIF layer's ``IF`` node, per neuron (module docstring): ``r`` (V/s per network
    unit), ``v_threshold``, ``v_reset``, ``v_min`` (V of the node), and the charges to spike
    from rest and from the reset state (C) they come from."""
    p = layer.params().to(dtype=torch.float64)
    q_rest = charge_to_spike_c(p)
    q_reset = charge_to_spike_c(p, v_start_v=p.v_reset_v)
    c_eff = q_rest / p.v_thr_v
    return {
        "r": _np(layer.input_scale_a / c_eff),
        "v_threshold": _np(p.v_thr_v),
        "v_reset": _np(p.v_thr_v - q_reset / c_eff),
        "v_min": _np(-clip_charge_c(p) / c_eff),
        "charge_to_spike_c": _np(q_rest),
        "charge_to_spike_after_reset_c": _np(q_reset),
    }


def neuron_node(layer: torch.nn.Module, step_s: float) -> Any:
    """The NIR node of a FeLIF (``IF``) or LIF (``CubaLIF``) layer at the network step."""
    import nir

    if isinstance(layer, FeLIFLayer):
        f = felif_if_parameters(layer)
        return nir.IF(
            r=f["r"],
            v_threshold=f["v_threshold"],
            v_reset=f["v_reset"],
            metadata={
                "bruno_lab_neuron": "felif",
                "dt_s": step_s,
                "approximation": (
                    "IF on the charge to spike (membrane + polarization switching); leakage "
                    "and the -5 V clip (v_min) left out"
                ),
                "v_min": f["v_min"],
                "charge_to_spike_c": f["charge_to_spike_c"],
                "charge_to_spike_after_reset_c": f["charge_to_spike_after_reset_c"],
                "felif_params": layer.params().to_json(),
                "input_scale_a": layer.input_scale_a,
                "felif_reset": layer.reset,
                "reset": "V -> v_reset_v, P -> -ps_c_m2 at the step after a spike",
            },
        )
    assert isinstance(layer, LIFLayer)
    a = layer.decay_membrane.detach().clamp(DECAY_MIN, DECAY_MAX - 1e-6)
    b = layer.decay_current.detach().clamp(DECAY_MIN, DECAY_MAX - 1e-6)
    n = layer.n
    return nir.CubaLIF(
        tau_syn=_np(step_s / (1.0 - b)),
        tau_mem=_np(step_s / (1.0 - a)),
        r=np.ones(n),
        v_leak=np.zeros(n),
        v_threshold=np.ones(n),
        v_reset=np.zeros(n),
        w_in=np.ones(n),
        metadata={"bruno_lab_neuron": "lif", "reset": "subtractive", "dt_s": step_s},
    )


def to_nir(network: SpikingNetwork) -> Any:
    """The network as a ``nir.NIRGraph``."""
    require_extra("nir", "NIR export")
    import nir

    cfg = network.config
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array([cfg.n_in])})}
    edges: list[tuple[str, str]] = []
    prev = "input"
    if network.encoder is not None:
        enc = network.encoder
        tiles = enc.tiles
        tile = torch.cat([torch.eye(cfg.n_in)] * tiles, dim=0)
        gain, offset = torch.as_tensor(enc.gain), torch.as_tensor(enc.offset)
        nodes["encoder"] = nir.Affine(weight=_np(gain[:, None] * tile), bias=_np(gain * offset))
        edges.append((prev, "encoder"))
        prev = "encoder"
    nodes["syn_in"] = _synapse_node(network.syn_in, network.hidden)
    nodes["hidden"] = neuron_node(network.hidden, cfg.step_s)
    edges += [(prev, "syn_in"), ("syn_in", "hidden")]
    if network.syn_rec is not None:
        nodes["syn_rec"] = _synapse_node(network.syn_rec, None)
        edges += [("hidden", "syn_rec"), ("syn_rec", "hidden")]
    nodes["syn_out"] = _synapse_node(network.syn_out, network.output)
    edges.append(("hidden", "syn_out"))
    last = "syn_out"
    if network.output is not None:
        nodes["output_neurons"] = neuron_node(network.output, cfg.step_s)
        edges.append(("syn_out", "output_neurons"))
        last = "output_neurons"
    nodes["output"] = nir.Output(output_type={"output": np.array([cfg.n_out])})
    edges.append((last, "output"))
    return nir.NIRGraph(
        nodes=nodes,
        edges=edges,
        metadata={
            "bruno_lab_config": cfg.to_json(),
            "bruno_lab_nir_format": FORMAT,
            "readout": cfg.kind,
            "dt_s": cfg.step_s,
        },
    )


def write_nir(network: SpikingNetwork, path: str | Path) -> Any:
    """Write the NIR graph (HDF5) and return it."""
    require_extra("nir", "NIR export")
    import nir

    graph = to_nir(network)
    nir.write(str(path), graph)
    return graph
