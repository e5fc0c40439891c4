"""The bench's bridge to ``bruno_lab.devices``: builds parameter sets, keeps per-device state.

No equation lives here (DESIGN.md: nothing outside bruno_lab/devices restates one): this
module only turns a drawn :class:`DeviceTruth` into the devices' parameter dataclasses, calls
their simulators with the device's persisted state, and stores the new state. Everything runs in
float64 (the sim is the ground truth).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bruno_lab.devices.params import DeviceParams
from instruments.sim.wafer import SimDevice

if TYPE_CHECKING:
    from instruments.sim.bench import BurstRecord, Wiring

DTYPE = torch.float64


def params_for(device: SimDevice) -> Any:
    """The device's parameter dataclass (one device), built once and cached on the device."""
    cached = device.extra.get("params")
    if cached is not None:
        return cached
    truth = device.truth
    document = dict(truth.params)
    cls: type[DeviceParams]
    if truth.kind == "fecap":
        from bruno_lab.devices.fecap import FeCapParams as cls
    elif truth.kind == "felif":
        from bruno_lab.devices.felif import FeLIFParams as cls
    else:
        from bruno_lab.devices.rram import RramParams as cls
    if "area_m2" in cls.specs():
        document["area_m2"] = truth.area_m2
    params = cls.from_json(document, n=1, dtype=DTYPE, where=f"truth {truth.kind}")
    device.extra["params"] = params
    return params


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----- state ------------------------------------------------------------------------------------


def relax(device: SimDevice, elapsed_s: float, seed: int) -> None:
    """Let the device's state evolve, unbiased, for ``elapsed_s`` of virtual time (RRAM
    filaments drift over log time; a FeCap keeps its polarization)."""
    if elapsed_s <= 0.0 or device.truth.kind != "rram" or device.state is None:
        return
    from bruno_lab.devices import rram

    device.state = rram.rram_relax(device.state, params_for(device), elapsed_s, _generator(seed))


def _rram_state(device: SimDevice) -> Any:
    from bruno_lab.devices import rram

    if device.state is None:
        params = params_for(device)
        device.state = rram.rram_initial_state(params)
        if device.truth.defect in ("stuck_lrs", "stuck_hrs"):
            lrs = device.truth.defect == "stuck_lrs"
            device.state = rram.rram_stuck_state(device.state, params, lrs=lrs)
    return device.state


# ----- DC (SMU) ---------------------------------------------------------------------------------

DC_STEPS = 4


def dc_current_a(
    device: SimDevice,
    voltage_v: float,
    settle_s: float,
    duration_s: float,
    limit_a: float,
    seed: int,
) -> float:
    """Mean device current over a reading: ``voltage_v`` held ``settle_s`` (the source delay),
    then integrated over ``duration_s`` (NPLC), with the source's current limit, A."""
    if device.truth.kind == "rram":
        from bruno_lab.devices import rram

        # a 1T1R cell reached through a switch matrix: its transistor limits the current too
        limit_a = min(limit_a, device.extra.get("current_limit_a", limit_a))
        state = _rram_state(device)
        generator = _generator(seed)
        params = params_for(device)
        if settle_s > 0.0:
            settle = torch.full((1, 1), voltage_v, dtype=DTYPE)
            _, state = rram.rram_apply_voltage(settle, settle_s, state, params, limit_a, generator)
        voltage = torch.full((1, DC_STEPS), voltage_v, dtype=DTYPE)
        current, state = rram.rram_apply_voltage(
            voltage, duration_s / DC_STEPS, state, params, limit_a, generator
        )
        device.state = state
        # One reading is one read of the cell: the model's read noise (which grows with G) on
        # top of the current the source drove. The noise is the model's own, taken as the
        # difference of a noisy and a noiseless read at this voltage.
        # The read noise is the filament's (random telegraph noise and the like): a pristine,
        # unformed cell has none beyond the instrument's own. It scales with the voltage.
        if voltage_v == 0.0 or not bool(state.formed.reshape(-1)[0]):
            return float(current.mean())
        g = rram.rram_conductance_siemens(state, params, voltage_v)
        noise = rram.rram_read_current_a(voltage_v, state, params, generator) - voltage_v * g
        return float(current.mean() + noise.reshape(-1)[0])
    total_s = settle_s + duration_s
    time_s = np.concatenate([[0.0], settle_s + np.linspace(0.0, duration_s, DC_STEPS * 8 + 1)])
    if settle_s <= 0.0:
        time_s = time_s[1:]
    current_a = _fecap_run(device, time_s, np.full_like(time_s, voltage_v))
    inside = time_s >= settle_s + 0.5 * duration_s if total_s > 0 else slice(None)
    return float(np.mean(current_a[inside]))


# ----- transients (AWG) -------------------------------------------------------------------------


def transient(
    device: SimDevice, record: BurstRecord, wiring: Wiring, seed: int, now_s: float
) -> None:
    """Fill ``record.current_a`` (and polarization) for the voltage ``record.voltage_v``."""
    kind = device.truth.kind
    if kind == "fecap":
        record.current_a = _fecap_run(device, record.time_s, record.voltage_v, record)
    elif kind == "rram":
        from bruno_lab.devices import rram

        state = _rram_state(device)
        # The AWG's output is linear between grid points: hold each interval at its midpoint
        # voltage, merge equal neighbours (a plateau is one segment) and apply the burst as one
        # pulse (one cycle-to-cycle draw, whatever the grid).
        time_s, volts = record.time_s, record.voltage_v
        mid_v = 0.5 * (volts[1:] + volts[:-1])
        change = np.flatnonzero(np.diff(mid_v) != 0.0) + 1
        first = np.concatenate([[0], change])
        last = np.concatenate([change, [mid_v.size]])
        seg_v = mid_v[first]
        seg_s = time_s[last] - time_s[first]
        current, device.state = rram.rram_apply_pulse(
            torch.as_tensor(seg_v, dtype=DTYPE),
            torch.as_tensor(seg_s, dtype=DTYPE),
            state,
            params_for(device),
            device.extra.get("current_limit_a"),  # a 1T1R cell's transistor; else no limit
            _generator(seed),
        )
        seg_i = current.reshape(-1).numpy()
        record.current_a = np.concatenate([[0.0], np.repeat(seg_i, last - first)])
        if volts[0] != 0.0 and bool(state.formed.reshape(-1)[0]):
            g0 = rram.rram_conductance_siemens(state, params_for(device), float(volts[0]))
            record.current_a[0] = float(volts[0] * g0.reshape(-1)[0])
    else:
        _felif_run(device, record, wiring)


def _fecap_run(
    device: SimDevice, time_s: np.ndarray, voltage_v: np.ndarray, record: BurstRecord | None = None
) -> np.ndarray:
    """Current (A) of the FeCap at ``time_s`` under ``voltage_v`` (linear between samples),
    starting from, and then storing, its mean polarization."""
    from bruno_lab.devices.fecap_sim import fecap_simulate

    trace = fecap_simulate(
        torch.as_tensor(time_s, dtype=DTYPE),
        torch.as_tensor(voltage_v, dtype=DTYPE).reshape(1, -1),
        params_for(device),
        device.truth.n_domains,
        initial_polarization_c_m2=device.state,
    )
    device.state = trace.polarization_c_m2[:, -1].clone()
    if record is not None:
        record.polarization_c_m2 = trace.polarization_c_m2.reshape(-1).numpy()
        record.charge_c = trace.charge_c.reshape(-1).numpy()
    return trace.current_a.reshape(-1).numpy()


def _felif_run(device: SimDevice, record: BurstRecord, wiring: Wiring) -> None:
    from instruments.sim.felif_burst import run_burst

    run_burst(device, params_for(device), record, wiring)
