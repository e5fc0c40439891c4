"""Endurance of an RRAM cell: SET/RESET cycling until the memory window closes.

Cycling plays bursts of a bipolar waveform (one SET pulse of ``set_v``, one RESET pulse of
``-reset_v``) on the AWG; at checkpoints log-spaced in cycle count up to ``max_cycles`` one
SET pulse + read gives G_LRS and one RESET pulse + read gives G_HRS. The window closes at the
first checkpoint with G_LRS / G_HRS < ``min_window_ratio``; cycling stops there.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from protocols import bench_ops
from protocols.base import DeviceUnderTest, ProtocolResult, ProtocolSpec, Volts, check_before_run
from protocols.rram_common import RramProtocolParams
from protocols.seams import BenchView


class RramEnduranceParams(RramProtocolParams):
    """Cycling pulses, checkpoints and the window threshold."""

    set_v: Volts = Field(1.4, gt=0)
    reset_v: Volts = Field(1.6, gt=0)
    max_cycles: int = Field(1000, ge=1, le=10**9)
    checkpoints_per_decade: int = Field(2, ge=1, le=20)
    min_window_ratio: float = Field(2.0, gt=1)

    def checkpoints(self) -> list[int]:
        n = max(int(math.log10(self.max_cycles) * self.checkpoints_per_decade), 1)
        points = np.unique(np.round(np.geomspace(1, self.max_cycles, n + 1)).astype(np.int64))
        return [int(c) for c in points]

    def cycle_waveform(self) -> tuple[np.ndarray, float]:
        """One cycle: a SET trapezoid then a RESET trapezoid (0 V margins)."""
        set_s, rate = bench_ops.pulse_samples(self.set_v, self.pulse_width_s, self.pulse_edge_s)
        reset_s, _ = bench_ops.pulse_samples(-self.reset_v, self.pulse_width_s, self.pulse_edge_s)
        return np.concatenate([set_s, reset_s]), rate

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_read(guard)
        samples, rate = self.cycle_waveform()
        guard.check_waveform("awg", "endurance cycle", samples, rate)

    def estimate_s(self) -> float:
        samples, rate = self.cycle_waveform()
        return len(self.checkpoints()) * 0.6 + self.max_cycles * samples.size / rate


def _cycle(bench: BenchView, params: RramEnduranceParams, n_cycles: int) -> None:
    samples, rate = params.cycle_waveform()
    awg = bench.awg
    bench_ops.outputs_off(bench)
    awg.upload_waveform("ENDUR", samples, rate)
    awg.configure_burst(n_cycles)
    awg.output_enabled = True
    try:
        bench_ops.trigger_and_wait(awg, bench_ops.TRIGGER_TIMEOUT_S + 0.05 * n_cycles)
    finally:
        awg.output_enabled = False


def run(bench: BenchView, device: DeviceUnderTest, params: RramEnduranceParams) -> ProtocolResult:
    check_before_run(bench, params)
    cycles, lrs, hrs = [], [], []
    done = 0
    closed_at = math.nan
    for checkpoint in params.checkpoints():
        if checkpoint - 1 > done:
            _cycle(bench, params, checkpoint - 1 - done)
        params.pulse(bench, params.set_v)
        g_on = params.read(bench)
        params.pulse(bench, -params.reset_v)
        g_off = params.read(bench)
        done = checkpoint
        cycles.append(checkpoint)
        lrs.append(g_on)
        hrs.append(g_off)
        if g_off <= 0 or g_on / g_off < params.min_window_ratio:
            closed_at = float(checkpoint)
            break
    return ProtocolResult(
        {
            "cycle": (np.array(cycles, dtype=np.int64), ""),
            "g_lrs_siemens": (np.array(lrs), "S"),
            "g_hrs_siemens": (np.array(hrs), "S"),
        },
        {"n_cycles_to_close": closed_at, "n_cycles_done": float(done)},
    )


SPEC = ProtocolSpec("rram_endurance", RramEnduranceParams, run, __doc__ or "")
