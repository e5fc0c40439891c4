"""Spiking Heidelberg Digits (Cramer et al., IEEE TNNLS 2022) from its published HDF5 files.

File format (``shd_train.h5``, ``shd_test.h5``): ``spikes/times`` (one variable-length float
array per sample, seconds), ``spikes/units`` (the matching variable-length integer arrays, the
700 channels of the cochlea model, 0..699) and ``labels`` (one integer per sample, 20 classes:
the digits 0-9 in English and German); an ``extra`` group (speakers, keys) is not needed. h5py
reads it: the optional extra ``shd``.

Binning: the first ``max_time_s`` (1 s) of each sample in ``n_steps`` equal steps (100: 10 ms);
x holds spike counts per (step, channel), channels pooled ``unit_pool`` at a time (700 / pool
channels). Samples are kept as events and made dense one batch at a time
(:class:`SpikeBins`): the dense training split would be 8156 x 100 x 700 floats, 2.3 GB.
Splits: a directory holding both files gives the published train/test split; one file is split
80/20 by a seeded permutation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bruno_lab.errors import DataError
from bruno_lab.extras import require_extra
from bruno_lab.train.data import TaskData

log = logging.getLogger(__name__)

N_UNITS = 700
N_CLASSES = 20
FILES = ("shd_train.h5", "shd_test.h5")
TRAIN_FRACTION = 0.8


class SpikeBins:
    """Binned spike trains stored as events; indexing with a tensor, list or int gives dense
    counts (B, n_steps, n_channels) float32, a slice gives a :class:`SpikeBins` of those
    samples. ``len`` is the number of samples."""

    def __init__(
        self, offsets: np.ndarray, steps: np.ndarray, channels: np.ndarray, n_steps: int,
        n_channels: int,
    ) -> None:  # fmt: skip
        self.offsets, self.steps, self.channels = offsets, steps, channels
        self.n_steps, self.n_channels = n_steps, n_channels

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self), self.n_steps, self.n_channels)

    def select(self, rows: Sequence[int] | np.ndarray) -> SpikeBins:
        """The samples ``rows`` (in that order), still as events."""
        rows = np.asarray(rows, dtype=np.int64)
        lo, hi = self.offsets[rows], self.offsets[rows + 1]
        parts = [np.arange(a, b) for a, b in zip(lo, hi, strict=True)]
        take = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(hi - lo)]).astype(np.int64)
        return SpikeBins(
            offsets, self.steps[take], self.channels[take], self.n_steps, self.n_channels
        )

    def dense(self) -> Tensor:
        """All samples as counts (N, n_steps, n_channels) float32."""
        out = torch.zeros(self.shape, dtype=torch.float32)
        sample = np.repeat(np.arange(len(self)), np.diff(self.offsets))
        index = (torch.as_tensor(sample), torch.as_tensor(self.steps.astype(np.int64)),
                 torch.as_tensor(self.channels.astype(np.int64)))  # fmt: skip
        out.index_put_(index, torch.ones(len(sample)), accumulate=True)
        return out

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, slice):
            return self.select(range(len(self))[idx])
        if isinstance(idx, Tensor):
            rows = idx.reshape(-1).tolist()
        elif isinstance(idx, int):
            return self.select([range(len(self))[idx]]).dense()[0]
        else:
            rows = list(idx)
        return self.select([range(len(self))[r] for r in rows]).dense()


def _read(path: Path, n_steps: int, max_time_s: float, unit_pool: int) -> tuple[SpikeBins, Tensor]:
    require_extra("shd", "the SHD task (its HDF5 files)")
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: cannot open as HDF5 ({exc})") from exc
    with f:
        for name in ("spikes/times", "spikes/units", "labels"):
            if name not in f:
                raise DataError(f"{path}: no dataset {name!r} (the SHD format)")
        times, units, labels = f["spikes/times"][:], f["spikes/units"][:], f["labels"][:]
    n = len(labels)
    if not (len(times) == len(units) == n) or n == 0:
        raise DataError(
            f"{path}: spikes/times ({len(times)}), spikes/units ({len(units)}) and labels "
            f"({n}) must have the same, non-zero length"
        )
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels must be one integer per sample, got {labels.dtype}")
    bad = np.flatnonzero((labels < 0) | (labels >= N_CLASSES))
    if len(bad):
        raise DataError(f"{path}: sample {bad[0]}: label {labels[bad[0]]} is not in 0..19")
    step_s = max_time_s / n_steps
    offsets = np.zeros(n + 1, dtype=np.int64)
    all_steps, all_channels = [], []
    for i in range(n):
        t = np.asarray(times[i], dtype=np.float64)
        u = np.asarray(units[i])
        if t.shape != u.shape or t.ndim != 1:
            raise DataError(f"{path}: sample {i}: {t.shape} times but {u.shape} units")
        if not np.all(np.isfinite(t)) or np.any(t < 0):
            raise DataError(f"{path}: sample {i}: spike times must be finite and >= 0 s")
        if len(u) and (not np.issubdtype(u.dtype, np.integer) or u.min() < 0 or u.max() >= N_UNITS):
            raise DataError(f"{path}: sample {i}: units must be integers in 0..{N_UNITS - 1}")
        keep = t < max_time_s
        steps = np.minimum((t[keep] / step_s).astype(np.int64), n_steps - 1)
        all_steps.append(steps.astype(np.int32))
        all_channels.append((u[keep].astype(np.int64) // unit_pool).astype(np.int32))
        offsets[i + 1] = offsets[i] + len(steps)
    bins = SpikeBins(
        offsets, np.concatenate(all_steps), np.concatenate(all_channels), n_steps,
        -(-N_UNITS // unit_pool),
    )  # fmt: skip
    return bins, torch.as_tensor(labels.astype(np.int64))


def load_shd(
    path: str | Path,
    *,
    n_steps: int = 100,
    max_time_s: float = 1.0,
    unit_pool: int = 1,
    seed: int = 0,
) -> TaskData:
    """SHD as a classification task: x :class:`SpikeBins` (N, n_steps, 700 / unit_pool), y (N,).
    ``path``: a directory with ``shd_train.h5`` and ``shd_test.h5`` (the published split) or
    one file (split 80/20 with ``numpy.random.default_rng(seed)``)."""
    path = Path(path)
    if n_steps < 1 or not max_time_s > 0 or unit_pool < 1:
        raise DataError("SHD: n_steps and unit_pool must be >= 1 and max_time_s > 0")
    if path.is_dir():
        missing = [name for name in FILES if not (path / name).is_file()]
        if missing:
            raise DataError(f"{path}: a directory of SHD needs {' and '.join(missing)}")
        train_x, train_y = _read(path / FILES[0], n_steps, max_time_s, unit_pool)
        test_x, test_y = _read(path / FILES[1], n_steps, max_time_s, unit_pool)
        split = "published"
    else:
        if not path.is_file():
            raise DataError(f"{path}: no such SHD file or directory")
        x, y = _read(path, n_steps, max_time_s, unit_pool)
        perm = np.random.default_rng(seed).permutation(len(y))
        n_train = round(TRAIN_FRACTION * len(y))
        tr, te = perm[:n_train], perm[n_train:]
        train_x, train_y = x.select(tr), y[torch.as_tensor(tr)]
        test_x, test_y = x.select(te), y[torch.as_tensor(te)]
        split = f"80/20 seed {seed}"
    log.info("shd: %d train / %d test samples, %d steps", len(train_y), len(test_y), n_steps)
    return TaskData(
        "classify",
        train_x.n_channels,
        N_CLASSES,
        train_x,
        train_y,
        test_x,
        test_y,
        meta={
            "task": "shd",
            "chance": 1.0 / N_CLASSES,
            "n_steps": n_steps,
            "step_s": max_time_s / n_steps,
            "unit_pool": unit_pool,
            "split": split,
            "path": str(path),
        },
    )
