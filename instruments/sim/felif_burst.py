"""The simulated FeLIF device under one AWG burst: its membrane, sample by sample, fast.

The bench's record is a non-uniform time grid with the input current linear between points; the
device steps one explicit Euler step per grid interval under the interval's end-point current,
with threshold and reset after every step (the ``felif_euler_step`` + ``felif_reset`` loop this
replaced). ``felif_run_sequence`` runs that whole sequence in one call of the devices' C kernel
(same numbers as the loop to rounding); no equation lives here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

DTYPE = torch.float64


def run_burst(device: Any, params: Any, record: Any, wiring: Any) -> None:
    """Fill ``record`` (input current, polarization, ``extra["membrane_v"]``) and store the
    device's new state (V, P) on ``device.state``."""
    from bruno_lab.devices import felif

    state = device.state or felif.felif_initial_state(params, (1,))
    current_in_a = record.voltage_v * wiring.felif_input_transconductance_a_per_v
    dts = np.diff(record.time_s, prepend=record.time_s[0])
    result = felif.felif_run_sequence(
        torch.as_tensor(current_in_a, dtype=DTYPE),
        torch.as_tensor(dts, dtype=DTYPE),
        torch.ones(dts.size, dtype=torch.int64),
        params,
        state,
        record=True,
        max_spikes=1,
    )
    device.state = felif.FeLIFState(result.voltage_v.clone(), result.polarization_c_m2.clone())
    record.current_a = current_in_a
    record.polarization_c_m2 = result.trace_polarization_c_m2[:, 0].numpy()
    record.extra["membrane_v"] = result.trace_voltage_v[:, 0].numpy()
