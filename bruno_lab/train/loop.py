"""The training loop: Adamax, per-epoch metrics, checkpoints that resume.

Classification (``classify``): softmax cross-entropy on output spike counts; accuracy = argmax
of counts. Sequences (``sequence``, chorales): mean binary cross-entropy of per-key logits with
the first ``skip_steps`` steps ignored, one sequence per batch as in the paper; the "accuracy" is
the frame-level accuracy of Bay et al. (TP / (TP + FP + FN) over keys, logit > 0 is "on").
A checkpoint written after every epoch holds the weights, optimizer, history and the noise
generators' states, so a resumed run continues as if it had not stopped.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bruno_lab.errors import BadInputError
from bruno_lab.train.data import TaskData
from bruno_lab.train.memory import SavedTensorMeter
from bruno_lab.train.network import SpikingNetwork

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings (JSON-able, saved in checkpoints)."""

    epochs: int = 10
    lr: float = 5e-3
    batch_size: int = 32
    seed: int = 0
    skip_steps: int = 5
    max_batches: int | None = None  # per epoch, for quick runs

    def validate(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise BadInputError("epochs must be >= 0, batch size >= 1 and lr > 0")


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    time_s: float
    saved_tensor_bytes: int


@dataclass
class TrainResult:
    history: list[EpochMetrics] = field(default_factory=list)

    @property
    def final(self) -> EpochMetrics | None:
        return self.history[-1] if self.history else None

    def to_json(self) -> dict[str, Any]:
        return {"history": [asdict(m) for m in self.history]}


def batch_loss(
    network: SpikingNetwork, x: Tensor, y: Tensor, kind: str, skip_steps: int
) -> tuple[Tensor, float, float]:
    """Loss and (hits, total) for one batch. Classification x (B, T, C), y (B,); sequence
    x, y (T, K) for one sequence."""
    if kind == "classify":
        counts = network(x.transpose(0, 1))
        loss = nn.functional.cross_entropy(counts, y)
        return loss, float((counts.argmax(1) == y).sum()), float(len(y))
    logits = network(x.unsqueeze(1)).squeeze(1)[skip_steps:]
    target = y[skip_steps:]
    if logits.numel() == 0:
        raise BadInputError(f"sequence shorter than the {skip_steps} ignored steps")
    loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
    on = logits > 0
    tp = float((on & (target > 0)).sum())
    fp = float((on & (target <= 0)).sum())
    fn = float((~on & (target > 0)).sum())
    return loss, tp, tp + fp + fn


def _batches(data_x: Any, data_y: Any, kind: str, batch_size: int, gen: torch.Generator | None):
    n = len(data_x)
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    if kind == "sequence":
        for i in order.tolist():
            yield data_x[i], data_y[i]
        return
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield data_x[idx], data_y[idx]


def evaluate(
    network: SpikingNetwork, data_x: Any, data_y: Any, kind: str, cfg: TrainConfig
) -> tuple[float, float]:
    """Mean loss and accuracy over a split, without a graph."""
    total_loss, hits, total, n = 0.0, 0.0, 0.0, 0
    with torch.no_grad():
        for x, y in _batches(data_x, data_y, kind, cfg.batch_size, None):
            loss, h, t = batch_loss(network, x, y, kind, cfg.skip_steps)
            total_loss += float(loss) * (len(y) if kind == "classify" else 1)
            n += len(y) if kind == "classify" else 1
            hits, total = hits + h, total + t
    return total_loss / max(n, 1), hits / total if total else math.nan


def _generator_states(network: SpikingNetwork) -> list[Tensor]:
    return [s.noise_generator.get_state() for s in network.synapses()]


def _set_generator_states(network: SpikingNetwork, states: list[Tensor]) -> None:
    for s, st in zip(network.synapses(), states, strict=True):
        s.noise_generator.set_state(st)


def train(
    network: SpikingNetwork,
    data: TaskData,
    cfg: TrainConfig,
    *,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    on_batch: Callable[[], None] | None = None,
) -> TrainResult:
    """Train for ``cfg.epochs`` (counting epochs already in a resumed checkpoint)."""
    cfg.validate()
    if data.kind != network.config.kind:
        raise BadInputError(f"task is {data.kind!r} but the network is {network.config.kind!r}")
    opt = torch.optim.Adamax(network.parameters(), lr=cfg.lr, betas=(0.9, 0.995))
    result = TrainResult()
    first_epoch = 0
    if resume and checkpoint_path is not None and checkpoint_path.exists():
        from bruno_lab.train.io import apply_checkpoint, load_checkpoint

        ck = load_checkpoint(checkpoint_path)
        apply_checkpoint(ck, network, opt, str(checkpoint_path))
        try:
            _set_generator_states(network, ck.generator_states)
            result.history = [EpochMetrics(**m) for m in ck.history]
        except (ValueError, TypeError, RuntimeError) as exc:
            raise BadInputError(f"{checkpoint_path}: checkpoint does not fit ({exc})") from None
        first_epoch = len(result.history)
        log.info("resumed from %s at epoch %d", checkpoint_path, first_epoch)
    for epoch in range(first_epoch, cfg.epochs):
        t0 = time.perf_counter()
        network.train()
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        total_loss, hits, total, n_batches, saved = 0.0, 0.0, 0.0, 0, 0
        for x, y in _batches(data.train_x, data.train_y, data.kind, cfg.batch_size, gen):
            if cfg.max_batches is not None and n_batches >= cfg.max_batches:
                break
            opt.zero_grad(set_to_none=True)
            if n_batches == 0:
                with SavedTensorMeter() as meter:
                    loss, h, t = batch_loss(network, x, y, data.kind, cfg.skip_steps)
                saved = meter.bytes_saved
            else:
                loss, h, t = batch_loss(network, x, y, data.kind, cfg.skip_steps)
            loss.backward()
            opt.step()
            total_loss += float(loss.detach())
            hits, total, n_batches = hits + h, total + t, n_batches + 1
            if on_batch is not None:
                on_batch()
        network.eval()
        test_loss, test_acc = evaluate(network, data.test_x, data.test_y, data.kind, cfg)
        metrics = EpochMetrics(
            epoch=epoch + 1,
            train_loss=total_loss / max(n_batches, 1),
            train_accuracy=hits / total if total else math.nan,
            test_loss=test_loss,
            test_accuracy=test_acc,
            time_s=time.perf_counter() - t0,
            saved_tensor_bytes=saved,
        )
        result.history.append(metrics)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, network, opt, result, cfg)
        if on_epoch is not None:
            on_epoch(metrics)
    return result


def save_checkpoint(
    path: Path,
    network: SpikingNetwork,
    opt: torch.optim.Optimizer,
    result: TrainResult,
    cfg: TrainConfig,
) -> None:
    """Write a resumable checkpoint atomically (format: ``bruno_lab.train.io``)."""
    from bruno_lab.train.io import save_checkpoint as write

    write(
        path,
        network,
        opt,
        _generator_states(network),
        [asdict(m) for m in result.history],
        asdict(cfg),
    )
