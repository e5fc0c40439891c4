"""The demo: the loop's stages (``bruno_lab.loop``) in order on the simulated lab:
characterization, cards, training, deployment, on-chip evaluation. Each stage is timed;
progress goes to a callback (the command draws it). Objects pass from stage to stage.

What lands in the output folder is for the user and the CLI tour, not for the stages: ``lab.db``
(SQLite: measurements, fits, cards, the deployment's measurements), ``station.yaml``,
``network.pt`` with its programming map and deployment record, ``cards/*.json``. The lab is the
simulated one (``instruments.sim``), which only the CLI and tests may start.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bruno_lab.cards import ModelCardBody
    from bruno_lab.loop import Calibration, SpikingNetwork, TaskData
    from bruno_lab.store.store import Store
    from bruno_lab.train.loop import EpochMetrics
    from protocols.orchestrator import RunProgress

log = logging.getLogger(__name__)


def _examples() -> Path:
    """The example plans and truths that ship with the ``protocols`` package."""
    import protocols

    return Path(protocols.__file__).resolve().parent / "examples"


EXAMPLES = _examples()
DEMO_TRUTH = EXAMPLES / "demo_truth.yaml"
DEMO_PLAN = EXAMPLES / "demo_plan.yaml"
DEMO_ARRAY_PLAN = EXAMPLES / "demo_array_plan.yaml"  # rows of one die's crossbar: the RRAM card
DEPLOY_DIE = "2,2"  # the centre die: its RRAM array is not touched by the characterization
SPARE_ROWS = 8  # crossbar rows surveyed beyond the network's: room to spare the worst rows


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
    train_seeds: int = 1  # networks trained (seed, seed + 1, ...): mean ± SD in the summary
    array_card: bool = False  # characterize a crossbar (DEMO_ARRAY_PLAN) for the RRAM card


FULL = DemoSize(  # training fields: bruno_lab.train.demo_network.DEMO (chosen by die capacity)
    dies=((1, 1), (3, 1), (0, 2), (4, 2)),
    task={
        "n_classes": 4,
        "n_channels": 16,
        "n_steps": 12,
        "n_train": 256,
        "n_test": 128,
        "rate": 0.15,
        "seed": 0,
    },
    n_hidden=32,
    epochs=8,
    n_micro=1000,
    eval_passes=3,
    lr=5e-2,
    train_seeds=3,
    array_card=True,
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
    training: dict[str, Any] = field(default_factory=dict)  # seeds, mean ± SD, learned
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


def characterize(state: DemoState, store: Store, progress: Progress) -> None:
    """Run the demo plan (restricted to the size's dies) through the loop's characterize."""
    import yaml

    from bruno_lab import loop

    plan = yaml.safe_load(DEMO_PLAN.read_text())
    plan["dies"] = [list(d) for d in state.size.dies]
    plan["sites"]["rram"] = list(state.size.rram_sites)
    assert state.station_path is not None
    prepared = loop.prepare(plan, state.station_path)

    def on_progress(p: RunProgress) -> None:
        progress(
            f"characterize {p.current} ({p.failed} failed)",
            p.measurements_done,
            p.measurements_total,
        )

    summary = loop.characterize(
        prepared, None, store, operator="bruno-lab demo", on_progress=on_progress
    )
    state.run_id = summary.run_id
    state.run_summary = summary.as_dict()
    state.wafer = prepared.wafer.name
    if state.size.array_card and loop.deploy_target(state.station_path) == "crossbar":
        array_run = loop.characterize(
            DEMO_ARRAY_PLAN, state.station_path, store, operator="bruno-lab demo",
            on_progress=on_progress,
        )  # fmt: skip
        state.run_summary["array_run"] = array_run.as_dict()


def fit_cards(state: DemoState, store: Store, progress: Progress) -> Calibration:
    """Fit every characterized kind into a card (a kind that cannot be fitted is noted); the
    cards are also written to ``out/cards/<kind>.json`` for the user."""
    from bruno_lab import loop
    from bruno_lab.errors import BrunoLabError

    (state.out / "cards").mkdir(exist_ok=True)
    calibration = loop.fit(
        store,
        state.wafer,
        loop.measured_kinds(store, state.wafer),
        strict=False,
        on_progress=lambda kind, n: progress(f"fit {kind}", None, None),
    )
    for kind, reason in calibration.not_fitted.items():
        state.notes.append(f"{kind} card: not produced ({reason})")
    for kind, outcome in calibration.outcomes.items():
        path = state.out / "cards" / f"{kind}.json"
        path.write_text(json.dumps(outcome.body.model_dump(mode="json"), indent=1))
        state.cards[kind] = {**outcome.summary(), "path": str(path)}
    if "rram" not in calibration.network_cards:
        raise BrunoLabError("the demo cannot train without an RRAM card: " + "; ".join(state.notes))
    return calibration


def _die_rram_cells(state: DemoState) -> int:
    """RRAM cells one die offers the deployment: its crossbar's when the deployment goes there
    (``loop.deploy_target``), else its single RRAM sites."""
    from bruno_lab import loop
    from protocols.array_deployment import array_site
    from protocols.deployment import station_wafer

    assert state.station_path is not None
    _, wafer = station_wafer(state.station_path)
    site = array_site(wafer)
    if site is not None and loop.deploy_target(state.station_path) == "crossbar":
        return int(site.geometry["rows"]) * int(site.geometry["cols"])
    return sum(1 for s in wafer.sites if s.kind == "rram")


def train_network(
    state: DemoState, cards: dict[str, ModelCardBody], progress: Progress
) -> tuple[SpikingNetwork, TaskData]:
    """The demo network (``bruno_lab.train.demo_network``: the largest of its designs that a
    die's RRAM cells hold) with device-mode RRAM synapses against the fitted cards, trained for
    ``size.train_seeds`` seeds from the demo's seed; the demo's own seed is deployed, and the
    summary gives every seed, mean ± SD and whether the network learned. Saved to
    ``out/network.pt`` (and its programming map) for the CLI tour."""
    import dataclasses

    import torch

    from bruno_lab import loop
    from bruno_lab.train import demo_network
    from bruno_lab.train.io import save_network, write_programming_map
    from bruno_lab.train.metrics import mean_sd

    size = state.size
    if state.quick:
        spec = demo_network.DemoSpec(size.task, size.n_hidden, size.epochs, size.lr, size.n_micro)
    else:
        capacity = _die_rram_cells(state)
        spec = demo_network.demo_spec(capacity)
        if spec is not demo_network.DEMO:
            state.notes.append(
                f"a die holds {capacity} RRAM cells: the demo trains the {spec.n_in}-"
                f"{spec.n_hidden}-{spec.n_out} network instead of the "
                f"{demo_network.DEMO.n_in}-{demo_network.DEMO.n_hidden}-"
                f"{demo_network.DEMO.n_out} one ({demo_network.DEMO.n_cells} cells)"
            )
        state.size = size = dataclasses.replace(
            size, task=spec.task, n_hidden=spec.n_hidden, epochs=spec.epochs,
            n_micro=spec.n_micro, lr=spec.lr,
        )  # fmt: skip
    data = spec.data()
    if "felif" not in cards:
        state.notes.append("FeLIF neurons: the design's default parameters (no FeLIF card)")
    use: dict[str, ModelCardBody] = {k: cards[k] for k in ("rram", "felif") if k in cards}
    seeds = [state.seed + k for k in range(max(1, size.train_seeds))]
    runs: list[dict[str, Any]] = []
    network = None
    for seed in seeds:
        torch.manual_seed(seed)
        net = loop.build_network(spec.network_config(seed), use)
        tag = f"seed {seed}: " if len(seeds) > 1 else ""

        def on_epoch(m: EpochMetrics, tag: str = tag) -> None:
            progress(
                f"train {tag}epoch {m.epoch}: test acc {m.test_accuracy:.3f}", m.epoch, size.epochs
            )

        result = loop.train(net, data, spec.train_config(seed), on_epoch=on_epoch)
        final = result.final
        runs.append(
            {
                "seed": seed,
                "test_accuracy": final.test_accuracy if final else None,
                "collapsed": result.collapsed,
                "learned": demo_network.learned(result),
                "fidelity": result.fidelity,
            }
        )
        if seed == state.seed:
            network, state.history = net, result.to_json()["history"]
    assert network is not None
    own = runs[0]
    state.training = {
        "network": spec.describe(),
        "seed": state.seed,
        "test_accuracy": own["test_accuracy"],
        "learned": own["learned"],
        "collapsed": own["collapsed"],
        "learned_threshold": demo_network.LEARNED_ACCURACY,
        "seeds": seeds,
        "test_accuracy_over_seeds": mean_sd(r["test_accuracy"] for r in runs),
        "n_learned": sum(r["learned"] for r in runs),
        "runs": runs,
    }
    if not own["learned"]:
        state.notes.append(
            f"the trained network did not learn (test accuracy {own['test_accuracy']:.3f}"
            + (", collapsed" if own["collapsed"] else "")
            + f"; learned means >= {demo_network.LEARNED_ACCURACY} without collapse)"
        )
    metrics = {
        "task": "patterns",
        "task_kwargs": size.task,
        "seed": state.seed,
        "history": state.history,
        "cards": {k: v["card_id"] for k, v in state.cards.items()},
        "training": state.training,
    }
    state.network_path = state.out / "network.pt"
    save_network(state.network_path, network, metrics)
    write_programming_map(network, state.out / "programming_map.json")
    return network, data


def deploy_and_evaluate(
    state: DemoState, network: SpikingNetwork, data: TaskData, store: Store, progress: Progress
) -> None:
    """Deploy the network onto the centre die (its crossbar through the array tester when it
    has one: survey, placement, row-parallel write-verify), then evaluate on chip (on a
    crossbar: the synapses as analog matrix-vector products). The deployment record is written
    beside ``network.pt`` so that ``bruno-lab evaluate`` finds it."""
    from bruno_lab import loop
    from protocols.array_deployment import ArrayDeploySettings
    from protocols.deployment import record_path_for, write_record

    assert state.station_path is not None and state.network_path is not None

    def on_progress(p: RunProgress) -> None:
        progress(
            f"deploy {p.current} ({p.failed} failed)", p.measurements_done, p.measurements_total
        )

    crossbar = loop.deploy_target(state.station_path) == "crossbar"
    with state.timed("deploy"):
        result = loop.deploy(
            network, state.station_path, DEPLOY_DIE, store,
            settings=ArrayDeploySettings(spare_rows=SPARE_ROWS) if crossbar else None,
            operator="bruno-lab demo", on_progress=on_progress,
        )  # fmt: skip
    result.record_path = write_record(
        record_path_for(state.network_path, DEPLOY_DIE), result.record
    )
    state.deployment = result.summary()
    state.conductances["target_siemens"] = [
        c.get("programmed_target_siemens", c["target_conductance_siemens"])
        for c in result.record["cells"]
    ]
    state.conductances["reached_siemens"] = [
        c["reached_conductance_siemens"] for c in result.record["cells"]
    ]
    with state.timed("evaluate"):
        n = result.record["n_cells"]
        on_chip = loop.evaluate_on_chip(
            network,
            result,
            state.station_path,
            data,
            n_passes=1 if crossbar else state.size.eval_passes,
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
                characterize(state, store, progress)
            with state.timed("fit"):
                calibration = fit_cards(state, store, progress)
            with state.timed("train"):
                network, data = train_network(state, calibration.network_cards, progress)
            deploy_and_evaluate(state, network, data, store, progress)
        finally:
            store.close()
    finally:
        lab.stop()
    state.timings_s["total_before_report"] = round(time.perf_counter() - t0, 3)
    return state
