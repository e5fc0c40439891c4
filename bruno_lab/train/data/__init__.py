"""Data sets of the trainer: Bach chorales (music21), Braille (pickle), SHD (HDF5), synthetic
patterns and a synthetic Braille-shaped task."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskData:
    """A task's splits. ``classify``: x (N, T, C) float, y (N,) int64 class indices.
    ``sequence``: x and y lists of (T_i, K) float tensors (input roll and next-step target).
    ``valid_x``/``valid_y``: a validation split where the task has one (the chorales' drives
    the learning-rate schedule), else None."""

    kind: str
    n_in: int
    n_out: int
    train_x: Any
    train_y: Any
    test_x: Any
    test_y: Any
    meta: dict[str, Any] = field(default_factory=dict)
    valid_x: Any = None
    valid_y: Any = None

    @property
    def n_train(self) -> int:
        return len(self.train_x)

    @property
    def n_test(self) -> int:
        return len(self.test_x)

    @property
    def n_valid(self) -> int:
        return 0 if self.valid_x is None else len(self.valid_x)
