"""RRAM calibration stage: per-cell compact-model fits, features, and the level ladder.

Per cell (``calibration.rram_model``): ``v0_v`` of the Stanford-PKU gap model
(``bruno_lab.devices.rram``) fitted to the frozen-state parts of the DC I-V sweeps jointly with
one conductance per state segment, and ``v_form_v`` fitted to the forming staircase through the
model's forming kinetics; both batched over the wafer with uncertainties, goodness and flags.
Beside them the measured *features* of today: forming voltage, SET/RESET voltages, LRS/HRS
conductances (extracted again from the raw arrays where the arrays allow it, otherwise the
protocol's scalars). Across cells, program-and-verify, read-noise and retention records give the
ladder (``calibration.stats.rram_ladder``); a plan without read-noise or retention records gives
a ladder without those models (noted on the card). A cell whose programming failed with no
switching counts as stuck; cells that never formed, or whose measurements all failed, are
flagged defective. A cell whose model fit failed keeps its other parameters (the flag names the
parameter, e.g. ``v0_v:bad_fit``, and that parameter is left out).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from bruno_lab.devices.rram import RramParams
from bruno_lab.errors import DataError
from calibration.data import DeviceRecords, load_arrays
from calibration.features import forming_voltage_v
from calibration.fitter import FitOptions, ParamSpec
from calibration.rram_model import (
    FROZEN_MAX_V,
    fit_forming,
    fit_iv,
    forming_record,
    iv_record,
)
from calibration.seams import CalibrationStore
from calibration.stage import KindFit
from calibration.stats import LadderData, rram_ladder

log = logging.getLogger(__name__)

MODEL_NAME = "rram-gap"
# fitted parameters of bruno_lab.devices.rram.RramParams (card name = field name)
MODEL_PARAMS: dict[str, str] = {"v0_v": "V", "v_form_v": "V"}
# measured features: card parameter -> (protocol, scalar name, unit)
FEATURES: dict[str, tuple[str, str, str]] = {
    "forming_voltage_v": ("rram_forming", "forming_voltage_v", "V"),
    "set_voltage_v": ("rram_iv", "set_voltage_v", "V"),
    "reset_voltage_v": ("rram_iv", "reset_voltage_v", "V"),
    "g_lrs_siemens": ("rram_iv", "g_lrs_siemens", "S"),
    "g_hrs_siemens": ("rram_iv", "g_hrs_siemens", "S"),
}


def _notes() -> str:
    spec = RramParams.specs()
    return (
        "model parameters (bruno_lab.devices.rram.RramParams, Stanford-PKU gap model) fitted per "
        "cell: v0_v jointly with one read conductance per frozen state segment of the rram_iv "
        f"sweeps (|V| <= {FROZEN_MAX_V:g} V, below SET/RESET onsets; samples near compliance "
        "dropped); v_form_v from the detected step of the forming staircase through the forming "
        "hazard exp((V - v_form_v)/v_form_slope_v)/tau_form_s integrated over each step's "
        f"dwell, with v_form_slope_v = {spec['v_form_slope_v'].default:g} V and tau_form_s = "
        f"{spec['tau_form_s'].default:g} s held at the model defaults (one event per cell cannot "
        "separate them: v_form_v absorbs v_form_slope_v*ln(tau_form_s/default)). Not fitted: "
        "i0_a, g0_m and the gaps (the data see only I0*exp(-g/g0)) and the switching kinetics. "
        "Measured features (protocol detection rules and reads, not model parameters): "
        "forming_voltage_v, set_voltage_v, reset_voltage_v, g_lrs_siemens, g_hrs_siemens. "
        "Spreads are deconvolved from the per-cell 1-sigma uncertainties (for v_form_v the "
        "spread of a single breakdown). The ladder comes from program-and-verify; read noise "
        "from rram_read_noise; relaxation from rram_retention."
    )


def _last_ok(dev: DeviceRecords, protocol: str) -> dict[str, Any] | None:
    rows = dev.ok_rows(protocol)
    return rows[-1] if rows else None


def _is_stuck(dev: DeviceRecords) -> bool:
    rows = dev.rows.get("rram_program_verify", [])
    return bool(rows) and all(
        r["status"] != "ok" and "no switching" in (r["error"] or "") for r in rows
    )


def fit_rram(
    store: CalibrationStore, devices: list[DeviceRecords], options: FitOptions | None = None
) -> KindFit:
    """Model fits and features of every cell and the ladder; nothing is written."""
    specs = [ParamSpec(name, -1e300, 1e300) for name in [*MODEL_PARAMS, *FEATURES]]
    out = KindFit(model_name=MODEL_NAME, specs=specs)
    out.extra["units"] = {**MODEL_PARAMS, **{n: u for n, (_, _, u) in FEATURES.items()}}
    notes = [_notes()]
    forming = {d.device_id: r for d in devices if (r := _last_ok(d, "rram_forming")) is not None}
    iv_rows = {d.device_id: r for d in devices if (r := _last_ok(d, "rram_iv")) is not None}
    raw = load_arrays(
        store, [r["measurement_id"] for r in forming.values()], ("voltage_v", "current_a")
    )
    iv_raw = load_arrays(
        store, [r["measurement_id"] for r in iv_rows.values()], ("voltage_v", "current_a")
    )
    stuck_ids = {d.device_id for d in devices if _is_stuck(d)}
    per_dev: dict[int, dict[str, Any]] = {}
    for dev in devices:
        params: dict[str, float] = {}
        mids: list[int] = []
        flags: list[str] = []
        for name, (protocol, scalar, _) in FEATURES.items():
            row = _last_ok(dev, protocol)
            if row is None:
                continue
            mids.append(row["measurement_id"])
            value = row["scalars"].get(scalar, math.nan)
            if protocol == "rram_forming" and row["measurement_id"] in raw:
                a = raw[row["measurement_id"]]
                extracted = forming_voltage_v(a["voltage_v"], a["current_a"])
                value = extracted if math.isfinite(extracted) else value
            if math.isfinite(value):
                params[name] = float(value)
        formed = forming.get(dev.device_id)
        if formed is not None and formed["scalars"].get("formed", 1.0) < 0.5:
            flags.append("defective:never formed")
        if dev.device_id in stuck_ids:
            flags.append("defective:stuck")
        if not params:
            flags.append("defective:" + ("; ".join(dev.failures()) or "no DC records"))
        per_dev[dev.device_id] = {"params": params, "mids": mids, "flags": flags}
    fit_ids = [d.device_id for d in devices if not per_dev[d.device_id]["flags"]]
    _fit_models(per_dev, fit_ids, forming, raw, iv_rows, iv_raw, options)
    for dev in devices:
        e = per_dev[dev.device_id]
        if e["flags"]:
            out.add_defective(dev, e["flags"])
            out.fits[-1].parameters = e["params"]
            continue
        goodness = {"source": "rram-gap fits + features", **e.get("goodness", {})}
        out.add_values(dev, e["mids"], e["params"], e.get("stderr", {}), goodness, e["fit_flags"])
    out.rram = rram_ladder(
        _ladder_data(store, devices, stuck_ids),
        known_stuck=sorted(stuck_ids),
        n_cells=sum(1 for d in devices if d.rows.get("rram_program_verify")),
    )
    if out.rram.read_noise is None:
        notes.append(
            "No read-noise model (rram.read_noise is null): the plan has no rram_read_noise "
            "records with repeated reads of at least two (cell, level) pairs."
        )
    if out.rram.relaxation is None:
        notes.append(
            "No relaxation model (rram.relaxation is null): the plan has no rram_retention "
            "records with at least two reads per (cell, level)."
        )
    if not iv_rows:
        notes.append("No rram_iv records: v0_v and the SET/RESET/LRS/HRS features are absent.")
    out.extra["notes"] = " ".join(notes)
    # every cell used by the ladder is provenance of the card too
    ladder_mids = {
        d.device_id: [
            r["measurement_id"]
            for p in ("rram_program_verify", "rram_read_noise", "rram_retention")
            for r in d.rows.get(p, [])
        ]
        for d in devices
    }
    for fit in out.fits:
        fit.measurement_ids = sorted(set(fit.measurement_ids) | set(ladder_mids[fit.device_id]))
    return out


def _fit_models(
    per_dev: dict[int, dict[str, Any]],
    fit_ids: list[int],
    forming: dict[int, dict[str, Any]],
    raw: dict[int, dict[str, np.ndarray]],
    iv_rows: dict[int, dict[str, Any]],
    iv_raw: dict[int, dict[str, np.ndarray]],
    options: FitOptions | None,
) -> None:
    """Batched fits of v_form_v and v0_v over the non-defective cells, into ``per_dev``."""
    for i in fit_ids:
        per_dev[i].update(stderr={}, goodness={}, fit_flags=[])
    f_ids = [i for i in fit_ids if i in forming]
    if f_ids:
        recs = []
        for i in f_ids:
            a = raw[forming[i]["measurement_id"]]
            recs.append(forming_record(a["voltage_v"], a["current_a"], forming[i]["parameters"]))
        ff = fit_forming(recs)
        for k, i in enumerate(f_ids):
            _put(per_dev[i], "v_form_v", ff.v_form_v[k], ff.stderr_v[k], ff.flags[k])
            per_dev[i]["goodness"].update(ff.goodness[k])
    v_ids = [i for i in fit_ids if i in iv_rows]
    if v_ids:
        recs_iv = []
        for i in v_ids:
            a = iv_raw[iv_rows[i]["measurement_id"]]
            recs_iv.append(iv_record(a["voltage_v"], a["current_a"], iv_rows[i]["parameters"]))
        fi = fit_iv(recs_iv, options)
        for k, i in enumerate(v_ids):
            e = per_dev[i]
            if _put(e, "v0_v", fi.v0_v[k], fi.stderr_v[k], fi.flags[k]):
                for s, (g, se) in enumerate(
                    zip(fi.segment_g_siemens[k], fi.segment_g_stderr[k], strict=True)
                ):
                    e["params"][f"g_read_seg{s}_siemens"] = float(g)
                    e["stderr"][f"g_read_seg{s}_siemens"] = float(se)
            e["goodness"].update(fi.goodness[k])
            e["goodness"]["iv_noise_floor_siemens"] = fi.noise_floor_siemens
            e["goodness"]["iv_noise_rel"] = fi.noise_rel


def _put(entry: dict[str, Any], name: str, value: float, stderr: float, flags: list[str]) -> bool:
    """Store a fitted parameter unless its fit is flagged (the flags are kept either way)."""
    entry["fit_flags"] += flags
    if flags or not math.isfinite(value):
        return False
    entry["params"][name] = float(value)
    entry["stderr"][name] = float(stderr)
    return True


def _ladder_data(
    store: CalibrationStore, devices: list[DeviceRecords], stuck_ids: set[int]
) -> LadderData:
    pv_rows = [(d, r) for d in devices for r in d.rows.get("rram_program_verify", [])]
    pv_rows = [(d, r) for d, r in pv_rows if r["status"] == "ok" or d.device_id in stuck_ids]
    if not pv_rows:
        raise DataError("no rram_program_verify measurements: cannot build the level ladder")
    names = ("target_level", "target_conductance_siemens", "reached_conductance_siemens", "success")
    got = store.load_arrays_many([r["measurement_id"] for _, r in pv_rows], list(names))
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("cell", *names)}
    for d, r in pv_rows:
        arrays = got.get(r["measurement_id"], {})
        if not all(n in arrays for n in names):
            if r["status"] == "ok":
                raise DataError(f"measurement {r['measurement_id']} lacks program-verify arrays")
            continue  # a stuck cell whose failure stored no arrays
        n = arrays[names[0]][0].size
        cols["cell"].append(np.full(n, d.device_id))
        for k in names:
            cols[k].append(np.asarray(arrays[k][0], dtype=np.float64))
    read_rows = [(d, r) for d in devices for r in d.ok_rows("rram_read_noise")]
    reads = load_arrays(
        store, [r["measurement_id"] for _, r in read_rows], ("level", "conductance_siemens")
    )
    ret_rows = [(d, r) for d in devices for r in d.ok_rows("rram_retention")]
    rets = load_arrays(
        store,
        [r["measurement_id"] for _, r in ret_rows],
        ("time_s", "level", "conductance_siemens"),
    )
    read_v = [float(r["parameters"].get("read_v", math.nan)) for _, r in pv_rows + read_rows]
    read_v = [v for v in read_v if math.isfinite(v)]

    def cat(parts: list[np.ndarray], dtype: Any = np.float64) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype=dtype)

    return LadderData(
        verify_cell=cat(cols["cell"], np.int64),
        verify_level=cat(cols["target_level"], np.int64),
        verify_target_siemens=cat(cols["target_conductance_siemens"]),
        verify_reached_siemens=cat(cols["reached_conductance_siemens"]),
        verify_success=cat(cols["success"]),
        read_cell=cat(
            [np.full(reads[r["measurement_id"]]["level"].size, d.device_id) for d, r in read_rows],
            np.int64,
        ),
        read_level=cat([reads[r["measurement_id"]]["level"] for _, r in read_rows], np.int64),
        read_siemens=cat([reads[r["measurement_id"]]["conductance_siemens"] for _, r in read_rows]),
        retention_cell=cat(
            [np.full(rets[r["measurement_id"]]["level"].size, d.device_id) for d, r in ret_rows],
            np.int64,
        ),
        retention_level=cat([rets[r["measurement_id"]]["level"] for _, r in ret_rows], np.int64),
        retention_time_s=cat([rets[r["measurement_id"]]["time_s"] for _, r in ret_rows]),
        retention_siemens=cat(
            [rets[r["measurement_id"]]["conductance_siemens"] for _, r in ret_rows]
        ),
        read_voltage_v=float(np.median(read_v)) if read_v else 0.2,
    )
