"""PUND on a FeCap: Positive-Up-Negative-Down pulses separate switching from non-switching charge.

After a negative preset, P switches the film up (switching + linear charge), U repeats it (linear
charge only), N and D do the same downwards. ``P - U`` and ``N - D`` integrated over each pulse
window are the switched charges (2 Pr x area each, ideally). The whole train is one AWG
waveform captured once by the scope (ch1 voltage, ch2 current through the TIA).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from protocols import bench_ops
from protocols.base import (
    DeviceFailure,
    DeviceUnderTest,
    ProtocolResult,
    ProtocolSpec,
    Seconds,
    Volts,
    check_before_run,
)
from protocols.fecap_common import FeCapProtocolParams, full_scale_a
from protocols.seams import BenchView


class PundParams(FeCapProtocolParams):
    """PUND pulse train: trapezoids of ``amplitude_v``, ``rise_s`` edges, ``width_s`` tops."""

    kinds: ClassVar[tuple[str, ...]] = ("fecap",)

    amplitude_v: Volts = Field(3.0, gt=0)
    rise_s: Seconds = Field(1e-6, gt=0)
    width_s: Seconds = Field(1e-6, gt=0)
    delay_s: Seconds = Field(2e-6, gt=0)
    samples_per_rise: int = Field(50, ge=5, le=10_000)
    min_switched_polarization_c_m2: float = Field(0.005, ge=0)

    def sample_rate_hz(self) -> float:
        return self.samples_per_rise / self.rise_s

    def pulse_length_s(self) -> float:
        return 2 * self.rise_s + self.width_s

    def waveform(self) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
        """``(time_s, voltage_v, windows)``: windows are (start, stop) of P, U, N, D."""
        corners: list[tuple[float, float]] = [(0.0, 0.0)]
        windows: list[tuple[float, float]] = []
        t = self.delay_s
        for k, sign in enumerate((-1.0, 1.0, 1.0, -1.0, -1.0)):  # preset, P, U, N, D
            a = sign * self.amplitude_v
            corners += [(t, 0.0), (t + self.rise_s, a), (t + self.rise_s + self.width_s, a)]
            end = t + self.pulse_length_s()
            corners.append((end, 0.0))
            if k > 0:
                windows.append((t, end + 0.5 * self.delay_s))
            t = end + self.delay_s
        corners.append((t, 0.0))
        time_s, voltage_v = bench_ops.piecewise_waveform(corners, self.sample_rate_hz())
        return time_s, voltage_v, windows

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_common(guard)
        _, samples, _ = self.waveform()
        guard.check_waveform("awg", "pund waveform", samples, self.sample_rate_hz())

    def estimate_s(self) -> float:
        return 0.4 + len(self.waveform()[0]) * 2e-7


def run(bench: BenchView, device: DeviceUnderTest, params: PundParams) -> ProtocolResult:
    """Pre-check for a short, play the PUND train, integrate each pulse's current."""
    check_before_run(bench, params)
    bench_ops.check_not_shorted(bench, params.short_check_v, params.short_limit_a)
    _, samples, windows = params.waveform()
    time_s, voltage_v, current_a = bench_ops.capture_response(
        bench,
        samples,
        params.sample_rate_hz(),
        current_full_scale_a=full_scale_a(params, device, params.amplitude_v, params.rise_s),
        name="PUND",
    )
    q = [bench_ops.integrate_window(time_s, current_a, a, b) for a, b in windows]
    q_pos, q_neg = q[0] - q[1], q[2] - q[3]
    p_sw = 0.5 * (abs(q_pos) + abs(q_neg)) / device.area_m2
    arrays = {"time_s": (time_s, "s"), "voltage_v": (voltage_v, "V"), "current_a": (current_a, "A")}
    if p_sw < params.min_switched_polarization_c_m2:
        raise DeviceFailure(
            f"no switching: switched polarization {p_sw:.3g} C/m^2 < "
            f"{params.min_switched_polarization_c_m2:g}",
            arrays,
        )
    return ProtocolResult(
        arrays,
        {
            "switched_charge_pos_c": q_pos,
            "switched_charge_neg_c": q_neg,
            "switched_polarization_c_m2": p_sw,
            "nonswitching_charge_c": 0.5 * (abs(q[1]) + abs(q[3])),
        },
    )


SPEC = ProtocolSpec("pund", PundParams, run, __doc__ or "")
