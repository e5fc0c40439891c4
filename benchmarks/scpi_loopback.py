"""SCPI loopback: query round trips per second and waveform transfer MB/s through pyvisa-py to
the simulated lab (servers in this process, on 127.0.0.1).

Round trips: simple queries to the simulated 2450, one batch per query (``--query``; by
default ``*OPC?``, a common command, and ``:SOUR:VOLT?``, a setting read back through the
instrument's header tree): the rate, the process's CPU time per round trip (client and servers
share the process; on a loaded machine this is what other processes disturb least) and the
server's own cost per query without sockets (median and least of the batches). Transfers: an
arbitrary waveform of N float32 samples uploaded to the simulated 33522B as an IEEE binary
block and as ASCII values (MB/s counts the float32 payload, 4 bytes per sample, for both), and
the scope's int16 WORD record read back as a binary block. Median of ``--repeats`` after one
warm-up.

``--baseline-tree DIR`` compares with another checkout (e.g. ``git worktree add /tmp/base
<commit>``): each round runs this script once against DIR and once against this tree, in
subprocesses one after the other (PYTHONPATH picks the tree), and prints both medians over
``--rounds`` with their ratio, and the median of each round's ratio (the two runs of a round
are back to back, in ABBA order, so the machine's load drifts over both alike), for each query.

    .venv/bin/python benchmarks/scpi_loopback.py [--sizes 1000,10000,100000] [--repeats 5] [--json]
    .venv/bin/python benchmarks/scpi_loopback.py --baseline-tree /tmp/base --rounds 12 --cpu 1 \
        --sizes 1000 --repeats 3
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


def _times_s(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _median_s(fn, repeats: int) -> float:
    return statistics.median(_times_s(fn, repeats))


DEFAULT_QUERIES = ("*OPC?", ":SOUR:VOLT?")


def run(
    sizes: list[int], repeats: int, n_queries: int, questions: tuple[str, ...] = DEFAULT_QUERIES
) -> dict:
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

        server = lab.servers["smu"]
        per_query: dict[str, dict[str, float]] = {}
        for question in questions:
            cpu_s: list[float] = []  # the process's CPU time per batch: client and servers

            def queries(question: str = question, cpu_s: list[float] = cpu_s) -> None:
                start = time.process_time()
                for _ in range(n_queries):
                    smu.query(question)
                cpu_s.append(time.process_time() - start)

            def handled(question: str = question) -> None:  # the server's own cost, no socket
                for _ in range(n_queries):
                    server.handle(question, None)

            query_s = _median_s(queries, repeats)
            del cpu_s[0]  # the warm-up
            handle_s = _times_s(handled, max(repeats, 9))  # CPU work only: its minimum is the
            per_query[question] = {  # cost least disturbed by other processes on the machine
                "round_trips_per_s": n_queries / query_s,
                "round_trip_cpu_us": 1e6 * statistics.median(cpu_s) / n_queries,
                "server_handle_us": 1e6 * statistics.median(handle_s) / n_queries,
                "server_handle_min_us": 1e6 * min(handle_s) / n_queries,
            }
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
    first = per_query[questions[0]]
    return {
        "round_trips_per_s": first["round_trips_per_s"],  # the first query's (older readers)
        "server_handle_us": first["server_handle_us"],
        "queries": per_query,
        "uploads": rows,
        "scope_points": n_points,
        "scope_read_mb_s": 2 * n_points / 1e6 / scope_s,
    }


def _pair_stats(baseline: list[float], current: list[float]) -> dict:
    """Medians, their ratio, the median of the rounds' paired ratios and the ratio of bests."""
    base, now = statistics.median(baseline), statistics.median(current)
    paired = [c / b for b, c in zip(baseline, current, strict=True)]
    return {"baseline_round_trips_per_s": base, "current_round_trips_per_s": now,
            "ratio": now / base, "paired_ratio": statistics.median(paired),
            "paired_ratios": paired, "best_ratio": max(current) / max(baseline),
            "samples": {"baseline": baseline, "current": current}}  # fmt: skip


def compare(
    baseline: Path,
    sizes: str,
    repeats: int,
    queries: int,
    rounds: int,
    cpu: int | None = None,
    questions: tuple[str, ...] = DEFAULT_QUERIES,
) -> dict:
    """Round trips of ``baseline`` and of this tree, alternating, ``rounds`` times each."""
    here = Path(__file__).resolve().parents[1]
    rates: dict[str, dict[str, list[float]]] = {
        q: {"baseline": [], "current": []} for q in questions
    }
    handle_us: dict[str, dict[str, list[float]]] = {
        q: {"baseline": [], "current": []} for q in questions
    }
    handle_min_us: dict[str, dict[str, list[float]]] = {
        q: {"baseline": [], "current": []} for q in questions
    }
    cpu_us: dict[str, dict[str, list[float]]] = {
        q: {"baseline": [], "current": []} for q in questions
    }
    trees = [("baseline", baseline.resolve()), ("current", here)]
    for round_index in range(rounds):
        order = trees if round_index % 2 == 0 else trees[::-1]  # ABBA: no order bias
        for name, tree in order:
            env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
            command = [sys.executable, __file__, "--json", "--sizes", sizes]
            command += ["--repeats", str(repeats), "--queries", str(queries)]
            command += ["--query", ",".join(questions)]
            command += [] if cpu is None else ["--cpu", str(cpu)]
            out = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{name} run failed in {tree}:\n{out.stderr[-4000:]}")
            row = json.loads(out.stdout)
            for question in questions:
                rates[question][name].append(row["queries"][question]["round_trips_per_s"])
                handle_us[question][name].append(row["queries"][question]["server_handle_us"])
                handle_min_us[question][name].append(
                    row["queries"][question]["server_handle_min_us"]
                )
                cpu_us[question][name].append(row["queries"][question]["round_trip_cpu_us"])
    per_query = {}
    for question in questions:
        stats = _pair_stats(rates[question]["baseline"], rates[question]["current"])
        stats["server_handle_us"] = {
            name: statistics.median(values) for name, values in handle_us[question].items()
        }
        stats["server_handle_samples_us"] = handle_us[question]
        stats["server_handle_min_us"] = {
            name: min(values) for name, values in handle_min_us[question].items()
        }
        stats["server_handle_cost_ratio"] = (
            stats["server_handle_min_us"]["current"] / stats["server_handle_min_us"]["baseline"]
        )
        cpu = {name: statistics.median(values) for name, values in cpu_us[question].items()}
        stats["round_trip_cpu_us"] = cpu
        stats["round_trip_cpu_samples_us"] = cpu_us[question]
        # CPU time per round trip is what the machine's load disturbs least: its inverse ratio
        # is the round-trip rate ratio on an idle core
        stats["cpu_rate_ratio"] = cpu["baseline"] / cpu["current"]
        stats["cpu_paired_rate_ratio"] = statistics.median(
            b / c for b, c in zip(cpu_us[question]["baseline"], cpu_us[question]["current"],
                                  strict=True)
        )  # fmt: skip
        per_query[question] = stats
    first = per_query[questions[0]]
    return {"baseline_tree": str(baseline), "rounds": rounds, **first, "queries": per_query,
            "loadavg": os.getloadavg()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="waveform sample counts")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--queries", type=int, default=500, help="queries per timed batch")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--baseline-tree", type=Path, help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="alternations with the baseline")
    parser.add_argument("--cpu", type=int, help="pin to this CPU (client and servers share it)")
    parser.add_argument(
        "--query", default=",".join(DEFAULT_QUERIES), help="comma-separated queries to time"
    )
    args = parser.parse_args(argv)
    questions = tuple(q for q in args.query.split(",") if q)
    if args.cpu is not None:  # a cross-core wake-up per round trip is the noisiest part
        os.sched_setaffinity(0, {args.cpu})
    if args.baseline_tree is not None:
        pair = compare(
            args.baseline_tree,
            args.sizes,
            args.repeats,
            args.queries,
            args.rounds,
            args.cpu,
            questions,
        )
        if args.json:
            print(json.dumps(pair, indent=2))
            return 0
        print(f"query round trips, median of {args.rounds} alternating rounds, "
              f"load {' '.join(f'{x:.2f}' for x in pair['loadavg'])}")  # fmt: skip
        for question, stats in pair["queries"].items():
            print(f"{question}")
            print(f"{'tree':>10} {'round trips/s':>14} {'best':>8} {'server us/query':>16}  "
                  "samples")  # fmt: skip
            for name in ("baseline", "current"):
                samples = " ".join(f"{x:.0f}" for x in stats["samples"][name])
                best = max(stats["samples"][name])
                handle = stats["server_handle_us"][name]
                print(f"{name:>10} {stats[name + '_round_trips_per_s']:>14.0f} {best:>8.0f} "
                      f"{handle:>16.2f}  {samples}")  # fmt: skip
            print(
                f"ratio current/baseline: of medians {stats['ratio']:.3f}, median of the rounds' "
                f"pairs {stats['paired_ratio']:.3f}, of bests {stats['best_ratio']:.3f}"
            )
            cpu = stats["round_trip_cpu_us"]
            print(
                f"CPU time per round trip (client + servers, median): baseline "
                f"{cpu['baseline']:.1f} us, current {cpu['current']:.1f} us; rate ratio "
                f"{stats['cpu_rate_ratio']:.3f} (median of the rounds' pairs "
                f"{stats['cpu_paired_rate_ratio']:.3f})"
            )
            low = stats["server_handle_min_us"]
            print(
                f"server-side cost per query, least of all rounds: baseline "
                f"{low['baseline']:.2f} us, current {low['current']:.2f} us "
                f"(current/baseline {stats['server_handle_cost_ratio']:.3f})"
            )
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    result = run(sizes, args.repeats, args.queries, questions)
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
    for question, row in result["queries"].items():
        print(f"query round trips ({question}): {row['round_trips_per_s']:.0f} /s, "
              f"CPU {row['round_trip_cpu_us']:.1f} us each; "
              f"server-side handling (no socket): {row['server_handle_us']:.2f} us "
              f"(least {row['server_handle_min_us']:.2f} us)")  # fmt: skip
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
