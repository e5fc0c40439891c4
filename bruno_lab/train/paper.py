"""The BRUNO paper's experiments by name: network, training settings and budget.

Networks (the paper's architectures; ``/work/shared/reference/bruno-method.md``):

* Braille (``classify``): encoder 4 -> 128 (channels tiled x32, fixed analog ``g*(x + b)``)
  -> dense 128 -> 256 (no bias) -> LIF 256 -> dense 256 -> 27 (no bias) -> 27 output neurons:
  ``felif`` (FeLIF + BRUNO), ``lif``, or ``rlif`` (the hidden LIF with a 256 x 256 recurrent
  matrix). Built by ``network.build_network``.
* Chorales (``sequence``): 54 -> W_in 150 x 54 (no bias) -> 150 recurrent units -> linear
  150 -> 54 with bias: ``felif`` (FeLIF + BRUNO, no recurrent weights), ``felif-bptt`` (the
  same trained with BPTT through every micro-step, checkpointed per network step), ``lif``
  (no recurrent weights), ``rlif`` (LIF with recurrent weights), all by ``build_network``;
  ``snu``, ``gru``, ``lstm`` (with recurrent weights) by ``baselines.BaselineNetwork``.

Weights: ``fp32`` or the paper's 8/4/3-bit stochastically rounded synapses (``SYNAPSES``).
Training: Adamax (0.9, 0.995) in ``train.loop``; Braille softmax cross-entropy on output spike
counts, batch 128, 150 epochs; chorales mean per-key binary cross-entropy with the first 5 steps
ignored, one sequence per batch, 100 epochs, learning rate 5e-3 reduced on a plateau of the
validation loss. The paper's FeLIF has no bias current: ``felif_bias_rate`` is 0 here unless
asked for (the physical initialisation of ``train.init`` is kept: input scale from the device's
charge to spike, weight scales from the data).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from bruno_lab.cards import ModelCardBody
from bruno_lab.errors import BadInputError
from bruno_lab.train.baselines import CELLS, BaselineConfig, BaselineNetwork
from bruno_lab.train.loop import TrainConfig
from bruno_lab.train.network import NetworkConfig, build_network

TASK_NEURONS: dict[str, tuple[str, ...]] = {
    "braille": ("felif", "lif", "rlif"),
    "braille-synthetic": ("felif", "lif", "rlif"),
    "chorales": ("felif", "felif-bptt", "lif", "rlif", *CELLS),
}
SYNAPSES: dict[str, str] = {"fp32": "fp32", "8": "paper8", "4": "paper4", "3": "paper3"}
"""Bit width as the paper's tables name it -> ``Synapse`` mode."""


@dataclass(frozen=True)
class PaperTask:
    """Sizes and training settings of one of the paper's tasks."""

    kind: str
    n_hidden: int
    encoder_tiles: int
    epochs: int
    batch_size: int
    lr: float
    lr_schedule: str


TASKS: dict[str, PaperTask] = {
    "braille": PaperTask("classify", 256, 32, 150, 128, 5e-3, "constant"),
    "braille-synthetic": PaperTask("classify", 256, 32, 150, 128, 5e-3, "constant"),
    "chorales": PaperTask("sequence", 150, 0, 100, 1, 5e-3, "plateau"),
}


def _check(task: str, neuron: str, bits: str) -> None:
    if task not in TASKS:
        raise BadInputError(f"task {task!r}: allowed {', '.join(TASKS)}")
    if neuron not in TASK_NEURONS[task]:
        raise BadInputError(
            f"neuron {neuron!r} for {task}: allowed {', '.join(TASK_NEURONS[task])}"
        )
    if bits not in SYNAPSES:
        raise BadInputError(f"bit width {bits!r}: allowed {', '.join(SYNAPSES)}")


def network_config(
    task: str,
    neuron: str,
    bits: str,
    seed: int,
    *,
    n_in: int,
    n_out: int,
    felif_bias_rate: float = 0.0,
    n_micro: int = 1000,
) -> NetworkConfig | BaselineConfig:
    """The config of the paper's network ``neuron`` for ``task`` at bit width ``bits``."""
    _check(task, neuron, bits)
    spec = TASKS[task]
    synapse = SYNAPSES[bits]
    if neuron in CELLS:
        return BaselineConfig(neuron, n_in, spec.n_hidden, n_out, synapse=synapse, seed=seed)
    return NetworkConfig(
        kind=spec.kind,
        n_in=n_in,
        n_hidden=spec.n_hidden,
        n_out=n_out,
        neuron="felif" if neuron == "felif-bptt" else neuron,
        method="bptt-ckpt" if neuron == "felif-bptt" else "bruno",
        synapse=synapse,
        seed=seed,
        n_micro=n_micro,
        encoder_tiles=spec.encoder_tiles,
        felif_bias_rate=felif_bias_rate,
    )


def build(
    config: NetworkConfig | BaselineConfig, cards: dict[str, ModelCardBody] | None = None
) -> nn.Module:
    """The network of ``config``: ``build_network`` or a :class:`BaselineNetwork`."""
    if isinstance(config, BaselineConfig):
        return BaselineNetwork(config, rram_card=(cards or {}).get("rram"))
    return build_network(config, cards)


def train_config(task: str, seed: int, **budget: object) -> TrainConfig:
    """The paper's training settings for ``task``; ``budget`` overrides fields of
    :class:`TrainConfig` (``epochs``, ``max_batches``, ``lr``, ...)."""
    if task not in TASKS:
        raise BadInputError(f"task {task!r}: allowed {', '.join(TASKS)}")
    spec = TASKS[task]
    cfg = TrainConfig(
        epochs=spec.epochs,
        lr=spec.lr,
        batch_size=spec.batch_size,
        seed=seed,
        skip_steps=5,
        lr_schedule=spec.lr_schedule,
    )
    try:
        cfg = replace(cfg, **budget)  # type: ignore[arg-type]
    except TypeError as exc:
        raise BadInputError(f"training budget: {exc}") from None
    cfg.validate()
    return cfg
