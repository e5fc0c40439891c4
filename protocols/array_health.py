"""Health map of a formed 1T1R array: per cell ok, stuck, unformed or out of window.

Per row: read (the state left by forming), ``set_pulses`` SET pulses (bit lines at
``set_bl_v``, the gate at ``set_gate_v``: the compliance of the window's top), read, RESET
pulses of rising amplitude on the row (source line at each of ``reset_v``), read. A cell is
**unformed** when it still reads like a pristine cell (below ``pristine_siemens`` after the
SET), **stuck** when SET and RESET move it by less than ``min_swing_rel`` of the window, **out
of window** when its SET state stays below ``window_siemens[1]`` or its RESET state above
``window_siemens[0]``, else **ok**. Codes per cell (``status``): 0 ok, 1 stuck, 2 unformed,
3 out of window. The row is left RESET (program-and-verify climbs from there).
"""

from __future__ import annotations

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
    Siemens,
    Volts,
    VoltsList,
    check_before_run,
)
from protocols.seams import BenchView

OK, STUCK, UNFORMED, OUT_OF_WINDOW = 0, 1, 2, 3
STATUS_NAMES = {OK: "ok", STUCK: "stuck", UNFORMED: "unformed", OUT_OF_WINDOW: "out of window"}


class ArrayHealthParams(ArrayRowParams):
    """The probing pulses and the window a usable cell must span (S)."""

    reset_v: VoltsList = Field(default_factory=lambda: [0.9, 1.1, 1.3])
    reset_gate_v: Volts = Field(3.3, ge=0)
    set_bl_v: Volts = Field(1.8, gt=0)
    set_gate_v: Volts = Field(2.1, ge=0)
    width_s: Seconds = Field(1e-6, gt=0)
    reset_width_s: Seconds = Field(1e-5, gt=0)
    compliance_a: Amperes = Field(1.5e-3, gt=0)
    set_pulses: int = Field(3, ge=1, le=100)
    window_siemens: list[float] = Field(default_factory=lambda: [15e-6, 150e-6])
    min_swing_rel: float = Field(0.2, gt=0, le=1)
    pristine_siemens: Siemens = Field(1e-6, gt=0)

    @model_validator(mode="after")
    def _window(self) -> ArrayHealthParams:
        w = self.window_siemens
        if len(w) != 2 or not 0 < w[0] < w[1]:
            raise ValueError("window_siemens: [low, high] with 0 < low < high")
        if not self.reset_v or any(v <= 0 for v in self.reset_v):
            raise ValueError("reset_v: one or more positive RESET amplitudes")
        return self

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_read(guard)
        guard.check_line("array_tester", "sourceline", max(self.reset_v))
        guard.check_line("array_tester", "wordline", max(self.reset_gate_v, self.set_gate_v))
        guard.check_line("array_tester", "bitline", self.set_bl_v)
        guard.check_current("array_tester", "compliance_a", self.compliance_a)
        guard.check_pulse("array_tester", "SET pulse", self.set_bl_v, self.width_s)
        guard.check_pulse("array_tester", "RESET pulse", max(self.reset_v), self.reset_width_s)

    def estimate_s(self) -> float:
        pulses = self.set_pulses * self.width_s + sum(self.reset_width_s for _ in self.reset_v)
        n = self.set_pulses + len(self.reset_v)
        return 3 * self.read_time_s() + pulses + n * PULSE_OVERHEAD_S + 6 * n * LINK_S


def classify(g_reset: np.ndarray, g_set: np.ndarray, params: ArrayHealthParams) -> np.ndarray:
    """Status codes per cell from its RESET and SET reads."""
    low, high = params.window_siemens
    status = np.full(g_set.shape, OK, dtype=np.int64)
    status[(g_set < high) | (g_reset > low)] = OUT_OF_WINDOW
    status[np.abs(g_set - g_reset) < params.min_swing_rel * (high - low)] = STUCK
    status[g_set < params.pristine_siemens] = UNFORMED
    return status


def run(bench: BenchView, device: DeviceUnderTest, params: ArrayHealthParams) -> ProtocolResult:
    check_before_run(bench, params)
    row = params.the_row()
    with driven_row(bench, device, params) as tester:
        g_formed = tester.read_row(row)
        for _ in range(params.set_pulses):  # a few: the level creeps to the compliance's
            tester.pulse(
                row=row,
                wordline_v=params.set_gate_v,
                bitline_v=params.set_bl_v,
                sourceline_v=0.0,
                width_s=params.width_s,
                compliance_a=params.compliance_a,
            )
        g_set = tester.read_row(row)
        for amplitude in params.reset_v:
            tester.pulse(
                row=row,
                wordline_v=params.reset_gate_v,
                bitline_v=0.0,
                sourceline_v=amplitude,
                width_s=params.reset_width_s,
                compliance_a=params.compliance_a,
            )
        g_reset = tester.read_row(row)
    status = classify(g_reset, g_set, params)
    counts = {name: float(np.sum(status == code)) for code, name in STATUS_NAMES.items()}
    return ProtocolResult(
        {
            "column": column_index(status.size),
            "status": (status, ""),
            "conductance_formed_siemens": (g_formed, "S"),
            "conductance_reset_siemens": (g_reset, "S"),
            "conductance_set_siemens": (g_set, "S"),
        },
        {"row": row, **{f"n_{k.replace(' ', '_')}": v for k, v in counts.items()}},
    )


SPEC = ProtocolSpec("array_health", ArrayHealthParams, run, __doc__ or "")
