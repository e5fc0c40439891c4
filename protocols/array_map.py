"""Conductance map of a 1T1R array: every row read ``n_reads`` times (the mean per cell and,
with ``n_reads`` > 1, the spread of the reads), row by row on the tester."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from protocols.array_common import LINK_S, ArrayRowParams, column_index, driven_row
from protocols.base import DeviceUnderTest, ProtocolResult, ProtocolSpec, check_before_run
from protocols.seams import BenchView


class ArrayMapParams(ArrayRowParams):
    """Reads per row."""

    n_reads: int = Field(1, ge=1, le=10_000)

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_read(guard)

    def estimate_s(self) -> float:
        return self.n_reads * (self.read_time_s() + LINK_S)


def run(bench: BenchView, device: DeviceUnderTest, params: ArrayMapParams) -> ProtocolResult:
    check_before_run(bench, params)
    with driven_row(bench, device, params) as tester:
        reads = np.stack([tester.read_row(params.the_row()) for _ in range(params.n_reads)])
    arrays = {
        "column": column_index(reads.shape[1]),
        "conductance_siemens": (reads.mean(0), "S"),
        "reads_siemens": (reads, "S"),
    }
    return ProtocolResult(
        arrays, {"row": params.the_row(), "mean_conductance_siemens": float(reads.mean())}
    )


SPEC = ProtocolSpec("array_conductance_map", ArrayMapParams, run, __doc__ or "")
