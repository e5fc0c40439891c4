"""What the report needs from training and deployment, which the store does not hold.

The loop hands these over as objects (``TrainingRecord.from_result``,
``DeploymentRecord.from_results``); ``bruno-lab report`` reads them from JSON files (the
history a training run writes, the deployment record, an evaluation summary). JSON only: no
user file is unpickled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bruno_lab.errors import BadInputError


def _read_json(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise BadInputError(f"{what} {path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{what} {path}: not JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(doc, dict):
        raise BadInputError(f"{what} {path}: expected a JSON object")
    return doc


@dataclass
class TrainingRecord:
    """A training run as the report shows it: per-epoch metrics, chance, confusion matrix."""

    history: list[dict[str, float]]
    n_classes: int | None = None
    n_test: int | None = None
    confusion: list[list[int]] | None = None  # rows: true class, columns: predicted
    description: str = ""

    @property
    def chance(self) -> float | None:
        return 1.0 / self.n_classes if self.n_classes else None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str = "training") -> TrainingRecord:
        hist = doc.get("history")
        if not isinstance(hist, list) or not all(isinstance(h, dict) for h in hist):
            raise BadInputError(f"{where}: 'history' must be a list of per-epoch objects")
        need = ("epoch", "train_loss", "test_accuracy")
        for i, h in enumerate(hist):
            missing = [k for k in need if k not in h]
            if missing:
                raise BadInputError(f"{where}: history[{i}] lacks {missing}")
        conf = doc.get("confusion")
        return cls(
            history=[dict(h) for h in hist],
            n_classes=int(doc["n_classes"]) if doc.get("n_classes") else None,
            n_test=int(doc["n_test"]) if doc.get("n_test") else None,
            confusion=[[int(v) for v in row] for row in conf] if conf else None,
            description=str(doc.get("description", "")),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> TrainingRecord:
        return cls.from_json(_read_json(path, "--training"), where=f"--training {path}")

    @classmethod
    def from_result(
        cls,
        result: Any,
        *,
        network: Any = None,
        data: Any = None,
        description: str = "",
    ) -> TrainingRecord:
        """From a ``TrainResult``; with the network and its task data, the test confusion."""
        history = result.to_json()["history"] if hasattr(result, "to_json") else list(result)
        conf = n_classes = n_test = None
        if data is not None:
            n_classes = int(getattr(data, "n_out", 0)) or None
            n_test = len(data.test_y) if getattr(data, "test_y", None) is not None else None
            if network is not None and getattr(data, "kind", "classify") == "classify":
                conf = confusion_matrix(network, data.test_x, data.test_y, n_classes or 0)
        return cls(history, n_classes, n_test, conf, description)


def confusion_matrix(network: Any, test_x: Any, test_y: Any, n_classes: int) -> list[list[int]]:
    """Counts of (true class, predicted class) on the test split: prediction = the output
    neuron with most spikes, as training's accuracy counts it."""
    import torch

    was_training = network.training
    network.eval()
    preds = []
    with torch.no_grad():
        for start in range(0, len(test_x), 64):
            x = test_x[start : start + 64]
            preds.append(network(x.transpose(0, 1)).argmax(1))
    network.train(was_training)
    pred = torch.cat(preds).numpy() if preds else np.empty(0, dtype=int)
    true = np.asarray(test_y)
    n = max(n_classes, int(pred.max(initial=-1)) + 1, int(true.max(initial=-1)) + 1)
    out = np.zeros((n, n), dtype=int)
    np.add.at(out, (true.astype(int), pred.astype(int)), 1)
    return out.tolist()


@dataclass
class Verdict:
    """Whether the network learned: ``level`` good/warn/bad and a sentence saying why."""

    level: Literal["good", "warn", "bad"]
    text: str


def training_verdict(rec: TrainingRecord) -> Verdict:
    """Beyond chance by more than two binomial standard errors of the test set, and no
    collapse onto one class; a loss that stayed at ln(classes) is called out."""
    if not rec.history:
        return Verdict("warn", "No epochs recorded.")
    last = rec.history[-1]
    acc = float(last.get("test_accuracy", math.nan))
    chance = rec.chance
    parts: list[str] = []
    level: Literal["good", "bad"] = "good"
    if chance is not None and math.isfinite(acc):
        se = math.sqrt(chance * (1 - chance) / rec.n_test) if rec.n_test else 0.05
        if acc <= chance + 2 * se:
            level = "bad"
            parts.append(
                f"The network did not learn beyond chance: test accuracy {100 * acc:.1f} % "
                f"against chance {100 * chance:.1f} % (two standard errors of "
                f"{rec.n_test or '?'} test samples: {200 * se:.1f} points)."
            )
    if rec.n_classes:
        ln_c = math.log(rec.n_classes)
        losses = [float(h.get("train_loss", math.nan)) for h in rec.history]
        if all(math.isfinite(x) and abs(x - ln_c) < 0.02 * ln_c for x in losses[-3:]):
            level = "bad"
            parts.append(
                f"The training loss stayed at ln {rec.n_classes} = {ln_c:.3f} (uniform output): "
                "no gradient reached the weights or the outputs never spiked."
            )
    if rec.confusion:
        m = np.asarray(rec.confusion)
        col = m.sum(axis=0)
        if m.sum() and col.max() >= 0.95 * m.sum() and m.shape[0] > 1:
            level = "bad"
            parts.append(
                f"Collapsed: {100 * col.max() / m.sum():.0f} % of test samples are predicted as "
                f"class {int(col.argmax())}."
            )
    if level == "good":
        ch = f" (chance {100 * chance:.1f} %)" if chance is not None else ""
        parts.append(f"Test accuracy {100 * acc:.1f} %{ch} after {len(rec.history)} epochs.")
    return Verdict(level, " ".join(parts))


@dataclass
class DeploymentRecord:
    """A deployment (its record: per cell target, reached, success) and its on-chip evaluation."""

    record: dict[str, Any]
    evaluation: dict[str, Any] | None = None
    read_siemens: list[float] | None = None  # first read-back pass, map order
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cells(self) -> list[dict[str, Any]]:
        return list(self.record.get("cells") or [])

    @classmethod
    def from_files(
        cls, record_path: str | Path, evaluation_path: str | Path | None = None
    ) -> DeploymentRecord:
        rec = _read_json(record_path, "--deployment")
        if not isinstance(rec.get("cells"), list):
            raise BadInputError(
                f"--deployment {record_path}: no 'cells' list (a deployment record?)"
            )
        ev = _read_json(evaluation_path, "--evaluation") if evaluation_path else None
        read = None
        if ev is not None and isinstance(ev.get("read_siemens"), list):
            read = [float(x) for x in ev["read_siemens"]]
        return cls(rec, ev, read)

    @classmethod
    def from_results(
        cls, deployment: Any, on_chip: Any | None = None, *, tolerance_siemens: float | None = None
    ) -> DeploymentRecord:
        """From the loop's deployment result (``.record``) and ``OnChipResult``."""
        rec = dict(getattr(deployment, "record", deployment))
        ev = on_chip.summary() if on_chip is not None and hasattr(on_chip, "summary") else on_chip
        read = None
        g = getattr(on_chip, "conductance_siemens", None)
        if g is not None and np.size(g):
            read = [float(x) for x in np.asarray(g)[0]]
        extra = {"tolerance_siemens": tolerance_siemens} if tolerance_siemens else {}
        return cls(rec, dict(ev) if ev is not None else None, read, extra)


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0
