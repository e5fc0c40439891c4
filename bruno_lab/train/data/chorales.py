"""Bach chorales from music21's corpus as binary piano rolls, parsed once and cached.

Resolution: one step per eighth note (0.5 quarter length); a note sounds on every step whose
start lies in [onset, onset + duration). Keys: MIDI 43..96 (the paper's 88-key indices 22..75,
MIDI 21 + 22 .. 21 + 75), 54 keys; notes outside are dropped. Files: every .mxl/.xml score of
``music21.corpus`` composer ``bach`` with at least four parts (the chorale harmonisations; the
``.rntxt`` analyses and the ``.krn`` duplicates are skipped). Split, fixed: the SHA-256 of the
corpus-relative path (``bach/bwv1.6.mxl``) read as a number u in [0, 1): u < 0.6 train,
u < 0.8 validation, else test (229/76/77 proportions). The cache is an .npz in
bruno-lab's cache root: ``$BRUNO_LAB_CACHE``, else the user cache dir (``~/.cache/bruno-lab``).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bruno_lab.devices.ckernel import cache_root
from bruno_lab.errors import DataError
from bruno_lab.extras import require_extra
from bruno_lab.train.data import TaskData

log = logging.getLogger(__name__)

STEP_QUARTER_LENGTH = 0.5
MIDI_LOW = 21 + 22
MIDI_HIGH = 21 + 75
N_KEYS = MIDI_HIGH - MIDI_LOW + 1
SPLIT_EDGES = (0.6, 0.8)
CACHE_VERSION = 1


def cache_dir() -> Path:
    """bruno-lab's one cache root (``ckernel.cache_root``: ``$BRUNO_LAB_CACHE``, else the user
    cache dir, ``~/.cache/bruno-lab`` on Linux)."""
    return cache_root()


def split_of(relative_path: str) -> str:
    """'train', 'valid' or 'test' for a corpus-relative path (deterministic hash split)."""
    u = int(hashlib.sha256(relative_path.encode()).hexdigest()[:16], 16) / 16**16
    return "train" if u < SPLIT_EDGES[0] else "valid" if u < SPLIT_EDGES[1] else "test"


def corpus_paths() -> list[tuple[str, Path]]:
    """(relative name, path) of the candidate chorale files, sorted by name."""
    require_extra("music", "the chorales task (music21's corpus)")
    from music21 import corpus

    out = []
    for p in corpus.getComposer("bach"):
        p = Path(p)
        if p.suffix.lower() in {".mxl", ".xml"}:
            out.append((f"bach/{p.name}", p))
    return sorted(out)


def piano_roll(score: object) -> np.ndarray | None:
    """(T, 54) uint8 roll of a music21 score, or None if it has fewer than four parts."""
    if len(score.parts) < 4:  # type: ignore[attr-defined]
        return None
    n_steps = math.ceil(float(score.highestTime) / STEP_QUARTER_LENGTH)  # type: ignore[attr-defined]
    roll = np.zeros((max(n_steps, 1), N_KEYS), dtype=np.uint8)
    for n in score.flatten().notes:  # type: ignore[attr-defined]
        start = float(n.offset)
        end = start + float(n.quarterLength)
        first = math.ceil(start / STEP_QUARTER_LENGTH - 1e-9)
        last = math.ceil(end / STEP_QUARTER_LENGTH - 1e-9)
        for pitch in n.pitches:
            if MIDI_LOW <= pitch.midi <= MIDI_HIGH:
                roll[first:last, pitch.midi - MIDI_LOW] = 1
    return roll


def _parse_all(
    selection: list[tuple[str, Path]], on_file: Callable[[str], None] | None
) -> dict[str, np.ndarray]:
    require_extra("music", "the chorales task (music21's corpus)")
    from music21 import converter

    rolls: dict[str, np.ndarray] = {}
    for name, path in selection:
        if on_file is not None:
            on_file(name)
        try:
            roll = piano_roll(converter.parse(path))
        except Exception as exc:  # music21 raises many kinds; a bad file is skipped, logged
            log.warning("chorales: cannot parse %s: %s", name, exc)
            continue
        if roll is not None and roll.any():
            rolls[name] = roll
    return rolls


def _select_subset(
    max_sequences: int,
) -> tuple[list[tuple[str, Path]], tuple[int, int, int]]:
    """A handful for tests: the first names of each split in split proportions (>= 1 each),
    plus a few spare files per split (some scores are not four-part chorales)."""
    by_split: dict[str, list[tuple[str, Path]]] = {"train": [], "valid": [], "test": []}
    for item in corpus_paths():
        by_split[split_of(item[0])].append(item)
    n_valid = max(1, round(0.2 * max_sequences))
    n_test = max(1, round(0.2 * max_sequences))
    n_train = max(1, max_sequences - n_valid - n_test)
    counts = (n_train, n_valid, n_test)
    selection = [
        item
        for split, count in zip(("train", "valid", "test"), counts, strict=True)
        for item in by_split[split][: count + 3]
    ]
    return selection, counts


def load_chorale_rolls(
    max_sequences: int | None = None,
    *,
    cache: Path | None = None,
    on_file: Callable[[str], None] | None = None,
) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Split name -> [(relative path, roll (T, 54) uint8)], parsed once and cached as .npz."""
    cache = cache or cache_dir()
    tag = "all" if max_sequences is None else f"first{max_sequences}"
    file = cache / f"chorales-v{CACHE_VERSION}-{tag}.npz"
    if file.exists():
        with np.load(file, allow_pickle=False) as z:
            names = [str(n) for n in z["names"]]
            bounds = z["offsets"]
            rolls = {n: z["rolls"][bounds[i] : bounds[i + 1]] for i, n in enumerate(names)}
    else:
        if max_sequences is None:
            rolls = _parse_all(corpus_paths(), on_file)
        else:
            selection, counts = _select_subset(max_sequences)
            parsed = _parse_all(selection, on_file)
            rolls = {}
            for split, count in zip(("train", "valid", "test"), counts, strict=True):
                keep = [n for n in parsed if split_of(n) == split][:count]
                rolls.update({n: parsed[n] for n in keep})
        if not rolls:
            raise DataError("chorales: no score of music21's bach corpus could be parsed")
        names = sorted(rolls)
        offsets = np.cumsum([0] + [len(rolls[n]) for n in names])
        cache.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp,
            names=np.asarray(names),
            offsets=offsets,
            rolls=np.concatenate([rolls[n] for n in names]),
        )
        tmp.replace(file)
        log.info("chorales: cached %d rolls in %s", len(names), file)
    out: dict[str, list[tuple[str, np.ndarray]]] = {"train": [], "valid": [], "test": []}
    for name in sorted(rolls):
        out[split_of(name)].append((name, rolls[name]))
    return out


def load_chorales(
    max_sequences: int | None = None, *, cache: Path | None = None, max_steps: int | None = None
) -> TaskData:
    """Next-step prediction: input roll[:-1], target roll[1:], (T-1, 54) float32 per chorale.
    ``max_steps`` crops each sequence (for quick runs); the test set is the ``test`` split, the
    ``valid`` split is ``valid_x``/``valid_y`` (for the learning-rate schedule)."""
    splits = load_chorale_rolls(max_sequences, cache=cache)

    def pairs(items: list[tuple[str, np.ndarray]]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        xs, ys = [], []
        for _, roll in items:
            r = torch.as_tensor(roll[: (max_steps + 1) if max_steps else None], dtype=torch.float32)
            if len(r) >= 2:
                xs.append(r[:-1])
                ys.append(r[1:])
        return xs, ys

    tx, ty = pairs(splits["train"])
    vx, vy = pairs(splits["test"])
    wx, wy = pairs(splits["valid"])
    return TaskData(
        "sequence",
        N_KEYS,
        N_KEYS,
        tx,
        ty,
        vx,
        vy,
        meta={
            "task": "chorales",
            "n_train": len(tx),
            "n_valid": len(wx),
            "n_test": len(vx),
            "step_quarter_length": STEP_QUARTER_LENGTH,
            "midi_range": [MIDI_LOW, MIDI_HIGH],
        },
        valid_x=wx,
        valid_y=wy,
    )
