"""Where a network's synapses go on a 1T1R crossbar: tiles, row sparing, stuck-cell compensation.

A synapse layer ``y = W x`` (``W``: outputs x inputs) runs on an array as a compute-in-memory
chip runs it: each **input** drives an array **row** (its source line), each **output** is a
**differential pair of columns** (``G+`` and ``G-``, adjacent bit lines), so the column
currents of one matrix-vector product give ``I+ - I- = (G+ - G-)^T v``. A matrix larger than the
array is cut into **tiles** (at most ``rows`` inputs x ``cols // 2`` outputs); the partial sums of
tiles that split the inputs are added after sensing.

Placement (:func:`place`) packs the tiles on shelves (bands of rows): a tile goes on the first
shelf with enough rows and free columns, else on a new shelf; each shelf then takes the free
rows with the fewest unusable cells in the columns its tiles use (**row sparing**: the array's
worst rows stay spare). What
is left after sparing is **compensated** (:func:`compensate`): a pair with one stuck or unformed
cell gets its other cell retargeted so that ``G+ - G-`` keeps the weight (within the ladder's
range), and the stuck cell is not programmed at all.

Pure functions of the programming map (``bruno_lab.train.io.programming_map``) and the array's
health map (``protocols.array_health`` status codes); no instrument, no store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bruno_lab.errors import BadInputError

# protocols.array_health status codes (kept numeric here: a placement reads stored arrays)
OK, STUCK, UNFORMED, OUT_OF_WINDOW = 0, 1, 2, 3
UNPROGRAMMABLE = (STUCK, UNFORMED)  # cells whose conductance a verify cannot move


@dataclass(frozen=True)
class Tile:
    """One block of one layer's matrix on the array.

    ``inputs[k]`` (a logical input index of the layer) drives array row ``array_rows[k]``;
    output ``outputs[j]`` is the column pair ``plus_cols[j]`` (``G+``) and ``plus_cols[j] + 1``
    (``G-``)."""

    layer: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    array_rows: tuple[int, ...]
    plus_cols: tuple[int, ...]

    @property
    def minus_cols(self) -> tuple[int, ...]:
        return tuple(c + 1 for c in self.plus_cols)

    def as_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "array_rows": list(self.array_rows),
            "plus_cols": list(self.plus_cols),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tile:
        return cls(
            int(d["layer"]),
            tuple(int(v) for v in d["inputs"]),
            tuple(int(v) for v in d["outputs"]),
            tuple(int(v) for v in d["array_rows"]),
            tuple(int(v) for v in d["plus_cols"]),
        )


@dataclass
class Placement:
    """Every tile of every device layer, and each logical cell's physical cell."""

    rows: int
    cols: int
    tiles: list[Tile]
    cell_row: np.ndarray  # per logical cell (map order): array row
    cell_col: np.ndarray  # per logical cell: array column
    spare_rows: list[int] = field(default_factory=list)

    def used_rows(self) -> list[int]:
        return sorted({r for t in self.tiles for r in t.array_rows})

    def layer_tiles(self, layer: int) -> list[Tile]:
        return [t for t in self.tiles if t.layer == layer]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "cols": self.cols,
            "tiles": [t.as_dict() for t in self.tiles],
            "spare_rows": list(self.spare_rows),
        }


@dataclass
class _Shelf:
    height: int
    next_col: int = 0
    rows: list[int] = field(default_factory=list)


def _chunks(n: int, size: int) -> list[range]:
    return [range(k, min(n, k + size)) for k in range(0, n, size)]


def place(pmap: dict[str, Any], rows: int, cols: int, bad: np.ndarray | None = None) -> Placement:
    """Place the map's layers on a ``rows x cols`` array; ``bad`` (bool ``[rows, cols]``) marks
    cells to avoid (unusable, or rows not surveyed). ``BadInputError`` when the network does
    not fit.

    Two passes: the tiles are packed on shelves by size alone (first fit), then each shelf, in
    order, takes the free rows with the fewest bad cells across all the columns its tiles use,
    and each tile the best of its shelf's rows for its own columns."""
    if cols < 2 or rows < 1:
        raise BadInputError(f"a {rows}x{cols} array holds no differential pair")
    bad_mask = np.zeros((rows, cols), bool) if bad is None else np.asarray(bad, bool)
    if bad_mask.shape != (rows, cols):
        raise BadInputError(f"health map {bad_mask.shape} for a {rows}x{cols} array")
    shelves: list[_Shelf] = []
    packed: list[tuple[int, range, range, _Shelf, int]] = []  # layer, outs, ins, shelf, col
    for layer in pmap["layers"]:
        n_out, n_in = int(layer["rows"]), int(layer["cols"])
        for outs in _chunks(n_out, cols // 2):
            for ins in _chunks(n_in, rows):
                h, w = len(ins), 2 * len(outs)
                shelf = next((s for s in shelves if s.height >= h and s.next_col + w <= cols), None)
                if shelf is None:
                    used = sum(s.height for s in shelves)
                    if used + h > rows:
                        raise BadInputError(
                            f"the network's {len(pmap['cells'])} cells do not fit on a "
                            f"{rows}x{cols} array (layer {layer['layer']} needs {h} more rows, "
                            f"{rows - used} are free); train a smaller network or use a "
                            "larger array"
                        )
                    shelf = _Shelf(h)
                    shelves.append(shelf)
                packed.append((int(layer["layer"]), outs, ins, shelf, shelf.next_col))
                shelf.next_col += w
    free_rows = list(range(rows))
    for shelf in shelves:
        cost = bad_mask[:, : shelf.next_col].sum(axis=1)
        shelf.rows = sorted(sorted(free_rows, key=lambda r: (cost[r], r))[: shelf.height])
        free_rows = [r for r in free_rows if r not in shelf.rows]
    tiles: list[Tile] = []
    for layer_i, outs, ins, shelf, c0 in packed:
        w = 2 * len(outs)
        cost = bad_mask[:, c0 : c0 + w].sum(axis=1)
        use = sorted(sorted(shelf.rows, key=lambda r: (cost[r], r))[: len(ins)])
        tiles.append(
            Tile(layer_i, tuple(ins), tuple(outs), tuple(use), tuple(range(c0, c0 + w, 2)))
        )
    n_cells = int(pmap["n_cells"])
    cell_row = np.full(n_cells, -1, dtype=np.int64)
    cell_col = np.full(n_cells, -1, dtype=np.int64)
    layers = {int(layer["layer"]): layer for layer in pmap["layers"]}
    for t in tiles:
        layer = layers[t.layer]
        n_in, first = int(layer["cols"]), int(layer["first_cell"])
        for j, out in enumerate(t.outputs):
            for k, inp in enumerate(t.inputs):
                plus = first + 2 * (out * n_in + inp)  # map order: (row, col, polarity)
                cell_row[plus] = cell_row[plus + 1] = t.array_rows[k]
                cell_col[plus], cell_col[plus + 1] = t.plus_cols[j], t.plus_cols[j] + 1
    if (cell_row < 0).any():
        raise AssertionError("placement left a cell of the map without a physical cell")
    return Placement(rows, cols, tiles, cell_row, cell_col, spare_rows=sorted(free_rows))


def compensate(
    targets_siemens: np.ndarray,
    status: np.ndarray,
    stuck_siemens: np.ndarray,
    g_range_siemens: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Program targets per logical cell (map order, pairs ``(+, -)`` adjacent) after stuck-cell
    compensation, and a per-cell flag ``compensated``.

    ``status`` and ``stuck_siemens`` are the health status and the measured conductance of
    each logical cell's physical cell. A cell that cannot be programmed gets NaN (left alone);
    its partner is retargeted to ``G_stuck -+ (t+ - t-)``, clipped to ``g_range_siemens``.
    """
    t = np.asarray(targets_siemens, dtype=np.float64).copy()
    st = np.asarray(status)
    g = np.asarray(stuck_siemens, dtype=np.float64)
    lo, hi = g_range_siemens
    if t.size % 2:
        raise BadInputError("a programming map's cells come in pairs (+, -)")
    dead = np.isin(st, UNPROGRAMMABLE)
    flag = np.zeros(t.size, dtype=bool)
    plus, minus = t[0::2].copy(), t[1::2].copy()
    diff = plus - minus
    dp, dm = dead[0::2], dead[1::2]
    only_plus, only_minus = dp & ~dm, dm & ~dp
    minus[only_plus] = np.clip(g[0::2][only_plus] - diff[only_plus], lo, hi)
    plus[only_minus] = np.clip(g[1::2][only_minus] + diff[only_minus], lo, hi)
    plus[dp], minus[dm] = np.nan, np.nan
    t[0::2], t[1::2] = plus, minus
    flag[1::2] |= only_plus
    flag[0::2] |= only_minus
    return t, flag


__all__ = ["Placement", "Tile", "compensate", "place"]
