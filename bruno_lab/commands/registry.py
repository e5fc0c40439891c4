"""The list of sub-command modules. Each module defines ``register(app: typer.Typer)``.

Modules import heavy dependencies (torch, pandas) inside their command functions, so that
``bruno-lab --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module

import typer

COMMAND_MODULES: tuple[str, ...] = (
    # one line per command module, in --help order
    "db",
    "sim",
    "run",
    "fit",
    "cards",
    "report",
    "watch",
    "train",
    "device",
    "deploy",
    "evaluate",
    "demo",
)


def all_registrars() -> Iterator[Callable[[typer.Typer], None]]:
    for name in COMMAND_MODULES:
        yield import_module(f"bruno_lab.commands.{name}").register
