"""What the FeCap protocols share: parameters of the short pre-check and the current range."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from protocols.base import Amperes, DeviceUnderTest, ProtocolParams, Volts

# Ranging heuristic (not a device model): the largest remanent-switching charge density and
# the linear capacitance per area a HZO FeCap of this lab shows, used only to pick the scope's
# current scale so the switching peak stays on screen.
RANGING_MAX_SWITCH_C_M2 = 0.7
RANGING_CAPACITANCE_F_M2 = 0.03


class FeCapProtocolParams(ProtocolParams):
    """Fields every FeCap protocol has: a short pre-check and the scope's current range."""

    short_check_v: Volts = Field(0.1, gt=0, le=1.0)
    short_limit_a: Amperes = Field(1e-6, gt=0)
    current_full_scale_a: Amperes | None = Field(None, gt=0)

    def check_common(self, guard: Any) -> None:
        guard.check_voltage("smu", "short_check_v", self.short_check_v)
        guard.check_current("smu", "short_limit_a", self.short_limit_a)


def full_scale_a(
    params: FeCapProtocolParams, device: DeviceUnderTest, amplitude_v: float, rise_s: float
) -> float:
    """Scope current full scale (A): the plan's, else 1.5x the largest expected peak."""
    if params.current_full_scale_a is not None:
        return params.current_full_scale_a
    area = device.area_m2
    peak = area * (RANGING_MAX_SWITCH_C_M2 + RANGING_CAPACITANCE_F_M2 * amplitude_v) / rise_s
    return 1.5 * peak
