"""The loop in Python: wafer plan -> measurements -> cards -> trained network -> chip -> accuracy.

    from bruno_lab import loop
    store = loop.open_store("sqlite:///lab.db")
    run = loop.characterize("plan.yaml", "station.yaml", store)          # RunSummary
    cal = loop.fit(store, "demo-wafer")                                  # Calibration
    net = loop.build_network(loop.NetworkConfig(...), cal.cards)         # SpikingNetwork
    history = loop.train(net, data, loop.TrainConfig(epochs=20))         # TrainResult
    deployment = loop.deploy(net, "station.yaml", "2,2", store)          # DeploymentResult
    on_chip = loop.evaluate_on_chip(net, deployment, "station.yaml", data)  # accuracy on chip

``deploy`` places the network on the die's 1T1R crossbar (tiles of differential column pairs,
row-parallel write-verify on the array tester) when the die has one, else on its single RRAM
sites; ``evaluate_on_chip`` then runs the synapses as the array's analog matrix-vector
products.

docs/python.md walks it with real outputs. Every name here is importable from this package;
the stages live in :mod:`bruno_lab.loop.wafer_run` (prepare, characterize) and
:mod:`bruno_lab.loop.stages` (the rest).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bruno_lab.loop.stages import (
        DEPLOY_TARGETS,
        KINDS,
        Calibration,
        DeployTarget,
        deploy,
        deploy_target,
        evaluate_on_chip,
        fit,
        latest_cards,
        measured_kinds,
        train,
    )
    from bruno_lab.loop.wafer_run import PlanLike, characterize, prepare
    from bruno_lab.store import open_store
    from bruno_lab.store.queries import measurements_frame, measurements_long
    from bruno_lab.train.data import TaskData
    from bruno_lab.train.loop import TrainConfig, TrainResult
    from bruno_lab.train.network import NetworkConfig, SpikingNetwork, build_network

# Where each name lives: imported on first use (PEP 562), so that a command that needs one stage
# (``bruno-lab run``: the orchestrator) does not pay for the others (torch, calibration).
_WHERE = {
    **dict.fromkeys(
        (
            "DEPLOY_TARGETS",
            "KINDS",
            "Calibration",
            "DeployTarget",
            "deploy",
            "deploy_target",
            "evaluate_on_chip",
            "fit",
            "latest_cards",
            "measured_kinds",
            "train",
        ),
        "bruno_lab.loop.stages",
    ),
    "PlanLike": "bruno_lab.loop.wafer_run",
    "characterize": "bruno_lab.loop.wafer_run",
    "prepare": "bruno_lab.loop.wafer_run",
    "open_store": "bruno_lab.store",
    "measurements_frame": "bruno_lab.store.queries",
    "measurements_long": "bruno_lab.store.queries",
    "TaskData": "bruno_lab.train.data",
    "TrainConfig": "bruno_lab.train.loop",
    "TrainResult": "bruno_lab.train.loop",
    "NetworkConfig": "bruno_lab.train.network",
    "SpikingNetwork": "bruno_lab.train.network",
    "build_network": "bruno_lab.train.network",
}

__all__ = [
    "DEPLOY_TARGETS",
    "KINDS",
    "Calibration",
    "DeployTarget",
    "NetworkConfig",
    "PlanLike",
    "SpikingNetwork",
    "TaskData",
    "TrainConfig",
    "TrainResult",
    "build_network",
    "characterize",
    "deploy",
    "deploy_target",
    "evaluate_on_chip",
    "fit",
    "latest_cards",
    "measured_kinds",
    "measurements_frame",
    "measurements_long",
    "open_store",
    "prepare",
    "train",
]


def __getattr__(name: str) -> object:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'bruno_lab.loop' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
