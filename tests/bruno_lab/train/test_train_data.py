"""Data sets: Braille pickle loader, chorale piano rolls and split, synthetic patterns."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from train_cards import braille_file

from bruno_lab.errors import DataError
from bruno_lab.train.data.braille import TAXELS, load_braille
from bruno_lab.train.data.chorales import (
    MIDI_HIGH,
    MIDI_LOW,
    N_KEYS,
    load_chorale_rolls,
    load_chorales,
    piano_roll,
    split_of,
)
from bruno_lab.train.data.patterns import make_patterns


def test_braille_loader_follows_the_papers_preprocessing(tmp_path):
    path = tmp_path / "braille.pkl"
    records = braille_file(path)
    data = load_braille(path, seed=0)
    assert data.n_in == len(TAXELS) == 4 and data.n_out == 27
    assert data.train_x.shape[1:] == (2 * 51, 4)  # cropped to the shortest, resampled x2
    assert data.n_train + data.n_test == len(records)
    assert data.n_train == round(0.8 * len(records))
    x = torch.cat([data.train_x, data.test_x]).double()
    assert torch.allclose(
        x.mean((0, 1)), torch.zeros(4, dtype=torch.float64), atol=1e-6
    )  # z-scored per channel
    # unit sd before the Fourier resampling (which smooths a little), and std + 1e-3
    assert torch.all((x.std((0, 1)) > 0.9) & (x.std((0, 1)) < 1.01))
    # the label survives: the kept taxel 1 sorts the letters
    y = torch.cat([data.train_y, data.test_y])
    level = x[:, :, 0].mean(1)
    assert torch.all(level[y == 0].mean() < level[y == 26].mean())


def test_braille_bad_file_names_the_problem(tmp_path):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps([{"taxel_data": np.zeros((5, 3)), "letter": "A"}]))
    with pytest.raises(DataError, match="want \\(T, 12\\)"):
        load_braille(path)


def test_piano_roll_resolution_and_key_range():
    from music21 import chord, note, stream

    s = stream.Score()
    parts = []
    for _ in range(4):
        p = stream.Part()
        parts.append(p)
        s.insert(0, p)
    parts[0].append(note.Note(MIDI_LOW, quarterLength=1.0))  # two eighth steps: 0, 1
    parts[0].append(note.Note(MIDI_HIGH, quarterLength=0.5))  # step 2
    parts[1].append(note.Note(MIDI_LOW - 1, quarterLength=2.0))  # below range: dropped
    parts[2].append(chord.Chord([60, 64], quarterLength=1.5))  # steps 0..2
    roll = piano_roll(s)
    assert roll.shape == (4, N_KEYS)  # highestTime 2.0 quarters = 4 eighths
    assert roll[:, 0].tolist() == [1, 1, 0, 0]
    assert roll[:, N_KEYS - 1].tolist() == [0, 0, 1, 0]
    assert roll[:, 60 - MIDI_LOW].tolist() == [1, 1, 1, 0]
    assert roll.sum() == 2 + 1 + 6


def test_split_is_a_fixed_hash_of_the_path():
    names = [f"bach/bwv{i}.mxl" for i in range(2000)]
    splits = [split_of(n) for n in names]
    assert splits == [split_of(n) for n in names]
    frac = {k: splits.count(k) / len(splits) for k in ("train", "valid", "test")}
    assert frac["train"] == pytest.approx(0.6, abs=0.05)
    assert frac["valid"] == pytest.approx(0.2, abs=0.05)


def test_chorales_parse_once_then_load_from_cache(tmp_path):
    rolls = load_chorale_rolls(5, cache=tmp_path)
    assert {k: len(v) for k, v in rolls.items()} == {"train": 3, "valid": 1, "test": 1}
    for split, items in rolls.items():
        for name, roll in items:
            assert split_of(name) == split
            assert roll.shape[1] == N_KEYS and roll.dtype == np.uint8
            assert 2 <= roll.sum(1).mean() <= 5  # four voices, some outside the range/held
    cached = list(tmp_path.glob("*.npz"))
    assert len(cached) == 1
    again = load_chorale_rolls(5, cache=tmp_path)
    assert [n for n, _ in again["train"]] == [n for n, _ in rolls["train"]]
    data = load_chorales(5, cache=tmp_path, max_steps=16)
    assert data.kind == "sequence" and data.n_train == 3 and data.n_test == 1
    x, y = data.train_x[0], data.train_y[0]
    assert x.shape == y.shape == (16, N_KEYS)
    assert torch.equal(x[1:], y[:-1])  # next-step targets


def test_patterns_are_seeded_and_balanced():
    a, b = make_patterns(seed=3), make_patterns(seed=3)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert a.train_x.shape == (256, 20, 20)
    assert not torch.equal(make_patterns(seed=4).train_x, a.train_x)
