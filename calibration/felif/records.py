"""Measurements -> the FeLIF fit's inputs: usable devices, their spike trains as on-times.

Per trial the first spike anchors the (known) reset state; the later spikes are the data, plus
one slot per trial for the extra-spike check (a model firing one more spike inside the trial).
Devices without a usable ``felif_response`` record, with other pulse timing than the wafer's,
with too many or too few spikes go to the stage's output as defective, unfitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bruno_lab.errors import DataError
from calibration.data import DeviceRecords, load_arrays
from calibration.felif.options import FelifFitOptions
from calibration.felif.segments import on_time_ext, train_segments
from calibration.felif.spec import ARRAYS, PROTOCOL
from calibration.seams import CalibrationStore
from calibration.stage import KindFit

_PARAM_KEYS = ("pulse_width_s", "pulse_period_s", "trial_s", "samples_per_pulse")


def _protocol_key(params: Mapping[str, Any]) -> tuple[float, ...]:
    try:
        key = tuple(float(params[k]) for k in _PARAM_KEYS)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{PROTOCOL} parameters lack {_PARAM_KEYS}: {params}") from exc
    scope = float(params.get("scope_points", 20_000))
    return (*key, scope)


@dataclass
class FelifData:
    """The fit's inputs, built from the records (``prepare_felif``)."""

    fit_devs: list[tuple[DeviceRecords, dict[str, Any]]]
    times: list[list[np.ndarray]]  # per device, per trial: sorted spike times, s
    amps: np.ndarray  # [n, K] trial amplitudes, A
    area: np.ndarray  # [n]
    seg: dict[str, np.ndarray]
    shared: dict[str, np.ndarray]
    per_device: dict[str, np.ndarray]
    y: np.ndarray  # [n, T] measured on-times, s
    mask: np.ndarray  # [n, T]
    sigma: float  # spike on-time noise, s

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        return {**self.shared, **self.per_device}


def prepare_felif(
    store: CalibrationStore,
    devices: list[DeviceRecords],
    out: KindFit,
    options: FelifFitOptions | None = None,
) -> FelifData:
    """Load the usable devices' records (the others go to ``out`` as defective)."""
    opts = options or FelifFitOptions()
    usable: list[tuple[DeviceRecords, dict[str, Any]]] = []
    for dev in devices:
        rows = dev.ok_rows(PROTOCOL)
        if rows:
            usable.append((dev, rows[-1]))  # the latest measurement wins
        else:
            reason = "; ".join(dev.failures()) or f"no {PROTOCOL} measurement"
            out.add_defective(dev, [f"defective:{reason}"])
    if not usable:
        raise DataError(f"no FeLIF device has a successful {PROTOCOL} measurement")
    keys = [_protocol_key(row["parameters"]) for _, row in usable]
    common = max(set(keys), key=keys.count)
    for (dev, _), key in zip(usable, keys, strict=True):
        if key != common:
            out.add_defective(dev, [f"defective:{PROTOCOL} pulse timing differs from the wafer's"])
    usable = [u for u, key in zip(usable, keys, strict=True) if key == common]
    width_s, period_s, trial_s, spp, scope_points = common
    arrays = load_arrays(store, [row["measurement_id"] for _, row in usable], ARRAYS)
    n_trials = max(len(arrays[row["measurement_id"]]["input_current_a"]) for _, row in usable)

    max_spikes, min_spikes = opts.max_spikes_per_trial, opts.min_spikes
    amps, times, fit_devs = [], [], []
    for dev, row in usable:
        a = arrays[row["measurement_id"]]
        cur = np.asarray(a["input_current_a"], dtype=np.float64).reshape(-1)
        t = np.asarray(a["spike_times_s"], dtype=np.float64).reshape(-1)
        trial = np.asarray(a["spike_trial"]).reshape(-1).astype(np.int64)
        if cur.size != n_trials or trial.size != t.size or not np.all(np.isfinite(t)):
            out.add_defective(dev, [f"defective:incomplete {PROTOCOL} record"])
            continue
        per = [np.sort(t[trial == k]) for k in range(n_trials)]
        if max(p.size for p in per) > max_spikes:
            out.add_defective(dev, [f"defective:more than {max_spikes} spikes a trial"])
            continue
        if sum(max(p.size - 1, 0) for p in per) < min_spikes:
            out.add_defective(dev, [f"defective:fewer than {min_spikes} spikes after the first"])
            continue
        amps.append(cur)
        times.append(per)
        fit_devs.append((dev, row))
    if not fit_devs:
        raise DataError("no FeLIF device fired enough spikes to fit")
    area = np.array([float(d.geometry.get("area_m2", np.nan)) for d, _ in fit_devs])
    if not np.all(np.isfinite(area)):
        raise DataError("a FeLIF device has no area_m2 in its geometry")

    seg = train_segments(
        width_s, period_s, trial_s, int(spp), extend_s=trial_s,
        max_micro_step_s=opts.max_micro_step_s,
    )  # fmt: skip
    micro = float(seg["micro_dt_s"][0])
    trial_end = float(seg["trial_end_s"][0])
    tau_end = float(on_time_ext(np.array([trial_end]), seg, micro, trial_end)[0])
    n = len(fit_devs)
    # per trial: the first spike anchors the (known) reset state; the later ones are compared
    first = np.array([[p[0] if p.size else np.nan for p in per] for per in times])
    n_meas = np.array([[max(p.size - 1, 0) for p in per] for per in times], dtype=np.int64)
    slots = n_meas.max(0) + 1
    y = np.zeros((n, int(slots.sum())))
    mask = np.zeros_like(y, dtype=bool)
    col = 0
    for k in range(n_trials):
        for i, per in enumerate(times):
            if per[k].size:
                y[i, col : col + per[k].size - 1] = on_time_ext(per[k][1:], seg, micro, trial_end)
                y[i, col + per[k].size - 1] = tau_end
                mask[i, col : col + per[k].size] = True
        col += int(slots[k])
    sigma = max(opts.spike_time_samples * trial_s / scope_points, opts.min_spike_time_sigma_s)
    shared = {**seg, "slots": slots}
    per_device = {
        "area_m2": area,
        "amplitude_a": np.stack(amps),
        "first_spike_s": first,
        "n_meas": n_meas,
    }
    return FelifData(fit_devs, times, np.stack(amps), area, seg, shared, per_device, y, mask, sigma)
