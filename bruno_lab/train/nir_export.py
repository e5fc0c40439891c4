"""Export a trained network to NIR (Neuromorphic Intermediate Representation, ``nir`` >= 1.0).

Mapping (time in seconds, one network step = ``step_s``):
* the Braille encoder -> ``Affine`` (tiling matrix times gain, bias gain*offset);
* each synapse -> ``Linear`` (``Affine`` with the readout bias) with the *deployed* weights:
  fp32 the float weights; paperN round-to-nearest on the layer's levels (no stochastic draw);
  device the level-pair means times the layer's weight per siemens (no programming noise);
* LIF -> ``CubaLIF`` with ``tau_mem = step_s/(1 - a)``, ``tau_syn = step_s/(1 - b)``, ``r = 1``,
  ``v_leak = 0``, ``v_threshold = 1``, ``v_reset = 0`` (our update is the forward-Euler
  discretisation of CubaLIF at ``step_s``; our reset is subtractive, noted in metadata);
* FeLIF has no NIR primitive: it is exported as ``IF`` with ``r = input_scale_a*step_s/Ctot``
  per step (the membrane without ferroelectric switching or leakage: an approximation) and
  ``v_threshold = V_thr``; the node's metadata carries the exact FeLIF parameters
  (``bruno_lab_neuron = "felif"``, ``felif_params``) for a simulator that knows the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bruno_lab.devices.fecap import linear_capacitance_f
from bruno_lab.extras import require_extra
from bruno_lab.train import rram
from bruno_lab.train.felif_layer import FeLIFLayer
from bruno_lab.train.lif import DECAY_MAX, DECAY_MIN, LIFLayer
from bruno_lab.train.network import SpikingNetwork
from bruno_lab.train.quant import levels_per_side
from bruno_lab.train.synapse import Synapse


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
    scale = w.abs().max() / m
    return (w / scale).round().clamp(-m, m) * scale if float(scale) > 0 else w.clone()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).numpy()


def _synapse_node(syn: Synapse) -> Any:
    import nir

    meta = {"bruno_lab_synapse_mode": syn.mode}
    w = _np(deployed_weight(syn))
    if syn.bias is not None:
        return nir.Affine(weight=w, bias=_np(syn.bias), metadata=meta)
    return nir.Linear(weight=w, metadata=meta)


def _neuron_node(layer: Any, step_s: float) -> Any:
    import nir

    if isinstance(layer, FeLIFLayer):
        p = layer.params()
        ctot = linear_capacitance_f(p)
        return nir.IF(
            r=_np(layer.input_scale_a * step_s / ctot),
            v_threshold=_np(p.v_thr_v),
            metadata={
                "bruno_lab_neuron": "felif",
                "approximation": "IF without ferroelectric switching or leakage",
                "felif_params": p.to_json(),
                "input_scale_a": layer.input_scale_a,
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
        nodes["encoder"] = nir.Affine(
            weight=_np(enc.gain[:, None] * tile), bias=_np(enc.gain * enc.offset)
        )
        edges.append((prev, "encoder"))
        prev = "encoder"
    nodes["syn_in"] = _synapse_node(network.syn_in)
    nodes["hidden"] = _neuron_node(network.hidden, cfg.step_s)
    edges += [(prev, "syn_in"), ("syn_in", "hidden")]
    if network.syn_rec is not None:
        nodes["syn_rec"] = _synapse_node(network.syn_rec)
        edges += [("hidden", "syn_rec"), ("syn_rec", "hidden")]
    nodes["syn_out"] = _synapse_node(network.syn_out)
    edges.append(("hidden", "syn_out"))
    last = "syn_out"
    if network.output is not None:
        nodes["output_neurons"] = _neuron_node(network.output, cfg.step_s)
        edges.append(("syn_out", "output_neurons"))
        last = "output_neurons"
    nodes["output"] = nir.Output(output_type={"output": np.array([cfg.n_out])})
    edges.append((last, "output"))
    return nir.NIRGraph(
        nodes=nodes,
        edges=edges,
        metadata={"bruno_lab_config": cfg.to_json(), "readout": cfg.kind},
    )


def write_nir(network: SpikingNetwork, path: str | Path) -> Any:
    """Write the NIR graph (HDF5) and return it."""
    require_extra("nir", "NIR export")
    import nir

    graph = to_nir(network)
    nir.write(str(path), graph)
    return graph
