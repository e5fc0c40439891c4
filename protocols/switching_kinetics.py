"""Switching kinetics of a FeCap: switched polarization over a grid of pulse widths and amplitudes.

Per grid point one AWG waveform: a negative preset, the write pulse (``amplitude``, ``width``),
then two negative read pulses N and D. ``(Q_N - Q_D) / area`` is the polarization the write
pulse had switched (up to 2 Pr when it switched the whole film), the same measure as PUND's.
"""

from __future__ import annotations

from itertools import product
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from protocols import bench_ops
from protocols.base import (
    DeviceUnderTest,
    ProtocolResult,
    ProtocolSpec,
    Seconds,
    SecondsList,
    Volts,
    VoltsList,
    check_before_run,
)
from protocols.fecap_common import FeCapProtocolParams, full_scale_a
from protocols.seams import BenchView


class SwitchingKineticsParams(FeCapProtocolParams):
    """Write pulses over ``widths_s`` x ``amplitudes_v``; preset/read pulses at ``read_v``."""

    kinds: ClassVar[tuple[str, ...]] = ("fecap",)

    widths_s: SecondsList = Field(default_factory=lambda: [1e-7, 1e-6, 1e-5], min_length=1)
    amplitudes_v: VoltsList = Field(default_factory=lambda: [1.5, 2.5, 3.5], min_length=1)
    read_v: Volts = Field(3.0, gt=0)
    edge_s: Seconds = Field(2e-8, gt=0)
    read_rise_s: Seconds = Field(1e-6, gt=0)
    read_width_s: Seconds = Field(1e-6, gt=0)
    delay_s: Seconds = Field(2e-6, gt=0)

    def grid(self) -> list[tuple[float, float]]:
        return list(product(self.widths_s, self.amplitudes_v))

    def waveform(
        self, width_s: float, amplitude_v: float
    ) -> tuple[np.ndarray, np.ndarray, float, tuple[tuple[float, float], tuple[float, float]]]:
        """``(time_s, voltage_v, rate_hz, (n_window, d_window))`` for one grid point."""
        rate = min(max(20.0 / min(width_s, self.edge_s * 2), 20.0 / self.read_rise_s), 2.5e8)
        read_len = 2 * self.read_rise_s + self.read_width_s
        corners = [(0.0, 0.0)]
        t = self.delay_s

        def pulse(a: float, rise: float, top: float) -> float:
            nonlocal t
            corners.extend(
                [(t, 0.0), (t + rise, a), (t + rise + top, a), (t + 2 * rise + top, 0.0)]
            )
            start, t = t, t + 2 * rise + top + self.delay_s
            return start

        pulse(-self.read_v, self.read_rise_s, self.read_width_s)
        pulse(amplitude_v, self.edge_s, width_s)
        n0 = pulse(-self.read_v, self.read_rise_s, self.read_width_s)
        d0 = pulse(-self.read_v, self.read_rise_s, self.read_width_s)
        corners.append((t, 0.0))
        time_s, voltage_v = bench_ops.piecewise_waveform(corners, rate)
        half = 0.5 * self.delay_s
        return time_s, voltage_v, rate, ((n0, n0 + read_len + half), (d0, d0 + read_len + half))

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_common(guard)
        for w, a in self.grid():
            _, samples, rate, _ = self.waveform(w, a)
            guard.check_waveform("awg", f"switching pulse {a:g} V, {w:g} s", samples, rate)

    def estimate_s(self) -> float:
        return 0.2 + 0.3 * len(self.grid())


def run(
    bench: BenchView, device: DeviceUnderTest, params: SwitchingKineticsParams
) -> ProtocolResult:
    """Measure each grid point; one row with 1-D arrays over the points."""
    check_before_run(bench, params)
    bench_ops.check_not_shorted(bench, params.short_check_v, params.short_limit_a)
    fs = full_scale_a(params, device, params.read_v, params.read_rise_s)
    widths, amps, p_sw = [], [], []
    for w, a in params.grid():
        _, samples, rate, (n_win, d_win) = params.waveform(w, a)
        # Scaled for the read pulses; the fast write edge may clip, it is not integrated.
        time_s, _, current_a = bench_ops.capture_response(
            bench, samples, rate, current_full_scale_a=fs, name="SWKIN"
        )
        q_n = bench_ops.integrate_window(time_s, current_a, *n_win)
        q_d = bench_ops.integrate_window(time_s, current_a, *d_win)
        widths.append(w)
        amps.append(a)
        p_sw.append(abs(q_n - q_d) / device.area_m2)
    return ProtocolResult(
        {
            "width_s": (np.array(widths), "s"),
            "amplitude_v": (np.array(amps), "V"),
            "switched_polarization_c_m2": (np.array(p_sw), "C/m^2"),
        },
        {"n_points": float(len(p_sw))},
    )


SPEC = ProtocolSpec("switching_kinetics", SwitchingKineticsParams, run, __doc__ or "")
