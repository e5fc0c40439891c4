"""FeLIF fine forward: neuron-micro-steps per second of one BRUNO fine window (no autograd).

Paths, one run: the torch eager reference loop (``felif_reference_window``), a numpy loop of the
same equations, the fused fast path (``felif_fine_window``: C kernel) and, with
``--with-compile`` / ``--with-numba``, ``torch.compile`` of the eager step and a numba kernel
(numba is not a dependency of bruno-lab: ``pip install numba`` for that path).
Inputs are 0..2 nA so that no neuron reaches threshold within the window: every path does every
micro-step (no early exit).
Figures: median wall time of ``--repeats`` after a warm-up; ``cpu`` is the process CPU time
(all threads), so ``per cpu-s`` is the throughput per core-second, the honest figure on a shared,
loaded machine (wall-clock throughput on 2 idle cores is about twice it for the 2-thread paths).

    .venv/bin/python benchmarks/felif_fine_forward.py [--sizes 128x256] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from bruno_lab.devices import fecap
from bruno_lab.devices.felif import (
    FeLIFParams,
    FeLIFState,
    felif_euler_step,
    felif_fine_window,
    felif_initial_state,
    felif_reference_window,
)
from bruno_lab.devices.felif_core import kernel_constants

SEED = 1234


def _numpy_window(cur: np.ndarray, v: np.ndarray, p: np.ndarray, c: dict, n: int, dt: float):
    """The equations in numpy (float32), vectorized over neurons, looping over micro-steps."""
    v, p = v.copy(), p.copy()
    done = v >= c["v_thr"]
    for _ in range(n):
        e = v * c["k_c"] - p * c["k_d"]
        x = np.minimum((c["e_a"] / (np.abs(e) + c["soft_e"])) ** c["alpha"], fecap.X_MAX)
        pn = np.clip(
            p + dt * (np.sign(e) * c["ps"] - p) * np.exp(-x) / c["tau0"], -c["ps"], c["ps"]
        )
        arg = np.minimum(v / c["v_t"], fecap.LEAK_EXP_MAX)
        leak = (c["i0a"] * np.expm1(arg) + c["i_dsc"]) * np.sign(v)
        vn = np.clip(v + dt * (cur - leak - c["area"] * (pn - p) / dt) / c["ctot"], -5.0, 5.0)
        v, p = np.where(done, v, vn), np.where(done, p, pn)
        done |= v >= c["v_thr"]
    return v, p


def _numba_path(cur: np.ndarray, c: dict, n_steps: int) -> Callable[[], None]:
    """The numba alternative the fast path was chosen against: prange over neurons, the time loop
    inside, fastmath, libm pow/exp (compiled once, cached by numba)."""
    from numba import njit, prange

    @njit(parallel=True, fastmath=True, cache=True)
    def window(cur, v, p, kc, kd, ea, so, al, tau0, ps, area, i0a, vt, idsc, ctot, vthr, n, dt):
        for i in prange(v.shape[0]):
            vi, pi = v[i], p[i]
            for _ in range(n):
                if vi >= vthr[i]:
                    break
                e = vi * kc[i] - pi * kd[i]
                x = min((ea[i] / (abs(e) + so[i])) ** al[i], 80.0)
                tgt = ps[i] if e > 0 else (-ps[i] if e < 0 else 0.0)
                pn = min(max(pi + dt * (tgt - pi) * np.exp(-x) / tau0[i], -ps[i]), ps[i])
                sg = 1.0 if vi > 0 else (-1.0 if vi < 0 else 0.0)
                leak = (i0a[i] * (np.exp(min(vi / vt[i], 40.0)) - 1.0) + idsc[i]) * sg
                vn = vi + (dt * (cur[i] - leak) - area[i] * (pn - pi)) / ctot[i]
                vi, pi = min(max(vn, -5.0), 5.0), pn
            v[i], p[i] = vi, pi

    flat = {k: a.reshape(-1) for k, a in c.items()}
    keys = ("k_c", "k_d", "e_a", "soft_e", "alpha", "tau0", "ps", "area", "i0a", "v_t", "i_dsc")
    args = [flat[k] for k in keys] + [flat["ctot"], flat["v_thr"]]

    def run() -> None:
        v = np.zeros(cur.size, np.float32)
        p = np.full(cur.size, -0.22, np.float32)
        window(cur.reshape(-1), v, p, *args, n_steps, np.float32(1e-6))

    return run


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm-up (kernel load, compile)
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def _compiled_loop(cur, state, params, n_steps: int) -> Callable[[], None]:
    """torch.compile of the reference step; the loop and the freeze stay in Python."""
    step = torch.compile(
        lambda i, v, p: felif_euler_step(i, FeLIFState(v, p), params, 1e-6), dynamic=False
    )

    @torch.no_grad()
    def compiled() -> None:
        v, p = state
        for _ in range(n_steps):
            v, p = step(cur, v, p)

    return compiled


def run(
    sizes: list[tuple[int, int]], repeats: int, n_steps: int, with_compile: bool, with_numba: bool
) -> list[dict]:
    rows = []
    for batch, n in sizes:
        gen = torch.Generator().manual_seed(SEED)
        params = FeLIFParams.default(n, dtype=torch.float32)
        cur = torch.rand(batch, n, generator=gen) * 2e-9
        state = felif_initial_state(params, (batch, n))
        consts = {
            k: t.to(torch.float32).expand(batch, n).contiguous().numpy()
            for k, t in kernel_constants(params).items()
        }
        v0, p0, c0 = state.voltage_v.numpy(), state.polarization_c_m2.numpy(), cur.numpy()
        paths: dict[str, Callable[[], object]] = {
            "torch eager reference": partial(felif_reference_window, cur, state, params, n_steps),
            "numpy loop": partial(_numpy_window, c0, v0, p0, consts, n_steps, 1e-6),
            "fast path (C kernel)": partial(felif_fine_window, cur, state, params, n_steps),
        }
        if with_numba:
            paths["numba prange, time loop inside"] = _numba_path(c0, consts, n_steps)
        if with_compile:
            paths["torch.compile step (no freeze)"] = _compiled_loop(cur, state, params, n_steps)
        for name, fn in paths.items():
            wall, cpu = _time(fn, repeats)
            rows.append(
                {
                    "path": name,
                    "neurons": batch * n,
                    "micro_steps": n_steps,
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "neuron_steps_per_s": batch * n * n_steps / wall,
                    "neuron_steps_per_cpu_s": batch * n * n_steps / cpu,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128x256", help="comma list of BATCHxNEURONS")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1000, help="micro-steps per window")
    ap.add_argument("--with-compile", action="store_true", help="also time torch.compile")
    ap.add_argument(
        "--with-numba",
        action="store_true",
        help="also time a numba kernel (needs numba: pip install numba)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.with_numba:
        try:
            import numba  # noqa: F401
        except ModuleNotFoundError:
            ap.error("--with-numba needs numba, not installed by bruno-lab: pip install numba")
    if args.threads:
        torch.set_num_threads(args.threads)  # the fast path splits neurons over as many threads
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    threads = torch.get_num_threads()  # numba's threading layer may change it later
    rows = run(sizes, args.repeats, args.steps, args.with_compile, args.with_numba)
    header = {
        "benchmark": "felif_fine_forward",
        "device": "cpu",
        "dtype": "float32",
        "torch": torch.__version__,
        "threads": threads,
        "sizes": args.sizes,
        "repeats": args.repeats,
    }
    if args.json:
        print(json.dumps({**header, "rows": rows}, indent=2))
        return 0
    print(" ".join(f"{k}={v}" for k, v in header.items()))
    cols = ("neurons", "steps", "wall s", "cpu s", "n*steps/s", "per cpu-s")
    print(f"{'path':34s} " + " ".join(f"{c:>11s}" for c in cols))
    for r in rows:
        print(
            f"{r['path']:34s} {r['neurons']:11d} {r['micro_steps']:11d} {r['wall_s']:11.4f} "
            f"{r['cpu_s']:11.4f} {r['neuron_steps_per_s']:11.3e} "
            f"{r['neuron_steps_per_cpu_s']:11.3e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
