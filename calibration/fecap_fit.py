"""FeCap calibration stage: P-V loops of every device -> one batched fit of ``fecap-pv``.

Per device, the P-V loop rows (one per frequency) give the measured waveform and polarization.
Devices are flagged defective (and not fitted) when their loops are missing or failed, or when
they show no switching (remanent polarization below a tenth of the wafer's median). Initial
values come from the loop features (Pr for P_s, the imprint); the rest start at the defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from bruno_lab.errors import DataError
from calibration.data import DeviceRecords, load_arrays
from calibration.features import pv_loop_features
from calibration.fitter import FitOptions
from calibration.models import FECAP_FIT_SPECS, decimate, decimation_factor
from calibration.runner import run_tasks, split_tasks
from calibration.seams import CalibrationStore
from calibration.stage import KindFit

log = logging.getLogger(__name__)

MODEL_NAME = "fecap-pv"
PV_ARRAYS = ("time_s", "voltage_v", "polarization_c_m2")
BAD_FIT_CHI2_FACTOR = 25.0


def noise_sigma(y: np.ndarray) -> float:
    """White-noise level of a smooth trace from its second differences (MAD, robust), data units."""
    d2 = np.diff(y, 2)
    mad = 1.4826 * float(np.median(np.abs(d2 - np.median(d2))))
    return max(mad / np.sqrt(6.0), 1e-12)


def _frequency(row: dict[str, Any]) -> float:
    f = row["parameters"].get("frequency_hz")
    if f is None:
        raise DataError(f"pv_loop measurement {row['measurement_id']} has no frequency_hz")
    return float(f)


def fit_fecap(
    store: CalibrationStore,
    devices: list[DeviceRecords],
    *,
    n_domains: int,
    scheduler: Any = None,
    chunk_size: int = 256,
    options: FitOptions | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> KindFit:
    """Fit every usable FeCap of ``devices``; defective ones are returned flagged, unfitted."""
    out = KindFit(model_name=MODEL_NAME, specs=list(FECAP_FIT_SPECS))
    usable: list[DeviceRecords] = []
    for dev in devices:
        if dev.ok_rows("pv_loop"):
            usable.append(dev)
        else:
            reason = "; ".join(dev.failures()) or "no pv_loop measurement"
            out.add_defective(dev, [f"defective:{reason}"])
    if not usable:
        raise DataError("no FeCap device has a successful pv_loop measurement")
    freqs = sorted({_frequency(r) for d in usable for r in d.ok_rows("pv_loop")})
    complete = [d for d in usable if {_frequency(r) for r in d.ok_rows("pv_loop")} >= set(freqs)]
    for dev in usable:
        if dev not in complete:
            out.add_defective(dev, ["defective:incomplete pv_loop frequencies"])
    rows = {
        d.device_id: {_frequency(r): r for r in d.ok_rows("pv_loop")} for d in complete
    }  # latest row per frequency wins
    mids = [rows[d.device_id][f]["measurement_id"] for d in complete for f in freqs]
    arrays = load_arrays(store, mids, PV_ARRAYS)

    shared: dict[str, np.ndarray] = {"n_domains": np.array([n_domains])}
    volt_k, y_parts, sig_parts = [], [], []
    for k, f in enumerate(freqs):
        ref = arrays[rows[complete[0].device_id][f]["measurement_id"]]
        time_full = ref["time_s"].astype(np.float64)
        dec = decimation_factor(ref["voltage_v"])
        time_s = decimate(time_full, dec)
        start = int(np.searchsorted(time_s, time_full[-1] - 1.0 / f))
        shared[f"time_s_{k}"] = time_s
        shared[f"last_start_{k}"] = np.array([start])
        v_rows, y_rows, s_rows = [], [], []
        for d in complete:
            a = arrays[rows[d.device_id][f]["measurement_id"]]
            if a["time_s"].shape != time_full.shape or not np.allclose(a["time_s"], time_full):
                raise DataError(
                    f"pv_loop at {f:g} Hz: device {d.device_id} has a different time grid"
                )
            v_rows.append(decimate(a["voltage_v"], dec))
            pol = decimate(a["polarization_c_m2"], dec)[start:]
            y_rows.append(pol - pol.mean())
            s_rows.append(noise_sigma(a["polarization_c_m2"]) / np.sqrt(dec))
        volt_k.append(np.stack(v_rows))
        y_k = np.stack(y_rows)
        y_parts.append(y_k)
        sig_parts.append(np.repeat(np.array(s_rows)[:, None], y_k.shape[1], axis=1))
    per_device = {f"voltage_v_{k}": v for k, v in enumerate(volt_k)}
    per_device["area_m2"] = np.array([float(d.geometry.get("area_m2", np.nan)) for d in complete])
    if not np.all(np.isfinite(per_device["area_m2"])):
        raise DataError("a FeCap device has no area_m2 in its geometry")
    y = np.concatenate(y_parts, axis=1)
    sigma = np.concatenate(sig_parts, axis=1)

    # loop features (last period of the lowest frequency) for defects and the initial values
    feats = []
    for d in complete:
        a = arrays[rows[d.device_id][freqs[0]]["measurement_id"]]
        # every branch after the first rise to +V (which erases the device's history)
        after = a["time_s"] >= a["time_s"][0] + 0.25 / freqs[0]
        feats.append(pv_loop_features(a["voltage_v"][after], a["polarization_c_m2"][after]))
    pr = np.array([0.5 * (f["pr_pos_c_m2"] - f["pr_neg_c_m2"]) for f in feats])
    med = float(np.nanmedian(pr))
    switching = np.isfinite(pr) & (pr > 0.1 * med)
    names = [s.name for s in FECAP_FIT_SPECS]
    from bruno_lab.devices.fecap import FeCapParams

    defaults = {n: s.default for n, s in FeCapParams.specs().items()}
    initial = np.tile([defaults[n] for n in names], (len(complete), 1))
    initial[:, names.index("ps_c_m2")] = np.where(switching, 1.1 * pr, defaults["ps_c_m2"])
    imprint = np.array([f["imprint_v"] for f in feats])
    initial[:, names.index("imprint_v")] = np.where(np.isfinite(imprint), imprint, 0.0)
    for s_idx, spec in enumerate(FECAP_FIT_SPECS):
        initial[:, s_idx] = np.clip(initial[:, s_idx], spec.lower * 1.01, spec.upper * 0.99)

    fit_idx = np.flatnonzero(switching)
    for i in np.flatnonzero(~switching):
        out.add_defective(complete[i], ["defective:no switching"])
    if fit_idx.size == 0:
        raise DataError("no FeCap device shows switching: nothing to fit")
    tasks = split_tasks(
        MODEL_NAME,
        shared,
        {k: v[fit_idx] for k, v in per_device.items()},
        y[fit_idx],
        initial[fit_idx],
        sigma=sigma[fit_idx],
        options=options,
        chunk_size=chunk_size,
    )
    result = run_tasks(tasks, scheduler=scheduler, on_chunk_done=on_progress)
    # The noise estimate of an integrated (smooth, quantized) polarization is only a scale, so a
    # bad fit is one far worse than the wafer's typical fit, not one far above chi2 = 1.
    chi2_typ = float(np.nanmedian(result.chi2_red))
    for j, i in enumerate(fit_idx):
        dev = complete[i]
        extra = [] if result.chi2_red[j] <= BAD_FIT_CHI2_FACTOR * chi2_typ else ["bad_fit:chi2"]
        mids = [rows[dev.device_id][f]["measurement_id"] for f in freqs]
        out.add_fitted(dev, mids, result, j, extra)
    out.extra = {"frequencies_hz": freqs, "n_domains": n_domains}
    return out
