"""Shared test configuration: markers and the --station-address option."""

from __future__ import annotations

import pytest

pytest_plugins = ["postgres_fixture", "simlab_fixture"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--station-address",
        default=None,
        help="Station file of a real bench; enables tests marked `station`.",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--station-address"):
        return
    skip = pytest.mark.skip(reason="needs real hardware: pass --station-address")
    for item in items:
        if "station" in item.keywords:
            item.add_marker(skip)
