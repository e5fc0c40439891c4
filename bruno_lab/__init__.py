"""bruno-lab: from a wafer of FeCap and RRAM devices to a trained spiking network and back.

The loop is a library: ``from bruno_lab import loop`` (characterize, fit, build_network, train,
deploy, evaluate_on_chip); see docs/python.md. ``import bruno_lab`` itself stays light (no
torch, no SQLAlchemy): ``bruno_lab.loop`` is imported on first use of the attribute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from bruno_lab import loop

__all__ = ["__version__", "loop"]


def __getattr__(name: str) -> object:
    if name == "loop":
        import importlib

        return importlib.import_module("bruno_lab.loop")
    raise AttributeError(f"module 'bruno_lab' has no attribute {name!r}")
