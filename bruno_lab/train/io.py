"""Saving a trained network with its cards, loading it back, checkpoints, and the programming map.

Every file here is written in a format that cannot carry code (``bruno_lab.safeio``): a saved
network or a checkpoint is a safetensors file (tensors) whose header holds ``format``,
``version``, a JSON ``meta`` document and a SHA-256 over both. Network (``bruno-lab-network``,
version 2): tensors ``state/<name>`` (the state dict: the FeLIF devices drawn from the card and
the RRAM cells' deviates are buffers in it); meta ``{"config", "cards": {"rram": body|None,
"felif": body|None}, "metrics"}`` with the cards' JSON bodies. Checkpoint
(``bruno-lab-checkpoint``, version 2): tensors ``state/<name>``, ``optimizer/<param>/<name>``
and ``generator/<i>``; meta ``{"optimizer": {"param_groups", "state"}, "history",
"train_config", "network_config"}``. Version 1 of both was a ``torch.save`` pickle: such files
are refused unread, with a message saying why.

The programming map (docs/programming-map.md) lists, for each device-mode synapse in network
order (input, recurrent, output) and within it row-major (row = post-synaptic neuron, col =
pre-synaptic input) with the G+ cell before the G- cell, the logical cell and its target level
and conductance. Deployment assigns physical sites in this order; :func:`infer_with_conductances`
runs the network on the conductances read back, one value per logical cell in the same order.
It is JSON with ``format``, ``version`` (2) and ``sha256``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bruno_lab.cards import parse_card
from bruno_lab.errors import BadInputError, DataError
from bruno_lab.safeio import (
    read_json_doc,
    read_tensor_file,
    write_json_doc,
    write_tensor_file,
)
from bruno_lab.train.network import NetworkConfig, SpikingNetwork
from bruno_lab.train.synapse import Synapse

FORMAT = "bruno-lab-network"
CHECKPOINT_FORMAT = "bruno-lab-checkpoint"
MAP_FORMAT = "bruno-lab-programming-map"
VERSION = 2
MAP_VERSION = 2
POLARITIES = ("+", "-")


def save_network(
    path: str | Path, network: SpikingNetwork, metrics: dict[str, Any] | None = None
) -> None:
    """Write the trained network with the cards it was trained against (atomic rename)."""
    meta = {
        "config": network.config.to_json(),
        "cards": {
            "rram": network.rram_card.model_dump(mode="json") if network.rram_card else None,
            "felif": network.felif_card.model_dump(mode="json") if network.felif_card else None,
        },
        "metrics": metrics or {},
    }
    tensors = {f"state/{k}": v for k, v in network.state_dict().items()}
    write_tensor_file(path, FORMAT, VERSION, tensors, meta)


def read_network_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a saved network (config, cards, metrics) without loading its tensors."""
    _, meta, _ = read_tensor_file(path, FORMAT, (VERSION,), "bruno-lab network file", tensors=False)
    return meta


def _state(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def _load_state(network: torch.nn.Module, state: dict[str, Tensor], where: str) -> None:
    try:
        network.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{where}: the stored weights do not fit the network ({first})") from None


def _sized_config(config: Any, tensors: dict[str, Tensor], path: Path) -> dict[str, Any]:
    """The stored config, refused (``DataError``) when its sizes are not plain integers or
    describe more weights than the file stores: the header is checksummed but anyone can
    write one, and the network is built (its weights allocated) before they are compared."""
    from bruno_lab.limits import MAX_N_MICRO

    if not isinstance(config, dict):
        raise DataError(f"{path}: network config is not a JSON object")
    sizes: dict[str, int] = {}
    for name, default in (("n_in", 0), ("n_hidden", 0), ("n_out", 0), ("encoder_tiles", 0),
                          ("n_micro", 1), ("seed", 0)):  # fmt: skip
        value = config.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
            raise DataError(f"{path}: network config {name} = {value!r} is not a 64-bit integer")
        sizes[name] = value
    stored = sum(t.numel() for t in tensors.values())
    weights = sizes["n_hidden"] * (sizes["n_in"] * max(1, sizes["encoder_tiles"]) + sizes["n_out"])
    if weights > stored or sizes["n_micro"] > MAX_N_MICRO:
        raise DataError(
            f"{path}: the network config (n_in {sizes['n_in']}, n_hidden {sizes['n_hidden']}, "
            f"n_out {sizes['n_out']}, encoder_tiles {sizes['encoder_tiles']}, n_micro "
            f"{sizes['n_micro']}) needs {weights} weights, the file stores {stored} values"
            + (f"; n_micro is at most {MAX_N_MICRO}" if sizes["n_micro"] > MAX_N_MICRO else "")
        )
    return config


def load_network(path: str | Path) -> SpikingNetwork:
    """A network saved by :func:`save_network`, in eval mode, with its cards attached."""
    path = Path(path)
    tensors, meta, _ = read_tensor_file(path, FORMAT, (VERSION,), "bruno-lab network file")
    cards = meta.get("cards") or {}
    try:
        rram = parse_card(cards["rram"], where=f"{path}: rram card") if cards.get("rram") else None
        felif = (
            parse_card(cards["felif"], where=f"{path}: felif card") if cards.get("felif") else None
        )
        config = NetworkConfig.from_json(_sized_config(meta["config"], tensors, path))
        net = SpikingNetwork(config, rram_card=rram, felif_card=felif)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{path}: network metadata is not usable ({type(exc).__name__}: {exc})"
        ) from None
    _load_state(net, _state(tensors, "state/"), str(path))
    net.eval()
    return net


# -- checkpoints ------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns; plain values, applied by the training loop."""

    state_dict: dict[str, Tensor]
    optimizer: dict[str, Any]
    generator_states: list[Tensor]
    history: list[dict[str, Any]]
    train_config: dict[str, Any]
    network_config: dict[str, Any]


def save_checkpoint(
    path: str | Path,
    network: SpikingNetwork,
    optimizer: torch.optim.Optimizer,
    generator_states: list[Tensor],
    history: list[dict[str, Any]],
    train_config: dict[str, Any],
) -> None:
    """Write a resumable checkpoint atomically: weights, optimizer, noise generators, history."""
    tensors = {f"state/{k}": v for k, v in network.state_dict().items()}
    opt = optimizer.state_dict()
    opt_state: dict[str, dict[str, Any]] = {}
    for pid, entries in opt["state"].items():
        plain: dict[str, Any] = {}
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer/{pid}/{name}"] = value
            else:
                plain[name] = value
        opt_state[str(pid)] = plain
    for i, st in enumerate(generator_states):
        tensors[f"generator/{i}"] = st
    meta = {
        "optimizer": {"param_groups": opt["param_groups"], "state": opt_state},
        "n_generators": len(generator_states),
        "history": history,
        "train_config": train_config,
        "network_config": network.config.to_json(),
    }
    write_tensor_file(path, CHECKPOINT_FORMAT, VERSION, tensors, meta)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint written by :func:`save_checkpoint` (checked: format, version, checksum)."""
    path = Path(path)
    tensors, meta, _ = read_tensor_file(
        path, CHECKPOINT_FORMAT, (VERSION,), "bruno-lab training checkpoint"
    )
    try:
        opt_meta = meta["optimizer"]
        state: dict[int, dict[str, Any]] = {}
        for pid, plain in opt_meta["state"].items():
            state[int(pid)] = dict(plain)
        for name, value in _state(tensors, "optimizer/").items():
            pid, _, key = name.partition("/")
            state.setdefault(int(pid), {})[key] = value
        n_gen = int(meta["n_generators"])
        generators = [tensors[f"generator/{i}"] for i in range(n_gen)]
        return Checkpoint(
            state_dict=_state(tensors, "state/"),
            optimizer={"state": state, "param_groups": list(opt_meta["param_groups"])},
            generator_states=generators,
            history=list(meta["history"]),
            train_config=dict(meta["train_config"]),
            network_config=dict(meta["network_config"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{path}: checkpoint content is not usable ({type(exc).__name__}: {exc})"
        ) from None


def apply_checkpoint(
    ck: Checkpoint, network: SpikingNetwork, optimizer: torch.optim.Optimizer, where: str
) -> None:
    """Load a checkpoint's weights and optimizer state into ``network`` and ``optimizer``."""
    current = json.loads(json.dumps(network.config.to_json()))
    if ck.network_config != current:
        diff = sorted(
            k
            for k in set(ck.network_config) | set(current)
            if ck.network_config.get(k) != current.get(k)
        )
        raise BadInputError(
            f"{where}: the checkpoint was written for another network (differs in "
            f"{', '.join(diff)}); use the same options or a new --checkpoint"
        )
    _load_state(network, ck.state_dict, where)
    try:
        optimizer.load_state_dict(ck.optimizer)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{where}: optimizer state does not fit ({exc})") from None


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
        "version": MAP_VERSION,
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
    """Write the map as JSON with its checksum; returns it."""
    return write_json_doc(path, programming_map(network))


def read_programming_map(path: str | Path) -> dict[str, Any]:
    """A map written by :func:`write_programming_map` (format, version, checksum checked)."""
    return read_json_doc(path, MAP_FORMAT, (MAP_VERSION,), "bruno-lab programming map")


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
