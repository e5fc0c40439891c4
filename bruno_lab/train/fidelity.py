"""Deployment fidelity of the neuron: a trained network evaluated with its FeLIF layers run as
the device runs (the simulated lab's physics), next to the network as trained.

BRUNO's default neuron freezes at V_thr within a 1 ms step and resets at the next one, so it
fires at most once per step; the device resets at the crossing (``felif_run_sequence``) and, under
a strong input, fires more often. ``loop.evaluate_fidelity`` runs the test split both ways (the
device way through ``FeLIFLayer.device_forward``: float64, every micro-step with its threshold
and reset, each sequence from rest; the weights, biases and devices are the network's own) and
reports both accuracies, their gap and the FeLIF layers' spike rates. A network trained with
``felif_reset="at-crossing"`` has the device's spike counts in training already.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from bruno_lab.train.data import TaskData
from bruno_lab.train.network import SpikingNetwork


@dataclass(frozen=True)
class FidelityReport:
    """Test-split figures of a network as trained and with the device's neurons."""

    n_samples: int
    accuracy_trained: float
    accuracy_device: float
    loss_trained: float
    loss_device: float
    felif_rate_trained: float  # FeLIF spikes per neuron and step
    felif_rate_device: float

    @property
    def gap(self) -> float:
        """Accuracy as trained minus accuracy on the device's neurons."""
        return self.accuracy_trained - self.accuracy_device

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"gap": self.gap}


@contextmanager
def device_neurons(network: SpikingNetwork) -> Iterator[None]:
    """Within the block, every FeLIF layer of ``network`` runs ``device_forward``."""
    layers = network.felif_layers()
    before = [layer.device_faithful for layer in layers]
    try:
        for layer in layers:
            layer.device_faithful = True
        yield
    finally:
        for layer, flag in zip(layers, before, strict=True):
            layer.device_faithful = flag


def subset(data: TaskData, max_samples: int | None) -> tuple[Any, Any]:
    n = data.n_test if max_samples is None else min(max_samples, data.n_test)
    return data.test_x[:n], data.test_y[:n]


def mean_rate(values: list[Tensor]) -> float:
    return float(torch.cat(values).mean()) if values else math.nan
