"""Dynamic hysteresis: P-V loops of a FeCap under a triangular voltage, at several frequencies.

Each frequency is one measurement row (``parameters.frequency_hz``). ``n_cycles`` periods are
played; the current is integrated to polarization (charge / area) and centred on the last
period's loop, from which Pr+/Pr-, Vc+/Vc- and the imprint are extracted by
``bruno_lab.devices.fecap_waveforms.pv_loop_features``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from protocols import bench_ops
from protocols.base import (
    DeviceUnderTest,
    HertzList,
    ProtocolParams,
    ProtocolResult,
    ProtocolSpec,
    Volts,
    check_before_run,
)
from protocols.fecap_common import FeCapProtocolParams, full_scale_a
from protocols.seams import BenchView


class PvLoopParams(FeCapProtocolParams):
    """Triangular loops of ``amplitude_v`` at each of ``frequencies_hz``."""

    kinds: ClassVar[tuple[str, ...]] = ("fecap",)

    amplitude_v: Volts = Field(3.0, gt=0)
    frequencies_hz: HertzList = Field(default_factory=lambda: [1e4, 1e5], min_length=1)
    frequency_hz: float | None = Field(None, gt=0, description="set per row by expand()")
    n_cycles: int = Field(2, ge=2, le=20)
    samples_per_period: int = Field(2000, ge=100, le=100_000)

    @model_validator(mode="after")
    def _positive(self) -> PvLoopParams:
        if any(not f > 0 for f in self.frequencies_hz):
            raise ValueError("frequencies_hz: every frequency must be > 0 Hz")
        return self

    def expand(self) -> list[ProtocolParams]:
        if self.frequency_hz is not None:
            return [self]
        return [self.model_copy(update={"frequency_hz": f}) for f in self.frequencies_hz]

    def _f(self) -> float:
        return self.frequency_hz if self.frequency_hz is not None else self.frequencies_hz[0]

    def waveform(self, frequency_hz: float) -> tuple[np.ndarray, np.ndarray, float]:
        """``(time_s, voltage_v, sample_rate_hz)``: 0 -> +A -> -A -> 0 triangles, n_cycles."""
        period = 1.0 / frequency_hz
        a = self.amplitude_v
        corners = [(0.0, 0.0)]
        for k in range(self.n_cycles):
            t0 = k * period
            corners += [(t0 + period / 4, a), (t0 + 3 * period / 4, -a), (t0 + period, 0.0)]
        rate = self.samples_per_period * frequency_hz
        time_s, voltage_v = bench_ops.piecewise_waveform(corners, rate)
        return time_s, voltage_v, rate

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_common(guard)
        for f in [self.frequency_hz] if self.frequency_hz else self.frequencies_hz:
            _, samples, rate = self.waveform(f)
            guard.check_waveform("awg", f"pv_loop waveform at {f:g} Hz", samples, rate)

    def estimate_s(self) -> float:
        rows = 1 if self.frequency_hz else len(self.frequencies_hz)
        return rows * (0.4 + self.n_cycles * self.samples_per_period * 2e-7)


def run(bench: BenchView, device: DeviceUnderTest, params: PvLoopParams) -> ProtocolResult:
    """One loop measurement at ``params.frequency_hz`` (the first frequency if unset)."""
    check_before_run(bench, params)
    import torch

    from bruno_lab.devices.fecap_waveforms import pv_loop_features

    f = params._f()
    bench_ops.check_not_shorted(bench, params.short_check_v, params.short_limit_a)
    _, samples, rate = params.waveform(f)
    rise_equiv_s = 0.25 / f  # 0 -> A in a quarter period
    time_s, voltage_v, current_a = bench_ops.capture_response(
        bench,
        samples,
        rate,
        current_full_scale_a=full_scale_a(params, device, params.amplitude_v, rise_equiv_s),
        name="PVLOOP",
    )
    charge_c = np.concatenate(
        ([0.0], np.cumsum(0.5 * (current_a[1:] + current_a[:-1]) * np.diff(time_s)))
    )
    polarization = charge_c / device.area_m2
    # The last full loop: from the +A peak of the next-to-last period to the last +A peak, so
    # that both V = 0 crossings (Pr+ coming down, Pr- going up) lie inside it.
    period = 1.0 / f
    last = (time_s >= (params.n_cycles - 2) * period + 0.25 * period) & (
        time_s <= (params.n_cycles - 1) * period + 0.25 * period
    )
    centre = 0.5 * (polarization[last].max() + polarization[last].min())
    polarization = polarization - centre
    features = pv_loop_features(
        torch.as_tensor(voltage_v[last]), torch.as_tensor(polarization[last])
    )
    scalars = {k: float(v) for k, v in dict(features).items()}
    return ProtocolResult(
        {
            "time_s": (time_s, "s"),
            "voltage_v": (voltage_v, "V"),
            "current_a": (current_a, "A"),
            "polarization_c_m2": (polarization, "C/m^2"),
        },
        scalars,
    )


SPEC = ProtocolSpec("pv_loop", PvLoopParams, run, __doc__ or "")
