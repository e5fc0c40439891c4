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
the stages live in :mod:`bruno_lab.loop.stages`.
"""

from __future__ import annotations

from bruno_lab.loop.stages import (
    KINDS,
    Calibration,
    DeployTarget,
    characterize,
    deploy,
    deploy_target,
    evaluate_on_chip,
    fit,
    latest_cards,
    measured_kinds,
    prepare,
    train,
)
from bruno_lab.store import open_store
from bruno_lab.store.queries import measurements_frame, measurements_long
from bruno_lab.train.data import TaskData
from bruno_lab.train.loop import TrainConfig, TrainResult
from bruno_lab.train.network import NetworkConfig, SpikingNetwork, build_network

__all__ = [
    "KINDS",
    "Calibration",
    "DeployTarget",
    "NetworkConfig",
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
