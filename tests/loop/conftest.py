"""Fixtures of the whole-loop tests (helpers in loop_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from loop_helpers import loop_truth, save_tiny_network


@pytest.fixture
def loop_truth_factory() -> Callable[..., dict[str, Any]]:
    return loop_truth


@pytest.fixture
def tiny_network_factory() -> Callable[..., Path]:
    return save_tiny_network


@pytest.fixture
def loop_db_url(tmp_path: Path) -> str:
    from bruno_lab.store import open_store

    url = f"sqlite:///{tmp_path / 'lab.db'}"
    store = open_store(url, require_head=False)
    store.upgrade()
    store.close()
    return url
