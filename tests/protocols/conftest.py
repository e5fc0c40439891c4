"""Fixtures of the protocols tests: a small simulated wafer, a migrated database, plan files."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml


def small_truth(diameter_mm: float = 40.0, die_um: float = 8000.0) -> dict[str, Any]:
    """The shipped truth on a smaller wafer (9 dies by default), fewer FeCap domains, no
    random defects (tests that want failures inject them)."""
    from instruments.sim.wafer import DEFAULT_TRUTH_PATH

    truth = copy.deepcopy(yaml.safe_load(DEFAULT_TRUTH_PATH.read_text()))
    truth["wafer"] = {
        "diameter_mm": diameter_mm,
        "edge_exclusion_mm": 0.0,
        "die_width_um": die_um,
        "die_height_um": die_um,
    }
    truth["populations"]["fecap"]["n_domains"] = 4
    truth["defects"] = {"short_rate": 0.0, "open_rate": 0.0, "stuck_rate": 0.0}
    return truth


@pytest.fixture
def truth_factory() -> Callable[..., dict[str, Any]]:
    return small_truth


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A migrated SQLite database file for one test."""
    from bruno_lab.store import open_store

    url = f"sqlite:///{tmp_path / 'lab.db'}"
    store = open_store(url, require_head=False)
    store.upgrade()
    store.close()
    return url


@pytest.fixture
def write_plan(tmp_path: Path) -> Callable[[dict[str, Any], str], Path]:
    def write(plan: dict[str, Any], name: str = "plan.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(plan, sort_keys=False))
        return path

    return write


def quick_plan(name: str = "quick", dies: Any = "all", fecap: bool = False) -> dict[str, Any]:
    """Forming and a short pulsed SET/RESET on the RRAM site of each die (about 1 s per device
    on the sim); with ``fecap``, PUND on FeCap site 0 too (about 4 s)."""
    protocols: list[dict[str, Any]] = [
        {"protocol": "rram_forming", "params": {"max_v": "3.5 V", "step_v": "100 mV"}},
        {
            "protocol": "rram_pulsed",
            "params": {"set_amplitudes_v": ["1.8 V"], "reset_amplitudes_v": ["1.6 V"],
                       "n_repeats": 1},
        },
    ]  # fmt: skip
    if fecap:
        protocols.insert(0, {"protocol": "pund", "params": {"amplitude_v": "3 V"}})
    return {
        "name": name,
        "dies": dies,
        "sites": {"fecap": [0], "rram": "all", "felif": []},
        "protocols": protocols,
    }


@pytest.fixture
def quick_plan_factory() -> Callable[..., dict[str, Any]]:
    return quick_plan
