"""Read noise of a programmed 1T1R array on a sampled subset of rows: each sampled row read
``n_reads`` times in a row (no programming in between), ``conductance_siemens [n_reads,
cols]``. With the row's programmed levels (``array_program_verify`` of the same row) this gives
the read-noise model ``sigma_G = floor + slope*G`` from thousands of cells."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from protocols.array_common import LINK_S, ArrayRowParams, column_index, driven_row
from protocols.base import DeviceUnderTest, ProtocolResult, ProtocolSpec, check_before_run
from protocols.seams import BenchView


class ArrayReadNoiseParams(ArrayRowParams):
    """The sampled rows (``rows``, default 4 spread over the array) and reads per row."""

    rows: list[int] | None = Field(default_factory=lambda: [0, 21, 42, 63])
    n_reads: int = Field(32, ge=2, le=100_000)

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_read(guard)

    def estimate_s(self) -> float:
        return self.n_reads * (self.read_time_s() + LINK_S)


def run(bench: BenchView, device: DeviceUnderTest, params: ArrayReadNoiseParams) -> ProtocolResult:
    check_before_run(bench, params)
    with driven_row(bench, device, params) as tester:
        reads = np.stack([tester.read_row(params.the_row()) for _ in range(params.n_reads)])
    std = reads.std(0, ddof=1)
    return ProtocolResult(
        {
            "column": column_index(reads.shape[1]),
            "conductance_siemens": (reads, "S"),
            "mean_conductance_siemens": (reads.mean(0), "S"),
            "std_conductance_siemens": (std, "S"),
        },
        {"row": params.the_row(), "median_std_siemens": float(np.median(std))},
    )


SPEC = ProtocolSpec("array_read_noise", ArrayReadNoiseParams, run, __doc__ or "")
