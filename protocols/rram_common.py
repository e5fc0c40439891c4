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
from protocols.seams import BenchView


class RramProtocolParams(ProtocolParams):
    """Read and pulse settings every RRAM protocol has."""

    kinds: ClassVar[tuple[str, ...]] = ("rram",)

    read_v: Volts = Field(0.2, gt=0, le=1.0)
    read_limit_a: Amperes = Field(5e-4, gt=0)
    read_nplc: float = Field(0.1, ge=0.01, le=10)
    pulse_width_s: Seconds = Field(1e-7, gt=0)
    pulse_edge_s: Seconds = Field(2e-8, gt=0)

    def check_read(self, guard: Any) -> None:
        guard.check_voltage("smu", "read_v", self.read_v)
        guard.check_current("smu", "read_limit_a", self.read_limit_a)

    def check_pulse(self, guard: Any, amplitude_v: float, what: str) -> None:
        samples, rate = bench_ops.pulse_samples(amplitude_v, self.pulse_width_s, self.pulse_edge_s)
        guard.check_waveform("awg", what, samples, rate)

    def read(self, bench: BenchView) -> float:
        g = bench_ops.read_conductance_siemens(
            bench, self.read_v, self.read_limit_a, self.read_nplc
        )
        bench.smu.shutdown()
        return g

    def pulse(self, bench: BenchView, amplitude_v: float) -> None:
        bench_ops.apply_pulse(bench, amplitude_v, self.pulse_width_s, edge_s=self.pulse_edge_s)


class ProgramVerifyMixin(RramProtocolParams):
    """Incremental-step program-and-verify settings (amplitudes are magnitudes, V)."""

    tolerance_siemens: Siemens = Field(4e-6, gt=0)
    set_start_v: Volts = Field(0.8, gt=0)
    set_max_v: Volts = Field(2.0, gt=0)
    reset_start_v: Volts = Field(0.6, gt=0)
    reset_max_v: Volts = Field(2.5, gt=0)
    step_v: Volts = Field(0.02, gt=0)
    max_attempts: int = Field(100, ge=1, le=10_000)

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


def program_verify(
    bench: BenchView,
    target_siemens: float,
    p: ProgramVerifyMixin,
    amplitude: dict[int, float] | None = None,
) -> Programmed:
    """Pulse until the read conductance is within ``p.tolerance_siemens`` of the target.

    Adaptive incremental-step pulsing: SET (positive) pulses below the band, RESET (negative)
    above it. A pulse that moved G by less than half the tolerance, or by less than a tenth of
    the remaining distance, raises that polarity's amplitude by ``step_v`` (up to its maximum);
    one that overshot the band lowers it by a step (down to its start). Pass the same
    ``amplitude`` dict (polarity -> V) for successive targets of one device so each polarity
    keeps its learned amplitude.
    """
    amplitude = {} if amplitude is None else amplitude
    g = p.read(bench)
    attempts = 0
    tol = p.tolerance_siemens
    while abs(g - target_siemens) > tol and attempts < p.max_attempts:
        d = 1 if g < target_siemens else -1
        start, top = (p.set_start_v, p.set_max_v) if d > 0 else (p.reset_start_v, p.reset_max_v)
        v = amplitude.get(d, start)
        p.pulse(bench, d * v)
        attempts += 1
        g_new = p.read(bench)
        if d * (g_new - g) < max(0.5 * tol, 0.1 * abs(g - target_siemens)):
            amplitude[d] = min(v + p.step_v, top)
        elif d * (g_new - target_siemens) > tol:
            amplitude[d] = max(v - p.step_v, start)
        g = g_new
    return Programmed(target_siemens, g, attempts, abs(g - target_siemens) <= tol)


def level_ladder(g_min_siemens: float, g_max_siemens: float, n_levels: int) -> np.ndarray:
    """``n_levels`` evenly spaced conductance targets from g_min to g_max (S)."""
    return np.linspace(g_min_siemens, g_max_siemens, n_levels)
