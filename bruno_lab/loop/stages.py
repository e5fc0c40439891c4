"""The stages of the loop as functions over objects: characterize, fit, train, deploy, evaluate.

Each stage takes what the previous one returned (a plan, a store, cards, a network, a
deployment) and returns an object a notebook can inspect; nothing is handed over through files.
Files are persistence: a station file says where the instruments are, a plan may come from a
YAML file, a network may be saved with ``bruno_lab.train.io.save_network``. The CLI commands and
``bruno-lab demo`` are thin wrappers over these functions.

This module sits above every package of the project (``bruno_lab`` core, ``instruments``,
``protocols``, ``calibration``) and is imported by none of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bruno_lab.cards import ModelCardBody
from bruno_lab.errors import BadInputError, BrunoLabError, DataError
from bruno_lab.store.store import Store
from bruno_lab.train.data import TaskData
from bruno_lab.train.loop import EpochMetrics, TrainConfig, TrainResult
from bruno_lab.train.loop import train as _train
from bruno_lab.train.network import SpikingNetwork
from calibration.data import CHARACTERIZATION
from calibration.pipeline import CalibrationOutcome, calibrate
from protocols.array_deployment import TARGET as CROSSBAR
from protocols.array_deployment import ArrayDeploySettings, array_site, deploy_to_crossbar
from protocols.array_eval import ArrayOnChipResult, evaluate_on_array
from protocols.deployment import (
    DeploymentResult,
    DeploySettings,
    deploy_network,
    find_die,
    load_record,
    record_path_for,
    station_wafer,
)
from protocols.deployment_eval import OnChipResult, task_for_network
from protocols.deployment_eval import evaluate_on_chip as _evaluate_on_chip
from protocols.orchestrator import RunProgress

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("fecap", "felif", "rram", "rram_array")
"""The device kinds a wafer's characterization can be fitted for, in fitting order
(``rram_array``: an RRAM card from 1T1R arrays' cells)."""


@dataclass
class Calibration:
    """What :func:`fit` produced: one outcome (fits + new card version) per device kind, and
    why a kind asked for could not be fitted."""

    wafer: str
    outcomes: dict[str, CalibrationOutcome] = field(default_factory=dict)
    not_fitted: dict[str, str] = field(default_factory=dict)

    @property
    def cards(self) -> dict[str, ModelCardBody]:
        """The new cards by the kind fitted (``rram_array``'s card is an RRAM card)."""
        return {kind: o.body for kind, o in self.outcomes.items()}

    @property
    def network_cards(self) -> dict[str, ModelCardBody]:
        """The cards a network is trained against, by what :func:`build_network` takes: the
        RRAM card from the wafer's arrays when they were characterized (the cells a network is
        deployed on), else from its single RRAM cells; the FeLIF card."""
        cards = self.cards
        out: dict[str, ModelCardBody] = {k: cards[k] for k in ("rram", "felif") if k in cards}
        if "rram_array" in cards:
            out["rram"] = cards["rram_array"]
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "wafer": self.wafer,
            "cards": {kind: o.summary() for kind, o in self.outcomes.items()},
            "not_fitted": dict(self.not_fitted),
        }


def measured_kinds(
    store: Store, wafer: str, purpose: Sequence[str] | None = CHARACTERIZATION
) -> list[str]:
    """The device kinds with measurements on ``wafer`` in runs of ``purpose``."""
    from bruno_lab.store.queries import measurements_frame

    frame = measurements_frame(store, wafer, purpose=purpose)
    present = set(frame["kind"]) if not frame.empty else set()
    return [k for k in KINDS if k in present]


def fit(
    store: Store,
    wafer: str,
    kinds: Iterable[str] | None = None,
    *,
    purpose: Sequence[str] | None = CHARACTERIZATION,
    strict: bool = True,
    scheduler: Any = None,
    scope: Literal["wafer", "lot"] = "wafer",
    chunk_size: int = 256,
    n_domains: int = 16,
    on_progress: Callable[[str, int], None] | None = None,
    on_kind: Callable[[str, CalibrationOutcome], None] | None = None,
) -> Calibration:
    """Fit every device of each kind on ``wafer`` (default: every kind measured there; with
    ``scope="lot"``, ``wafer`` names a lot and the cards are the lot's) from its ``purpose``
    runs (characterization only, unless told otherwise), store the fits and a new model-card
    version per kind. With ``strict=False`` a kind that cannot be fitted is noted in
    ``not_fitted`` (with the reason) instead of raising. ``chunk_size`` devices go to one fit
    task (one Dask task with ``scheduler``); FeCaps are fitted with ``n_domains`` domains;
    ``on_kind`` hears each kind's outcome as it is stored."""
    if kinds is None and scope == "lot":
        raise BadInputError("fit a lot: name the kinds")
    wanted = list(kinds) if kinds is not None else measured_kinds(store, wafer, purpose)
    unknown = [k for k in wanted if k not in KINDS]
    if unknown:
        raise BadInputError(f"kinds {unknown}: choose from {', '.join(KINDS)}")
    if not wanted:
        raise DataError(f"no measurements on wafer {wafer!r} to fit")
    result = Calibration(wafer)
    for kind in wanted:

        def progress(n: int, kind: str = kind) -> None:
            if on_progress is not None:
                on_progress(kind, n)

        try:
            result.outcomes[kind] = calibrate(
                store, wafer, kind, purpose=purpose, scheduler=scheduler, scope=scope,
                chunk_size=chunk_size, n_domains=n_domains, on_progress=progress,
            )  # fmt: skip
        except BrunoLabError as exc:
            if strict:
                raise
            result.not_fitted[kind] = f"{type(exc).__name__}: {exc}"
            log.warning("no %s card for %s: %s", kind, wafer, exc)
            continue
        if on_kind is not None:
            on_kind(kind, result.outcomes[kind])
    return result


def latest_cards(
    store: Store, wafer: str, kinds: Iterable[str] = ("rram", "felif")
) -> dict[str, ModelCardBody]:
    """The newest card of each of ``kinds`` for ``wafer`` that the store holds (kinds without
    a card are left out): the cards a network is trained against after a calibration."""
    out: dict[str, ModelCardBody] = {}
    for kind in kinds:
        cards = store.list_model_cards(kind=kind, scope="wafer", scope_id=wafer)
        if cards:
            out[kind] = cards[-1].card()
    return out


def train(
    network: SpikingNetwork,
    data: TaskData,
    config: TrainConfig | None = None,
    *,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train ``network`` on ``data`` in place (Adamax; per-epoch metrics; with ``checkpoint``
    a resumable checkpoint after every epoch). Returns the history."""
    return _train(
        network,
        data,
        config or TrainConfig(),
        checkpoint_path=None if checkpoint is None else Path(checkpoint),
        resume=resume,
        on_epoch=on_epoch,
    )


DeployTarget = Literal["auto", "crossbar", "cells"]
"""Where a network goes: a die's 1T1R crossbar through the array tester (``crossbar``), its
single RRAM sites one by one through the SMU and AWG (``cells``), or ``auto``: the crossbar when
the die has one and the station an array tester."""


DEPLOY_TARGETS: tuple[str, ...] = ("auto", "crossbar", "cells")


def deploy_target(station: str | Path, target: DeployTarget = "auto") -> str:
    """``crossbar`` or ``cells`` for ``target`` on this station (see :data:`DeployTarget`)."""
    if target not in DEPLOY_TARGETS:
        raise BadInputError(f"deploy target {target!r}: choose auto, crossbar or cells")
    if target != "auto":
        return target
    station_file, wafer = station_wafer(station)
    has_array = array_site(wafer) is not None
    return "crossbar" if has_array and "array_tester" in station_file.instruments else "cells"


def deploy(
    network: SpikingNetwork | str | Path,
    station: str | Path,
    die: str,
    store: Store,
    *,
    target: DeployTarget = "auto",
    settings: DeploySettings | ArrayDeploySettings | None = None,
    operator: str = "bruno_lab.loop",
    on_progress: Callable[[RunProgress], None] | None = None,
) -> DeploymentResult:
    """Program the network's RRAM cells onto ``die`` (``deployment`` runs: calibration never
    reads them): onto its crossbar, placed as tiles of differential column pairs and programmed
    row-parallel by the array tester, or cell by cell onto its single RRAM sites (``target``).
    Returns the deployment, whose ``record`` says per cell where it went and what it reached; a
    network given as a file gets the record written beside it."""
    if deploy_target(station, target) == "crossbar":
        if settings is not None and not isinstance(settings, ArrayDeploySettings):
            raise BadInputError("a crossbar deployment takes ArrayDeploySettings")
        return deploy_to_crossbar(
            network, station, die, store, settings=settings, on_progress=on_progress,
            operator=operator,
        )  # fmt: skip
    if settings is not None and not isinstance(settings, DeploySettings):
        raise BadInputError("a cell-by-cell deployment takes DeploySettings")
    return deploy_network(
        network, station, die, store, settings=settings, on_progress=on_progress, operator=operator
    )


def evaluate_on_chip(
    network: SpikingNetwork | str | Path,
    deployment: DeploymentResult | Mapping[str, Any] | None,
    station: str | Path,
    data: TaskData | None = None,
    *,
    die: str | None = None,
    n_passes: int = 1,
    wait_s: float = 0.0,
    on_cell: Callable[[int], None] | None = None,
) -> OnChipResult | ArrayOnChipResult:
    """Accuracy of the deployed network on the chip next to its software and ideal-map
    accuracy, after ``wait_s`` on the bench clock, ``n_passes`` times. On a crossbar the
    synapses run as the array's analog matrix-vector products (and the cells are also read back);
    on single sites the cells are read back through the SMU.

    ``network`` may be a saved network file: then ``deployment`` may be None (the record beside
    the file for ``die`` is read) and ``data`` None (the task the file names is rebuilt)."""
    from bruno_lab.train.io import load_network

    network_path = None if isinstance(network, SpikingNetwork) else Path(network)
    net = load_network(network_path) if network_path is not None else network
    assert isinstance(net, SpikingNetwork)
    if deployment is None:
        if network_path is None or die is None:
            raise BadInputError("evaluate_on_chip: give the deployment, or a network file and die")
        _, wafer = station_wafer(station)
        record = load_record(record_path_for(network_path, find_die(wafer, die).label))
    else:
        record = deployment.record if isinstance(deployment, DeploymentResult) else dict(deployment)
    if data is None:
        if network_path is None:
            raise BadInputError("evaluate_on_chip with a network object needs its task's data")
        data = task_for_network(network_path)
    die_label = (record.get("die") or {}).get("label")
    if not die_label:
        raise BadInputError("the deployment record names no die")
    if record.get("target") == CROSSBAR:
        return evaluate_on_array(net, record, station, data, n_passes=n_passes, wait_s=wait_s)
    return _evaluate_on_chip(
        net,
        station,
        str(die_label),
        record=record,
        data=data,
        n_passes=n_passes,
        wait_s=wait_s,
        on_cell=on_cell,
    )
