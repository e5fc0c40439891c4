"""One period of each 33500B waveform shape, as the channel plays it (samples in [-1, 1]).

Followed: 33500 Series Operating and Service Guide, "SCPI Programming Reference" (``FUNCtion``
shapes, ``FUNCtion:SQUare:DCYCle``, ``FUNCtion:RAMP:SYMMetry``, ``FUNCtion:PULSe:WIDTh``/
``PERiod``/``TRANsition``, ``FUNCtion:ARBitrary:SRATe``, ``PHASe``, ``BURSt:PHASe``). Built-in
shapes are sampled ``POINTS_PER_PERIOD`` times per period (the output is linear between
samples, as the bench plays them); an arb plays its own samples at its sample rate. Noise and
PRBS draw from a generator the caller passes (seeded: same lab seed, same noise).
"""

from __future__ import annotations

from typing import Any

import numpy as np

POINTS_PER_PERIOD = 1000


def period_samples(channel: Any, rng: np.random.Generator) -> tuple[np.ndarray, float] | None:
    """(samples in [-1, 1] over one period, seconds per sample), or None (no arb selected).

    DC is all ones scaled by nothing: the caller plays the offset alone for it.
    """
    shape = channel.function
    if shape == "ARB":
        samples = channel.waveforms.get(channel.arb_name) if channel.arb_name else None
        if samples is None:
            return None
        return _shifted(samples, channel), 1.0 / channel.srate_sa_s
    n = POINTS_PER_PERIOD
    frac = np.arange(n) / n
    if shape == "PULS":
        period_s = channel.pulse_period_s
        return _shifted(_pulse(frac, channel, period_s), channel), period_s / n
    dt_s = 1.0 / (channel.frequency_hz * n)
    if shape == "SIN":
        samples = np.sin(2.0 * np.pi * frac)
    elif shape == "SQU":
        samples = np.where(frac < channel.duty_cycle_pct / 100.0, 1.0, -1.0)
    elif shape in ("RAMP", "TRI"):
        symmetry = 0.5 if shape == "TRI" else channel.ramp_symmetry_pct / 100.0
        samples = _ramp(frac, symmetry)
    elif shape == "NOIS":
        samples = np.clip(rng.standard_normal(n) / 3.0, -1.0, 1.0)
    elif shape == "PRBS":
        samples = np.repeat(_pn7() * 2.0 - 1.0, max(1, n // 127))
        dt_s = 1.0 / (channel.frequency_hz * samples.size)
    else:  # DC
        samples = np.zeros(n)
    return _shifted(samples, channel), dt_s


def _ramp(frac: np.ndarray, symmetry: float) -> np.ndarray:
    """Rising for ``symmetry`` of the period, then falling; -1 at the start."""
    if symmetry <= 0.0:
        return 1.0 - 2.0 * frac
    if symmetry >= 1.0:
        return -1.0 + 2.0 * frac
    rising = frac < symmetry
    return np.where(
        rising, -1.0 + 2.0 * frac / symmetry, 1.0 - 2.0 * (frac - symmetry) / (1 - symmetry)
    )


def _pulse(frac: np.ndarray, channel: Any, period_s: float) -> np.ndarray:
    """High for the pulse width (50 % points), with linear edges of the transition time."""
    t = frac * period_s
    edge_s = min(channel.pulse_edge_s, channel.pulse_width_s)
    width_s = channel.pulse_width_s
    rise = np.clip(t / edge_s + 0.5, 0.0, 1.0) if edge_s > 0 else (t >= 0).astype(float)
    fall = np.clip((width_s - t) / edge_s + 0.5, 0.0, 1.0) if edge_s > 0 else (t < width_s)
    return 2.0 * np.minimum(rise, fall) - 1.0


def _pn7() -> np.ndarray:
    """The 127-bit PRBS7 sequence (x^7 + x^6 + 1), as 0/1."""
    state, bits = 0x7F, []
    for _ in range(127):
        bit = ((state >> 6) ^ (state >> 5)) & 1
        state = ((state << 1) | bit) & 0x7F
        bits.append(bit)
    return np.array(bits, dtype=np.float64)


def _shifted(samples: np.ndarray, channel: Any) -> np.ndarray:
    """Start the period at the channel's phase (the burst phase in burst mode), degrees."""
    phase_deg = channel.burst_phase_deg if channel.burst_on else channel.phase_deg
    shift = round((phase_deg % 360.0) / 360.0 * samples.size) % max(1, samples.size)
    if channel.polarity_inverted:
        samples = -samples
    return np.roll(samples, -shift) if shift else samples
