"""What the RRAM protocols share: the read, the AWG pulse and program-and-verify.

A read is the SMU at ``read_v`` (AWG off): G = I / V. A pulse is one AWG trapezoid (SMU off);
positive pulses SET (conductance up), negative pulses RESET (down). Program-and-verify is the
usual incremental-step loop: read; if G is below the target band, SET with an amplitude that
grows by ``step_v`` per attempt; if above, RESET likewise; a change of direction restarts the
amplitude; stop when G is within ``tolerance_siemens`` or after ``max_attempts`` pulses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from protocols import bench_ops
from protocols.base import Amperes, ProtocolParams, Seconds, Siemens, Volts


class RramProtocolParams(ProtocolParams):
    """Read and pulse settings every RRAM protocol has."""

    kinds: ClassVar[tuple[str, ...]] = ("rram",)

    read_v: Volts = Field(0.2, gt=0, le=1.0)
    read_limit_a: Amperes = Field(5e-4, gt=0)
    read_nplc: float = Field(0.1, ge=0.01, le=10)
    pulse_width_s: Seconds = Field(1e-6, gt=0)
    pulse_edge_s: Seconds = Field(2e-8, gt=0)

    def check_read(self, guard: Any) -> None:
        guard.check_voltage("smu", "read_v", self.read_v)
        guard.check_current("smu", "read_limit_a", self.read_limit_a)

    def check_pulse(self, guard: Any, amplitude_v: float, what: str) -> None:
        samples, rate = bench_ops.pulse_samples(amplitude_v, self.pulse_width_s, self.pulse_edge_s)
        guard.check_waveform("awg", what, samples, rate)

    def read(self, bench: Any) -> float:
        g = bench_ops.read_conductance_siemens(
            bench, self.read_v, self.read_limit_a, self.read_nplc
        )
        bench.smu.shutdown()
        return g

    def pulse(self, bench: Any, amplitude_v: float) -> None:
        bench_ops.apply_pulse(bench, amplitude_v, self.pulse_width_s, edge_s=self.pulse_edge_s)


class ProgramVerifyMixin(RramProtocolParams):
    """Incremental-step program-and-verify settings (amplitudes are magnitudes, V)."""

    tolerance_siemens: Siemens = Field(4e-6, gt=0)
    set_start_v: Volts = Field(0.8, gt=0)
    set_max_v: Volts = Field(2.0, gt=0)
    reset_start_v: Volts = Field(0.8, gt=0)
    reset_max_v: Volts = Field(2.5, gt=0)
    step_v: Volts = Field(0.05, gt=0)
    max_attempts: int = Field(50, ge=1, le=10_000)

    @model_validator(mode="after")
    def _ordered(self) -> ProgramVerifyMixin:
        if self.set_start_v > self.set_max_v:
            raise ValueError("set_start_v must not exceed set_max_v")
        if self.reset_start_v > self.reset_max_v:
            raise ValueError("reset_start_v must not exceed reset_max_v")
        return self

    def check_program(self, guard: Any) -> None:
        self.check_read(guard)
        self.check_pulse(guard, self.set_max_v, "largest SET pulse")
        self.check_pulse(guard, -self.reset_max_v, "largest RESET pulse")


@dataclass(frozen=True)
class Programmed:
    """Outcome of program-and-verify to one target."""

    target_siemens: float
    reached_siemens: float
    attempts: int
    success: bool


def program_verify(bench: Any, target_siemens: float, p: ProgramVerifyMixin) -> Programmed:
    """Pulse until the read conductance is within ``p.tolerance_siemens`` of the target."""
    g = p.read(bench)
    attempts = 0
    set_v, reset_v, direction = p.set_start_v, p.reset_start_v, 0
    while abs(g - target_siemens) > p.tolerance_siemens and attempts < p.max_attempts:
        if g < target_siemens:
            if direction != 1:
                set_v, direction = p.set_start_v, 1
            p.pulse(bench, set_v)
            set_v = min(set_v + p.step_v, p.set_max_v)
        else:
            if direction != -1:
                reset_v, direction = p.reset_start_v, -1
            p.pulse(bench, -reset_v)
            reset_v = min(reset_v + p.step_v, p.reset_max_v)
        attempts += 1
        g = p.read(bench)
    return Programmed(target_siemens, g, attempts, abs(g - target_siemens) <= p.tolerance_siemens)


def level_ladder(g_min_siemens: float, g_max_siemens: float, n_levels: int) -> np.ndarray:
    """``n_levels`` evenly spaced conductance targets from g_min to g_max (S)."""
    return np.linspace(g_min_siemens, g_max_siemens, n_levels)
