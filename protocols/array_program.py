"""Row-parallel multi-level program-and-verify of a 1T1R array on the tester (``:PROG:ROW``).

Per row: every cell gets a target conductance, either the ladder pattern (``levels_siemens``,
default 8 levels evenly from 6 to 242 uS, column ``c`` of row ``r`` at level ``(c + r) % n``, so
every level appears in every row and column) or the row's own ``targets_siemens`` (one per
column; ``null`` leaves a cell alone: what a deployment sends). The tester runs IGVVA
(incremental gate voltage: the row's word line climbs, the filament lands at the level the gate
compliance sets) or ISPVA (incremental bit-line amplitude at a fixed gate) with RESET back-off on
overshoot, and returns per cell the pulses it took, the verify read that passed and whether it
did (docs/array-tester.md). Arrays per cell: ``target_level``, ``target_conductance_siemens``,
``reached_conductance_siemens``, ``attempts``, ``success``, ``gate_v``, ``bl_v``.
"""

from __future__ import annotations

from typing import Any, Literal

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
    check_before_run,
)
from protocols.seams import BenchView

DEFAULT_LEVELS_SIEMENS = [float(g) for g in np.linspace(6e-6, 242e-6, 8)]


class ArrayProgramParams(ArrayRowParams):
    """Targets and the tester's write-verify settings (``instruments.array_tester``)."""

    scheme: Literal["igvva", "ispva"] = "igvva"
    levels_siemens: list[float] = Field(default_factory=lambda: list(DEFAULT_LEVELS_SIEMENS))
    targets_siemens: list[float | None] | None = None
    tolerance_siemens: Siemens = Field(4e-6, gt=0)
    width_s: Seconds = Field(1e-6, gt=0)
    compliance_a: Amperes = Field(1.5e-3, gt=0)
    set_bl_v: Volts = Field(1.8, gt=0)
    gate_start_v: Volts = Field(0.9, ge=0)
    gate_stop_v: Volts = Field(2.8, ge=0)
    gate_step_v: Volts = Field(0.01, gt=0)
    set_gate_v: Volts = Field(2.2, ge=0)
    bl_start_v: Volts = Field(0.8, gt=0)
    bl_stop_v: Volts = Field(2.0, gt=0)
    bl_step_v: Volts = Field(0.02, gt=0)
    reset_start_v: Volts = Field(0.7, gt=0)
    reset_stop_v: Volts = Field(1.6, gt=0)
    reset_step_v: Volts = Field(0.02, gt=0)
    reset_gate_v: Volts = Field(3.3, ge=0)
    max_attempts: int = Field(100, ge=1, le=10_000)

    @model_validator(mode="after")
    def _targets(self) -> ArrayProgramParams:
        if not self.levels_siemens or any(not 0 < g <= 1e-2 for g in self.levels_siemens):
            raise ValueError("levels_siemens: one or more conductances in (0, 10 mS]")
        for g in self.targets_siemens or []:
            if g is not None and not 0 < g <= 1e-2:
                raise ValueError(f"targets_siemens: {g!r} outside (0, 10 mS] (null: skip)")
        for low, high in (
            ("gate_start_v", "gate_stop_v"),
            ("bl_start_v", "bl_stop_v"),
            ("reset_start_v", "reset_stop_v"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} must not exceed {high}")
        return self

    def row_targets(self, row: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        """(targets in S with NaN for skipped cells, level index or -1) of one row."""
        if self.targets_siemens is not None:
            if len(self.targets_siemens) != cols:
                raise ValueError(f"{len(self.targets_siemens)} targets for {cols} columns")
            t = np.array([np.nan if g is None else g for g in self.targets_siemens])
            levels = np.array(self.levels_siemens)
            index = np.array(
                [-1 if not np.isfinite(g) else int(np.argmin(np.abs(levels - g))) for g in t]
            )
            exact = np.isfinite(t) & np.isclose(t, levels[np.maximum(index, 0)], rtol=1e-9)
            return t, np.where(exact, index, -1)
        n = len(self.levels_siemens)
        index = (np.arange(cols) + row) % n
        return np.array(self.levels_siemens)[index], index

    def settings(self) -> Any:
        from instruments.array_tester import ProgramSettings

        fields = ProgramSettings.__dataclass_fields__
        return ProgramSettings(**{name: getattr(self, name) for name in fields})

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_read(guard)
        set_top = self.set_bl_v if self.scheme == "igvva" else self.bl_stop_v
        gate_top = self.gate_stop_v if self.scheme == "igvva" else self.set_gate_v
        guard.check_line("array_tester", "bitline", set_top)
        guard.check_line("array_tester", "wordline", max(gate_top, self.reset_gate_v))
        guard.check_line("array_tester", "sourceline", self.reset_stop_v)
        guard.check_current("array_tester", "compliance_a", self.compliance_a)
        guard.check_pulse("array_tester", "SET pulse", set_top, self.width_s)
        guard.check_pulse("array_tester", "RESET pulse", self.reset_stop_v, self.width_s)

    def estimate_s(self) -> float:
        # about 40 verify iterations per row (measured on the sim's 64-column arrays at 4 uS);
        # each one or two pulses and a row read
        iterations = 40
        pulse = self.width_s + PULSE_OVERHEAD_S
        return iterations * (1.5 * pulse + self.read_time_s()) + 8 * LINK_S


def run(bench: BenchView, device: DeviceUnderTest, params: ArrayProgramParams) -> ProtocolResult:
    check_before_run(bench, params)
    with driven_row(bench, device, params) as tester:
        row = params.the_row()
        _, cols = tester.array_size()
        targets, levels = params.row_targets(row, cols)
        result = tester.program_row(row, targets, params.settings())
    want = np.isfinite(targets)
    arrays = {
        "column": column_index(cols),
        "target_level": (levels.astype(np.int64), ""),
        "target_conductance_siemens": (targets.astype(np.float64), "S"),
        "reached_conductance_siemens": (result.conductance_siemens.astype(np.float64), "S"),
        "attempts": (result.attempts.astype(np.int64), ""),
        "success": (result.success.astype(np.int64), ""),
        "gate_v": (result.gate_v.astype(np.float64), "V"),
        "bl_v": (result.bl_v.astype(np.float64), "V"),
    }
    return ProtocolResult(
        arrays,
        {
            "row": row,
            "n_cells": float(want.sum()),
            "n_success": float(result.success[want].sum()),
            "mean_attempts": float(result.attempts[want].mean()) if want.any() else 0.0,
            "instrument_time_s": result.duration_s,
        },
    )


SPEC = ProtocolSpec("array_program_verify", ArrayProgramParams, run, __doc__ or "")
