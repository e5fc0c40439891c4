"""Data sets of the trainer: Bach chorales (music21), Braille (pickle), synthetic patterns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskData:
    """A task's splits. ``classify``: x (N, T, C) float, y (N,) int64 class indices.
    ``sequence``: x and y lists of (T_i, K) float tensors (input roll and next-step target)."""

    kind: str
    n_in: int
    n_out: int
    train_x: Any
    train_y: Any
    test_x: Any
    test_y: Any
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return len(self.train_x)

    @property
    def n_test(self) -> int:
        return len(self.test_x)
