"""The demo's stages, in order: simulated lab, characterization, cards, training, deployment,
on-chip evaluation. Each stage is timed; progress goes to callbacks (the command draws it).

Everything lands in one output folder: ``lab.db`` (SQLite: measurements, fits, cards and the
deployment's measurements), ``station.yaml``, ``network.pt`` and its deployment record,
``cards/*.json``. The lab is the simulated one (``instruments.sim``), which only the CLI and
tests may start.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _examples() -> Path:
    """The example plans and truths that ship with the ``protocols`` package."""
    import protocols

    return Path(protocols.__file__).resolve().parent / "examples"


EXAMPLES = _examples()
DEMO_TRUTH = EXAMPLES / "demo_truth.yaml"
DEMO_PLAN = EXAMPLES / "demo_plan.yaml"
DEPLOY_DIE = "2,2"  # the centre die: its RRAM array is not touched by the characterization


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: the full one (README) or the quick one (tests)."""

    dies: tuple[tuple[int, int], ...]
    task: dict[str, Any]  # make_patterns keyword arguments
    n_hidden: int
    epochs: int
    n_micro: int
    eval_passes: int
    lr: float = 5e-3
    rram_sites: tuple[int, ...] = (3, 4)  # RRAM test cells characterized on each die


FULL = DemoSize(
    dies=((1, 1), (3, 1), (0, 2), (4, 2)),
    task={
        "n_classes": 2,
        "n_channels": 4,
        "n_steps": 12,
        "n_train": 128,
        "n_test": 64,
        "rate": 0.3,
        "seed": 0,
    },
    n_hidden=3,
    epochs=12,
    n_micro=100,
    eval_passes=3,
)
QUICK = DemoSize(
    dies=((1, 1), (3, 3)),
    task={
        "n_classes": 2,
        "n_channels": 2,
        "n_steps": 8,
        "n_train": 32,
        "n_test": 32,
        "rate": 0.3,
        "seed": 0,
    },
    n_hidden=1,
    epochs=2,
    n_micro=20,
    eval_passes=1,
    lr=2e-2,
    rram_sites=(3,),
)


@dataclass
class DemoState:
    """What the stages produced (ids, paths, metrics) and how long each took."""

    out: Path
    seed: int
    size: DemoSize
    quick: bool = False
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    db_url: str = ""
    station_path: Path | None = None
    wafer: str = ""
    run_id: int | None = None
    run_summary: dict[str, Any] = field(default_factory=dict)
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    network_path: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    deployment: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    conductances: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings_s[stage] = round(time.perf_counter() - t0, 3)


Progress = Callable[[str, float | None, float | None], None]
"""``progress(description, completed, total)``: the command's progress display."""


def characterize(lab: Any, state: DemoState, store: Any, progress: Progress) -> None:
    """Run the demo plan (restricted to the size's dies) through the orchestrator."""
    import yaml

    from protocols.prepare import execute_run, prepare_run

    plan = yaml.safe_load(DEMO_PLAN.read_text())
    plan["dies"] = [list(d) for d in state.size.dies]
    plan["sites"]["rram"] = list(state.size.rram_sites)
    plan_path = state.out / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan, sort_keys=False))
    prepared = prepare_run(plan_path, state.station_path)

    def on_progress(p: Any) -> None:
        progress(
            f"characterize {p.current} ({p.failed} failed)",
            p.measurements_done,
            p.measurements_total,
        )

    summary = execute_run(prepared, store, operator="bruno-lab demo", on_progress=on_progress)
    state.run_id = summary.run_id
    state.run_summary = summary.as_dict()
    state.wafer = prepared.wafer.name


def fit_cards(state: DemoState, store: Any, progress: Progress) -> None:
    """Fit every characterized kind into a card; a kind that cannot be fitted is noted."""
    from bruno_lab.errors import BrunoLabError
    from calibration.pipeline import calibrate

    (state.out / "cards").mkdir(exist_ok=True)
    for kind in ("fecap", "felif", "rram"):
        progress(f"fit {kind}", None, None)
        try:
            outcome = calibrate(store, state.wafer, kind)
        except (BrunoLabError, ImportError, ValueError) as exc:
            state.notes.append(f"{kind} card: not produced ({type(exc).__name__}: {exc})")
            log.warning("demo: no %s card: %s", kind, exc)
            continue
        path = state.out / "cards" / f"{kind}.json"
        path.write_text(json.dumps(outcome.body.model_dump(mode="json"), indent=1))
        state.cards[kind] = {**outcome.summary(), "path": str(path)}
    if "rram" not in state.cards:
        raise BrunoLabError("the demo cannot train without an RRAM card: " + "; ".join(state.notes))


def train_network(state: DemoState, progress: Progress) -> None:
    """A small FeLIF network with device-mode RRAM synapses against the RRAM card."""
    import torch

    from bruno_lab.cards import load_card_file
    from bruno_lab.train.data.patterns import make_patterns
    from bruno_lab.train.io import save_network, write_programming_map
    from bruno_lab.train.loop import TrainConfig, train
    from bruno_lab.train.network import NetworkConfig, SpikingNetwork

    size = state.size
    data = make_patterns(**size.task)
    rram = load_card_file(state.cards["rram"]["path"])
    felif = load_card_file(state.cards["felif"]["path"]) if "felif" in state.cards else None
    if felif is None:
        state.notes.append("FeLIF neurons: the design's default parameters (no FeLIF card)")
    cfg = NetworkConfig(
        kind="classify",
        n_in=data.n_in,
        n_hidden=size.n_hidden,
        n_out=data.n_out,
        neuron="felif",
        method="bruno",
        synapse="device",
        seed=state.seed,
        n_micro=size.n_micro,
        init_scale_in=20.0,
        init_scale_out=4.0,
    )
    torch.manual_seed(state.seed)
    network = SpikingNetwork(cfg, rram_card=rram, felif_card=felif)

    def on_epoch(m: Any) -> None:
        progress(f"train epoch {m.epoch}: test acc {m.test_accuracy:.3f}", m.epoch, size.epochs)

    result = train(
        network,
        data,
        TrainConfig(epochs=size.epochs, lr=size.lr, batch_size=32, seed=state.seed),
        on_epoch=on_epoch,
    )
    state.history = result.to_json()["history"]
    metrics = {
        "task": "patterns",
        "task_kwargs": size.task,
        "seed": state.seed,
        "history": state.history,
        "cards": {k: v["card_id"] for k, v in state.cards.items()},
    }
    state.network_path = state.out / "network.pt"
    save_network(state.network_path, network, metrics)
    write_programming_map(network, state.out / "programming_map.json")


def deploy_and_evaluate(state: DemoState, store: Any, progress: Progress) -> None:
    """Deploy the network onto the centre die, then read it back and evaluate on chip."""
    from protocols.deployment import deploy_network
    from protocols.deployment_eval import evaluate_on_chip

    assert state.network_path is not None and state.station_path is not None

    def on_progress(p: Any) -> None:
        progress(
            f"deploy {p.current} ({p.failed} failed)", p.measurements_done, p.measurements_total
        )

    with state.timed("deploy"):
        result = deploy_network(
            state.network_path,
            state.station_path,
            DEPLOY_DIE,
            store,
            on_progress=on_progress,
            operator="bruno-lab demo",
        )
    state.deployment = result.summary()
    state.conductances["target_siemens"] = [
        c["target_conductance_siemens"] for c in result.record["cells"]
    ]
    state.conductances["reached_siemens"] = [
        c["reached_conductance_siemens"] for c in result.record["cells"]
    ]
    with state.timed("evaluate"):
        n = result.record["n_cells"]
        on_chip = evaluate_on_chip(
            state.network_path,
            state.station_path,
            DEPLOY_DIE,
            n_passes=state.size.eval_passes,
            on_cell=lambda k: progress("read back cells", k, n),
        )
    state.evaluation = on_chip.summary()
    state.conductances["read_siemens"] = on_chip.conductance_siemens[0].tolist()


def run_demo(out: Path, *, quick: bool, seed: int, progress: Progress) -> DemoState:
    """Every stage into ``out``; returns the state (the report and summary are written after)."""
    from bruno_lab.store import open_store
    from instruments.sim.lab import SimLab

    out.mkdir(parents=True, exist_ok=True)
    state = DemoState(out=out, seed=seed, size=QUICK if quick else FULL, quick=quick)
    db_path = out / "lab.db"
    for stale in (db_path, out / "lab.db-wal", out / "lab.db-shm"):
        stale.unlink(missing_ok=True)
    state.db_url = f"sqlite:///{db_path}"
    t0 = time.perf_counter()
    with state.timed("lab"):
        progress("start the simulated lab", None, None)
        lab = SimLab.start(truth=DEMO_TRUTH, seed=seed)
    try:
        state.station_path = lab.write_station(out / "station.yaml")
        store = open_store(state.db_url, require_head=False)
        try:
            store.upgrade()
            with state.timed("characterize"):
                characterize(lab, state, store, progress)
            with state.timed("fit"):
                fit_cards(state, store, progress)
            with state.timed("train"):
                train_network(state, progress)
            deploy_and_evaluate(state, store, progress)
        finally:
            store.close()
    finally:
        lab.stop()
    state.timings_s["total_before_report"] = round(time.perf_counter() - t0, 3)
    return state
