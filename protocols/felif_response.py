"""FeLIF neuron response: trains of input current pulses in, output spike times out.

One trial per input amplitude: a train of rectangular current pulses (``pulse_width_s`` every
``pulse_period_s`` for ``trial_s``), delivered by the AWG through the station's
transconductance stage (``wiring.felif_input_transconductance_a_per_v``). The scope's channel 1
records the membrane voltage; a spike is a reset, seen as a fall of more than ``reset_drop_v``
within ``reset_window_s``, timed where the fall crosses half-way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from protocols import bench_ops
from protocols.base import (
    AmperesList,
    DeviceUnderTest,
    ProtocolParams,
    ProtocolResult,
    ProtocolSpec,
    Seconds,
    Volts,
    check_before_run,
)
from protocols.seams import BenchView


class FelifResponseParams(ProtocolParams):
    """Input pulse trains, one trial per amplitude in ``input_currents_a``."""

    kinds: ClassVar[tuple[str, ...]] = ("felif",)

    input_currents_a: AmperesList = Field(default_factory=lambda: [2e-9, 5e-9, 1e-8], min_length=1)
    pulse_width_s: Seconds = Field(1e-5, gt=0)
    pulse_period_s: Seconds = Field(2e-5, gt=0)
    trial_s: Seconds = Field(2e-2, gt=0, le=10.0)
    samples_per_pulse: int = Field(10, ge=2, le=1000)
    reset_drop_v: Volts = Field(2.0, gt=0)
    reset_window_s: Seconds = Field(2e-5, gt=0)
    membrane_full_scale_v: Volts = Field(5.0, gt=0)
    timeout_s: Seconds = Field(60.0, gt=0, description="wait for one trial's capture")
    scope_points: int = Field(20_000, ge=100, le=8_000_000)

    @model_validator(mode="after")
    def _duty(self) -> FelifResponseParams:
        if self.pulse_width_s >= self.pulse_period_s:
            raise ValueError("pulse_width_s must be shorter than pulse_period_s")
        return self

    def sample_rate_hz(self) -> float:
        return self.samples_per_pulse / self.pulse_width_s

    def waveform(self, current_a: float, transconductance_a_per_v: float) -> np.ndarray:
        """AWG samples (V) of one trial's pulse train; starts and ends at 0 V."""
        rate = self.sample_rate_hz()
        n = round(self.trial_s * rate)
        t = np.arange(n) / rate
        on = (t % self.pulse_period_s) < self.pulse_width_s
        # 0 V at both ends: an AWG idles at the first point between bursts
        on[0] = on[-1] = False
        return np.where(on, current_a / transconductance_a_per_v, 0.0)

    def check_envelope(self, guard: Any, wiring: Mapping[str, Any] | None = None) -> None:
        g = float(
            (wiring or {}).get("felif_input_transconductance_a_per_v")
            or bench_ops.DEFAULT_FELIF_TRANSCONDUCTANCE_A_PER_V
        )
        biggest = max(self.input_currents_a, key=abs)
        guard.check_waveform(
            "awg", "felif input train", self.waveform(biggest, g), self.sample_rate_hz()
        )

    def estimate_s(self) -> float:
        return len(self.input_currents_a) * (0.5 + self.trial_s)


def detect_spikes(
    time_s: np.ndarray, voltage_v: np.ndarray, drop_v: float, window_s: float
) -> np.ndarray:
    """Times of resets (s): each fall of more than ``drop_v`` within ``window_s``, timed where
    it crosses half-way from the peak before it to the bottom after it (the scope's front end
    may spread the fall over several samples)."""
    if len(time_s) < 2:
        return np.empty(0)
    span = max(1, round(window_s / float(np.median(np.diff(time_s)))))
    if len(voltage_v) <= span:
        return np.empty(0)
    fall = voltage_v[:-span] - voltage_v[span:]
    candidates = np.flatnonzero(fall > drop_v)
    peaks: list[int] = []
    times: list[float] = []
    for i in candidates.tolist():
        if peaks and i - peaks[-1] <= 2 * span:
            continue
        j = i + int(np.argmax(voltage_v[i : i + span + 1]))  # peak just before the fall
        k = j + int(np.argmin(voltage_v[j : j + 2 * span + 1]))  # bottom just after it
        peaks.append(j)
        # the spike time is where the fall crosses half-way (robust to a smoothed edge)
        half = 0.5 * (voltage_v[j] + voltage_v[k])
        m = j + int(np.argmax(voltage_v[j : k + 1] <= half))
        v0, v1 = voltage_v[m - 1], voltage_v[m]
        frac = (v0 - half) / (v0 - v1) if m > j and v0 != v1 else 0.0
        times.append(
            float(time_s[m - 1] + frac * (time_s[m] - time_s[m - 1])) if m > j else float(time_s[m])
        )
    return np.array(times)


def run(bench: BenchView, device: DeviceUnderTest, params: FelifResponseParams) -> ProtocolResult:
    """Run every trial; spike times are relative to each trial's start."""
    check_before_run(bench, params)
    g = bench_ops.felif_transconductance_a_per_v(bench)
    spike_times, spike_trial, rates = [], [], []
    time_s = voltage_v = np.empty(0)
    for trial, current in enumerate(params.input_currents_a):
        samples = params.waveform(current, g)
        time_s, voltage_v, _ = bench_ops.capture_response(
            bench,
            samples,
            params.sample_rate_hz(),
            current_full_scale_a=max(abs(current), 1e-9) * 4,
            voltage_full_scale_v=params.membrane_full_scale_v,
            name="FELIF",
            timeout_s=params.timeout_s,
            points=params.scope_points,
        )
        spikes = detect_spikes(time_s, voltage_v, params.reset_drop_v, params.reset_window_s)
        spike_times.append(spikes - time_s[0])
        spike_trial.append(np.full(len(spikes), trial, dtype=np.int64))
        rates.append(len(spikes) / params.trial_s)
    all_spikes = np.concatenate(spike_times)
    last = spike_times[-1]
    return ProtocolResult(
        {
            "input_current_a": (np.array(params.input_currents_a), "A"),
            "spike_times_s": (all_spikes, "s"),
            "spike_trial": (np.concatenate(spike_trial), ""),
            "trial_firing_rate_hz": (np.array(rates), "Hz"),
            "time_s": (time_s, "s"),
            "voltage_v": (voltage_v, "V"),
        },
        {
            "firing_rate_hz": float(np.mean(rates)),
            "first_spike_s": float(last[0]) if len(last) else float("nan"),
            "n_spikes": float(len(all_spikes)),
        },
    )


SPEC = ProtocolSpec("felif_response", FelifResponseParams, run, __doc__ or "")
