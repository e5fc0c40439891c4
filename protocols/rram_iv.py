"""DC I-V SET/RESET cycling of an RRAM cell through the SMU.

Each cycle: a SET sweep 0 -> ``set_max_v`` -> 0 under ``set_compliance_a``, a read (G_LRS),
a RESET sweep 0 -> -``reset_max_v`` -> 0 under ``reset_compliance_a``, a read (G_HRS). The SET
voltage is the first up-ramp step reaching ``detect_frac`` of the SET compliance; the RESET
voltage is where the conductance |I/V| falls most steeply on the RESET down-ramp (by at least
20 % in one step: the filament ruptures there).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from protocols import bench_ops
from protocols.base import (
    Amperes,
    DeviceFailure,
    DeviceUnderTest,
    ProtocolResult,
    ProtocolSpec,
    Seconds,
    Volts,
    check_before_run,
)
from protocols.rram_common import RramProtocolParams
from protocols.seams import BenchView


def _triangle(peak_v: float, step_v: float) -> np.ndarray:
    n = max(math.floor(abs(peak_v) / step_v + 1e-9), 1)
    up = np.arange(1, n + 1) * (abs(peak_v) / n) * math.copysign(1.0, peak_v)
    return np.concatenate([up, up[-2::-1], [0.0]])


class RramIvParams(RramProtocolParams):
    """DC cycling sweeps."""

    n_cycles: int = Field(5, ge=1, le=10_000)
    set_max_v: Volts = Field(1.5, gt=0)
    reset_max_v: Volts = Field(1.8, gt=0)
    step_v: Volts = Field(0.05, gt=0)
    set_compliance_a: Amperes = Field(1e-4, gt=0)
    reset_compliance_a: Amperes = Field(1e-3, gt=0)
    delay_s: Seconds = Field(1e-3, ge=0)
    nplc: float = Field(0.1, ge=0.01, le=10)
    detect_frac: float = Field(0.5, gt=0, le=1)
    min_window_ratio: float = Field(2.0, gt=1)

    def sweeps(self) -> tuple[np.ndarray, np.ndarray]:
        return _triangle(self.set_max_v, self.step_v), _triangle(-self.reset_max_v, self.step_v)

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_read(guard)
        set_v, reset_v = self.sweeps()
        for limit, sweep in ((self.set_compliance_a, set_v), (self.reset_compliance_a, reset_v)):
            guard.check_current("smu", "compliance", limit)
            guard.check_sweep("smu", sweep, self.delay_s + self.nplc / 60.0)

    def estimate_s(self) -> float:
        n = sum(s.size for s in self.sweeps())
        return self.n_cycles * (0.3 + n * (self.delay_s + self.nplc / 50.0 + 2e-3))


def _reset_voltage(voltage_v: np.ndarray, current_a: np.ndarray, n_down: int) -> float:
    """Where the conductance falls most steeply on the RESET down-ramp (the filament ruptures),
    V; NaN if it never falls."""
    g = np.abs(current_a[:n_down]) / np.maximum(np.abs(voltage_v[:n_down]), 1e-12)
    if g.size < 2:
        return math.nan
    ratio = g[1:] / np.maximum(g[:-1], 1e-15)
    k = int(np.argmin(ratio))
    return float(voltage_v[k + 1]) if ratio[k] < 0.8 else math.nan


def run(bench: BenchView, device: DeviceUnderTest, params: RramIvParams) -> ProtocolResult:
    check_before_run(bench, params)
    set_sweep, reset_sweep = params.sweeps()
    volts, amps, cycles, v_set, v_reset, g_lrs, g_hrs = [], [], [], [], [], [], []
    for cycle in range(params.n_cycles):
        v, i = bench_ops.dc_sweep(
            bench, set_sweep, params.set_compliance_a, params.delay_s, params.nplc
        )
        n_up = int(np.argmax(set_sweep)) + 1
        hit = np.flatnonzero(np.abs(i[:n_up]) >= params.detect_frac * params.set_compliance_a)
        v_set.append(float(v[hit[0]]) if hit.size else math.nan)
        volts.append(v)
        amps.append(i)
        g_lrs.append(params.read(bench))
        v, i = bench_ops.dc_sweep(
            bench, reset_sweep, params.reset_compliance_a, params.delay_s, params.nplc
        )
        v_reset.append(_reset_voltage(v, i, int(np.argmin(reset_sweep)) + 1))
        volts.append(v)
        amps.append(i)
        g_hrs.append(params.read(bench))
        cycles.append(np.full(set_sweep.size + reset_sweep.size, cycle, dtype=np.int64))
    arrays = {
        "voltage_v": (np.concatenate(volts), "V"),
        "current_a": (np.concatenate(amps), "A"),
        "cycle_index": (np.concatenate(cycles), ""),
        "g_lrs_cycle_siemens": (np.array(g_lrs), "S"),
        "g_hrs_cycle_siemens": (np.array(g_hrs), "S"),
    }
    if not np.median(g_lrs) > params.min_window_ratio * np.median(g_hrs):
        raise DeviceFailure(
            f"no switching: G after SET {np.median(g_lrs):.3g} S, after RESET "
            f"{np.median(g_hrs):.3g} S (window below {params.min_window_ratio:g}; not formed?)",
            arrays,
        )
    return ProtocolResult(
        arrays,
        {
            "set_voltage_v": float(np.nanmedian(v_set)) if np.isfinite(v_set).any() else math.nan,
            "reset_voltage_v": float(np.nanmedian(v_reset))
            if np.isfinite(v_reset).any()
            else math.nan,
            "g_lrs_siemens": float(np.median(g_lrs)),
            "g_hrs_siemens": float(np.median(g_hrs)),
            "n_cycles": float(params.n_cycles),
        },
    )


SPEC = ProtocolSpec("rram_iv", RramIvParams, run, __doc__ or "")
