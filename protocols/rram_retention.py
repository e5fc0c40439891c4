"""Retention of programmed RRAM levels: reads at log-spaced times after programming.

Each target is programmed (program-and-verify), then read at ``n_points`` times log-spaced
from ``first_read_s`` to ``last_read_s`` after programming, waiting on the bench clock
(``bench.clock.wait_s``: wall time on a real bench, virtual time in the sim).
``drift_rel_per_decade`` is the mean over levels of the slope of G(t)/G(first read) - 1
against log10(t).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from protocols.base import DeviceUnderTest, ProtocolResult, ProtocolSpec, Seconds, check_before_run
from protocols.rram_common import ProgramVerifyMixin, program_verify
from protocols.seams import BenchView


class RramRetentionParams(ProgramVerifyMixin):
    """Levels and read schedule."""

    targets_siemens: list[float] = Field(default_factory=lambda: [50e-6, 150e-6])
    first_read_s: Seconds = Field(1.0, gt=0)
    last_read_s: Seconds = Field(1e5, gt=0)
    n_points: int = Field(11, ge=2, le=1000)

    @model_validator(mode="after")
    def _times(self) -> RramRetentionParams:
        if self.last_read_s <= self.first_read_s:
            raise ValueError("last_read_s must be after first_read_s")
        return self

    def read_times_s(self) -> np.ndarray:
        return np.geomspace(self.first_read_s, self.last_read_s, self.n_points)

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_program(guard)

    def estimate_s(self) -> float:
        # On a real bench the waits dominate: the last read of each level.
        return len(self.targets_siemens) * (1.5 + self.last_read_s + self.n_points * 0.05)


def run(bench: BenchView, device: DeviceUnderTest, params: RramRetentionParams) -> ProtocolResult:
    check_before_run(bench, params)
    times, levels, gs, slopes = [], [], [], []
    clock = bench.clock
    amplitude: dict[int, float] = {}
    for k, target in enumerate(params.targets_siemens):
        program_verify(bench, target, params, amplitude)
        t0 = clock.now_s()
        g_level = []
        for t_read in params.read_times_s():
            wait = t_read - (clock.now_s() - t0)
            if wait > 0:
                clock.wait_s(wait)
            elapsed = clock.now_s() - t0
            g_level.append(params.read(bench))
            times.append(elapsed)
            levels.append(k)
        g = np.array(g_level)
        t = np.array(times[-len(g_level) :])
        if g[0] != 0:
            slopes.append(float(np.polyfit(np.log10(t), g / g[0] - 1.0, 1)[0]))
        gs.extend(g_level)
    return ProtocolResult(
        {
            "time_s": (np.array(times), "s"),
            "level": (np.array(levels, dtype=np.int64), ""),
            "conductance_siemens": (np.array(gs), "S"),
        },
        {"drift_rel_per_decade": float(np.mean(slopes)) if slopes else float("nan")},
    )


SPEC = ProtocolSpec("rram_retention", RramRetentionParams, run, __doc__ or "")
