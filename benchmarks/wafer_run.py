"""Wafer run on the simulated lab: wall time and orchestration overhead per measurement.

A plan (by default PUND on FeCap site 0, forming and a pulsed SET/RESET on the RRAM site; add
``pv_loop`` or ``rram_program_verify`` with ``--protocols``) runs over the first ``N`` dies of
the simulated wafer (shipped truth, seed 1) through the real drivers into a fresh SQLite
database. Overhead is the wall time spent outside the protocols and prober moves (instrument
I/O and the sim's physics): schedule bookkeeping, the store's commits, progress. Median of
``--repeats`` after a one-die warm-up.

    .venv/bin/python benchmarks/wafer_run.py [--sizes 20] [--repeats 1] [--json]
        [--protocols pund,rram_forming,rram_pulsed,pv_loop,rram_program_verify]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

STEPS: dict[str, dict[str, Any]] = {
    "pund": {"amplitude_v": "3 V"},
    "pv_loop": {"amplitude_v": "3 V", "frequencies_hz": ["100 kHz"]},
    "rram_forming": {"max_v": "3.5 V", "step_v": "50 mV"},
    "rram_pulsed": {"set_amplitudes_v": ["1.8 V"], "reset_amplitudes_v": ["1.6 V"]},
    "rram_program_verify": {"n_levels": 8},
}
DEFAULT_PROTOCOLS = ("pund", "rram_forming", "rram_pulsed")


def _plan(n_dies: int, dies: list[list[int]], protocols: list[str]) -> dict[str, Any]:
    return {
        "name": f"bench-{n_dies}-dies-{'-'.join(protocols)}",
        "dies": [list(d) for d in dies[:n_dies]],
        "sites": {"fecap": [0], "rram": "all", "felif": []},
        "protocols": [{"protocol": p, "params": STEPS.get(p, {})} for p in protocols],
    }


def _one_run(n_dies: int, protocols: list[str], seed: int) -> dict[str, Any]:
    from bruno_lab.store import open_store
    from instruments.sim.lab import SimLab
    from protocols.prepare import execute_run, prepare_run

    with tempfile.TemporaryDirectory() as tmp, SimLab.start(seed=seed) as lab:
        station = lab.write_station(Path(tmp) / "station.yaml")
        plan = _plan(n_dies, lab.wafer.station_summary()["dies"], protocols)
        plan_path = Path(tmp) / "plan.yaml"
        plan_path.write_text(yaml.safe_dump(plan))
        store = open_store(f"sqlite:///{tmp}/lab.db", require_head=False)
        store.upgrade()
        prepared = prepare_run(plan_path, station)
        start = time.perf_counter()
        summary = execute_run(prepared, store, operator="benchmark")
        wall_s = time.perf_counter() - start
        store.close()
    n = max(summary.measured_here, 1)
    overhead_s = wall_s - summary.instrument_s
    return {
        "dies": n_dies,
        "measurements": summary.measured_here,
        "failed": summary.failed,
        "status": summary.status,
        "wall_s": wall_s,
        "instrument_s": summary.instrument_s,
        "store_s": summary.store_s,
        "overhead_s": overhead_s,
        "overhead_per_measurement_ms": 1e3 * overhead_s / n,
        "overhead_frac": overhead_s / wall_s if wall_s > 0 else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20", help="comma-separated numbers of dies")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--protocols", default=",".join(DEFAULT_PROTOCOLS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import torch

    sizes = [int(s) for s in args.sizes.split(",")]
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    _one_run(1, protocols, args.seed)  # warm-up: imports, first connections, first physics
    rows = []
    for n_dies in sizes:
        runs = [_one_run(n_dies, protocols, args.seed) for _ in range(args.repeats)]
        row = dict(runs[0])
        for key in ("wall_s", "instrument_s", "store_s", "overhead_s",
                    "overhead_per_measurement_ms", "overhead_frac"):  # fmt: skip
            row[key] = statistics.median(r[key] for r in runs)
        rows.append(row)
    header = {
        "device": "cpu",
        "dtype": "float64 (sim physics)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "sizes_dies": sizes,
        "protocols": protocols,
        "repeats": args.repeats,
    }
    if args.json:
        print(json.dumps({"header": header, "rows": rows}, indent=2))
        return 0
    print(" ".join(f"{k}={v}" for k, v in header.items()))
    cols = ("dies", "measurements", "failed", "wall_s", "instrument_s", "store_s",
            "overhead_s", "overhead_per_measurement_ms", "overhead_frac")  # fmt: skip
    print(" ".join(f"{c:>14}" for c in cols))
    for row in rows:
        print(" ".join(f"{row[c]:>14.4g}" if isinstance(row[c], float) else f"{row[c]:>14}"
                       for c in cols))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
