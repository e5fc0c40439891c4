"""Fit throughput: the batched fitter against a per-device scipy.optimize.least_squares loop.

Both fit the same simulated FeCap P-V loops (``fecap_sim.fecap_simulate``, multi-domain,
truth drawn with the default sim truth's spreads, Gaussian measurement noise) with the same
model (``calibration.models`` "fecap-pv": 6 parameters, bounded) from the same start. The scipy
loop fits a subset (``--scipy-devices``; it is slow) with the Jacobian from the same torch model
(forward-mode, per device) so both use exact derivatives; its devices/s is measured on that
subset. Parameter error is the median |fit - truth| / |population mean| per parameter, on the
scipy subset for both methods (and over all devices for the batched fitter).

    .venv/bin/python benchmarks/fit_throughput.py --sizes 1000,10000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

SIGMAS = {"t_hzo_m": 0.02, "t_int_m": 0.05, "e_a_v_m": 0.04, "ps_c_m2": 0.04, "e_a_spread_rel": 0.1}
NOISE_C_M2 = 2e-3
FREQUENCY_HZ = 1e4


def make_data(n: int, *, n_domains: int, samples: int, seed: int) -> dict[str, Any]:
    """Truth, decimated inputs and noisy loop data for ``n`` devices (simulated 4x finer)."""
    from bruno_lab.devices.fecap import FeCapParams
    from bruno_lab.devices.fecap_sim import fecap_simulate
    from bruno_lab.devices.params import sample_population
    from calibration.models import FECAP_FIT_SPECS, decimate

    gen = torch.Generator().manual_seed(seed)
    truth = sample_population(FeCapParams.default(1), SIGMAS, n, gen)
    truth = truth.replace(imprint_v=torch.randn(n, generator=gen, dtype=torch.float64) * 0.05)
    fine = 4
    period = 1.0 / FREQUENCY_HZ
    t = np.linspace(0.0, 2 * period, 2 * samples * fine + 1)
    v = 3.0 * (2 / np.pi) * np.arcsin(np.sin(2 * np.pi * FREQUENCY_HZ * t))  # triangle, 2 periods
    pol = []
    with torch.no_grad():
        for lo in range(0, n, 2000):
            part = truth.select(slice(lo, min(n, lo + 2000)))
            tr = fecap_simulate(
                torch.tensor(t), torch.tensor(v), part, n_domains=n_domains, max_dv_substep_v=0.02
            )
            pol.append(tr.charge_c.numpy() / part.area_m2.numpy()[:, None])
    rng = np.random.default_rng(seed)
    p = np.concatenate(pol) + rng.normal(0.0, NOISE_C_M2, (n, t.size))
    td, vd, pd = decimate(t, fine), decimate(v, fine), decimate(p, fine)
    start = int(np.searchsorted(td, t[-1] - period))
    y = pd[:, start:] - pd[:, start:].mean(1, keepdims=True)
    names = [s.name for s in FECAP_FIT_SPECS]
    specs = FeCapParams.specs()
    return {
        "names": names,
        "truth": np.stack([getattr(truth, k).numpy() for k in names], 1),
        "shared": {
            "n_domains": np.array([n_domains]),
            "time_s_0": td,
            "last_start_0": np.array([start]),
        },
        "per_device": {"area_m2": truth.area_m2.numpy(), "voltage_v_0": np.tile(vd, (n, 1))},
        "y": y,
        "sigma": NOISE_C_M2 / np.sqrt(fine),
        "initial": np.tile([specs[k].default for k in names], (n, 1))
        + np.array([0.0] * (len(names) - 1) + [0.01]),
    }


def run_batched(data: dict[str, Any], chunk: int, workers: int) -> tuple[np.ndarray, float]:
    from calibration.runner import run_tasks, split_tasks

    tasks = split_tasks(
        "fecap-pv",
        data["shared"],
        data["per_device"],
        data["y"],
        data["initial"],
        sigma=data["sigma"],
        chunk_size=chunk,
    )
    t0 = time.perf_counter()
    if workers > 1:
        from distributed import Client, LocalCluster

        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            t0 = time.perf_counter()
            res = run_tasks(tasks, scheduler=client)
            dt = time.perf_counter() - t0
    else:
        res = run_tasks(tasks)
        dt = time.perf_counter() - t0
    return res.params, dt


def run_scipy(data: dict[str, Any], n: int) -> tuple[np.ndarray, float]:
    """Plain loop: one scipy least_squares per device, torch model and Jacobian per device."""
    from scipy.optimize import least_squares

    from calibration.models import FECAP_FIT_SPECS, get_model

    torch.set_num_threads(1)
    fm = get_model("fecap-pv")
    lo = np.array([s.lower for s in FECAP_FIT_SPECS])
    hi = np.array([s.upper for s in FECAP_FIT_SPECS])
    scale = np.where(data["initial"][0] != 0, np.abs(data["initial"][0]), 1.0)
    out = np.empty((n, len(lo)))
    t0 = time.perf_counter()
    for i in range(n):
        inputs = {**data["shared"], **{k: v[i : i + 1] for k, v in data["per_device"].items()}}
        model = fm.build(inputs)
        idx = torch.zeros(1, dtype=torch.long)
        y = data["y"][i]
        sigma = data["sigma"]

        def resid(x: np.ndarray, model=model, y=y, idx=idx, sigma=sigma) -> np.ndarray:
            th = torch.tensor(x * scale)[None]
            with torch.no_grad():
                return (model(th, idx)[0].numpy() - y) / sigma

        def jac(x: np.ndarray, model=model, idx=idx, sigma=sigma) -> np.ndarray:
            th = torch.tensor(x * scale)[None]
            j = torch.func.jacfwd(lambda a: model(a[None], idx)[0])(th[0])
            return j.numpy() * scale / sigma

        x0 = np.clip(data["initial"][i] / scale, lo / scale, hi / scale)
        sol = least_squares(resid, x0, jac=jac, bounds=(lo / scale, hi / scale), method="trf")
        out[i] = sol.x * scale
    return out, time.perf_counter() - t0


def errors(fit: np.ndarray, truth: np.ndarray, names: list[str]) -> dict[str, float]:
    ref = np.abs(truth.mean(0))
    ref = np.where(ref > 0, ref, np.abs(truth).max(0) + 1e-12)  # imprint: mean ~ 0
    return {
        k: float(np.median(np.abs(fit[:, j] - truth[:, j]) / ref[j])) for j, k in enumerate(names)
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000", help="Device counts, comma separated.")
    ap.add_argument("--repeats", type=int, default=1, help="Timed repeats (median reported).")
    ap.add_argument("--scipy-devices", type=int, default=20)
    ap.add_argument("--n-domains", type=int, default=4)
    ap.add_argument("--samples-per-period", type=int, default=100)
    ap.add_argument("--chunk-size", type=int, default=2500)
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes (1 = local).")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        data = make_data(n, n_domains=args.n_domains, samples=args.samples_per_period, seed=n)
        k = min(args.scipy_devices, n)
        run_batched(
            {
                **data,
                "y": data["y"][:8],
                "initial": data["initial"][:8],
                "per_device": {a: b[:8] for a, b in data["per_device"].items()},
            },
            8,
            1,
        )
        times, params = [], None
        for _ in range(args.repeats):
            params, dt = run_batched(data, args.chunk_size, args.workers)
            times.append(dt)
        t_b = statistics.median(times)
        rows.append(
            {
                "method": "batched",
                "devices": n,
                "seconds": t_b,
                "devices_per_s": n / t_b,
                "error_subset": errors(params[:k], data["truth"][:k], data["names"]),
                "error_all": errors(params, data["truth"], data["names"]),
            }
        )
        sp, t_s = run_scipy(data, k)
        rows.append(
            {
                "method": "scipy-loop",
                "devices": k,
                "seconds": t_s,
                "devices_per_s": k / t_s,
                "error_subset": errors(sp, data["truth"][:k], data["names"]),
            }
        )
    header = {
        "device": "cpu",
        "dtype": "float64",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "sizes": sizes,
        "workers": args.workers,
        "n_domains": args.n_domains,
        "fit_samples_per_loop": args.samples_per_period,
    }
    if args.json:
        print(json.dumps({"header": header, "rows": rows}, indent=2))
        return 0
    print(" ".join(f"{k}={v}" for k, v in header.items()))
    names = list(rows[0]["error_subset"])
    print(
        f"{'method':<11}{'devices':>8}{'seconds':>10}{'dev/s':>9}  "
        + "  ".join(f"{n[:10]:>10}" for n in names)
        + "   (median rel. error, scipy subset)"
    )
    for r in rows:
        print(
            f"{r['method']:<11}{r['devices']:>8}{r['seconds']:>10.1f}{r['devices_per_s']:>9.1f}  "
            + "  ".join(f"{r['error_subset'][n]:>10.2e}" for n in names)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
