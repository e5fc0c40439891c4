"""Fixtures of the simulated-lab tests: a raw pyvisa session per role on a running SimLab."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from simlab_fixture import SIM_SEED, sim_lab, sim_lab_factory, sim_station

__all__ = ["SIM_SEED", "sim_lab", "sim_lab_factory", "sim_station"]


@pytest.fixture
def visa_open() -> Iterator[Callable[[str], Any]]:
    """Open a raw pyvisa-py resource (``\\n`` terminations, 2 s timeout); closed afterwards."""
    import pyvisa

    manager = pyvisa.ResourceManager("@py")
    opened: list[Any] = []

    def open_resource(resource: str, timeout_ms: int = 2000) -> Any:
        handle = manager.open_resource(
            resource, read_termination="\n", write_termination="\n", timeout=timeout_ms
        )
        opened.append(handle)
        return handle

    yield open_resource
    for handle in opened:
        handle.close()
    manager.close()
