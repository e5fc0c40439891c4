"""Build time of the wafer report for a 60-die, 240-device wafer.

The wafer: one die's characterization measured on the simulated lab (the demo plan: a FeCap, a
FeLIF neuron and two RRAM cells per die, with every array the protocols store) and its cards
fitted; then its measurements, fits and cards cloned onto the 60 dies of a 100 mm wafer map
(``W-bench``: 4 devices per die, arrays as measured, scalars and fitted parameters scattered a
few % so that the maps vary), so the report reads a database of the real size and shape
without hours of simulated measurement. Timed: reading the store, each section, rendering, and
the file written; median of ``--repeats``. The report also carries what the demo hands it
besides the store (``--no-records`` leaves them out): a training record (30 epochs, a 4-class
confusion matrix) and a deployment of the demo's 16-32-4 network onto one 64 x 64 1T1R array
(1280 cells at their array positions, two tiles, evaluated by analog MVM).

    .venv/bin/python benchmarks/report_build.py [--dies 60] [--repeats 3] [--no-records] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIE = [1, 1]


def _die_map(n: int) -> list[tuple[int, int]]:
    """The ``n`` dies nearest the centre of a round wafer, on a square grid (col, row)."""
    size = math.ceil(math.sqrt(n * 4 / math.pi)) + 2
    c = (size - 1) / 2
    cells = sorted(
        ((x, y) for x in range(size) for y in range(size)),
        key=lambda d: (math.hypot(d[0] - c, d[1] - c), d[1], d[0]),
    )
    chosen = cells[:n]
    x0, y0 = min(x for x, _ in chosen), min(y for _, y in chosen)
    return sorted(((x - x0, y - y0) for x, y in chosen), key=lambda d: (d[1], d[0]))


def _measure_source(tmp: Path) -> Any:
    """One die of the demo plan on the simulated lab, and its cards (fecap, felif, rram)."""
    from bruno_lab.store import open_store
    from calibration.pipeline import calibrate
    from instruments.sim.lab import SimLab
    from protocols.prepare import execute_run, prepare_run

    plan = yaml.safe_load((ROOT / "protocols" / "examples" / "demo_plan.yaml").read_text())
    plan["dies"] = [SOURCE_DIE]
    store = open_store(f"sqlite:///{tmp / 'source.db'}", require_head=False)
    store.upgrade()
    with SimLab.start(truth=ROOT / "protocols" / "examples" / "demo_truth.yaml", seed=1) as lab:
        station = lab.write_station(tmp / "station.yaml")
        (tmp / "plan.yaml").write_text(yaml.safe_dump(plan))
        execute_run(prepare_run(tmp / "plan.yaml", station), store, operator="benchmark")
    for kind in ("fecap", "felif", "rram"):
        calibrate(store, "demo-wafer", kind)
    return store


def build_wafer(url: str, n_dies: int, tmp: Path, source: str | None = None) -> dict[str, Any]:
    """The cloned ``W-bench`` wafer in the database at ``url``; returns its size. ``source``:
    a database whose run 1 characterized die 1,1 of ``demo-wafer`` with cards fitted (e.g. a
    demo's ``lab.db``) instead of measuring one."""
    from sqlalchemy import select

    from bruno_lab.store import open_store
    from bruno_lab.store.models import Device, Die, Measurement

    src = open_store(source) if source else _measure_source(tmp)
    dst = open_store(url, require_head=False)
    dst.upgrade()
    rng = np.random.default_rng(0)
    dies = _die_map(n_dies)
    with src.session() as sess:
        rows = sess.execute(
            select(Measurement, Device.site, Device.kind, Device.geometry)
            .join(Device, Device.id == Measurement.device_id)
            .join(Die, Die.id == Device.die_id)
            .where(Measurement.run_id == 1, Die.x == SOURCE_DIE[0], Die.y == SOURCE_DIE[1])
            .order_by(Measurement.id)
        ).all()
    arrays = src.load_arrays_many([r.Measurement.id for r in rows])
    wafer_map = {
        "name": "W-bench",
        "dies": [[x, y, f"{x},{y}"] for x, y in dies],
        "sites": [
            {"site": int(s), "kind": str(getattr(k, "value", k))}
            for s, k in sorted({(int(r.site), r.kind) for r in rows})
        ],
    }
    run = dst.create_run(
        {"name": "bench", "sha256": "b" * 64, "source": "benchmark", "document": {"name": "bench"}},
        "benchmark",
        {"wafer_map": wafer_map},
        "bench",
    )
    wid = dst.ensure_wafer("W-bench")
    dev_map: dict[tuple[tuple[int, int], str], int] = {}
    mid_map: dict[tuple[tuple[int, int], int], int] = {}
    t = datetime.now(UTC)
    for x, y in dies:
        did = dst.ensure_die(wid, x, y, f"{x},{y}")
        scatter = 1.0 + 0.03 * rng.standard_normal()
        for r in rows:
            key = ((x, y), r.site)
            if key not in dev_map:
                dev_map[key] = dst.ensure_device(did, r.site, r.kind, dict(r.geometry or {}))
            m = r.Measurement
            mid_map[((x, y), m.id)] = dst.add_measurement(
                run_id=run,
                device_id=dev_map[key],
                protocol=m.protocol,
                parameters=m.parameters,
                instruments=m.instruments,
                started_at=t,
                finished_at=t,
                status=m.status,
                error=m.error,
                scalars={
                    k: (v * scatter if v is not None else math.nan)
                    for k, v in (m.scalars or {}).items()
                },
                arrays=arrays.get(m.id, {}),
                key=f"{x},{y}/{r.site}/{m.protocol}/{m.key.rsplit('/', 1)[-1]}",
            )
    dst.set_run_status(run, "completed")
    fit_ids = {}
    for kind in ("fecap", "felif", "rram"):
        card = src.latest_model_card(kind, "wafer", "demo-wafer")
        on_die = {int(r.Measurement.device_id) for r in rows}
        fits = [f for f in map(src.get_fit, card.fit_ids) if f.device_id in on_die]
        src_dev_site = {}
        with src.engine.connect() as conn:
            for dev_id, site in conn.execute(select(Device.id, Device.site)):
                src_dev_site[int(dev_id)] = site
        new = []
        for x, y in dies:
            for f in fits:
                scatter = 1.0 + 0.02 * rng.standard_normal()
                new.append(
                    {
                        "device_id": dev_map[((x, y), src_dev_site[f.device_id])],
                        "model_name": f.model_name,
                        "model_version": f.model_version,
                        "parameters": {
                            k: v * scatter if v is not None and not k.endswith("imprint_v") else v
                            for k, v in f.parameters.items()
                        },
                        "uncertainties": f.uncertainties,
                        "goodness": f.goodness,
                        "measurement_ids": [
                            mid_map[((x, y), m)]
                            for m in f.measurement_ids
                            if ((x, y), m) in mid_map
                        ],
                        "flags": f.flags,
                    }
                )
        body = card.card().model_copy(update={"scope_id": "W-bench"})
        ids, _ = dst.add_calibration(new, body, card.code_version)
        fit_ids[kind] = len(ids)
    n_dev = len(dev_map)
    src.close()
    dst.close()
    return {"dies": len(dies), "devices": n_dev, "measurements": len(mid_map), "fits": fit_ids}


def demo_records(seed: int = 0) -> tuple[Any, Any]:
    """A training record and a deployment record of the demo's size (synthetic values)."""
    from reporting.records import DeploymentRecord, TrainingRecord

    rng = np.random.default_rng(seed)
    hist = [
        {
            "epoch": e,
            "train_loss": 1.386 * math.exp(-e / 8) + 0.05,
            "test_loss": 1.386 * math.exp(-e / 8) + 0.08,
            "train_accuracy": 1 - 0.75 * math.exp(-e / 5),
            "test_accuracy": 1 - 0.75 * math.exp(-e / 5) - 0.01,
        }
        for e in range(1, 31)
    ]
    conf = (np.diag([60, 62, 58, 61]) + rng.integers(0, 2, (4, 4))).tolist()
    training = TrainingRecord(hist, n_classes=4, n_test=256, confusion=conf)
    ladder = np.array([6, 28, 50, 72, 94, 116, 138, 160]) * 1e-6
    cells, tiles, k = [], [], 0
    # layer 0: 16 inputs on rows 0-15, 32 outputs on column pairs 0-63; layer 1: 32 inputs on
    # rows 16-47, 4 outputs on columns 0-7 (a second block of the same array)
    for layer, (n_in, n_out, row0) in enumerate(((16, 32, 0), (32, 4, 16))):
        tiles.append(
            {
                "layer": layer,
                "inputs": list(range(n_in)),
                "outputs": list(range(n_out)),
                "array_rows": list(range(row0, row0 + n_in)),
                "plus_cols": list(range(0, 2 * n_out, 2)),
            }
        )
        for out in range(n_out):
            for inp in range(n_in):
                for pol in (0, 1):
                    t = float(ladder[rng.integers(0, 8)])
                    ok = rng.random() > 0.01
                    cells.append(
                        {
                            "cell": k,
                            "layer": layer,
                            "row": out,
                            "col": inp,
                            "polarity": "+-"[pol],
                            "level_index": 0,
                            "target_conductance_siemens": t,
                            "programmed_target_siemens": t,
                            "array_row": row0 + inp,
                            "array_col": 2 * out + pol,
                            "health": 0,
                            "compensated": False,
                            "reached_conductance_siemens": t + rng.normal(0, 1e-6 if ok else 8e-6),
                            "attempts": int(rng.integers(1, 12)),
                            "success": bool(ok),
                        }
                    )
                    k += 1
    record = {
        "target": "crossbar",
        "die": {"col": 2, "row": 2, "label": "2,2"},
        "array": {"site": 5, "rows": 64, "cols": 64},
        "run_id": 2,
        "settings": {"tolerance_siemens": 2e-6},
        "placement": {"tiles": tiles},
        "layers": [{"layer": 0, "name": "hidden"}, {"layer": 1, "name": "output"}],
        "cells": cells,
    }
    evaluation = {
        "on_chip": "analog matrix-vector products (array tester)",
        "chip_accuracies": [0.98, 0.976, 0.98],
        "readback_accuracy": 0.984,
        "software_accuracy": 0.988,
        "ideal_accuracy": 0.992,
        "chance": 0.25,
    }
    return training, DeploymentRecord(record, evaluation)


class _SectionTimes(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.times: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("report section ") or msg.startswith("report device curves"):
            name, secs = msg.removeprefix("report ").rsplit(":", 1)
            self.times[name.removeprefix("section ")] = float(secs.strip().removesuffix(" s"))


def time_report(url: str, out: Path, records: bool = True) -> dict[str, float]:
    from bruno_lab.store import open_store
    from reporting.build import build_report, render_html

    handler = _SectionTimes()
    logger = logging.getLogger("reporting.build")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        t0 = time.perf_counter()
        store = open_store(url)
        training, deployment = demo_records() if records else (None, None)
        report = build_report(store, "W-bench", training=training, deployment=deployment)
        t_build = time.perf_counter() - t0
        html = render_html(report, build_s=t_build)
        t_render = time.perf_counter() - t0 - t_build
        out.write_text(html, encoding="utf-8")
        total = time.perf_counter() - t0
        store.close()
    finally:
        logger.removeHandler(handler)
    return {
        "total_s": total,
        "build_s": t_build,
        "render_s": t_render,
        "mb": len(html.encode()) / 1e6,
        **{f"{k}_s": v for k, v in handler.times.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dies", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default=None, help="keep the last report written here")
    ap.add_argument(
        "--no-records",
        action="store_true",
        help="the store's sections only (no training and deployment records)",
    )
    ap.add_argument(
        "--source-db",
        default=None,
        help="a demo's lab.db to clone from instead of measuring one die",
    )
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_p = Path(tmp)
        url = f"sqlite:///{tmp_p / 'bench.db'}"
        t0 = time.perf_counter()
        size = build_wafer(url, args.dies, tmp_p, args.source_db)
        setup_s = time.perf_counter() - t0
        runs = [
            time_report(url, tmp_p / "report.html", not args.no_records)
            for _ in range(args.repeats)
        ]
        if args.out:
            import shutil

            shutil.copyfile(tmp_p / "report.html", args.out)
    keys = list(runs[0])
    med = {k: statistics.median(r.get(k, math.nan) for r in runs) for k in keys}
    doc = {
        "benchmark": "report_build",
        "python": platform.python_version(),
        "wafer": size,
        "setup_s": setup_s,
        "repeats": args.repeats,
        "records": not args.no_records,
        "median": med,
    }
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    print(
        f"wafer: {size['dies']} dies, {size['devices']} devices, {size['measurements']} "
        f"measurements, fits {size['fits']} (setup {setup_s:.0f} s)"
    )
    print(f"{'stage':<24}{'median':>10}")
    for k in keys:
        print(f"{k.removesuffix('_s'):<24}{med[k]:>10.2f} {'MB' if k == 'mb' else 's'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
