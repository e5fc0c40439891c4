"""SCPI loopback: query round trips per second and waveform transfer MB/s through pyvisa-py to
the simulated lab (servers in this process, on 127.0.0.1).

Round trips: ``*OPC?`` to the simulated 2450. Transfers: an arbitrary waveform of N float32
samples uploaded to the simulated 33522B as an IEEE binary block and as ASCII values
(MB/s counts the float32 payload, 4 bytes per sample, for both), and the scope's int16 WORD
record read back as a binary block. Median of ``--repeats`` after one warm-up.

    .venv/bin/python benchmarks/scpi_loopback.py [--sizes 1000,10000,100000] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

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
        "uploads": rows,
        "scope_points": n_points,
        "scope_read_mb_s": 2 * n_points / 1e6 / scope_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="waveform sample counts")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--queries", type=int, default=500, help="queries per timed batch")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
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
