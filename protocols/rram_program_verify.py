"""Program-and-verify an RRAM cell to N conductance levels (3 bits: 8 targets).

Targets are ``n_levels`` evenly spaced between ``g_min_siemens`` and ``g_max_siemens`` (the
card-like bounds, e.g. 6 uS .. 242 uS), or the explicit ``targets_siemens``; each is reached by
incremental-step pulsing (``protocols.rram_common.program_verify``) within
``tolerance_siemens`` and at most ``max_attempts`` pulses. Attempts are recorded per level.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from protocols.base import (
    DeviceFailure,
    DeviceUnderTest,
    ProtocolResult,
    ProtocolSpec,
    Siemens,
    check_before_run,
)
from protocols.rram_common import ProgramVerifyMixin, level_ladder, program_verify
from protocols.seams import BenchView


class RramProgramVerifyParams(ProgramVerifyMixin):
    """Targets and the verify loop."""

    n_levels: int = Field(8, ge=1, le=64)
    g_min_siemens: Siemens = Field(6e-6, gt=0)
    g_max_siemens: Siemens = Field(242e-6, gt=0)
    targets_siemens: list[float] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> RramProgramVerifyParams:
        if self.g_min_siemens >= self.g_max_siemens:
            raise ValueError("g_min_siemens must be below g_max_siemens")
        return self

    def targets(self) -> np.ndarray:
        if self.targets_siemens:
            return np.asarray(self.targets_siemens, dtype=np.float64)
        return level_ladder(self.g_min_siemens, self.g_max_siemens, self.n_levels)

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_program(guard)
        peak_a = float(self.targets().max() + self.tolerance_siemens) * self.read_v
        if peak_a > self.read_limit_a:
            raise ValueError(
                f"read_limit_a {self.read_limit_a:g} A is below the read current of the "
                f"highest target ({peak_a:.3g} A)"
            )

    def estimate_s(self) -> float:
        return 0.2 + len(self.targets()) * 10 * 0.15


def run(
    bench: BenchView, device: DeviceUnderTest, params: RramProgramVerifyParams
) -> ProtocolResult:
    check_before_run(bench, params)
    targets = params.targets()
    amplitude: dict[int, float] = {}
    # Highest target first: a fresh or SET cell comes down the ladder by gentle RESETs.
    order = np.argsort(targets)[::-1]
    by_level = {int(k): program_verify(bench, float(targets[k]), params, amplitude) for k in order}
    results = [by_level[k] for k in range(len(targets))]
    reached = np.array([r.reached_siemens for r in results])
    arrays = {
        "target_level": (np.arange(len(targets), dtype=np.int64), ""),
        "target_conductance_siemens": (targets, "S"),
        "reached_conductance_siemens": (reached, "S"),
        "attempts": (np.array([r.attempts for r in results], dtype=np.int64), ""),
        "success": (np.array([int(r.success) for r in results], dtype=np.int64), ""),
    }
    n_success = sum(r.success for r in results)
    if n_success == 0 and len(targets) == 1:  # one target: no spread to tell "no switching" by
        raise DeviceFailure(
            f"target {targets[0]:.3g} S not reached within ±{params.tolerance_siemens:.3g} S "
            f"after {results[0].attempts} pulses: ended at {reached[0]:.3g} S",
            arrays,
        )
    if n_success == 0 and float(np.ptp(reached)) < params.tolerance_siemens:
        raise DeviceFailure(
            f"no switching: conductance stayed at {np.median(reached):.3g} S for every target",
            arrays,
        )
    return ProtocolResult(
        arrays,
        {
            "n_levels": float(len(targets)),
            "n_success": float(n_success),
            "mean_attempts": float(np.mean([r.attempts for r in results])),
        },
    )


SPEC = ProtocolSpec("rram_program_verify", RramProgramVerifyParams, run, __doc__ or "")
