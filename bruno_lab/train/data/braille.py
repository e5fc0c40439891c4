"""Braille letter reading (Müller-Cleve et al., Front. Neurosci. 2022) from its published pickle.

File format: a pickled list of records ``{'taxel_data': (T, 12) uint8, 'letter': str}`` (27
letters: space and A-Z; 12 capacitive taxels of an iCub fingertip at 40 Hz).
Preprocessing of the BRUNO paper (docs/datasets.md): ``x = 1 - v/255``; crop every sample to the
shortest length in the file (51 samples in the published set); keep taxels 1, 2, 6 and 10
(0-based indices of the 12 columns); z-score per channel over the whole data set (std + 1e-3);
Fourier resampling x2 (102 steps, one per 1 ms network step); a seeded random permutation and
an 80/20 train/test split.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from scipy.signal import resample

from bruno_lab.errors import DataError
from bruno_lab.train.data import TaskData

log = logging.getLogger(__name__)

TAXELS: tuple[int, ...] = (1, 2, 6, 10)
LETTERS: tuple[str, ...] = (" ", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
RESAMPLE_FACTOR = 2
TRAIN_FRACTION = 0.8
MAX_FILE_BYTES = 2**30  # the published pickle is ~1 MB; refuse a huge file unread


def _label(letter: str, path: Path, i: int) -> int:
    key = letter.upper() if letter.strip() else " "
    if key == "SPACE":
        key = " "
    if key not in LETTERS:
        raise DataError(f"{path}: record {i}: letter {letter!r} is not space or A-Z")
    return LETTERS.index(key)


def load_braille(path: str | Path, *, seed: int = 0) -> TaskData:
    """Read and preprocess the pickle; x (N, 2*T_min, 4) float32, y (N,) class 0..26."""
    path = Path(path)
    from bruno_lab.safeio import NUMPY_RECORD_GLOBALS, restricted_unpickle

    try:  # only numpy arrays, dicts, lists and strings: a crafted pickle runs nothing
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DataError(f"{path}: more than {MAX_FILE_BYTES} bytes; not the Braille pickle")
        with path.open("rb") as fh:
            records = restricted_unpickle(fh, str(path), NUMPY_RECORD_GLOBALS)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the Braille pickle ({exc})") from exc
    if not isinstance(records, list) or not records:
        raise DataError(f"{path}: expected a non-empty list of records")
    arrays, labels = [], []
    for i, rec in enumerate(records):
        try:
            data = np.asarray(rec["taxel_data"], dtype=np.float64)
            letter = str(rec["letter"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{path}: record {i}: needs 'taxel_data' (T x 12 numbers) and 'letter'"
            ) from exc
        if data.ndim != 2 or data.shape[1] != 12 or data.shape[0] < 2:
            raise DataError(f"{path}: record {i}: taxel_data has shape {data.shape}, want (T, 12)")
        if not np.isfinite(data).all():
            raise DataError(f"{path}: record {i}: taxel_data holds a NaN or infinite value")
        arrays.append(1.0 - data / 255.0)
        labels.append(_label(letter, path, i))
    t_min = min(a.shape[0] for a in arrays)
    x = np.stack([a[:t_min, list(TAXELS)] for a in arrays])  # (N, T, 4)
    mean = x.mean(axis=(0, 1), keepdims=True)
    std = x.std(axis=(0, 1), keepdims=True)
    x = (x - mean) / (std + 1e-3)
    x = resample(x, t_min * RESAMPLE_FACTOR, axis=1)
    y = np.asarray(labels, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_train = round(TRAIN_FRACTION * len(y))
    if not 0 < n_train < len(y):
        raise DataError(f"{path}: {len(y)} records leave no training or no test sample")
    tr, te = perm[:n_train], perm[n_train:]
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y)
    log.info(
        "braille: %d records, %d steps, %d train / %d test", len(y), x.shape[1], len(tr), len(te)
    )
    return TaskData(
        "classify",
        len(TAXELS),
        len(LETTERS),
        xt[tr],
        yt[tr],
        xt[te],
        yt[te],
        meta={
            "task": "braille",
            "chance": 1.0 / len(LETTERS),
            "n_steps": int(x.shape[1]),
            "path": str(path),
            "seed": seed,
        },
    )
