"""Saving a trained network with its cards, loading it back, and the programming map.

A saved network is one ``torch.save`` file: ``{"format": "bruno-lab-network", "version": 1,
"config", "state_dict", "cards": {"rram": body|None, "felif": body|None}, "metrics"}``; the card
bodies are the JSON of the cards the network was trained against (the FeLIF devices drawn from
the card are in the state dict as buffers, the RRAM cells' deviates too).

The programming map (docs/programming-map.md) lists, for each device-mode synapse in network
order (input, recurrent, output) and within it row-major (row = post-synaptic neuron, col =
pre-synaptic input) with the G+ cell before the G- cell, the logical cell and its target level
and conductance. Deployment assigns physical sites in this order; :func:`infer_with_conductances`
runs the network on the conductances read back, one value per logical cell in the same order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bruno_lab.cards import parse_card
from bruno_lab.errors import BadInputError, DataError
from bruno_lab.train.network import NetworkConfig, SpikingNetwork
from bruno_lab.train.synapse import Synapse

FORMAT = "bruno-lab-network"
MAP_FORMAT = "bruno-lab-programming-map"
VERSION = 1
POLARITIES = ("+", "-")


def save_network(
    path: str | Path, network: SpikingNetwork, metrics: dict[str, Any] | None = None
) -> None:
    """Write the trained network with the cards it was trained against (atomic rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "config": network.config.to_json(),
        "state_dict": network.state_dict(),
        "cards": {
            "rram": network.rram_card.model_dump(mode="json") if network.rram_card else None,
            "felif": network.felif_card.model_dump(mode="json") if network.felif_card else None,
        },
        "metrics": metrics or {},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(doc, tmp)
    tmp.replace(path)


def load_network(path: str | Path) -> SpikingNetwork:
    """A network saved by :func:`save_network`, in eval mode, with its cards attached."""
    path = Path(path)
    try:
        doc = torch.load(path, weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise DataError(f"{path}: cannot read a saved network ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"{path}: not a bruno-lab network file")
    cards = doc.get("cards") or {}
    rram = parse_card(cards["rram"], where=f"{path}: rram card") if cards.get("rram") else None
    felif = parse_card(cards["felif"], where=f"{path}: felif card") if cards.get("felif") else None
    net = SpikingNetwork(NetworkConfig.from_json(doc["config"]), rram_card=rram, felif_card=felif)
    net.load_state_dict(doc["state_dict"])
    net.eval()
    return net


def _device_synapses(network: SpikingNetwork) -> list[Synapse]:
    syns = network.synapses()
    if network.config.synapse != "device" or any(s.stats is None for s in syns):
        raise BadInputError(
            "a programming map needs a network trained with --synapse device (an RRAM card)"
        )
    return syns


def programming_map(network: SpikingNetwork) -> dict[str, Any]:
    """The map as a JSON-able dict (see docs/programming-map.md)."""
    syns = _device_synapses(network)
    layers, cells = [], []
    index = 0
    for layer_i, syn in enumerate(syns):
        levels, scale = syn.level_pairs()
        assert syn.stats is not None
        g_mean = syn.stats.level_mean_siemens
        n_cells = 2 * syn.n_out * syn.n_in
        layers.append(
            {
                "layer": layer_i,
                "name": syn.name,
                "rows": syn.n_out,
                "cols": syn.n_in,
                "weight_per_siemens": scale,
                "first_cell": index,
                "n_cells": n_cells,
            }
        )
        lv = levels.permute(1, 2, 0).reshape(-1).tolist()  # (row, col, polarity) row-major
        for k, level in enumerate(lv):
            cell, pol = divmod(k, 2)
            row, col = divmod(cell, syn.n_in)
            cells.append(
                {
                    "cell": index + k,
                    "layer": layer_i,
                    "row": row,
                    "col": col,
                    "polarity": POLARITIES[pol],
                    "level_index": int(level),
                    "target_conductance_siemens": float(g_mean[level]),
                }
            )
        index += n_cells
    card = network.rram_card
    assert card is not None
    return {
        "format": MAP_FORMAT,
        "version": VERSION,
        "rram_card": {
            "scope": card.scope,
            "scope_id": card.scope_id,
            "model_name": card.model_name,
            "model_version": card.model_version,
        },
        "read_voltage_v": card.rram.read_voltage_v if card.rram else None,
        "n_cells": index,
        "layers": layers,
        "cells": cells,
    }


def write_programming_map(network: SpikingNetwork, path: str | Path) -> dict[str, Any]:
    """Write the map as JSON; returns it."""
    doc = programming_map(network)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)
    return doc


def set_measured_conductances(
    network: SpikingNetwork, conductance_siemens: Tensor | None, pmap: dict[str, Any] | None = None
) -> None:
    """Make every device synapse use measured conductances (one per logical cell, map order),
    or, with ``None``, go back to simulated cells. ``pmap`` fixes the per-layer weight per
    siemens (default: the map of the network as it is now)."""
    syns = _device_synapses(network)
    if conductance_siemens is None:
        for s in syns:
            s.set_measured_conductance(None, 1.0)
        return
    pmap = pmap or programming_map(network)
    g = torch.as_tensor(conductance_siemens, dtype=torch.float32).reshape(-1)
    if g.numel() != pmap["n_cells"]:
        raise BadInputError(f"got {g.numel()} conductances, the map has {pmap['n_cells']} cells")
    for syn, layer in zip(syns, pmap["layers"], strict=True):
        part = g[layer["first_cell"] : layer["first_cell"] + layer["n_cells"]]
        cells = part.reshape(syn.n_out, syn.n_in, 2).permute(2, 0, 1).contiguous()
        syn.set_measured_conductance(cells, float(layer["weight_per_siemens"]))


def infer_with_conductances(
    network: SpikingNetwork,
    conductance_siemens: Tensor,
    x: Tensor,
    pmap: dict[str, Any] | None = None,
) -> Tensor:
    """Network output for inputs ``x`` (T, B, in) with every synapse realised by the measured
    conductances (no simulated programming error, stuck cells or read noise: the measurement
    has them). Restores the simulated cells afterwards."""
    set_measured_conductances(network, conductance_siemens, pmap)
    try:
        with torch.no_grad():
            return network(x)
    finally:
        set_measured_conductances(network, None)
