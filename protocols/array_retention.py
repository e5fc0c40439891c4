"""Retention of a programmed 1T1R array on a sampled subset of rows: each sampled row read at
``times_s`` after the measurement starts (the bench clock waits in between: virtual time in the
sim, so a day costs one command), ``conductance_siemens [n_times, cols]``, ``time_s``."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from protocols.array_common import LINK_S, ArrayRowParams, column_index, driven_row
from protocols.base import (
    DeviceUnderTest,
    ProtocolResult,
    ProtocolSpec,
    SecondsList,
    check_before_run,
)
from protocols.seams import BenchView


class ArrayRetentionParams(ArrayRowParams):
    """The sampled rows and the read times (s after the start, increasing)."""

    rows: list[int] | None = Field(default_factory=lambda: [5, 37])
    times_s: SecondsList = Field(default_factory=lambda: [1.0, 10.0, 100.0, 1e3, 1e4])

    @model_validator(mode="after")
    def _increasing(self) -> ArrayRetentionParams:
        t = self.times_s
        if not t or t[0] < 0 or any(b <= a for a, b in itertools.pairwise(t)):
            raise ValueError("times_s: increasing times >= 0 s")
        return self

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_read(guard)

    def estimate_s(self) -> float:
        return self.times_s[-1] + len(self.times_s) * (self.read_time_s() + LINK_S)


def run(bench: BenchView, device: DeviceUnderTest, params: ArrayRetentionParams) -> ProtocolResult:
    check_before_run(bench, params)
    clock = bench.clock
    t0 = clock.now_s()
    reads, times = [], []
    with driven_row(bench, device, params) as tester:
        for t in params.times_s:
            wait = t0 + t - clock.now_s()
            if wait > 0:
                tester.shutdown()  # nothing driven while the array waits
                clock.wait_s(wait)
                tester.output_enabled = True
            times.append(clock.now_s() - t0)
            reads.append(tester.read_row(params.the_row()))
    g = np.stack(reads)
    live = g[0] > 1e-6  # formed cells (a pristine one reads nanosiemens)
    change = float(np.mean(g[-1, live] / g[0, live] - 1.0)) if live.any() else 0.0
    return ProtocolResult(
        {
            "column": column_index(g.shape[1]),
            "time_s": (np.array(times), "s"),
            "conductance_siemens": (g, "S"),
        },
        {"row": params.the_row(), "final_mean_change_rel": change},
    )


SPEC = ProtocolSpec("array_retention", ArrayRetentionParams, run, __doc__ or "")
