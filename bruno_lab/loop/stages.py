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
from typing import Any

from bruno_lab.cards import ModelCardBody
from bruno_lab.errors import BadInputError, BrunoLabError, DataError
from bruno_lab.store.store import Store
from bruno_lab.train.data import TaskData
from bruno_lab.train.loop import EpochMetrics, TrainConfig, TrainResult
from bruno_lab.train.loop import train as _train
from bruno_lab.train.network import SpikingNetwork
from calibration.data import CHARACTERIZATION
from calibration.pipeline import CalibrationOutcome, calibrate
from protocols.deployment import DeploymentResult, DeploySettings, deploy_network
from protocols.deployment_eval import OnChipResult
from protocols.deployment_eval import evaluate_on_chip as _evaluate_on_chip
from protocols.orchestrator import RunProgress
from protocols.plan import Plan
from protocols.prepare import PreparedRun, execute_run, prepare_run
from protocols.run_state import RunSummary

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("fecap", "felif", "rram")
"""The device kinds a wafer's characterization can be fitted for, in fitting order."""

PlanLike = Plan | str | Path | Mapping[str, Any]
"""A plan: a ``Plan``, a plan file's path, or the mapping a plan file holds."""


def prepare(plan: PlanLike, station: str | Path) -> PreparedRun:
    """Validate ``plan`` against the station (units, protocols, dies, safety envelope) and
    build its schedule, touching no instrument and writing nothing (what ``--dry-run`` does)."""
    return prepare_run(plan, station)


def characterize(
    plan: PlanLike | PreparedRun,
    station: str | Path | None,
    store: Store,
    *,
    resume: int | None = None,
    operator: str | None = None,
    purpose: str = "characterization",
    on_progress: Callable[[RunProgress], None] | None = None,
) -> RunSummary:
    """Run a wafer plan on the station's bench into ``store``: die by die, protocol by protocol,
    each measurement committed as it completes. An interrupted run of the same plan is resumed
    (or ``resume`` names the run). ``plan`` may be a ``PreparedRun`` from :func:`prepare`
    (then ``station`` may be None). Returns the run's summary (counts, status, failures)."""
    if isinstance(plan, PreparedRun):
        prepared = plan
    else:
        if station is None:
            raise BadInputError("characterize: a station file is required with a plan")
        prepared = prepare_run(plan, station)
    return execute_run(
        prepared,
        store,
        resume=resume,
        operator=operator,
        purpose=purpose,
        on_progress=on_progress,
    )


@dataclass
class Calibration:
    """What :func:`fit` produced: one outcome (fits + new card version) per device kind, and
    why a kind asked for could not be fitted."""

    wafer: str
    outcomes: dict[str, CalibrationOutcome] = field(default_factory=dict)
    not_fitted: dict[str, str] = field(default_factory=dict)

    @property
    def cards(self) -> dict[str, ModelCardBody]:
        """The new cards by device kind: what :func:`build_network` takes."""
        return {kind: o.body for kind, o in self.outcomes.items()}

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
    on_progress: Callable[[str, int], None] | None = None,
) -> Calibration:
    """Fit every device of each kind on ``wafer`` (default: every kind measured there) from its
    ``purpose`` runs (characterization only, unless told otherwise), store the fits and a new
    model-card version per kind. With ``strict=False`` a kind that cannot be fitted is noted in
    ``not_fitted`` (with the reason) instead of raising."""
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
                store, wafer, kind, purpose=purpose, scheduler=scheduler, on_progress=progress
            )
        except BrunoLabError as exc:
            if strict:
                raise
            result.not_fitted[kind] = f"{type(exc).__name__}: {exc}"
            log.warning("no %s card for %s: %s", kind, wafer, exc)
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


def deploy(
    network: SpikingNetwork,
    station: str | Path,
    die: str,
    store: Store,
    *,
    settings: DeploySettings | None = None,
    operator: str = "bruno_lab.loop",
    on_progress: Callable[[RunProgress], None] | None = None,
) -> DeploymentResult:
    """Program the network's RRAM cells onto ``die`` (a ``deployment`` run: calibration never
    reads it); returns the deployment, whose ``record`` says per cell what it reached."""
    return deploy_network(
        network, station, die, store, settings=settings, on_progress=on_progress, operator=operator
    )


def evaluate_on_chip(
    network: SpikingNetwork,
    deployment: DeploymentResult | Mapping[str, Any],
    station: str | Path,
    data: TaskData,
    *,
    n_passes: int = 1,
    wait_s: float = 0.0,
    on_cell: Callable[[int], None] | None = None,
) -> OnChipResult:
    """Accuracy of the deployed network on the chip (its cells read back ``n_passes`` times,
    after ``wait_s`` on the bench clock) next to its software and ideal-map accuracy."""
    record = deployment.record if isinstance(deployment, DeploymentResult) else dict(deployment)
    die = record.get("die") or {}
    if not die.get("label"):
        raise BadInputError("the deployment record names no die")
    return _evaluate_on_chip(
        network,
        station,
        str(die["label"]),
        record=record,
        data=data,
        n_passes=n_passes,
        wait_s=wait_s,
        on_cell=on_cell,
    )
