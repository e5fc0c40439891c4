"""Chip-in-the-loop evaluation of a network deployed by :mod:`protocols.deployment`.

Every deployed cell of the die is read back through the SMU at the map's read voltage (on the
sim: the physics of the programmed cell, with its read noise and its relaxation over the bench's
virtual time; ``wait_s`` lets time pass on the bench clock first). The conductances, in map
order, realise every synapse of the network (``bruno_lab.train.io.set_measured_conductances``)
and the task's test set is run through it. Reported: the accuracy on chip (one value per read
pass), in software (the network with its own cells drawn from the card), and with the ideal map
(every cell exactly at its target).
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
from protocols.deployment import (
    find_die,
    load_record,
    map_sha256,
    record_path_for,
    station_wafer,
)
from protocols.seams import BenchView


@dataclass
class OnChipResult:
    """Accuracy of the deployed network on chip (one value per read pass) and in software."""

    die: str
    n_cells: int
    chip_accuracies: list[float]
    software_accuracy: float
    ideal_accuracy: float
    chance: float | None
    conductance_siemens: np.ndarray  # (n_passes, n_cells), map order
    target_siemens: np.ndarray
    waited_s: float
    read_s: float
    infer_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def chip_accuracy(self) -> float:
        return float(np.mean(self.chip_accuracies))

    def summary(self) -> dict[str, Any]:
        err = self.conductance_siemens - self.target_siemens[None, :]
        return {
            "die": self.die,
            "n_cells": self.n_cells,
            "n_passes": len(self.chip_accuracies),
            "chip_accuracy": self.chip_accuracy,
            "chip_accuracies": self.chip_accuracies,
            "software_accuracy": self.software_accuracy,
            "ideal_accuracy": self.ideal_accuracy,
            "chance": self.chance,
            "read_rms_error_siemens": float(np.sqrt(np.mean(err**2))),
            "waited_s": self.waited_s,
            "read_s": self.read_s,
            "infer_s": self.infer_s,
            **self.extra,
        }


def task_for_network(network_path: str | Path, data_path: Path | None = None) -> Any:
    """The test data of the task the network was trained on (named in its saved metrics)."""
    from bruno_lab.train.io import read_network_meta
    from bruno_lab.train.tasks import load_task

    metrics = read_network_meta(Path(network_path)).get("metrics") or {}
    task = metrics.get("task")
    if task is None:
        raise BadInputError(f"{network_path}: the saved network does not name its task")
    kwargs = metrics.get("task_kwargs") or {}
    if task == "patterns" and kwargs:
        from bruno_lab.train.data.patterns import make_patterns

        return make_patterns(**kwargs)
    return load_task(task, data_path=data_path, seed=int(metrics.get("seed", 0)))


def accuracy_with(network: Any, data: Any, conductance_siemens: Any, pmap: dict[str, Any]) -> float:
    """Test accuracy with every synapse realised by ``conductance_siemens`` (map order), or
    with the network's own simulated cells when it is None."""
    import torch

    from bruno_lab.train.io import set_measured_conductances
    from bruno_lab.train.loop import TrainConfig, evaluate

    if conductance_siemens is not None:
        g = torch.as_tensor(np.asarray(conductance_siemens), dtype=torch.float32)
        set_measured_conductances(network, g, pmap)
    try:
        _, acc = evaluate(network, data.test_x, data.test_y, data.kind, TrainConfig(batch_size=256))
    finally:
        if conductance_siemens is not None:
            set_measured_conductances(network, None)
    return float(acc)


def read_cells(
    bench: BenchView,
    cells: list[dict[str, Any]],
    read_v: float,
    *,
    n_passes: int = 1,
    on_cell: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Read every cell ``n_passes`` times through the SMU at ``read_v`` (S, (passes, cells))."""
    from protocols.rram_common import RramProtocolParams

    params = RramProtocolParams(read_v=read_v)
    out = np.empty((n_passes, len(cells)))
    for j, c in enumerate(cells):
        bench.prober.step_to(int(c["die_col"]), int(c["die_row"]), int(c["site"]))
        bench.prober.contact()
        for i in range(n_passes):
            out[i, j] = params.read(bench)
        bench.prober.separate()
        if on_cell is not None:
            on_cell(j + 1)
    return out


def evaluate_on_chip(
    network: SpikingNetwork | str | Path,
    station_path: str | Path,
    die: str,
    *,
    record: dict[str, Any] | None = None,
    data: Any = None,
    n_passes: int = 1,
    wait_s: float = 0.0,
    data_path: Path | None = None,
    connect: Callable[[], Any] | None = None,
    on_cell: Callable[[int], None] | None = None,
) -> OnChipResult:
    """Read the deployed cells of ``die`` back (after ``wait_s`` on the bench clock: virtual
    time in the sim) and compare the test accuracy on chip with the software accuracy.

    ``network`` is a network object (then ``record``, the deployment's record, and ``data``,
    the task's data, are required) or a saved network file (its record is read from beside it
    and its task's data rebuilt from what the file names, unless given)."""
    from bruno_lab.train.io import load_network, programming_map
    from instruments.station import open_bench

    station_path = Path(station_path)
    _, wafer = station_wafer(station_path)
    die_ref = find_die(wafer, die)
    if isinstance(network, SpikingNetwork):
        if record is None or data is None:
            raise BadInputError("evaluate_on_chip with a network object needs record= and data=")
        net = network
    else:
        network_path = Path(network)
        net = load_network(network_path)
        if record is None:
            record = load_record(record_path_for(network_path, die_ref.label))
        if data is None:
            data = task_for_network(network_path, data_path)
    if record.get("map_sha256") != map_sha256(programming_map(net)):
        raise BadInputError(
            f"the network's programming map changed since it was deployed on {die_ref.label}; "
            "deploy it again"
        )
    if n_passes < 1 or wait_s < 0:
        raise BadInputError("n_passes must be >= 1 and wait_s >= 0")
    cells = sorted(record["cells"], key=lambda c: c["cell"])
    t0 = time.perf_counter()
    bench = (connect or (lambda: open_bench(station_path)))()
    with bench:
        if wait_s > 0:
            bench.clock.wait_s(wait_s)
        g = read_cells(
            bench, cells, float(record["read_voltage_v"]), n_passes=n_passes, on_cell=on_cell
        )
    t1 = time.perf_counter()
    pmap = {"n_cells": record["n_cells"], "layers": record["layers"]}
    target = np.array([c["target_conductance_siemens"] for c in cells])
    chip = [accuracy_with(net, data, g[i], pmap) for i in range(n_passes)]
    software = accuracy_with(net, data, None, pmap)
    ideal = accuracy_with(net, data, target, pmap)
    return OnChipResult(
        die=die_ref.label,
        n_cells=len(cells),
        chip_accuracies=chip,
        software_accuracy=software,
        ideal_accuracy=ideal,
        chance=(data.meta or {}).get("chance"),
        conductance_siemens=g,
        target_siemens=target,
        waited_s=wait_s,
        read_s=t1 - t0,
        infer_s=time.perf_counter() - t1,
    )
