"""RRAM forming: a slow voltage ramp under current compliance until the filament forms.

The SMU ramps 0 -> ``max_v`` in ``step_v`` steps and back to 0, limited to
``compliance_a``. The forming event is the first step of the up-ramp where the current reaches
``detect_frac`` of the compliance; a device already conducting at the lowest steps is a short.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from protocols import bench_ops
from protocols.base import (
    Amperes,
    DeviceFailure,
    DeviceUnderTest,
    ProtocolParams,
    ProtocolResult,
    ProtocolSpec,
    Seconds,
    Volts,
    check_before_run,
)
from protocols.seams import BenchView


class RramFormingParams(ProtocolParams):
    """Forming ramp settings."""

    kinds: ClassVar[tuple[str, ...]] = ("rram",)

    max_v: Volts = Field(4.0, gt=0)
    step_v: Volts = Field(0.05, gt=0)
    compliance_a: Amperes = Field(1e-4, gt=0)
    delay_s: Seconds = Field(1e-3, ge=0)
    nplc: float = Field(0.1, ge=0.01, le=10)
    detect_frac: float = Field(0.5, gt=0, le=1)
    short_below_v: Volts = Field(0.15, ge=0)

    def ramp_v(self) -> np.ndarray:
        up = np.arange(1, math.floor(self.max_v / self.step_v + 1e-9) + 1) * self.step_v
        return np.concatenate([up, up[-2::-1], [0.0]]) if up.size else np.array([0.0])

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        guard.check_current("smu", "compliance_a", self.compliance_a)
        guard.check_sweep("smu", self.ramp_v(), self.delay_s + self.nplc / 60.0)

    def estimate_s(self) -> float:
        return 0.3 + self.ramp_v().size * (self.delay_s + self.nplc / 50.0 + 2e-3)


def run(bench: BenchView, device: DeviceUnderTest, params: RramFormingParams) -> ProtocolResult:
    check_before_run(bench, params)
    ramp = params.ramp_v()
    voltage_v, current_a = bench_ops.dc_sweep(
        bench, ramp, params.compliance_a, params.delay_s, params.nplc
    )
    arrays = {"voltage_v": (voltage_v, "V"), "current_a": (current_a, "A")}
    n_up = int(np.argmax(ramp)) + 1
    hit = np.flatnonzero(np.abs(current_a[:n_up]) >= params.detect_frac * params.compliance_a)
    if hit.size and voltage_v[hit[0]] <= params.short_below_v:
        raise DeviceFailure(
            f"short: {abs(current_a[hit[0]]):.3g} A already at {voltage_v[hit[0]]:.3g} V",
            arrays,
        )
    formed = bool(hit.size)
    return ProtocolResult(
        arrays,
        {
            "forming_voltage_v": float(voltage_v[hit[0]]) if formed else float("nan"),
            "formed": 1.0 if formed else 0.0,
        },
    )


SPEC = ProtocolSpec("rram_forming", RramFormingParams, run, __doc__ or "")
