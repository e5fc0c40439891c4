"""Read noise of an RRAM cell: many repeated reads at each of a few programmed levels.

Each target of ``targets_siemens`` is programmed by program-and-verify, then read ``n_reads``
times. ``std_conductance_siemens`` is the pooled within-level standard deviation (the read
noise), ``mean_conductance_siemens`` the mean over all reads; per-level means and deviations
are stored as arrays too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from protocols import bench_ops
from protocols.base import DeviceUnderTest, ProtocolResult, ProtocolSpec, check_before_run
from protocols.rram_common import ProgramVerifyMixin, program_verify
from protocols.seams import BenchView


class RramReadNoiseParams(ProgramVerifyMixin):
    """Levels to program and reads per level."""

    targets_siemens: list[float] = Field(default_factory=lambda: [20e-6, 100e-6, 200e-6])
    n_reads: int = Field(50, ge=2, le=100_000)

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_program(guard)

    def estimate_s(self) -> float:
        return len(self.targets_siemens) * (1.5 + self.n_reads * (self.read_nplc / 50.0 + 5e-3))


def run(bench: BenchView, device: DeviceUnderTest, params: RramReadNoiseParams) -> ProtocolResult:
    check_before_run(bench, params)
    levels, values, means, stds, reached = [], [], [], [], []
    amplitude: dict[int, float] = {}
    for k, target in enumerate(params.targets_siemens):
        reached.append(program_verify(bench, target, params, amplitude).reached_siemens)
        g = bench_ops.read_many_siemens(
            bench, params.read_v, params.read_limit_a, params.n_reads, params.read_nplc
        )
        levels.append(np.full(g.size, k, dtype=np.int64))
        values.append(g)
        means.append(float(np.mean(g)))
        stds.append(float(np.std(g, ddof=1)))
    all_g = np.concatenate(values)
    return ProtocolResult(
        {
            "level": (np.concatenate(levels), ""),
            "conductance_siemens": (all_g, "S"),
            "level_target_siemens": (np.array(params.targets_siemens), "S"),
            "level_mean_siemens": (np.array(means), "S"),
            "level_std_siemens": (np.array(stds), "S"),
        },
        {
            "mean_conductance_siemens": float(np.mean(all_g)),
            "std_conductance_siemens": float(np.sqrt(np.mean(np.square(stds)))),
        },
    )


SPEC = ProtocolSpec("rram_read_noise", RramReadNoiseParams, run, __doc__ or "")
