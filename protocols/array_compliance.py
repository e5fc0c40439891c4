"""The access transistors' compliance curve on a sampled subset of rows: SET pulses on the whole
row at rising gate voltages, the tester reporting each cell's current at the end of every pulse
(``current_a [n_gates, cols]``). A formed cell driven hard enough (``set_bl_v``) runs into its
transistor's saturation current, so the curve is ``I_sat(V_G)`` of each cell's transistor:
calibration fits the EKV model (``bruno_lab.devices.one_t_one_r``) to it. The row is RESET at
the end (it leaves the cells near the high-resistance state)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from protocols.array_common import (
    LINK_S,
    PULSE_OVERHEAD_S,
    ArrayRowParams,
    column_index,
    driven_row,
)
from protocols.base import (
    Amperes,
    DeviceUnderTest,
    ProtocolResult,
    ProtocolSpec,
    Seconds,
    Volts,
    VoltsList,
    check_before_run,
)
from protocols.seams import BenchView


class ArrayComplianceParams(ArrayRowParams):
    """Sampled rows, the gate voltages (increasing) and the SET amplitude."""

    rows: list[int] | None = Field(default_factory=lambda: [10, 50])
    gates_v: VoltsList = Field(default_factory=lambda: [1.0, 1.2, 1.4, 1.6, 1.8, 2.0])
    set_bl_v: Volts = Field(2.2, gt=0)
    width_s: Seconds = Field(1e-6, gt=0)
    compliance_a: Amperes = Field(1.8e-3, gt=0)
    reset_v: Volts = Field(1.6, gt=0)
    reset_gate_v: Volts = Field(3.3, ge=0)

    @model_validator(mode="after")
    def _gates(self) -> ArrayComplianceParams:
        g = self.gates_v
        if len(g) < 3 or any(b <= a for a, b in itertools.pairwise(g)):
            raise ValueError("gates_v: at least three increasing gate voltages")
        return self

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_read(guard)
        guard.check_line("array_tester", "wordline", max(max(self.gates_v), self.reset_gate_v))
        guard.check_line("array_tester", "bitline", self.set_bl_v)
        guard.check_line("array_tester", "sourceline", self.reset_v)
        guard.check_current("array_tester", "compliance_a", self.compliance_a)
        guard.check_pulse("array_tester", "SET pulse", self.set_bl_v, self.width_s)

    def estimate_s(self) -> float:
        pulses = len(self.gates_v) + 1
        return pulses * (self.width_s + PULSE_OVERHEAD_S + 8 * LINK_S) + self.read_time_s()


def run(bench: BenchView, device: DeviceUnderTest, params: ArrayComplianceParams) -> ProtocolResult:
    check_before_run(bench, params)
    row = params.the_row()
    currents = []
    with driven_row(bench, device, params) as tester:
        for gate in params.gates_v:
            currents.append(
                tester.pulse(
                    row=row,
                    wordline_v=gate,
                    bitline_v=params.set_bl_v,
                    sourceline_v=0.0,
                    width_s=params.width_s,
                    compliance_a=params.compliance_a,
                )
            )
        tester.pulse(
            row=row,
            wordline_v=params.reset_gate_v,
            bitline_v=0.0,
            sourceline_v=params.reset_v,
            width_s=params.width_s,
            compliance_a=params.compliance_a,
        )
        g = tester.read_row(row)
    current = np.stack(currents)
    return ProtocolResult(
        {
            "column": column_index(current.shape[1]),
            "gate_v": (np.array(params.gates_v, dtype=np.float64), "V"),
            "current_a": (current, "A"),
            "conductance_after_siemens": (g, "S"),
        },
        {"row": row, "median_top_current_a": float(np.median(current[-1]))},
    )


SPEC = ProtocolSpec("array_compliance", ArrayComplianceParams, run, __doc__ or "")
