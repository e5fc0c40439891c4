"""Forming of a whole 1T1R array, row by row, on the tester (``:FORM:ROW``).

Each row's pristine cells get bit-line pulses of rising amplitude at the forming gate (its
compliance) until a read finds them formed; the row is read again after. Arrays per cell:
``forming_voltage_v`` (the amplitude that formed it; NaN: not formed by ``stop_v``; 0: formed
before) and ``conductance_siemens`` after forming. A row whose cells all stay pristine fails as
a device failure (an open row, a wrong site).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from protocols.array_common import PULSE_OVERHEAD_S, ArrayRowParams, column_index, driven_row
from protocols.base import (
    Amperes,
    DeviceFailure,
    DeviceUnderTest,
    ProtocolResult,
    ProtocolSpec,
    Seconds,
    Siemens,
    Volts,
    check_before_run,
)
from protocols.seams import BenchView


class ArrayFormingParams(ArrayRowParams):
    """The forming ramp (bit-line amplitude) and its gate (the compliance)."""

    start_v: Volts = Field(2.0, gt=0)
    stop_v: Volts = Field(4.0, gt=0)
    step_v: Volts = Field(0.05, gt=0)
    width_s: Seconds = Field(1e-4, gt=0)
    gate_v: Volts = Field(0.9, ge=0)
    threshold_siemens: Siemens = Field(2e-6, gt=0)
    compliance_a: Amperes = Field(1e-3, gt=0)

    @model_validator(mode="after")
    def _ramp(self) -> ArrayFormingParams:
        if self.start_v > self.stop_v:
            raise ValueError("start_v must not exceed stop_v")
        return self

    def settings(self) -> Any:
        from instruments.array_tester import FormingSettings

        return FormingSettings(
            start_v=self.start_v,
            stop_v=self.stop_v,
            step_v=self.step_v,
            width_s=self.width_s,
            gate_v=self.gate_v,
            threshold_siemens=self.threshold_siemens,
            compliance_a=self.compliance_a,
        )

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_read(guard)
        guard.check_line("array_tester", "bitline", self.stop_v)
        guard.check_line("array_tester", "wordline", self.gate_v)
        guard.check_current("array_tester", "compliance_a", self.compliance_a)
        guard.check_pulse("array_tester", "forming pulse", self.stop_v, self.width_s)

    def estimate_s(self) -> float:
        steps = int((self.stop_v - self.start_v) / self.step_v) + 1
        # the cells form near the middle of the ramp; a step is a pulse and a row read
        typical = max(1, steps // 3)
        return typical * (self.width_s + PULSE_OVERHEAD_S + self.read_time_s()) + self.read_time_s()


def run(bench: BenchView, device: DeviceUnderTest, params: ArrayFormingParams) -> ProtocolResult:
    check_before_run(bench, params)
    with driven_row(bench, device, params) as tester:
        row = params.the_row()
        v_form = tester.form_row(row, params.settings())
        g = tester.read_row(row)
    arrays = {
        "column": column_index(g.size),
        "forming_voltage_v": (np.asarray(v_form, dtype=np.float64), "V"),
        "conductance_siemens": (np.asarray(g, dtype=np.float64), "S"),
    }
    formed = np.isfinite(v_form)
    if not formed.any():
        raise DeviceFailure(f"row {row}: no cell formed up to {params.stop_v:g} V", arrays)
    fresh = formed & (v_form > 0)
    return ProtocolResult(
        arrays,
        {
            "row": row,
            "n_formed": float(formed.sum()),
            "n_unformed": float((~formed).sum()),
            "mean_forming_voltage_v": float(np.mean(v_form[fresh])) if fresh.any() else 0.0,
        },
    )


SPEC = ProtocolSpec("array_forming", ArrayFormingParams, run, __doc__ or "")
