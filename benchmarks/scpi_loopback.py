"""SCPI loopback: query round trips per second and waveform transfer MB/s through pyvisa-py to
the simulated lab (servers in this process, on 127.0.0.1).

Round trips: ``*OPC?`` to the simulated 2450. Transfers: an arbitrary waveform of N float32
samples uploaded to the simulated 33522B as an IEEE binary block and as ASCII values
(MB/s counts the float32 payload, 4 bytes per sample, for both), and the scope's int16 WORD
record read back as a binary block. Median of ``--repeats`` after one warm-up.

``--baseline-tree DIR`` compares with another checkout (e.g. ``git worktree add /tmp/base
<commit>``): each round runs this script once against DIR and once against this tree, in
subprocesses one after the other (PYTHONPATH picks the tree), and prints both medians over
``--rounds`` with their ratio, and the median of each round's ratio (the two runs of a round
are back to back, in ABBA order, so the machine's load drifts over both alike).

    .venv/bin/python benchmarks/scpi_loopback.py [--sizes 1000,10000,100000] [--repeats 5] [--json]
    .venv/bin/python benchmarks/scpi_loopback.py --baseline-tree /tmp/base --rounds 12 --cpu 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _median_s(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(sizes: list[int], repeats: int, n_queries: int) -> dict:
    import pyvisa

    from instruments.sim.lab import SimLab

    rows = []
    with SimLab.start(truth=None, seed=0) as lab:
        manager = pyvisa.ResourceManager("@py")

        def open_role(role: str):
            return manager.open_resource(
                lab.resource(role), read_termination="\n", write_termination="\n", timeout=60_000
            )

        smu, awg, scope = open_role("smu"), open_role("awg"), open_role("scope")

        def queries() -> None:
            for _ in range(n_queries):
                smu.query("*OPC?")

        query_s = _median_s(queries, repeats)
        server = lab.servers["smu"]

        def handled() -> None:  # the server's own cost of a query, without sockets or threads
            for _ in range(n_queries):
                server.handle("*OPC?", None)

        handle_s = _median_s(handled, repeats)
        awg.write("FORM:BORD SWAP")
        rng = np.random.default_rng(0)
        for n in sizes:
            samples = rng.uniform(-1, 1, n).astype(np.float32)

            def upload_binary(samples=samples) -> None:
                awg.write("SOUR1:DATA:VOL:CLE")
                awg.write_binary_values("SOUR1:DATA:ARB w,", samples, datatype="f")
                awg.query("*OPC?")

            def upload_ascii(samples=samples) -> None:
                awg.write("SOUR1:DATA:VOL:CLE")
                awg.write("SOUR1:DATA:ARB w," + ",".join(f"{x:.7g}" for x in samples))
                awg.query("*OPC?")

            binary_s = _median_s(upload_binary, repeats)
            ascii_s = _median_s(upload_ascii, repeats)
            megabytes = 4 * n / 1e6
            rows.append(
                {
                    "samples": n,
                    "upload_binary_mb_s": megabytes / binary_s,
                    "upload_ascii_mb_s": megabytes / ascii_s,
                }
            )
        # Scope readback: one acquisition of the full 100 kpt record, WORD format.
        scope.write(":TIM:SCAL 2e-6")
        scope.write(":TRIG:SOUR EXT")
        awg.write("SOUR1:DATA:VOL:CLE")
        awg.write("SOUR1:DATA:ARB w," + ",".join(["0"] * 8))
        setup = ("SOUR1:FUNC:ARB w", "SOUR1:FUNC ARB", "TRIG1:SOUR BUS", "SOUR1:BURS:STAT ON")
        for command in setup:
            awg.write(command)
        scope.write(":SING")
        scope.query("*OPC?")  # armed before the trigger (two sockets, no order between them)
        awg.write("*TRG")
        awg.query("*OPC?")
        for command in (":WAV:SOUR CHAN1", ":WAV:FORM WORD", ":WAV:BYT LSBF", ":WAV:UNS 0"):
            scope.write(command)
        scope.write(":WAV:POIN 100000")
        n_points = int(scope.query(":WAV:POIN?"))

        def read_scope() -> None:
            scope.query_binary_values(":WAV:DATA?", datatype="h", container=np.array)

        scope_s = _median_s(read_scope, repeats)
        for handle in (smu, awg, scope):
            handle.close()
        manager.close()
    return {
        "round_trips_per_s": n_queries / query_s,
        "server_handle_us": 1e6 * handle_s / n_queries,
        "uploads": rows,
        "scope_points": n_points,
        "scope_read_mb_s": 2 * n_points / 1e6 / scope_s,
    }


def compare(
    baseline: Path, sizes: str, repeats: int, queries: int, rounds: int, cpu: int | None = None
) -> dict:
    """Round trips of ``baseline`` and of this tree, alternating, ``rounds`` times each."""
    here = Path(__file__).resolve().parents[1]
    results: dict[str, list[float]] = {"baseline": [], "current": []}
    handle_us: dict[str, list[float]] = {"baseline": [], "current": []}
    trees = [("baseline", baseline.resolve()), ("current", here)]
    for round_index in range(rounds):
        order = trees if round_index % 2 == 0 else trees[::-1]  # ABBA: no order bias
        for name, tree in order:
            env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
            command = [sys.executable, __file__, "--json", "--sizes", sizes]
            command += ["--repeats", str(repeats), "--queries", str(queries)]
            command += [] if cpu is None else ["--cpu", str(cpu)]
            out = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True,
                                 check=True)  # fmt: skip
            row = json.loads(out.stdout)
            results[name].append(row["round_trips_per_s"])
            handle_us[name].append(row["server_handle_us"])
    base, current = statistics.median(results["baseline"]), statistics.median(results["current"])
    paired = [c / b for b, c in zip(results["baseline"], results["current"], strict=True)]
    handle = {name: statistics.median(values) for name, values in handle_us.items()}
    return {"baseline_tree": str(baseline), "rounds": rounds, "samples": results,
            "baseline_round_trips_per_s": base, "current_round_trips_per_s": current,
            "ratio": current / base, "paired_ratio": statistics.median(paired),
            "paired_ratios": paired, "best_ratio": max(results["current"]) / max(
                results["baseline"]), "server_handle_us": handle,
            "server_handle_samples_us": handle_us, "loadavg": os.getloadavg()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="waveform sample counts")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--queries", type=int, default=500, help="queries per timed batch")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--baseline-tree", type=Path, help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="alternations with the baseline")
    parser.add_argument("--cpu", type=int, help="pin to this CPU (client and servers share it)")
    args = parser.parse_args(argv)
    if args.cpu is not None:  # a cross-core wake-up per round trip is the noisiest part
        os.sched_setaffinity(0, {args.cpu})
    if args.baseline_tree is not None:
        pair = compare(
            args.baseline_tree, args.sizes, args.repeats, args.queries, args.rounds, args.cpu
        )
        if args.json:
            print(json.dumps(pair, indent=2))
            return 0
        print(f"query round trips (*OPC?), median of {args.rounds} alternating rounds, "
              f"load {' '.join(f'{x:.2f}' for x in pair['loadavg'])}")  # fmt: skip
        print(f"{'tree':>10} {'round trips/s':>14} {'best':>8} {'server us/query':>16}  samples")
        for name in ("baseline", "current"):
            samples = " ".join(f"{x:.0f}" for x in pair["samples"][name])
            best = max(pair["samples"][name])
            handle = pair["server_handle_us"][name]
            print(f"{name:>10} {pair[name + '_round_trips_per_s']:>14.0f} {best:>8.0f} "
                  f"{handle:>16.2f}  {samples}")  # fmt: skip
        print(
            f"ratio current/baseline: of medians {pair['ratio']:.3f}, median of the rounds' "
            f"pairs {pair['paired_ratio']:.3f}, of bests {pair['best_ratio']:.3f}"
        )
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    result = run(sizes, args.repeats, args.queries)
    import pyvisa

    result["header"] = {
        "python": platform.python_version(),
        "pyvisa": pyvisa.__version__,
        "machine": platform.machine(),
        "repeats": args.repeats,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    h = result["header"]
    print(
        f"scpi_loopback  python {h['python']}  pyvisa {h['pyvisa']} (@py)  {h['machine']}  "
        f"median of {args.repeats}  (sim servers in-process, 127.0.0.1)"
    )
    print(f"query round trips (*OPC?): {result['round_trips_per_s']:.0f} /s")
    print(f"server-side handling of *OPC? (no socket): {result['server_handle_us']:.2f} us")
    print(f"{'samples':>10} {'binary MB/s':>12} {'ASCII MB/s':>12} {'ratio':>7}")
    for row in result["uploads"]:
        ratio = row["upload_binary_mb_s"] / row["upload_ascii_mb_s"]
        print(
            f"{row['samples']:>10} {row['upload_binary_mb_s']:>12.2f} "
            f"{row['upload_ascii_mb_s']:>12.2f} {ratio:>7.1f}"
        )
    print(f"scope WORD read, {result['scope_points']} points: {result['scope_read_mb_s']:.2f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
