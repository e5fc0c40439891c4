"""The calibration report of a wafer: PNG plots of measurements against the latest fits.

Plots (matplotlib, Agg): measured against fitted P-V loops, measured against fitted PUND
currents, switching maps (switched polarization over pulse width and amplitude), RRAM level
histograms after verify, and wafer maps of every fitted parameter. Fitted curves are simulated
with ``bruno_lab.devices`` from the stored fit parameters (the same model the fit used).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from bruno_lab.errors import DataError
from bruno_lab.extras import require_extra
from calibration.data import KINDS, DeviceRecords, load_arrays, load_devices

log = logging.getLogger(__name__)

MAX_OVERLAYS = 6


def _plt() -> Any:
    require_extra("plot", "the report's PNG plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _latest_fits(store: Any, devices: list[DeviceRecords]) -> dict[int, Any]:
    fits = store.list_fits(device_ids=[d.device_id for d in devices])
    return {f.device_id: f for f in fits}  # oldest first: the last one per device wins


def _fecap_params(fit: Any, area_m2: float) -> Any:
    from bruno_lab.devices.fecap import FeCapParams

    doc = {k: v for k, v in fit.parameters.items() if v is not None}
    doc["area_m2"] = area_m2
    return FeCapParams.from_json(doc, n=1)


def _simulate_fecap(
    time_s: np.ndarray, voltage_v: np.ndarray, params: Any, n_domains: int
) -> np.ndarray:
    import torch

    from bruno_lab.devices.fecap_sim import fecap_simulate

    with torch.no_grad():
        tr = fecap_simulate(
            torch.as_tensor(time_s), torch.as_tensor(voltage_v)[None], params, n_domains=n_domains
        )
    return tr.current_a[0].numpy(), tr.charge_c[0].numpy()


def plot_fecap(store: Any, devices: list[DeviceRecords], out: Path, n_domains: int) -> list[Path]:
    """P-V loops and PUND currents, measured against fitted, for a few fitted devices."""
    plt = _plt()
    fits = _latest_fits(store, devices)
    shown = [d for d in devices if d.device_id in fits and fits[d.device_id].parameters][
        :MAX_OVERLAYS
    ]
    paths = []
    for protocol, names, fname in (
        ("pv_loop", ("time_s", "voltage_v", "polarization_c_m2"), "fecap_pv_loops.png"),
        ("pund", ("time_s", "voltage_v", "current_a"), "fecap_pund_currents.png"),
    ):
        rows = [(d, d.ok_rows(protocol)[0]) for d in shown if d.ok_rows(protocol)]
        if not rows:
            continue
        arrays = load_arrays(store, [r["measurement_id"] for _, r in rows], names)
        fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.0), squeeze=False)
        for ax, (d, r) in zip(axes[0], rows, strict=True):
            a = arrays[r["measurement_id"]]
            params = _fecap_params(fits[d.device_id], float(d.geometry["area_m2"]))
            # drive the model with the measured voltage, lightly smoothed: the scope's noise
            # and 8-bit steps would otherwise show up as C*dV/dt spikes in the fitted current
            v_smooth = np.convolve(a["voltage_v"], np.ones(5) / 5, mode="same")
            v_smooth[:2], v_smooth[-2:] = a["voltage_v"][:2], a["voltage_v"][-2:]
            cur, charge = _simulate_fecap(a["time_s"], v_smooth, params, n_domains)
            if protocol == "pv_loop":
                f = float(r["parameters"].get("frequency_hz", 0.0)) or 1.0 / a["time_s"][-1]
                last = a["time_s"] >= a["time_s"][-1] - 1.0 / f
                pol = charge / float(d.geometry["area_m2"])
                meas = a["polarization_c_m2"][last]
                fitp = pol[last] - pol[last].mean() + meas.mean()
                ax.plot(a["voltage_v"][last], meas, ".", ms=1, label="measured")
                ax.plot(a["voltage_v"][last], fitp, "-", lw=1, label="fitted")
                ax.set_xlabel("voltage (V)")
                ax.set_ylabel("polarization (C/m²)")
            else:
                ax.plot(a["time_s"] * 1e6, a["current_a"] * 1e6, lw=0.6, label="measured")
                ax.plot(a["time_s"] * 1e6, cur * 1e6, lw=0.8, label="fitted")
                ax.set_xlabel("time (µs)")
                ax.set_ylabel("current (µA)")
            ax.set_title(f"{d.die_label} site {d.site}", fontsize=8)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    paths += _switching_map(store, devices, out)
    return paths


def _switching_map(store: Any, devices: list[DeviceRecords], out: Path) -> list[Path]:
    rows = [r for d in devices for r in d.ok_rows("switching_kinetics")]
    if not rows:
        return []
    plt = _plt()
    names = ("width_s", "amplitude_v", "switched_polarization_c_m2")
    arrays = load_arrays(store, [r["measurement_id"] for r in rows], names)
    w = np.concatenate([a["width_s"] for a in arrays.values()])
    amp = np.concatenate([a["amplitude_v"] for a in arrays.values()])
    p = np.concatenate([a["switched_polarization_c_m2"] for a in arrays.values()])
    uw, ua = np.unique(w), np.unique(amp)
    grid = np.full((ua.size, uw.size), np.nan)
    for i, av in enumerate(ua):
        for j, wv in enumerate(uw):
            m = (amp == av) & (w == wv)
            if m.any():
                grid[i, j] = np.mean(p[m])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    im = ax.pcolormesh(np.arange(uw.size + 1), np.arange(ua.size + 1), grid, shading="flat")
    ax.set_xticks(np.arange(uw.size) + 0.5, [f"{x:.0e}" for x in uw], rotation=60, fontsize=6)
    ax.set_yticks(np.arange(ua.size) + 0.5, [f"{x:.2g}" for x in ua], fontsize=6)
    ax.set_xlabel("pulse width (s)")
    ax.set_ylabel("amplitude (V)")
    ax.set_title(f"switched polarization, mean of {len(rows)} devices (C/m²)", fontsize=8)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path = out / "fecap_switching_map.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_rram_levels(store: Any, devices: list[DeviceRecords], out: Path) -> list[Path]:
    """Histogram of reached conductance per target level after program-and-verify."""
    rows = [r for d in devices for r in d.ok_rows("rram_program_verify")]
    if not rows:
        return []
    plt = _plt()
    names = ("target_level", "reached_conductance_siemens", "success")
    arrays = load_arrays(store, [r["measurement_id"] for r in rows], names)
    lvl = np.concatenate([a["target_level"] for a in arrays.values()])
    g = np.concatenate([a["reached_conductance_siemens"] for a in arrays.values()])
    ok = np.concatenate([a["success"] for a in arrays.values()]) > 0
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for k in np.unique(lvl):
        ax.hist(g[(lvl == k) & ok] * 1e6, bins=30, alpha=0.7, label=f"L{int(k)}")
    ax.set_xlabel("conductance after verify (µS)")
    ax.set_ylabel("cells")
    ax.legend(fontsize=6, ncol=4)
    fig.tight_layout()
    path = out / "rram_level_histograms.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_wafer_maps(store: Any, kind: str, devices: list[DeviceRecords], out: Path) -> list[Path]:
    """One panel per fitted parameter: its value per die (mean over the die's sites)."""
    fits = _latest_fits(store, devices)
    pos = {d.device_id: (d.die_x, d.die_y) for d in devices}
    names = sorted({k for f in fits.values() for k in (f.parameters or {})})
    if not names:
        return []
    plt = _plt()
    cols = min(3, len(names))
    rows_n = -(-len(names) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.4 * cols, 3.0 * rows_n), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        per_die: dict[tuple[int, int], list[float]] = {}
        for dev_id, f in fits.items():
            v = (f.parameters or {}).get(name)
            if v is not None and np.isfinite(v):
                per_die.setdefault(pos[dev_id], []).append(float(v))
        if not per_die:
            continue
        xy = np.array(list(per_die))
        vals = np.array([np.mean(v) for v in per_die.values()])
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=vals, marker="s", s=60)
        ax.set_title(name, fontsize=8)
        ax.set_aspect("equal")
        ax.invert_yaxis()
        fig.colorbar(sc, ax=ax)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"{kind}: fitted parameters per die", fontsize=9)
    fig.tight_layout()
    path = out / f"{kind}_wafer_maps.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def write_report(store: Any, wafer: str, out: Path, *, n_domains: int = 16) -> list[Path]:
    """All plots for every kind measured on ``wafer``; returns the PNG paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    found = False
    for kind in KINDS:
        try:
            devices = load_devices(store, wafer, kind)
        except DataError as exc:
            if "no wafer named" in str(exc):
                raise
            continue
        found = True
        if kind == "fecap":
            paths += plot_fecap(store, devices, out, n_domains)
        if kind == "rram":
            paths += plot_rram_levels(store, devices, out)
        paths += plot_wafer_maps(store, kind, devices, out)
    if not found:
        raise DataError(f"no measurements on wafer {wafer!r}: nothing to report")
    log.info("report for %s: %d plots in %s", wafer, len(paths), out)
    return paths
