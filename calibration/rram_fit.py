"""RRAM calibration stage: per-cell features and the population's level ladder.

Per cell, the forming, DC I-V and endurance records give forming voltage, SET/RESET voltages,
LRS/HRS conductances and the cycles until the window closes (extracted again from the raw arrays
where the arrays allow it, otherwise the protocol's scalars). Across cells, program-and-verify,
read-noise and retention records give the ladder (``calibration.stats.rram_ladder``). A cell
whose programming failed with no switching counts as stuck; cells that never formed, or whose
measurements all failed, are flagged defective.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from bruno_lab.errors import DataError
from calibration.data import DeviceRecords, load_arrays
from calibration.features import forming_voltage_v
from calibration.fitter import ParamSpec
from calibration.stage import KindFit
from calibration.stats import LadderData, rram_ladder

log = logging.getLogger(__name__)

MODEL_NAME = "rram-features"
# card parameter -> (protocol, scalar name, unit)
FEATURES: dict[str, tuple[str, str, str]] = {
    "forming_voltage_v": ("rram_forming", "forming_voltage_v", "V"),
    "set_voltage_v": ("rram_iv", "set_voltage_v", "V"),
    "reset_voltage_v": ("rram_iv", "reset_voltage_v", "V"),
    "g_lrs_siemens": ("rram_iv", "g_lrs_siemens", "S"),
    "g_hrs_siemens": ("rram_iv", "g_hrs_siemens", "S"),
}


def _last_ok(dev: DeviceRecords, protocol: str) -> dict[str, Any] | None:
    rows = dev.ok_rows(protocol)
    return rows[-1] if rows else None


def _is_stuck(dev: DeviceRecords) -> bool:
    rows = dev.rows.get("rram_program_verify", [])
    return bool(rows) and all(
        r["status"] != "ok" and "no switching" in (r["error"] or "") for r in rows
    )


def fit_rram(store: Any, devices: list[DeviceRecords]) -> KindFit:
    """Features of every cell and the ladder; nothing is written."""
    specs = [ParamSpec(name, -1e300, 1e300) for name in FEATURES]
    out = KindFit(model_name=MODEL_NAME, specs=specs)
    out.extra["units"] = {name: unit for name, (_, _, unit) in FEATURES.items()}
    out.extra["notes"] = (
        "rram parameters are per-cell features (forming, SET/RESET, LRS/HRS) from the DC "
        "records; the ladder comes from program-and-verify, read-noise and retention records"
    )
    forming = [r for d in devices if (r := _last_ok(d, "rram_forming")) is not None]
    raw = load_arrays(store, [r["measurement_id"] for r in forming], ("voltage_v", "current_a"))
    stuck_ids = {d.device_id for d in devices if _is_stuck(d)}
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
        formed = _last_ok(dev, "rram_forming")
        if formed is not None and formed["scalars"].get("formed", 1.0) < 0.5:
            flags.append("defective:never formed")
        if dev.device_id in stuck_ids:
            flags.append("defective:stuck")
        if not params:
            flags.append("defective:" + ("; ".join(dev.failures()) or "no DC records"))
        if flags or not params:
            out.add_defective(dev, flags)
            out.fits[-1].parameters = params
            continue
        out.add_values(dev, mids, params, {}, {"source": "features"}, [])
    out.rram = rram_ladder(
        _ladder_data(store, devices, stuck_ids),
        known_stuck=sorted(stuck_ids),
        n_cells=sum(1 for d in devices if d.rows.get("rram_program_verify")),
    )
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


def _ladder_data(store: Any, devices: list[DeviceRecords], stuck_ids: set[int]) -> LadderData:
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
