"""The simulated FeLIF device under one AWG burst: its membrane, sample by sample, fast.

The bench's record is a non-uniform time grid with the input current linear between points; the
device holds each grid interval's end-point current and steps through the interval in explicit
Euler micro-steps of at most ``MAX_MICRO_STEP_S`` (1 us, the design's micro-step), with threshold
and reset after every micro-step. (The grid's intervals reach 10 us, and one Euler step of that
length on this stiff system, with its reset at the step's end, wastes up to a step of input per
spike: biased against the device equations that calibration fits.) ``felif_run_sequence`` runs
the whole sequence in one call of the devices' C kernel (tested against the plain
``felif_euler_step`` + ``felif_reset`` loop); no equation lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from bruno_lab.devices.felif_core import FeLIFParams
    from instruments.sim.bench import BurstRecord, Wiring
    from instruments.sim.device_truth import SimDevice

DTYPE = torch.float64
MAX_MICRO_STEP_S = 1e-6


def run_burst(device: SimDevice, params: FeLIFParams, record: BurstRecord, wiring: Wiring) -> None:
    """Fill ``record`` (input current, polarization, ``extra["membrane_v"]``) and store the
    device's new state (V, P) on ``device.state``."""
    from bruno_lab.devices import felif

    state = device.state or felif.felif_initial_state(params, (1,))
    current_in_a = record.voltage_v * wiring.felif_input_transconductance_a_per_v
    dts = np.diff(record.time_s, prepend=record.time_s[0])
    n_steps = np.maximum(np.ceil(dts / MAX_MICRO_STEP_S - 1e-6), 1).astype(np.int64)
    result = felif.felif_run_sequence(
        torch.as_tensor(current_in_a, dtype=DTYPE),
        torch.as_tensor(dts / n_steps, dtype=DTYPE),
        torch.as_tensor(n_steps),
        params,
        state,
        record=True,
        max_spikes=1,
    )
    trace_v, trace_p = result.trace_voltage_v, result.trace_polarization_c_m2
    assert trace_v is not None and trace_p is not None  # record=True: the trace is there
    device.state = felif.FeLIFState(result.voltage_v.clone(), result.polarization_c_m2.clone())
    record.current_a = current_in_a
    record.polarization_c_m2 = trace_p[:, 0].numpy()
    record.extra["membrane_v"] = trace_v[:, 0].numpy()
