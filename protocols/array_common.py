"""What the array protocols share: one measurement per row of a 1T1R crossbar, the tester's read
settings, and the virtual-time estimates of the tester (docs/array-tester.md).

An array protocol runs on an ``rram_array`` site through the bench's ``array_tester``. Its
parameters name the rows it measures (``rows``, default every row of ``n_rows``); ``expand()``
turns them into one measurement per row, so the orchestrator commits every row as it is done
and an interrupted run resumes at the first row not yet stored (idempotency key
``die/site/protocol/index``, the index counting the rows in order). Each row's arrays hold one
value per column (per-cell results), stored chunked like every other measurement.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from instruments.roles import ArrayTester
from protocols.base import DeviceFailure, DeviceUnderTest, ProtocolParams, Seconds, Volts
from protocols.seams import BenchView

# The tester's timing (docs/array-tester.md), for dry-run estimates and ETAs.
PULSE_OVERHEAD_S = 5e-6
CONVERSION_SETTLE_S = 20e-6
COMMAND_S = 2e-6
LINK_S = 2e-3  # a command's round trip on a LAN instrument (the measured rows' bookkeeping)
MAX_ROWS = 1024


class ArrayRowParams(ProtocolParams):
    """Rows to measure and how the tester reads (SI units)."""

    kinds: ClassVar[tuple[str, ...]] = ("rram_array",)

    rows: list[int] | None = Field(None, description="Rows to measure; None: 0..n_rows-1.")
    n_rows: int = Field(64, ge=1, le=MAX_ROWS)
    cols: int = Field(64, ge=1, le=MAX_ROWS, description="Columns (for the estimate).")
    row: int | None = Field(None, ge=0, lt=MAX_ROWS, description="Set by expand(): this row.")
    read_v: Volts = Field(0.2, gt=0, le=0.5)
    read_gate_v: Volts = Field(3.3, ge=0)
    aperture_s: Seconds = Field(100e-6, ge=10e-6, le=10e-3)
    read_mode: Literal["cell", "row"] = "cell"

    @model_validator(mode="after")
    def _rows_valid(self) -> ArrayRowParams:
        for r in self.rows or []:
            if not 0 <= r < MAX_ROWS:
                raise ValueError(f"row {r} outside 0..{MAX_ROWS - 1}")
        if self.rows is not None and len(set(self.rows)) != len(self.rows):
            raise ValueError("rows must not repeat (each row is one measurement)")
        return self

    def row_list(self) -> list[int]:
        return list(self.rows) if self.rows is not None else list(range(self.n_rows))

    def expand(self) -> list[ProtocolParams]:
        if self.row is not None:
            return [self]
        return [self.model_copy(update={"row": r, "rows": None}) for r in self.row_list()]

    def check_read(self, guard: Any) -> None:
        guard.check_line("array_tester", "bitline", self.read_v)
        guard.check_line("array_tester", "wordline", self.read_gate_v)

    def read_time_s(self) -> float:
        """One read of a row on the tester, s."""
        conversions = self.cols if self.read_mode == "cell" else 1
        return conversions * (self.aperture_s + CONVERSION_SETTLE_S) + COMMAND_S

    def the_row(self) -> int:
        if self.row is None:
            raise ValueError("an array measurement runs on one row (expand() the parameters)")
        return self.row


def tester_of(bench: BenchView) -> ArrayTester:
    """The bench's array tester; a bench without one cannot measure an array."""
    tester: ArrayTester | None = getattr(bench, "array_tester", None)
    if tester is None:
        from bruno_lab.errors import InstrumentError

        raise InstrumentError("this bench has no array_tester (station file: instruments)")
    return tester


@contextmanager
def driven_row(
    bench: BenchView, device: DeviceUnderTest, params: ArrayRowParams
) -> Iterator[ArrayTester]:
    """The tester configured for ``params``'s reads with its outputs on; outputs off after.
    A row beyond the array under the probe card fails the measurement (the device, not the
    bench, is not what the plan said)."""
    tester = tester_of(bench)
    rows, _ = tester.array_size()
    row = params.the_row()
    if row >= rows:
        raise DeviceFailure(f"row {row}: the array at {device.die_label}/{device.site} has {rows}")
    tester.configure_read(params.read_v, params.read_gate_v, params.aperture_s, params.read_mode)
    tester.output_enabled = True
    try:
        yield tester
    finally:
        tester.shutdown()


def column_index(n: int) -> tuple[np.ndarray, str]:
    return np.arange(n, dtype=np.int64), ""
