"""Per-device curves for the report's device viewer (the fit table links to them): a FeCap's
P-V loops measured and fitted (its fit simulated with ``bruno_lab.devices.fecap``), a FeLIF
neuron's rate against input current, an RRAM cell's forming and I-V sweeps."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from reporting.data import ReportData
from reporting.plotjson import axis, color, decimate, layout
from reporting.sections.common import device_label
from reporting.sections.fecap import _frequencies, _loop_window

log = logging.getLogger(__name__)

POINTS = 150


def _fecap(data: ReportData, out: dict[str, Any], labels: dict[int, str]) -> None:
    import torch

    from bruno_lab.devices.fecap import FeCapParams
    from bruno_lab.devices.fecap_sim import fecap_simulate

    arrays = data.arrays("pv_loop", ("time_s", "voltage_v", "polarization_c_m2"))
    rows = data.rows("pv_loop", ok=True)
    freqs = _frequencies(data)
    specs = FeCapParams.specs()
    for idx, f in freqs.items():
        sel = rows[rows["key"].fillna("").str.endswith(f"/pv_loop/{idx}")]
        fitted: list[tuple[int, dict[str, np.ndarray], dict[str, float]]] = []
        for r in sel.itertuples(index=False):
            dev, a = int(r.device_id), arrays.get(int(r.measurement_id))
            if a is None:
                continue
            w = _loop_window(a["time_s"], f)
            st = decimate(int(w.sum()), POINTS)
            entry = out.setdefault(
                str(dev), _empty(labels.get(dev, str(dev)), "voltage (V)", "polarization (µC/cm²)")
            )
            entry["data"].append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "x": a["voltage_v"][w][st],
                    "y": a["polarization_c_m2"][w][st] * 100,
                    "marker": {"size": 3, "color": color(idx)},
                    "name": f"measured {f / 1e3:g} kHz",
                }
            )
            fit = data.fits.get(dev)
            if fit is not None and fit.parameters and not fit.flags:
                p = {k: v for k, v in fit.parameters.items() if k in specs and v is not None}
                p["area_m2"] = float(data.geometry.get(dev, {}).get("area_m2", 25e-12))
                fitted.append((dev, a, p))
        if not fitted:
            continue
        try:
            t = fitted[0][1]["time_s"]
            same = [x for x in fitted if x[1]["time_s"].size == t.size]
            params = FeCapParams.from_json(
                {k: [x[2].get(k, specs[k].default) for x in same] for k in specs if k in same[0][2]}
            )
            st_t = decimate(t.size, 300)
            volts = torch.as_tensor(np.stack([x[1]["voltage_v"][st_t] for x in same]))
            with torch.no_grad():
                tr = fecap_simulate(
                    torch.as_tensor(t[st_t]), volts, params, n_domains=16, max_dv_substep_v=0.05
                )
            pol = (tr.charge_c / params.area_m2.unsqueeze(1)).numpy()
            w = _loop_window(t[st_t], f)
            for j, (dev, _, _) in enumerate(same):
                pw = pol[j][w]
                pw = pw - 0.5 * (pw.max() + pw.min())
                out[str(dev)]["data"].append(
                    {
                        "type": "scatter",
                        "mode": "lines",
                        "x": volts[j].numpy()[w],
                        "y": pw * 100,
                        "line": {"color": color(idx), "width": 2},
                        "name": f"fit {f / 1e3:g} kHz",
                    }
                )
                out[str(dev)]["caption"] = "Measured loop (markers) and the device's fit simulated."
        except Exception as exc:
            log.warning("device fits: %s", exc)


def _empty(label: str, x: str, y: str, **ax: Any) -> dict[str, Any]:
    return {
        "label": label,
        "caption": "Measured curves.",
        "data": [],
        "layout": layout(f"device {label}", height=380, xaxis=axis(x), yaxis=axis(y, **ax)),
    }


def _felif(data: ReportData, out: dict[str, Any], labels: dict[int, str]) -> None:
    arrays = data.arrays("felif_response", ("input_current_a", "trial_firing_rate_hz"))
    dev_of = data.device_of()
    for mid, a in arrays.items():
        dev = dev_of[mid]
        e = out.setdefault(
            str(dev), _empty(labels.get(dev, str(dev)), "input current (nA)", "firing rate (kHz)")
        )
        e["data"].append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": a["input_current_a"] * 1e9,
                "y": a["trial_firing_rate_hz"] / 1e3,
                "name": "measured",
            }
        )


def _rram(data: ReportData, out: dict[str, Any], labels: dict[int, str]) -> None:
    dev_of = data.device_of()
    for protocol, name, c in (("rram_forming", "forming", 3), ("rram_iv", "I-V cycles", 0)):
        arrays = data.arrays(protocol, ("voltage_v", "current_a"), include_failed=True)
        for mid, a in arrays.items():
            dev = dev_of[mid]
            e = out.setdefault(
                str(dev),
                _empty(
                    labels.get(dev, str(dev)),
                    "voltage (V)",
                    "|current| (A)",
                    type="log",
                    exponentformat="SI",
                ),
            )
            i = np.abs(a["current_a"])
            e["data"].append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "x": a["voltage_v"],
                    "y": np.where(i > 0, i, np.nan),
                    "marker": {"size": 3},
                    "line": {"color": color(c), "width": 1},
                    "name": name,
                }
            )


def device_curves(data: ReportData) -> dict[str, Any]:
    """device id (str) -> {label, caption, data, layout} for every device with curves."""
    labels = device_label(data)
    out: dict[str, Any] = {}
    if data.has("pv_loop"):
        _fecap(data, out, labels)
    if data.has("felif_response"):
        _felif(data, out, labels)
    if data.has("rram_iv") or data.has("rram_forming"):
        _rram(data, out, labels)
    for dev, e in out.items():
        fit = data.fits.get(int(dev))
        if fit is not None and fit.flags:
            e["caption"] += " Flags: " + "; ".join(fit.flags)
    return dict(sorted(out.items(), key=lambda kv: kv[1]["label"]))
