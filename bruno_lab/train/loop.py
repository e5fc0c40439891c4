"""The training loop: Adamax, per-epoch metrics, checkpoints that resume.

Classification (``classify``): softmax cross-entropy on output spike counts; accuracy counts a
tie among the top counts as ``1/k`` (``metrics.tie_aware_hits``: a silent network scores chance,
not the share of class 0); every epoch checks the test split for collapse (``metrics``) and
warns. Sequences (``sequence``, chorales): mean binary cross-entropy of per-key logits with
the first ``skip_steps`` steps ignored, one sequence per batch as in the paper; the "accuracy" is
the frame-level accuracy of Bay et al. (TP / (TP + FP + FN) over keys, logit > 0 is "on").
A checkpoint written after every epoch holds the weights, optimizer, history and the noise
generators' states, so a resumed run continues as if it had not stopped.

A physically initialised network (``network.init``) is calibrated on the first training batch
before the first step (``SpikingNetwork.calibrate``). Learning rates per parameter group:
weights ``lr``, bias currents and readout biases ``lr_bias`` and LIF decays ``lr_decay``
(default ``lr``/10: a decay lives in [0.5, 1], a weight spans ~1, and Adamax steps every
parameter by ~lr); decays are projected into [0.5, 1] after every step. With ``lr_relative``
(default for a physically initialised network) a weight matrix's learning rate is ``lr`` times
its RMS after calibration: Adamax moves every entry by ~lr per step whatever its scale, and the
calibrated scales differ by orders of magnitude between layers and tasks. ``lr_schedule``
``plateau`` scales every group's rate down on a plateau of the validation loss
(``train.schedule``; the chorales' schedule), recomputed from the history on a resume.

After training, a network with FeLIF neurons is evaluated on its test split with the device's
neurons as well (``train.fidelity``: reset at each crossing, as the simulated lab does) and the
gap is reported in ``TrainResult.fidelity``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bruno_lab.errors import BadInputError
from bruno_lab.train import metrics as mx
from bruno_lab.train.data import TaskData
from bruno_lab.train.fidelity import FidelityReport, device_neurons, mean_rate, subset
from bruno_lab.train.init import CalibrationTargets
from bruno_lab.train.memory import SavedTensorMeter
from bruno_lab.train.network import SpikingNetwork
from bruno_lab.train.schedule import SCHEDULES, plateau_scale

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
    lr_bias: float | None = None  # None: lr
    lr_decay: float | None = None  # None: lr / 10
    lr_relative: bool | None = None  # weights: lr times each matrix's RMS (None: physical init)
    hidden_rate: float = 0.1  # calibration target: hidden spikes per neuron and step
    drive_std: float = 0.5  # calibration target: FeLIF synaptic drive spread, network units
    fidelity_samples: int | None = 256  # test samples run on the device's neurons at the end
    # (train.fidelity; 0: skip, None: the whole test split)
    lr_schedule: str = "constant"  # or "plateau" (train.schedule): on the validation loss
    # where the task has a validation split (evaluated every epoch), else the training loss
    plateau_factor: float = 0.5
    plateau_patience: int = 5

    def validate(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise BadInputError("epochs must be >= 0, batch size >= 1 and lr > 0")
        if self.fidelity_samples is not None and self.fidelity_samples < 0:
            raise BadInputError(f"fidelity_samples must be >= 0, got {self.fidelity_samples}")
        for name in ("lr_bias", "lr_decay"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise BadInputError(f"{name} must be >= 0, got {value}")
        if self.lr_schedule not in SCHEDULES:
            raise BadInputError(f"lr_schedule {self.lr_schedule!r}: allowed {SCHEDULES}")
        if not 0 < self.plateau_factor < 1 or self.plateau_patience < 0:
            raise BadInputError("plateau_factor must be in (0, 1) and plateau_patience >= 0")
        try:
            self.targets().validate()
        except ValueError as exc:
            raise BadInputError(str(exc)) from None

    def targets(self) -> CalibrationTargets:
        return CalibrationTargets(hidden_rate=self.hidden_rate, drive_std=self.drive_std)


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    time_s: float
    saved_tensor_bytes: int
    test_silent_fraction: float = math.nan  # samples with every output silent
    test_tied_fraction: float = math.nan  # samples with every output count equal
    collapsed: bool = False  # metrics.collapse_check on the test split
    valid_loss: float = math.nan  # with lr_schedule "plateau" and a validation split
    lr: float = math.nan  # the weights' base learning rate in this epoch (schedule applied)


@dataclass
class TrainResult:
    history: list[EpochMetrics] = field(default_factory=list)
    init: dict[str, float] = field(default_factory=dict)  # calibration report (if calibrated)
    fidelity: dict[str, Any] = field(default_factory=dict)  # train.fidelity report (FeLIF nets)

    @property
    def final(self) -> EpochMetrics | None:
        return self.history[-1] if self.history else None

    @property
    def collapsed(self) -> bool:
        """The last epoch's test split collapsed (``metrics``)."""
        return bool(self.history and self.history[-1].collapsed)

    def to_json(self) -> dict[str, Any]:
        return {
            "history": [asdict(m) for m in self.history],
            "collapsed": self.collapsed,
            "init": dict(self.init),
            "fidelity": dict(self.fidelity),
        }


@dataclass
class BatchStats:
    """What one batch adds to a split's metrics (accuracy = hits / total)."""

    hits: float
    total: float
    n_samples: int
    silent: int = 0
    tied: int = 0


def batch_loss(
    network: SpikingNetwork, x: Tensor, y: Tensor, kind: str, skip_steps: int
) -> tuple[Tensor, float, float]:
    """Loss and (hits, total) for one batch (see :func:`batch_stats`)."""
    loss, stats = batch_stats(network, x, y, kind, skip_steps)
    return loss, stats.hits, stats.total


def batch_stats(
    network: SpikingNetwork, x: Tensor, y: Tensor, kind: str, skip_steps: int
) -> tuple[Tensor, BatchStats]:
    """Loss and statistics of one batch. Classification x (B, T, C), y (B,): tie-aware hits,
    silent and tied samples; sequence x, y (T, K) for one sequence: TP / (TP + FP + FN), and
    the sequence counts as silent when no key is ever predicted on."""
    if kind == "classify":
        counts = network(x.transpose(0, 1))
        loss = nn.functional.cross_entropy(counts, y)
        c = counts.detach()
        stats = BatchStats(
            mx.tie_aware_hits(c, y), float(len(y)), len(y), mx.silent_count(c), mx.tied_count(c)
        )
        return loss, stats
    logits = network(x.unsqueeze(1)).squeeze(1)[skip_steps:]
    target = y[skip_steps:]
    if logits.numel() == 0:
        raise BadInputError(f"sequence shorter than the {skip_steps} ignored steps")
    loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
    on = logits.detach() > 0
    tp = float((on & (target > 0)).sum())
    fp = float((on & (target <= 0)).sum())
    fn = float((~on & (target > 0)).sum())
    silent = int(not bool(on.any()))
    return loss, BatchStats(tp, tp + fp + fn, 1, silent, silent)


def _batches(
    data_x: Any, data_y: Any, kind: str, batch_size: int, gen: torch.Generator | None
) -> Iterator[tuple[Any, Any]]:
    n = len(data_x)
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    if kind == "sequence":
        for i in order.tolist():
            yield data_x[i], data_y[i]
        return
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield data_x[idx], data_y[idx]


@dataclass(frozen=True)
class SplitMetrics:
    """Mean loss, accuracy and the collapse check of one split."""

    loss: float
    accuracy: float
    check: mx.CollapseCheck


def evaluate_split(
    network: SpikingNetwork, data_x: Any, data_y: Any, kind: str, cfg: TrainConfig
) -> SplitMetrics:
    """Loss, tie-aware accuracy and collapse check over a split, without a graph."""
    total_loss, hits, total, n, silent, tied = 0.0, 0.0, 0.0, 0, 0, 0
    with torch.no_grad():
        for x, y in _batches(data_x, data_y, kind, cfg.batch_size, None):
            loss, st = batch_stats(network, x, y, kind, cfg.skip_steps)
            total_loss += float(loss) * st.n_samples
            n += st.n_samples
            hits, total = hits + st.hits, total + st.total
            silent, tied = silent + st.silent, tied + st.tied
    mean_loss = total_loss / max(n, 1)
    n_classes = network.config.n_out if kind == "classify" else 2
    check = mx.collapse_check(silent / max(n, 1), tied / max(n, 1), mean_loss, n_classes)
    if kind == "sequence":  # the loss of a per-key BCE is not ln C: only silence counts
        check = mx.CollapseCheck(
            check.silent_fraction, check.tied_fraction, mean_loss, math.nan,
            check.silent_fraction >= mx.COLLAPSE_TIED_FRACTION,
        )  # fmt: skip
    return SplitMetrics(mean_loss, hits / total if total else math.nan, check)


def evaluate(
    network: SpikingNetwork, data_x: Any, data_y: Any, kind: str, cfg: TrainConfig
) -> tuple[float, float]:
    """Mean loss and (tie-aware) accuracy over a split, without a graph."""
    m = evaluate_split(network, data_x, data_y, kind, cfg)
    return m.loss, m.accuracy


def _generators(network: SpikingNetwork) -> list[torch.Generator]:
    """Every generator a training run draws from: synapse noise, then FeLIF device redraws."""
    gens = [s.noise_generator for s in network.synapses()]
    return gens + [layer.spread_generator for layer in network.felif_layers()]


def _generator_states(network: SpikingNetwork) -> list[Tensor]:
    return [g.get_state() for g in _generators(network)]


def _set_generator_states(network: SpikingNetwork, states: list[Tensor]) -> None:
    for g, st in zip(_generators(network), states, strict=True):
        g.set_state(st)


def param_groups(network: SpikingNetwork, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Optimizer groups: each weight matrix (``lr``, times the matrix's RMS with
    ``lr_relative``), biases (``lr_bias``), LIF decays (``lr_decay``)."""
    lr_bias = cfg.lr if cfg.lr_bias is None else cfg.lr_bias
    lr_decay = cfg.lr / 10 if cfg.lr_decay is None else cfg.lr_decay
    groups: list[dict[str, Any]] = []
    biases: list[nn.Parameter] = []
    decays: list[nn.Parameter] = []
    for name, p in network.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("decay_"):
            decays.append(p)
        elif leaf == "bias":
            biases.append(p)
        else:
            lr = cfg.lr
            relative = cfg.lr_relative
            if relative is None:
                relative = network.config.init == "physical"
            if relative:
                rms = float(p.detach().pow(2).mean().sqrt())
                lr = cfg.lr * (rms if rms > 0 else 1.0)
            groups.append({"params": [p], "lr": lr, "name": name})
    if biases:
        groups.append({"params": biases, "lr": lr_bias, "name": "bias"})
    if decays:
        groups.append({"params": decays, "lr": lr_decay, "name": "decay"})
    return groups


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
    result = TrainResult()
    resuming = resume and checkpoint_path is not None and checkpoint_path.exists()
    if network.needs_calibration() and not resuming and cfg.epochs > 0:
        gen = torch.Generator().manual_seed(cfg.seed * 100003)
        x0, _ = next(iter(_batches(data.train_x, data.train_y, data.kind, cfg.batch_size, gen)))
        result.init = network.calibrate(x0, cfg.targets())
        log.info("init calibrated on one training batch: %s", result.init)
    opt = torch.optim.Adamax(param_groups(network, cfg), lr=cfg.lr, betas=(0.9, 0.995))
    first_epoch = 0
    if resuming:
        assert checkpoint_path is not None
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
    # the rates before any schedule (a resumed optimizer holds the last epoch's scaled ones)
    applied = _lr_scale(cfg, result.history[:-1]) if result.history else 1.0
    base_lrs = [g["lr"] / applied for g in opt.param_groups]
    for epoch in range(first_epoch, cfg.epochs):
        t0 = time.perf_counter()
        network.train()
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        lr_scale = _lr_scale(cfg, result.history)
        for group, base in zip(opt.param_groups, base_lrs, strict=True):
            group["lr"] = base * lr_scale
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
            network.project_()
            total_loss += float(loss.detach())
            hits, total, n_batches = hits + h, total + t, n_batches + 1
            if on_batch is not None:
                on_batch()
        network.eval()
        test = evaluate_split(network, data.test_x, data.test_y, data.kind, cfg)
        valid_loss = math.nan
        if cfg.lr_schedule == "plateau" and data.valid_x is not None:
            valid_loss = evaluate_split(network, data.valid_x, data.valid_y, data.kind, cfg).loss
        metrics = EpochMetrics(
            epoch=epoch + 1,
            train_loss=total_loss / max(n_batches, 1),
            train_accuracy=hits / total if total else math.nan,
            test_loss=test.loss,
            test_accuracy=test.accuracy,
            time_s=time.perf_counter() - t0,
            saved_tensor_bytes=saved,
            test_silent_fraction=test.check.silent_fraction,
            test_tied_fraction=test.check.tied_fraction,
            collapsed=test.check.collapsed,
            valid_loss=valid_loss,
            lr=cfg.lr * lr_scale,
        )
        if test.check.collapsed:
            log.warning("epoch %d: the network collapsed (%s)", epoch + 1, test.check.reason)
        result.history.append(metrics)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, network, opt, result, cfg)
        if on_epoch is not None:
            on_epoch(metrics)
    if cfg.fidelity_samples != 0 and result.history and len(result.history) > first_epoch:
        report = evaluate_fidelity(network, data, max_samples=cfg.fidelity_samples)
        if report is not None:
            result.fidelity = report.to_json()
            log.info("device-neuron evaluation: %s", result.fidelity)
    return result


def _lr_scale(cfg: TrainConfig, history: list[EpochMetrics]) -> float:
    """The schedule's learning-rate multiplier for the next epoch (from the history alone)."""
    if cfg.lr_schedule != "plateau":
        return 1.0
    monitored = [m.train_loss if math.isnan(m.valid_loss) else m.valid_loss for m in history]
    return plateau_scale(monitored, factor=cfg.plateau_factor, patience=cfg.plateau_patience)


def evaluate_fidelity(
    network: SpikingNetwork,
    data: TaskData,
    *,
    max_samples: int | None = 256,
    batch_size: int = 64,
) -> FidelityReport | None:
    """Both evaluations on the first ``max_samples`` test samples (None: all); None for a
    network without FeLIF neurons."""
    if not network.felif_layers():
        return None
    x, y = subset(data, max_samples)
    cfg = TrainConfig(batch_size=batch_size)
    was_training = network.training
    network.eval()
    rates: list[Tensor] = []

    def record(_module: Any, _inputs: Any, output: Tensor) -> None:
        rates.append(output.detach().float().mean().reshape(1))

    hooks = [layer.register_forward_hook(record) for layer in network.felif_layers()]
    try:
        trained = evaluate_split(network, x, y, data.kind, cfg)
        rate_trained = mean_rate(rates)
        rates.clear()
        with device_neurons(network):
            device = evaluate_split(network, x, y, data.kind, cfg)
        rate_device = mean_rate(rates)
    finally:
        for h in hooks:
            h.remove()
        network.train(was_training)
    return FidelityReport(
        n_samples=len(x),
        accuracy_trained=trained.accuracy,
        accuracy_device=device.accuracy,
        loss_trained=trained.loss,
        loss_device=device.loss,
        felif_rate_trained=rate_trained,
        felif_rate_device=rate_device,
    )


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
