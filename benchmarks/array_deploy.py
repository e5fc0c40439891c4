"""Program-and-verify of a whole 1T1R array through the simulated lab, against the one-cell path.

Array path (what an array-scale deploy does): a simulated lab (array truth,
``protocols/examples/array_truth.yaml`` by default) serves every instrument over real loopback
sockets; the ``ArrayTester`` driver forms each row (``:FORM:ROW``) and then programs it to its
per-cell targets with the instrument's row-parallel write-verify (``:PROG:ROW``, IGVVA and, as
a second row of the table, ISPVA on a fresh array of another die). Targets: ``--levels``
conductances evenly from 6 to 242 uS, cell ``(r, c)`` at level ``(r + c) % levels``.

One-cell path (today's deploy of the 64-cell dies): ``protocols.rram_program_verify`` on a
single RRAM test cell through the SMU (reads) and the AWG (pulses), one target per cell,
``--baseline-cells`` cells (the single-cell sites of successive dies, formed first with
``rram_forming``).

Columns: cells programmed, wall time of the programming (forming shown apart), cells per second
of wall time; virtual (bench) time of the same work from the instrument (``:PROG:DATA:TIME?``
summed over rows for the array; the virtual clock for the one-cell path) and cells per second
of it; the process CPU time (server and client share the process: on an idle machine the wall
time would be close to it); success over the cells the sim knows to be formed and not stuck;
mean pulses per cell. ``speedup`` is the one-cell path's wall time per cell over the row's.

    .venv/bin/python benchmarks/array_deploy.py [--rows 64 --cols 64] [--levels 4]
        [--schemes igvva,ispva] [--baseline-cells 6] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARRAY_TRUTH = ROOT / "protocols" / "examples" / "array_truth.yaml"
G_MIN_S, G_MAX_S = 6e-6, 242e-6


class _Timer:
    """Wall and process CPU time of a block (the sim's server threads run in this process)."""

    def __enter__(self) -> _Timer:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self.wall0
        self.cpu_s = time.process_time() - self.cpu0


def _truth(path: Path, rows: int, cols: int) -> tuple[dict[str, Any], int, list[int]]:
    """The truth document with its array resized; the array's site and the single-cell sites."""
    from bruno_lab.yamlio import load_yaml_file

    doc = copy.deepcopy(load_yaml_file(path, "truth").data)
    sites = doc["sites"]
    array_sites = [k for k, s in enumerate(sites) if s.get("kind") == "rram_array"]
    if not array_sites:
        raise SystemExit(f"{path}: no rram_array site")
    site = array_sites[0]
    sites[site]["array"]["rows"], sites[site]["array"]["cols"] = rows, cols
    singles = [k for k, s in enumerate(sites) if s.get("kind") == "rram"]
    return doc, site, singles


def _levels(n_levels: int) -> np.ndarray:
    return np.linspace(G_MIN_S, G_MAX_S, n_levels)


def _array_case(
    lab: Any, bench: Any, die: tuple[int, int], site: int, scheme: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Form and program every row of the array at ``die``; per-row timing from the driver."""
    from instruments.array_tester import FormingSettings, ProgramSettings

    bench.prober.step_to(*die, site=site)
    bench.prober.contact()
    tester = bench.array_tester
    tester.configure_read(0.2, 3.3, 100e-6, "cell")
    tester.output_enabled = True
    rows, cols = tester.array_size()
    v0 = bench.clock.now_s()
    with _Timer() as forming:
        for r in range(rows):
            tester.form_row(r, FormingSettings())
    forming_virtual_s = bench.clock.now_s() - v0
    levels = _levels(args.levels)
    settings = ProgramSettings(scheme=scheme, tolerance_siemens=args.tolerance_siemens)
    success, attempts, row_virtual = [], [], []
    v0 = bench.clock.now_s()
    with _Timer() as program:
        for r in range(rows):
            targets = levels[(np.arange(cols) + r) % args.levels]
            result = tester.program_row(r, targets, settings)
            success.append(result.success)
            attempts.append(result.attempts)
            row_virtual.append(result.duration_s)
    clock_virtual_s = bench.clock.now_s() - v0
    tester.shutdown()
    bench.prober.separate()
    xb = lab.wafer.array(*die, site)  # the truth, for the success rate over formed cells
    ok = (xb.state.formed & (xb.state.stuck == 0)).numpy()
    n = rows * cols
    virtual_s = float(np.sum(row_virtual))
    return {
        "case": f"array {scheme}",
        "cells": n,
        "wall_s": program.wall_s,
        "cpu_s": program.cpu_s,
        "cells_per_s_wall": n / program.wall_s,
        "wall_ms_per_cell": 1e3 * program.wall_s / n,
        "virtual_s": virtual_s,
        "virtual_clock_s": clock_virtual_s,
        "cells_per_s_virtual": n / virtual_s,
        "success_formed": float(np.concatenate(success)[ok].mean()),
        "formed_fraction": float(ok.mean()),
        "mean_attempts": float(np.concatenate(attempts).mean()),
        "forming_wall_s": forming.wall_s,
        "forming_cpu_s": forming.cpu_s,
        "forming_virtual_s": forming_virtual_s,
    }


def _one_cell_case(
    lab: Any, bench: Any, dies: list[tuple[int, int]], sites: list[int], args: argparse.Namespace
) -> dict[str, Any]:
    """``rram_program_verify`` (SMU + AWG) on single test cells, one target each."""
    from protocols.base import DeviceUnderTest
    from protocols.rram_forming import RramFormingParams
    from protocols.rram_forming import run as form
    from protocols.rram_program_verify import RramProgramVerifyParams
    from protocols.rram_program_verify import run as program_verify

    levels = _levels(args.levels)
    places = [(die, site) for die in dies for site in sites][: args.baseline_cells]
    if len(places) < args.baseline_cells:
        raise SystemExit(f"only {len(places)} single RRAM cells on the wafer")
    per_cell_wall, per_cell_cpu, per_cell_virtual, success, attempts = [], [], [], [], []
    for k, ((col, row), site) in enumerate(places):
        bench.prober.step_to(col, row, site)
        bench.prober.contact()
        area = lab.truth_for((col, row), site).area_m2
        device = DeviceUnderTest(col, row, f"{col},{row}", site, "rram", {"area_m2": area})
        form(bench, device, RramFormingParams(max_v=3.5))
        params = RramProgramVerifyParams(
            targets_siemens=[float(levels[k % args.levels])],
            tolerance_siemens=args.tolerance_siemens,
        )
        v0 = bench.clock.now_s()
        with _Timer() as one:
            result = program_verify(bench, device, params)
        per_cell_virtual.append(bench.clock.now_s() - v0)
        per_cell_wall.append(one.wall_s)
        per_cell_cpu.append(one.cpu_s)
        success.append(float(result.scalars["n_success"]))
        attempts.append(float(result.scalars["mean_attempts"]))
        bench.prober.separate()
    n = len(places)
    wall, virtual = float(np.sum(per_cell_wall)), float(np.sum(per_cell_virtual))
    return {
        "case": "one cell (SMU+AWG)",
        "cells": n,
        "wall_s": wall,
        "cpu_s": float(np.sum(per_cell_cpu)),
        "cells_per_s_wall": n / wall,
        "wall_ms_per_cell": 1e3 * wall / n,
        "wall_ms_per_cell_each": [1e3 * w for w in per_cell_wall],
        "virtual_s": virtual,
        "virtual_clock_s": virtual,
        "cells_per_s_virtual": n / virtual,
        "success_formed": float(np.mean(success)),
        "formed_fraction": 1.0,
        "mean_attempts": float(np.mean(attempts)),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from instruments.sim.lab import SimLab
    from instruments.station import open_bench

    torch.set_num_threads(args.threads)
    doc, site, singles = _truth(Path(args.truth), args.rows, args.cols)
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    results = []
    with tempfile.TemporaryDirectory() as tmp, SimLab.start(truth=doc, seed=args.seed) as lab:
        dies = [tuple(d) for d in lab.wafer.station_summary()["dies"]]
        if len(dies) < len(schemes) + 1:
            raise SystemExit(f"the wafer has {len(dies)} dies; need {len(schemes) + 1}")
        with open_bench(lab.write_station(Path(tmp) / "station.yaml")) as bench:
            if args.baseline_cells:
                results.append(_one_cell_case(lab, bench, dies[len(schemes) :], singles, args))
            for k, scheme in enumerate(schemes):
                results.append(_array_case(lab, bench, dies[k], site, scheme, args))  # type: ignore[arg-type]
    baseline = next((r for r in results if r["case"].startswith("one cell")), None)
    for r in results:
        r["speedup_vs_one_cell"] = (
            baseline["wall_ms_per_cell"] / r["wall_ms_per_cell"] if baseline else float("nan")
        )
    header = {
        "rows": args.rows,
        "cols": args.cols,
        "levels": args.levels,
        "tolerance_siemens": args.tolerance_siemens,
        "seed": args.seed,
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "truth": str(args.truth),
    }
    return {"header": header, "rows": results}


COLUMNS = (  # key, title, width, format
    ("case", "case", 20, ""), ("cells", "cells", 6, "d"), ("wall_s", "wall_s", 8, ".2f"),
    ("cpu_s", "cpu_s", 8, ".2f"), ("cells_per_s_wall", "cells/s", 9, ".1f"),
    ("wall_ms_per_cell", "ms/cell", 8, ".2f"), ("virtual_s", "virtual_s", 9, ".3f"),
    ("cells_per_s_virtual", "cells/vs", 9, ".1f"), ("success_formed", "success", 8, ".3f"),
    ("mean_attempts", "pulses", 7, ".1f"), ("speedup_vs_one_cell", "speedup", 8, ".1f"),
)  # fmt: skip


def print_table(doc: dict[str, Any]) -> None:
    print(" ".join(f"{k}={v}" for k, v in doc["header"].items()))
    print(" ".join(t.ljust(w) if k == "case" else t.rjust(w) for k, t, w, _ in COLUMNS))
    for row in doc["rows"]:
        print(" ".join(
            f"{row[k]:<{w}}" if k == "case" else f"{row[k]:>{w}{f}}" for k, _, w, f in COLUMNS
        ))  # fmt: skip
    for row in doc["rows"]:
        if "forming_wall_s" in row:
            print(
                f"{row['case']}: forming {row['cells']} cells took {row['forming_wall_s']:.2f} s "
                f"wall ({row['forming_cpu_s']:.2f} s CPU), {row['forming_virtual_s']:.3f} s "
                f"virtual; {100 * row['formed_fraction']:.1f} % formed and not stuck; "
                f"programming: {row['virtual_clock_s']:.3f} s on the bench's clock"
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64, help="array rows (the truth's array resized)")
    ap.add_argument("--cols", type=int, default=64, help="array columns")
    ap.add_argument("--levels", type=int, default=4, help="conductance levels, 6..242 uS")
    ap.add_argument("--tolerance-siemens", type=float, default=4e-6, help="verify window")
    ap.add_argument("--schemes", default="igvva,ispva", help="write-verify schemes, in order")
    ap.add_argument("--baseline-cells", type=int, default=6, help="one-cell path: cells (0: skip)")
    ap.add_argument("--truth", default=str(ARRAY_TRUTH), help="truth file with an rram_array")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="write JSON here")
    args = ap.parse_args(argv)
    if not (1 <= args.rows <= 1024 and 1 <= args.cols <= 1024 and 1 <= args.levels <= 64):
        ap.error("rows and cols in 1..1024, levels in 1..64")
    doc = run(args)
    print_table(doc)
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
