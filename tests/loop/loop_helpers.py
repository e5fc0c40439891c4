"""Helpers of the whole-loop tests: a small wafer with an RRAM array per die, a programmatic
RRAM card, and small saved networks (device-mode synapses) to deploy.

A uniquely named module (not conftest.py): several test folders have a conftest, and
``from conftest import ...`` would pick whichever is first on sys.path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DEMO_TRUTH = Path(__file__).resolve().parents[2] / "protocols" / "examples" / "demo_truth.yaml"


def loop_truth(
    n_rram: int = 16,
    rram_params: dict[str, Any] | None = None,
    crossbar: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The demo truth on a 9-die wafer with ``n_rram`` single RRAM cells per die and no random
    defects; ``rram_params`` overrides RRAM population entries (name -> distribution). The demo's
    1T1R crossbar is left out unless ``crossbar`` gives its ``array`` fields to change (``{}``:
    as in the demo), so the single sites keep their indices 3.. either way."""
    truth = copy.deepcopy(yaml.safe_load(DEMO_TRUTH.read_text()))
    truth["wafer"] = {
        "diameter_mm": 40.0,
        "edge_exclusion_mm": 0.0,
        "die_width_um": 8000.0,
        "die_height_um": 8000.0,
    }
    fixed = [s for s in truth["sites"] if s["kind"] not in ("rram", "rram_array")]
    rram = [s for s in truth["sites"] if s["kind"] == "rram"][:n_rram]
    arrays = [s for s in truth["sites"] if s["kind"] == "rram_array"]
    truth["sites"] = fixed + rram
    if crossbar is not None:
        truth["sites"].append({**arrays[0], "array": {**arrays[0]["array"], **crossbar}})
    truth["populations"]["fecap"]["n_domains"] = 4
    truth["populations"]["rram"]["params"].update(rram_params or {})
    truth["defects"] = {"short_rate": 0.0, "open_rate": 0.0, "stuck_rate": 0.0}
    return truth


def rram_card_dict(n_levels: int = 4, g_max_siemens: float = 100e-6) -> dict[str, Any]:
    """An RRAM card whose ladder spans 10 µS .. ``g_max_siemens``: the range the sim's formed
    cells reach by RESET pulses alone (higher targets need a SET, which often overshoots)."""
    means = [10e-6 + k * ((g_max_siemens - 10e-6) / (n_levels - 1)) for k in range(n_levels)]
    return {
        "device_kind": "rram",
        "scope": "wafer",
        "scope_id": "W-loop",
        "model_name": "rram-features",
        "model_version": "1",
        "n_devices": 20,
        "n_defective": 0,
        "parameters": {},
        "rram": {
            "read_voltage_v": 0.2,
            "levels": [
                {"index": k, "mean_siemens": m, "sigma_siemens": 3e-6, "n_cells": 20}
                for k, m in enumerate(means)
            ],
            "read_noise": {"floor_siemens": 0.2e-6, "slope_rel": 0.005},
            "relaxation": {
                "t0_s": 1.0,
                "drift_rel_per_decade": 0.0,
                "sigma_siemens_per_decade": 0.0,
            },
            "stuck_fraction": 0.0,
            "stuck_conductance_siemens": 0.0,
        },
    }


TINY_TASK = {
    "n_classes": 2,
    "n_channels": 2,
    "n_steps": 8,
    "n_train": 64,
    "n_test": 64,
    "rate": 0.5,
    "flip": 0.0,
    "jitter": False,
    "seed": 3,
}


def save_tiny_network(
    path: Path, *, n_hidden: int = 1, epochs: int = 0, neuron: str = "lif", seed: int = 0
) -> Path:
    """A device-mode network on the tiny patterns task (2 inputs, 2 classes), trained for
    ``epochs`` (0: as initialised), saved with the task it needs for evaluation."""
    import torch

    from bruno_lab.cards import parse_card
    from bruno_lab.train.data.patterns import make_patterns
    from bruno_lab.train.io import save_network
    from bruno_lab.train.loop import TrainConfig, train
    from bruno_lab.train.network import NetworkConfig, SpikingNetwork

    torch.set_num_threads(1)
    data = make_patterns(**TINY_TASK)
    cfg = NetworkConfig(
        kind="classify",
        n_in=data.n_in,
        n_hidden=n_hidden,
        n_out=data.n_out,
        neuron=neuron,
        synapse="device",
        seed=seed,
        n_micro=20,
        init_scale_in=20.0,
        init_scale_out=16.0 if neuron == "lif" else 4.0,
    )
    net = SpikingNetwork(cfg, rram_card=parse_card(rram_card_dict()))
    if epochs:
        train(net, data, TrainConfig(epochs=epochs, lr=2e-2, batch_size=16, seed=seed))
    save_network(path, net, {"task": "patterns", "task_kwargs": TINY_TASK, "seed": seed})
    return path
