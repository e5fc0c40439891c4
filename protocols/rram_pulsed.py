"""Pulsed SET/RESET of an RRAM cell: conductance after each AWG pulse.

Per repeat: one SET pulse per amplitude of ``set_amplitudes_v`` (rising), each followed by a
read, then one RESET pulse per amplitude of ``reset_amplitudes_v`` (negative pulses of those
magnitudes), each followed by a read. Widths are ``pulse_width_s``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from protocols.base import (
    DeviceUnderTest,
    ProtocolResult,
    ProtocolSpec,
    VoltsList,
    check_before_run,
)
from protocols.rram_common import RramProtocolParams
from protocols.seams import BenchView


class RramPulsedParams(RramProtocolParams):
    """Pulse amplitudes (magnitudes, V) and repeats."""

    set_amplitudes_v: VoltsList = Field(default_factory=lambda: [1.2, 1.4, 1.6, 1.8], min_length=1)
    reset_amplitudes_v: VoltsList = Field(
        default_factory=lambda: [0.8, 1.0, 1.2, 1.4, 1.6], min_length=1
    )
    n_repeats: int = Field(2, ge=1, le=1000)

    def sequence(self) -> list[tuple[float, int]]:
        """(signed amplitude, polarity) of every pulse in order."""
        one = [(abs(a), 1) for a in self.set_amplitudes_v]
        one += [(-abs(a), -1) for a in self.reset_amplitudes_v]
        return one * self.n_repeats

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        self.check_read(guard)
        self.check_pulse(guard, max(self.set_amplitudes_v, key=abs), "largest SET pulse")
        self.check_pulse(guard, -max(self.reset_amplitudes_v, key=abs), "largest RESET pulse")

    def estimate_s(self) -> float:
        return 0.2 + 0.15 * len(self.sequence())


def run(bench: BenchView, device: DeviceUnderTest, params: RramPulsedParams) -> ProtocolResult:
    check_before_run(bench, params)
    amps, pols, gs = [], [], []
    for amplitude_v, polarity in params.sequence():
        params.pulse(bench, amplitude_v)
        gs.append(params.read(bench))
        amps.append(abs(amplitude_v))
        pols.append(polarity)
    return ProtocolResult(
        {
            "amplitude_v": (np.array(amps), "V"),
            "width_s": (np.full(len(amps), params.pulse_width_s), "s"),
            "conductance_siemens": (np.array(gs), "S"),
            "polarity": (np.array(pols, dtype=np.int64), ""),
        },
        {"n_pulses": float(len(amps))},
    )


SPEC = ProtocolSpec("rram_pulsed", RramPulsedParams, run, __doc__ or "")
