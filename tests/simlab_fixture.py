"""Reusable pytest fixtures for the simulated lab (registered in tests/conftest.py).

``sim_lab``: a running :class:`instruments.sim.lab.SimLab` (default truth, seed 1234, no
faults) on free loopback ports, stopped after the test. ``sim_station``: the path of its station
file. ``sim_lab_factory``: start labs with your own truth, seed and faults; all are stopped at
the end of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SIM_SEED = 1234


@pytest.fixture
def sim_lab_factory() -> Iterator[Callable[..., Any]]:
    from instruments.sim.lab import SimLab

    labs: list[SimLab] = []

    def start(truth: Any = None, seed: int = SIM_SEED, faults: Any = None, **kwargs: Any) -> SimLab:
        lab = SimLab.start(truth=truth, seed=seed, faults=faults, **kwargs)
        labs.append(lab)
        return lab

    yield start
    for lab in labs:
        lab.stop()


@pytest.fixture
def sim_lab(sim_lab_factory: Callable[..., Any]) -> Any:
    return sim_lab_factory()


@pytest.fixture
def sim_station(sim_lab: Any, tmp_path: Path) -> Path:
    return sim_lab.write_station(tmp_path / "station.yaml")
