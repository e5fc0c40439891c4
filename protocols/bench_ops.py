"""Instrument sequences the protocols share: capture a waveform's response, read a
conductance, run a DC sweep, apply one pulse. Each leaves the outputs it used off.

Only role methods (``instruments.roles``) are called, so any model a station names works. The
drivers check the envelope again on every command; these helpers never bypass them.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from instruments.roles import WaveformGenerator
from protocols.base import DeviceFailure
from protocols.seams import BenchView

log = logging.getLogger(__name__)

DEFAULT_CAPTURE_POINTS = 1000
"""Points per channel a capture asks for unless told otherwise (the scope's reset default)."""
SCOPE_DIVISIONS = 10
SCREEN_DIVS_V = 8
SCOPE_MIN_V_PER_DIV = 1e-3
SCOPE_MAX_V_PER_DIV = 5.0
DEFAULT_TIA_GAIN_V_PER_A = 1.0e4
TRIGGER_TIMEOUT_S = 30.0
DEFAULT_FELIF_TRANSCONDUCTANCE_A_PER_V = 1.0e-8


def wiring_value(bench: BenchView, name: str, default: float) -> float:
    """A number of the station's ``wiring`` section (e.g. ``tia_gain_v_per_a``)."""
    wiring = getattr(bench, "wiring", None) or {}
    value = wiring.get(name) if isinstance(wiring, dict) else getattr(wiring, name, None)
    return float(default if value is None else value)


def tia_gain_v_per_a(bench: BenchView) -> float:
    """Volts at scope channel 2 per ampere through the device."""
    return wiring_value(bench, "tia_gain_v_per_a", DEFAULT_TIA_GAIN_V_PER_A)


def felif_transconductance_a_per_v(bench: BenchView) -> float:
    """Input current into a FeLIF site per AWG volt."""
    return wiring_value(
        bench, "felif_input_transconductance_a_per_v", DEFAULT_FELIF_TRANSCONDUCTANCE_A_PER_V
    )


def piecewise_waveform(
    points: list[tuple[float, float]], sample_rate_hz: float
) -> tuple[np.ndarray, np.ndarray]:
    """Samples of a piecewise-linear waveform through ``(time_s, voltage_v)`` corners.

    Returns ``(time_s, voltage_v)`` on a uniform grid from 0 to the last corner.
    """
    t_c = np.array([p[0] for p in points], dtype=np.float64)
    v_c = np.array([p[1] for p in points], dtype=np.float64)
    n = round(t_c[-1] * sample_rate_hz) + 1
    time_s = np.arange(n, dtype=np.float64) / sample_rate_hz
    return time_s, np.interp(time_s, t_c, v_c)


def outputs_off(bench: BenchView) -> None:
    """AWG and SMU outputs off (without the full safe state: the needles stay down)."""
    if bench.awg.output_enabled:
        bench.awg.output_enabled = False
    if bench.smu.output_enabled:
        bench.smu.shutdown()


def _accepts(fn: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _volts_per_div(wanted: float) -> float:
    """The scope's vertical scale: ``wanted`` within the instrument's 1 mV..5 V per division."""
    return float(min(max(wanted, SCOPE_MIN_V_PER_DIV), SCOPE_MAX_V_PER_DIV))


def capture_response(
    bench: BenchView,
    samples_v: np.ndarray,
    sample_rate_hz: float,
    *,
    current_full_scale_a: float,
    name: str = "BRUNO",
    voltage_full_scale_v: float | None = None,
    timeout_s: float = 10.0,
    points: int = DEFAULT_CAPTURE_POINTS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Play ``samples_v`` once on the AWG and capture device voltage and current on the scope.

    The scope is triggered by the AWG (external trigger), reference left, so its time axis is
    the waveform's; it shows the whole waveform over its 10 divisions. ``points`` asks the
    scope for that many points per channel, always (a scope keeps the last setting: without it a
    protocol's record would depend on which protocol ran before). Returns
    ``(time_s, voltage_v, current_a)``; channel 2 is divided by the TIA gain.
    """
    awg, scope = bench.awg, bench.scope
    outputs_off(bench)
    duration_s = len(samples_v) / sample_rate_hz
    v_fs = voltage_full_scale_v or float(np.max(np.abs(samples_v))) * 1.1
    gain = tia_gain_v_per_a(bench)
    awg.upload_waveform(name, np.asarray(samples_v, dtype=np.float64), sample_rate_hz)
    awg.configure_burst(1)
    # The screen starts at the trigger (the waveform's t = 0) and spans the whole waveform.
    where = {"left_edge_s": 0.0} if _accepts(scope.configure, "left_edge_s") else {}
    scope.configure(
        duration_s / SCOPE_DIVISIONS,
        {
            1: (_volts_per_div(2.0 * v_fs / SCREEN_DIVS_V), 0.0),
            2: (_volts_per_div(2.0 * current_full_scale_a * gain / SCREEN_DIVS_V), 0.0),
        },
        **where,
    )
    awg.output_enabled = True
    try:
        scope.arm_single()
        scope.wait_complete()  # :SING and *TRG go to two instruments: armed before triggering
        trigger_and_wait(awg, timeout_s)
        scope.wait_acquired(timeout_s)
    finally:
        awg.output_enabled = False
    more = {"points": points} if _accepts(scope.read_waveform, "points") else {}
    time_s, voltage_v = scope.read_waveform(1, **more)
    _, current_v = scope.read_waveform(2, **more)
    return time_s, voltage_v, current_v / gain


def apply_pulse(bench: BenchView, amplitude_v: float, width_s: float, *, edge_s: float) -> None:
    """One trapezoidal pulse from the AWG (no capture): the RRAM SET/RESET stimulus."""
    samples_v, rate = pulse_samples(amplitude_v, width_s, edge_s)
    awg = bench.awg
    outputs_off(bench)
    awg.upload_waveform("PULSE", samples_v, rate)
    awg.configure_burst(1)
    awg.output_enabled = True
    try:
        trigger_and_wait(awg, TRIGGER_TIMEOUT_S)
    finally:
        awg.output_enabled = False


def trigger_and_wait(awg: WaveformGenerator, timeout_s: float) -> None:
    """Play the burst and wait up to ``timeout_s`` for the AWG to confirm it was played.

    A long burst (an endurance block, a FeLIF trial) keeps the instrument busy for its whole
    duration before ``*OPC?`` answers; the reply timeout is extended for that one wait.
    """
    extend = getattr(awg, "timeout_extended", None)
    if extend is None:
        awg.trigger()
        return
    with extend(timeout_s):
        awg.trigger()


def pulse_samples(amplitude_v: float, width_s: float, edge_s: float) -> tuple[np.ndarray, float]:
    """One trapezoid (0 V margins) resolved by >= 10 samples per edge and width."""
    rate = min(max(10.0 / min(edge_s, width_s), 1e3), 2.5e8)
    corners = [
        (0.0, 0.0),
        (edge_s, 0.0),
        (2 * edge_s, amplitude_v),
        (2 * edge_s + width_s, amplitude_v),
        (3 * edge_s + width_s, 0.0),
        (4 * edge_s + width_s, 0.0),
    ]
    return piecewise_waveform(corners, rate)[1], rate


# Reads that came back at the current limit during the measurement in progress (a reading at
# the limit measures the limit, not the device); the orchestrator opens one list per measurement
# and, if the measurement fails, says so in its reason.
_COMPLIANCE_READS: contextvars.ContextVar[list[tuple[float, float]] | None] = (
    contextvars.ContextVar("compliance_reads", default=None)
)


@contextlib.contextmanager
def counting_compliance() -> Iterator[list[tuple[float, float]]]:
    """Collect ``(read voltage V, limit A)`` of every read at the current limit in the block."""
    hits: list[tuple[float, float]] = []
    token = _COMPLIANCE_READS.set(hits)
    try:
        yield hits
    finally:
        _COMPLIANCE_READS.reset(token)


def compliance_reason(hits: list[tuple[float, float]]) -> str:
    """The words appended to a failed measurement's reason (empty without hits)."""
    if not hits:
        return ""
    read_v, limit_a = hits[-1]
    return (
        f" [compliance: {len(hits)} read(s) at the {limit_a:.3g} A current limit (last at "
        f"{read_v:g} V): they measured the limit, not the device]"
    )


def read_conductance_siemens(
    bench: BenchView,
    read_v: float,
    current_limit_a: float,
    nplc: float = 1.0,
    *,
    configure: bool = True,
) -> float:
    """Conductance I/V at the read voltage through the SMU (AWG off), S."""
    smu = bench.smu
    if bench.awg.output_enabled:
        bench.awg.output_enabled = False
    if configure:
        smu.configure_voltage_source(abs(read_v) * 1.2, current_limit_a, nplc)
    smu.source_voltage_v = read_v
    smu.output_enabled = True
    current_a = smu.measure_current_a(raise_on_compliance=False)
    hits = _COMPLIANCE_READS.get()
    if hits is not None and abs(current_a) >= current_limit_a * (1.0 - 1e-6):
        hits.append((read_v, current_limit_a))
    return float(current_a / read_v)


def read_many_siemens(
    bench: BenchView, read_v: float, current_limit_a: float, n_reads: int, nplc: float = 1.0
) -> np.ndarray:
    """``n_reads`` repeated conductance reads (output left on between them, off after)."""
    values = np.empty(n_reads)
    try:
        for i in range(n_reads):
            values[i] = read_conductance_siemens(
                bench, read_v, current_limit_a, nplc, configure=(i == 0)
            )
    finally:
        bench.smu.shutdown()
    return values


def dc_sweep(
    bench: BenchView,
    voltages_v: np.ndarray,
    current_limit_a: float,
    delay_s: float,
    nplc: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A list sweep on the SMU (AWG off): ``(voltage_v, current_a)``; output off after."""
    smu = bench.smu
    if bench.awg.output_enabled:
        bench.awg.output_enabled = False
    smu.configure_voltage_source(float(np.max(np.abs(voltages_v))), current_limit_a, nplc)
    try:
        return smu.sweep_voltage_list(np.asarray(voltages_v), current_limit_a, delay_s)
    finally:
        smu.shutdown()


def check_not_shorted(bench: BenchView, check_v: float, max_current_a: float) -> None:
    """Raise ``DeviceFailure`` if the device conducts like a short at a small voltage."""
    g = read_conductance_siemens(bench, check_v, max_current_a)
    bench.smu.shutdown()
    if abs(g * check_v) >= 0.9 * max_current_a:
        raise DeviceFailure(
            f"short: {abs(g * check_v):.3g} A at {check_v:g} V reaches the "
            f"{max_current_a:.3g} A limit of the pre-check"
        )


def integrate_window(
    time_s: np.ndarray, current_a: np.ndarray, start_s: float, stop_s: float
) -> float:
    """Charge (C) of ``current_a`` between ``start_s`` and ``stop_s`` (trapezoid rule)."""
    inside = (time_s >= start_s) & (time_s <= stop_s)
    if inside.sum() < 2:
        raise DeviceFailure(f"capture holds no samples between {start_s:g} s and {stop_s:g} s")
    return float(np.trapezoid(current_a[inside], time_s[inside]))
