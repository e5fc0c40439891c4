"""Placement of programming maps on crossbar tiles, stuck-cell compensation, and the on-chip
matrix-vector product checked against the plain matrix product ``W x`` (an ideal array whose
MVM is ``G^T v``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bruno_lab.errors import BadInputError
from protocols.array_eval import ChipMatVec
from protocols.crossbar_placement import OK, STUCK, UNFORMED, compensate, place


def _map(shapes: list[tuple[int, int]], seed: int = 0) -> dict[str, Any]:
    """A programming map (bruno_lab.train.io's layout) of layers (n_out, n_in), random levels."""
    rng = np.random.default_rng(seed)
    levels = np.linspace(6e-6, 242e-6, 8)
    layers, cells, first = [], [], 0
    for i, (n_out, n_in) in enumerate(shapes):
        n = 2 * n_out * n_in
        wps = 1e4 * (i + 1)
        layers.append({"layer": i, "name": f"l{i}", "rows": n_out, "cols": n_in,
                       "weight_per_siemens": wps, "first_cell": first, "n_cells": n})  # fmt: skip
        for k in range(n):
            cell, pol = divmod(k, 2)
            row, col = divmod(cell, n_in)
            lv = int(rng.integers(0, 8))
            cells.append({"cell": first + k, "layer": i, "row": row, "col": col,
                          "polarity": "+-"[pol], "level_index": lv,
                          "target_conductance_siemens": float(levels[lv])})  # fmt: skip
        first += n
    return {"n_cells": first, "layers": layers, "cells": cells}


class IdealTester:
    """An array whose MVM is exactly ``v @ G`` (no lines, no noise): the reference."""

    def __init__(self, g: np.ndarray) -> None:
        self.g = g

    def array_size(self) -> tuple[int, int]:
        return self.g.shape

    def mvm(self, v: np.ndarray, gate_v: float) -> np.ndarray:
        return v @ self.g


def _weights(pmap: dict[str, Any], layer: int) -> np.ndarray:
    lay = pmap["layers"][layer]
    g = np.array([c["target_conductance_siemens"] for c in pmap["cells"]])
    part = g[lay["first_cell"] : lay["first_cell"] + lay["n_cells"]].reshape(
        lay["rows"], lay["cols"], 2
    )
    return lay["weight_per_siemens"] * (part[..., 0] - part[..., 1])


@pytest.mark.parametrize(
    ("shapes", "rows", "cols"),
    [
        ([(32, 16), (4, 32)], 64, 64),  # the demo network
        ([(12, 100), (3, 12)], 64, 64),  # inputs split over two tiles
        ([(40, 10), (3, 40)], 64, 64),  # outputs split over two tiles
        ([(5, 2)], 4, 6),  # two shelves on a small array
    ],
)
def test_every_cell_has_its_own_place_and_the_chip_computes_w_x(
    shapes: list[tuple[int, int]], rows: int, cols: int
) -> None:
    """Tiles split inputs (> rows) and outputs (> cols/2); the product over the tiles, with the
    partial sums added, is the layer's ``W x`` for any input."""
    pmap = _map(shapes)
    p = place(pmap, rows, cols)
    phys = set(zip(p.cell_row.tolist(), p.cell_col.tolist(), strict=True))
    assert len(phys) == pmap["n_cells"]  # no physical cell holds two logical cells
    assert p.cell_row.max() < rows and p.cell_col.max() < cols
    assert all(c % 2 == 0 for t in p.tiles for c in t.plus_cols)  # (G+, G-) adjacent
    g = np.zeros((rows, cols))
    for k, c in enumerate(pmap["cells"]):
        g[p.cell_row[k], p.cell_col[k]] = c["target_conductance_siemens"]
    rng = np.random.default_rng(1)
    for lay in pmap["layers"]:
        mv = ChipMatVec(
            IdealTester(g), p.layer_tiles(lay["layer"]), rows, lay["weight_per_siemens"],
            0.2, 3.3, lay["rows"],
        )  # fmt: skip
        import torch

        x = torch.as_tensor(rng.integers(0, 3, size=(7, lay["cols"])).astype(np.float32))
        y = mv(x).numpy()
        want = x.numpy() @ _weights(pmap, lay["layer"]).T
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_tiles_split_when_a_matrix_is_larger_than_the_array() -> None:
    """More inputs than rows: tiles of 64 and 36 inputs; more outputs than column pairs: tiles
    of 32 and 8 outputs (one array holds at most one of the two splits)."""
    p = place(_map([(4, 100)]), 64, 64)
    assert sorted(len(t.inputs) for t in p.tiles) == [36, 64]
    # the two tiles share the shelf's rows, each on its own columns
    assert not set(p.tiles[0].plus_cols) & set(p.tiles[1].plus_cols)
    p = place(_map([(40, 10)]), 64, 64)
    assert sorted(len(t.outputs) for t in p.tiles) == [8, 32]


def test_bad_rows_are_spared_when_rows_are_left() -> None:
    bad = np.zeros((64, 64), bool)
    bad[[3, 10, 11], 5] = True  # bad cells inside the columns the first layer uses
    p = place(_map([(32, 16)]), 64, 64, bad)
    assert not set(p.used_rows()) & {3, 10, 11}
    assert {3, 10, 11} <= set(p.spare_rows)


def test_a_network_that_does_not_fit_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="do not fit"):
        place(_map([(8, 70), (8, 70)]), 64, 16)


def test_a_stuck_cell_is_compensated_by_its_partner() -> None:
    # pairs: (+ stuck at 50 uS, - ok), (+ ok, - unformed ~0), (both stuck), (both ok)
    t = np.array([100e-6, 20e-6, 30e-6, 80e-6, 60e-6, 60e-6, 40e-6, 10e-6])
    status = np.array([STUCK, OK, OK, UNFORMED, STUCK, STUCK, OK, OK])
    g = np.array([50e-6, 0, 0, 1e-9, 70e-6, 70e-6, 0, 0])
    out, flag = compensate(t, status, g, (6e-6, 242e-6))
    # + stuck at 50 uS: keeping +80 uS would need - at -30 uS: the nearest is the ladder's floor
    assert np.isnan(out[0]) and out[1] == pytest.approx(6e-6)
    # - unformed (~0): keeping -50 uS would need + below 0: the floor again
    assert np.isnan(out[3]) and out[2] == pytest.approx(6e-6)
    assert np.isnan(out[4]) and np.isnan(out[5])  # both dead: nothing to program
    assert out[6] == t[6] and out[7] == t[7]
    assert flag.tolist() == [False, True, True, False, False, False, False, False]
    # where the difference is representable it is kept exactly
    out, _ = compensate(np.array([40e-6, 100e-6]), np.array([OK, STUCK]), np.array([0, 90e-6]),
                        (6e-6, 242e-6))  # fmt: skip
    assert np.isnan(out[1]) and out[0] - 90e-6 == pytest.approx(40e-6 - 100e-6)


def test_a_shelf_takes_rows_clean_across_all_its_tiles_columns() -> None:
    """Two layers share a shelf (columns 0-3 and 4-7): a row that is clean only in the first
    layer's columns is not taken while rows clean in all of them are free."""
    bad = np.zeros((8, 8), bool)
    bad[0, 6] = bad[1, 5] = True  # rows 0 and 1: clean in columns 0-3, bad in 4-7
    p = place(_map([(2, 2), (2, 2)]), 8, 8, bad)
    assert len(p.tiles) == 2 and p.tiles[0].array_rows == p.tiles[1].array_rows == (2, 3)
    assert not bad[p.cell_row, p.cell_col].any()
