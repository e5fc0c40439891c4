"""Chip-in-the-loop inference on a crossbar: the network's synapses as the array's analog MVMs.

A network deployed by :mod:`protocols.array_deployment` runs with every device synapse computed
by the chip: for each tile, the layer's inputs (spikes, or any activity) become read voltages on
the tile's rows (``v = x * read_v / max|x|``, the rest of the array at 0 V), the tester returns
the column currents (``:MVM:VECT`` / ``:MVM:CURR?``: the physics of the array with its line
resistance, the cells' I-V, every cell's read noise and the sense amplifier's), and the output
is ``weight_per_siemens * (I+ - I-) / v_scale`` summed over the tiles that split the inputs.
Neurons, biases and the readout stay in software, as on a compute-in-memory chip whose
periphery is digital. Each evaluation pass is a fresh set of analog products (fresh noise).

Reported besides: the accuracy with the conductances read back cell by cell (``read_array``:
what a chip without analog MVM would use), in software (cells drawn from the card) and with the
ideal map (every cell at its target).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bruno_lab.errors import BadInputError
from bruno_lab.train.network import SpikingNetwork
from instruments.roles import ArrayTester
from protocols.array_deployment import tiles_of
from protocols.crossbar_placement import Tile
from protocols.deployment import find_die, map_sha256, station_wafer


@dataclass
class ArrayOnChipResult:
    """Accuracies of the deployed network: analog MVM on chip (one per pass), read-back,
    software and ideal map."""

    die: str
    n_cells: int
    chip_accuracies: list[float]
    readback_accuracy: float
    software_accuracy: float
    ideal_accuracy: float
    chance: float | None
    conductance_siemens: np.ndarray  # (1, n_cells): the read-back conductances, map order
    target_siemens: np.ndarray
    n_vectors: int
    waited_s: float
    chip_s: float
    infer_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def chip_accuracy(self) -> float:
        return float(np.mean(self.chip_accuracies))

    def summary(self) -> dict[str, Any]:
        g = self.conductance_siemens[0]
        finite = np.isfinite(self.target_siemens)
        err = (g - self.target_siemens)[finite]
        return {
            "die": self.die,
            "on_chip": "analog matrix-vector products (array tester)",
            "n_cells": self.n_cells,
            "n_passes": len(self.chip_accuracies),
            "chip_accuracy": self.chip_accuracy,
            "chip_accuracies": self.chip_accuracies,
            "readback_accuracy": self.readback_accuracy,
            "software_accuracy": self.software_accuracy,
            "ideal_accuracy": self.ideal_accuracy,
            "chance": self.chance,
            "read_rms_error_siemens": float(np.sqrt(np.mean(err**2))) if err.size else None,
            "n_vectors": self.n_vectors,
            "waited_s": self.waited_s,
            "chip_s": self.chip_s,
            "infer_s": self.infer_s,
            **self.extra,
        }


class ChipMatVec:
    """``x (N, n_in) -> y (N, n_out)`` of one layer through the tester's analog MVM."""

    def __init__(
        self,
        tester: ArrayTester,
        tiles: list[Tile],
        rows: int,
        weight_per_siemens: float,
        read_v: float,
        gate_v: float,
        n_out: int,
    ) -> None:
        self.tester, self.tiles, self.rows = tester, tiles, rows
        self.weight_per_siemens, self.read_v, self.gate_v = weight_per_siemens, read_v, gate_v
        self.n_out = n_out
        self.n_vectors = 0

    def __call__(self, x: Any) -> Any:
        import torch

        xs = x.detach().cpu().double().numpy()
        y = np.zeros((xs.shape[0], self.n_out))
        peak = float(np.abs(xs).max()) if xs.size else 0.0
        if peak == 0.0:
            return torch.as_tensor(y, dtype=x.dtype)
        v_scale = self.read_v / peak
        # tiles that drive the same rows with the same inputs share one product
        groups: dict[tuple[tuple[int, ...], tuple[int, ...]], list[Tile]] = {}
        for t in self.tiles:
            groups.setdefault((t.inputs, t.array_rows), []).append(t)
        for (inputs, array_rows), tiles in groups.items():
            v = np.zeros((xs.shape[0], self.rows))
            v[:, list(array_rows)] = xs[:, list(inputs)] * v_scale
            active = np.abs(v).max(axis=1) > 0
            if not active.any():
                continue
            currents = np.zeros((xs.shape[0], self.tester.array_size()[1]))
            currents[active] = self.tester.mvm(v[active], self.gate_v)
            self.n_vectors += int(active.sum())
            for t in tiles:
                diff = currents[:, list(t.plus_cols)] - currents[:, list(t.minus_cols)]
                y[:, list(t.outputs)] += diff / v_scale * self.weight_per_siemens
        return torch.as_tensor(y, dtype=x.dtype)


def attach_chip(
    network: SpikingNetwork, record: dict[str, Any], tester: ArrayTester, gate_v: float
) -> list[ChipMatVec]:
    """Make every device synapse of ``network`` compute on the chip (``detach_chip`` undoes)."""
    tiles = tiles_of(record)
    rows = int(record["array"]["rows"])
    syns = network.synapses()
    if len(syns) != len(record["layers"]):
        raise BadInputError("the record's layers do not match the network's synapses")
    out = []
    for syn, layer in zip(syns, record["layers"], strict=True):
        mv = ChipMatVec(
            tester,
            [t for t in tiles if t.layer == int(layer["layer"])],
            rows,
            float(layer["weight_per_siemens"]),
            float(record["read_voltage_v"]),
            gate_v,
            int(layer["rows"]),
        )
        syn.set_analog_matvec(mv)
        out.append(mv)
    return out


def detach_chip(network: SpikingNetwork) -> None:
    for syn in network.synapses():
        syn.set_analog_matvec(None)


def readback_conductances(tester: ArrayTester, record: dict[str, Any]) -> np.ndarray:
    """The deployed cells' conductances read back cell by cell (S, map order)."""
    g_array = tester.read_array()
    cells = sorted(record["cells"], key=lambda c: c["cell"])
    return np.array([g_array[c["array_row"], c["array_col"]] for c in cells])


def evaluate_on_array(
    network: SpikingNetwork,
    record: dict[str, Any],
    station_path: str | Path,
    data: Any,
    *,
    n_passes: int = 1,
    wait_s: float = 0.0,
    gate_v: float = 3.3,
    connect: Callable[[], Any] | None = None,
) -> ArrayOnChipResult:
    """Run the test set through the deployed network with its synapses on the chip
    (``n_passes`` times), after ``wait_s`` on the bench clock."""
    from bruno_lab.train.io import programming_map
    from instruments.station import open_bench
    from protocols.array_common import tester_of
    from protocols.deployment_eval import accuracy_with

    station_path = Path(station_path)
    _, wafer = station_wafer(station_path)
    die_ref = find_die(wafer, str(record["die"]["label"]))
    if record.get("map_sha256") != map_sha256(programming_map(network)):
        raise BadInputError(
            f"the network's programming map changed since it was deployed on {die_ref.label}; "
            "deploy it again"
        )
    if n_passes < 1 or wait_s < 0:
        raise BadInputError("n_passes must be >= 1 and wait_s >= 0")
    cells = sorted(record["cells"], key=lambda c: c["cell"])
    pmap = {"n_cells": record["n_cells"], "layers": record["layers"]}
    t0 = time.perf_counter()
    chip: list[float] = []
    bench = (connect or (lambda: open_bench(station_path)))()
    with bench:
        if wait_s > 0:
            bench.clock.wait_s(wait_s)
        bench.prober.step_to(die_ref.col, die_ref.row, int(record["array"]["site"]))
        bench.prober.contact()
        tester = tester_of(bench)
        tester.configure_read(float(record["read_voltage_v"]), gate_v, 100e-6, "cell")
        tester.output_enabled = True
        try:
            g = readback_conductances(tester, record)
            mvs = attach_chip(network, record, tester, gate_v)
            try:
                for _ in range(n_passes):
                    chip.append(accuracy_with(network, data, None, pmap))
            finally:
                detach_chip(network)
        finally:
            tester.shutdown()
            bench.prober.separate()
    t1 = time.perf_counter()
    target = np.array([c["target_conductance_siemens"] for c in cells])
    readback = accuracy_with(network, data, np.where(np.isfinite(g), g, 0.0), pmap)
    software = accuracy_with(network, data, None, pmap)
    ideal = accuracy_with(network, data, target, pmap)
    programmed = np.array(
        [np.nan if c.get("programmed_target_siemens") is None else c["programmed_target_siemens"]
         for c in cells]
    )  # fmt: skip
    return ArrayOnChipResult(
        die=die_ref.label,
        n_cells=len(cells),
        chip_accuracies=chip,
        readback_accuracy=readback,
        software_accuracy=software,
        ideal_accuracy=ideal,
        chance=(data.meta or {}).get("chance"),
        conductance_siemens=g[None, :],
        target_siemens=programmed,
        n_vectors=sum(m.n_vectors for m in mvs),
        waited_s=wait_s,
        chip_s=t1 - t0,
        infer_s=time.perf_counter() - t1,
    )


__all__ = ["ArrayOnChipResult", "ChipMatVec", "attach_chip", "detach_chip", "evaluate_on_array"]
