"""The demo's network and task: what ``bruno-lab demo`` trains, in the library.

:data:`DEMO` is sized for one 64 x 64 1T1R array per die (4096 cells, each weight a
differential pair of cells, so at most 2048 weights): a 16-32-4 FeLIF network (640 weights,
1280 cells; LIF hidden layer, FeLIF outputs, BRUNO, device-mode RRAM synapses on the wafer's
card) on the 4-class spike-pattern task (16 channels, 12 steps of 1 ms, 256 training and 128
test samples), 8 epochs. A die with fewer RRAM cells gets :data:`DEMO_SMALL`, the largest
network that fits on the easier 2-class, 4-channel task; at 64 cells (5 hidden neurons) it does
not learn reliably, and the demo says so (:func:`learned`).

``network_config``/``train_config`` give what ``build_network`` and ``train`` take; a run is
"learned" when its test accuracy is at least :data:`LEARNED_ACCURACY` and it did not collapse.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bruno_lab.errors import BadInputError
from bruno_lab.train.data import TaskData
from bruno_lab.train.loop import TrainConfig, TrainResult
from bruno_lab.train.network import NetworkConfig

LEARNED_ACCURACY = 0.9


@dataclass(frozen=True)
class DemoSpec:
    """A demo network on its task (``make_patterns`` keyword arguments) and its training."""

    task: dict[str, Any]
    n_hidden: int
    epochs: int
    lr: float
    n_micro: int = 1000
    batch_size: int = 32
    synapse: str = "device"

    @property
    def n_in(self) -> int:
        return int(self.task["n_channels"])

    @property
    def n_out(self) -> int:
        return int(self.task["n_classes"])

    @property
    def n_weights(self) -> int:
        return self.n_hidden * (self.n_in + self.n_out)

    @property
    def n_cells(self) -> int:
        """RRAM cells of the deployed network (a differential pair per weight)."""
        return 2 * self.n_weights

    def data(self) -> TaskData:
        from bruno_lab.train.data.patterns import make_patterns

        return make_patterns(**self.task)

    def network_config(self, seed: int) -> NetworkConfig:
        return NetworkConfig(
            kind="classify",
            n_in=self.n_in,
            n_hidden=self.n_hidden,
            n_out=self.n_out,
            neuron="felif",
            method="bruno",
            synapse=self.synapse,
            seed=seed,
            n_micro=self.n_micro,
        )

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, seed=seed)

    def describe(self) -> str:
        t = self.task
        return (
            f"FeLIF network {self.n_in}-{self.n_hidden}-{self.n_out} ({self.n_weights} weights, "
            f"{self.n_cells} RRAM cells), {self.synapse} synapses, BRUNO with {self.n_micro} "
            f"micro-steps per 1 ms step, {self.epochs} epochs on the {self.n_out}-class pattern "
            f"task ({t['n_channels']} channels, {t['n_steps']} steps; {t['n_train']} training, "
            f"{t['n_test']} test samples)"
        )


DEMO = DemoSpec(
    task={
        "n_classes": 4,
        "n_channels": 16,
        "n_steps": 12,
        "n_train": 256,
        "n_test": 128,
        "rate": 0.15,
        "seed": 0,
    },
    n_hidden=32,
    epochs=8,
    lr=5e-2,
)
DEMO_SMALL = DemoSpec(
    task={
        "n_classes": 2,
        "n_channels": 4,
        "n_steps": 12,
        "n_train": 128,
        "n_test": 64,
        "rate": 0.3,
        "seed": 0,
    },
    n_hidden=5,
    epochs=12,
    lr=5e-2,
)


def demo_spec(capacity_cells: int) -> DemoSpec:
    """:data:`DEMO` if a die holds its cells, else :data:`DEMO_SMALL` with as many hidden
    neurons as the die's cells allow (bad input if not even one fits)."""
    if capacity_cells >= DEMO.n_cells:
        return DEMO
    per_hidden = 2 * (DEMO_SMALL.n_in + DEMO_SMALL.n_out)
    n_hidden = min(DEMO.n_hidden, capacity_cells // per_hidden)
    if n_hidden < 1:
        raise BadInputError(
            f"a die with {capacity_cells} RRAM cells holds no demo network ({per_hidden} needed)"
        )
    return dataclasses.replace(DEMO_SMALL, n_hidden=n_hidden)


def learned(result: TrainResult) -> bool:
    """The run's final test accuracy reached :data:`LEARNED_ACCURACY` without collapse."""
    final = result.final
    return final is not None and not result.collapsed and final.test_accuracy >= LEARNED_ACCURACY
