"""The one virtual bench: which device is under the needles, what drives it, what is measured.

The prober selects a device of the virtual wafer; it is connected only while the chuck is in
contact. The AWG drives it when its output is on (a burst played on ``*TRG``); the SMU drives it
when its output is on (one reading integrates NPLC/50 s). The scope, when armed, captures the
burst: channel 1 the voltage at the device, channel 2 the TIA's output (current x gain). The
physics comes from ``bruno_lab.devices`` through :mod:`instruments.sim.physics`; the bench adds
the instruments' noise, the short and compliance faults, and advances virtual time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from instruments.sim import physics
from instruments.sim.clock import VirtualClock
from instruments.sim.faults import FaultInjector, FaultKind
from instruments.sim.wafer import SimDevice, Wafer

log = logging.getLogger(__name__)

LINE_FREQUENCY_HZ = 50.0
SMU_NOISE_FLOOR_A = 2e-12
SMU_NOISE_REL = 2e-5
SIM_POINTS = 2000
MAX_SIM_POINTS = 200_000


@dataclass(frozen=True)
class Wiring:
    """How the instruments meet the device (the station file's ``wiring`` section)."""

    tia_gain_v_per_a: float = 1.0e4
    felif_input_transconductance_a_per_v: float = 1.0e-8

    def station_section(self) -> dict[str, Any]:
        return {
            "tia_gain_v_per_a": self.tia_gain_v_per_a,
            "awg_to_device": "direct",
            "smu_to_device": "direct",
            "felif_input_transconductance_a_per_v": self.felif_input_transconductance_a_per_v,
            # the switch matrix's buses and gate supply (instruments.sim.switch_matrix)
            "switch_matrix_buses": {"smu": "A", "awg": "B", "ground": "C", "gate": "D"},
            "switch_matrix_gate_bias_v": _matrix_gate_bias_v(),
        }


def _matrix_gate_bias_v() -> float:
    from instruments.sim.switch_matrix import DEFAULT_GATE_BIAS_V

    return DEFAULT_GATE_BIAS_V


@dataclass
class BurstRecord:
    """The truth of one burst: what the device saw and did (for tests, never sent to drivers).

    ``time_s`` is relative to the trigger; ``polarization_c_m2`` is the device's mean
    polarization over domains (fecap and felif) or None; ``charge_c`` the charge delivered to
    the device since the first instant (the physics' own where it gives one).
    """

    device: tuple[int, int, int] | None
    kind: str | None
    virtual_start_s: float
    time_s: np.ndarray
    voltage_v: np.ndarray
    current_a: np.ndarray
    polarization_c_m2: np.ndarray | None = None
    charge_c: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class VirtualBench:
    """Shared state of the simulated instruments; every method runs under the bench lock."""

    def __init__(
        self,
        wafer: Wafer,
        clock: VirtualClock,
        faults: FaultInjector,
        wiring: Wiring | None = None,
    ) -> None:
        self.wafer = wafer
        self.clock = clock
        self.faults = faults
        self.wiring = wiring or Wiring()
        self.rng = np.random.default_rng([wafer.seed, 0xBE5C])
        self.physics_seed = wafer.seed
        self.smu: Any = None
        self.awg: Any = None
        self.scope: Any = None
        self.prober: Any = None
        self.switch_matrix: Any = None
        self.bursts: list[BurstRecord] = []

    # ----- connection ---------------------------------------------------------------------------

    def device_under_needles(self, source: str | None = None) -> SimDevice | None:
        """The device the needles touch, or None when separated or no die is selected. On an
        array site, ``source`` (``smu``/``awg``) reaches the cell the switch matrix routes it
        to (``instruments.sim.switch_matrix``), if any."""
        state = self.prober.state
        if not state.contact or state.die_index is None or state.site is None:
            return None  # needles up, off the map, or down between pads
        col, row = self.wafer.dies[state.die_index]
        if self.wafer.truth.sites[state.site].kind == "rram_array":
            matrix = getattr(self, "switch_matrix", None)
            if matrix is None or source is None:
                return None
            crossbar = self.wafer.array(col, row, state.site)
            return matrix.device_for(crossbar, source, (col, row, state.site))
        return self.wafer.device(col, row, state.site)

    def smu_changed(self) -> None:
        """Hook: the SMU's source changed (the physics only runs when time passes)."""

    def awg_changed(self) -> None:
        """Hook: the AWG's output changed."""

    def prober_changed(self) -> None:
        """Hook: the chuck moved."""

    def _touch(self, device: SimDevice) -> None:
        """Relax the device over the virtual time since it was last driven."""
        now_s = self.clock.now_s()
        physics.relax(device, now_s - device.last_touched_s, self._torch_seed(device))
        device.last_touched_s = now_s

    def _torch_seed(self, device: SimDevice) -> int:
        t = device.truth
        device.extra["draws"] = device.extra.get("draws", 0) + 1
        return hash((self.physics_seed, t.col, t.row, t.site, device.extra["draws"])) & 0x7FFFFFFF

    def _maybe_short(self, role: str, device: SimDevice) -> None:
        if not device.is_short and self.faults.device_fault(role, FaultKind.SHORT):
            log.info("device %s shorted (injected fault)", device.truth)
            device.shorted = True

    # ----- SMU ----------------------------------------------------------------------------------

    def smu_reading(
        self, voltage_v: float, limit_a: float, nplc: float, settle_s: float = 0.0
    ) -> tuple[float, bool]:
        """(current in A, compliance tripped) of one reading at ``voltage_v`` held ``settle_s``
        then integrated over NPLC line cycles; advances virtual time by both."""
        self.clock.advance_s(settle_s)
        duration_s = nplc / LINE_FREQUENCY_HZ
        device = self.device_under_needles("smu")
        if self.faults.device_fault("smu", FaultKind.COMPLIANCE):
            self.clock.advance_s(duration_s)
            return (limit_a if voltage_v >= 0 else -limit_a), True
        if device is None or device.truth.defect == "open":
            current_a = 0.0
        else:
            self._maybe_short("smu", device)
            self._touch(device)
            if device.is_short:
                current_a = voltage_v / self.wafer.truth.short_resistance_ohm
            else:
                current_a = physics.dc_current_a(
                    device, voltage_v, settle_s, duration_s, limit_a, self._torch_seed(device)
                )
            device.last_touched_s = self.clock.now_s() + duration_s
        self.clock.advance_s(duration_s)
        tripped = abs(current_a) >= limit_a * (1.0 - 1e-6)
        current_a = float(np.clip(current_a, -limit_a, limit_a))
        noise_a = SMU_NOISE_FLOOR_A + SMU_NOISE_REL * abs(current_a)
        return current_a + noise_a * float(self.rng.standard_normal()), tripped

    # ----- AWG and scope ------------------------------------------------------------------------

    def awg_burst(self, waveform_v: np.ndarray, dt_s: float, n_cycles: int, idle_v: float) -> None:
        """Play ``n_cycles`` of the waveform (volts at the device, samples ``dt_s`` apart)."""
        awg_on = bool(self.awg.state.output_on)
        samples_v = np.tile(waveform_v, n_cycles) if awg_on else np.zeros(waveform_v.size)
        duration_s = samples_v.size * dt_s if awg_on else waveform_v.size * n_cycles * dt_s
        sync_on = self.awg.sync_to_scope() if hasattr(self.awg, "sync_to_scope") else True
        wants_scope = self.scope is not None and self.scope.wants_trigger(sync_on)
        grid_s = self.scope.state.record_grid_s() if wants_scope else None
        t_end_s = duration_s if grid_s is None else max(duration_s, float(grid_s[-1]))
        t_start_s = 0.0 if grid_s is None else min(0.0, float(grid_s[0]))
        time_s, voltage_v = _sim_grid(samples_v, dt_s, idle_v, t_start_s, t_end_s, grid_s)
        device = self.device_under_needles("awg")
        record = BurstRecord(
            device=None,
            kind=None,
            virtual_start_s=self.clock.now_s(),
            time_s=time_s,
            voltage_v=voltage_v,
            current_a=np.zeros_like(time_s),
        )
        if device is not None and awg_on and device.truth.defect != "open":
            self._maybe_short("awg", device)
            self._touch(device)
            record.device = (device.truth.col, device.truth.row, device.truth.site)
            record.kind = device.truth.kind
            if device.is_short:
                record.current_a = voltage_v / self.wafer.truth.short_resistance_ohm
            else:
                physics.transient(
                    device, record, self.wiring, self._torch_seed(device), self.clock.now_s()
                )
        self.clock.advance_s(max(duration_s, t_end_s - t_start_s))
        if device is not None:
            device.last_touched_s = self.clock.now_s()
        self.bursts.append(record)
        del self.bursts[:-8]
        if record.charge_c is None:
            record.charge_c = _cumulative_charge_c(record.time_s, record.current_a)
        if grid_s is not None:
            signals = {
                1: np.interp(grid_s, record.time_s, record.voltage_v),
                2: _sampled_current_a(grid_s, record.time_s, record.charge_c)
                * self.wiring.tia_gain_v_per_a,
            }
            if record.kind == "felif" and "membrane_v" in record.extra:
                signals[1] = np.interp(grid_s, record.time_s, record.extra["membrane_v"])
            self.scope.acquire(signals, self.rng)

    def idle_signals_v(self, grid_s: np.ndarray) -> dict[int, np.ndarray]:
        """What the scope sees with no burst playing (an auto or forced trigger): channel 1 the
        level at the device (the AWG's idle level if its output is on, else the SMU's output
        if the needles are down), channel 2 no transient current (a DC current is the SMU's
        to measure)."""
        level_v = 0.0
        awg = self.awg.state.channels[1] if self.awg is not None else None
        if awg is not None and awg.output_on:
            level_v = awg.idle_v()
        elif self.smu is not None and self.smu.state.output_on and self.device_under_needles():
            level_v = self.smu.output_v(self.smu.state.source_v)
        return {1: np.full(grid_s.size, level_v), 2: np.zeros(grid_s.size)}


def _cumulative_charge_c(time_s: np.ndarray, current_a: np.ndarray) -> np.ndarray:
    """Charge delivered since the first instant (trapezoid), C."""
    steps = 0.5 * (current_a[1:] + current_a[:-1]) * np.diff(time_s)
    return np.concatenate([[0.0], np.cumsum(steps)])


def _sampled_current_a(grid_s: np.ndarray, time_s: np.ndarray, charge_c: np.ndarray) -> np.ndarray:
    """The current each scope sample sees: the mean over its sample interval (the charge moved
    in it over its length), so the scope's record conserves the device's charge."""
    dt_s = float(grid_s[1] - grid_s[0]) if grid_s.size > 1 else 1.0
    edges_s = np.concatenate([grid_s - dt_s / 2.0, [grid_s[-1] + dt_s / 2.0]])
    return np.diff(np.interp(edges_s, time_s, charge_c)) / dt_s


def _sim_grid(
    samples_v: np.ndarray,
    dt_s: float,
    idle_v: float,
    t_start_s: float,
    t_end_s: float,
    scope_grid_s: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Time grid and device voltage for the physics (linear between grid points).

    The AWG's output passes through its sample points (sample k at ``k*dt_s``) linearly, as
    its interpolating output filter does; before and after the burst it sits at ``idle_v``.
    The grid holds every sample where the slope changes plus a uniform grid of ``SIM_POINTS``
    over the span (finer where the AWG's or the scope's sampling is coarser). The scope then
    samples the charge the physics moved, so the record conserves it.
    """
    span_s = t_end_s - t_start_s
    step_s = max(span_s / SIM_POINTS, min(dt_s / 4.0, span_s / 64.0))
    if scope_grid_s is not None and scope_grid_s.size > 1:
        step_s = max(step_s, float(scope_grid_s[1] - scope_grid_s[0]))
    time_s = np.arange(t_start_s, t_end_s + step_s / 2, step_s)
    n = samples_v.size
    corner_t = np.concatenate(
        [[min(t_start_s, -dt_s) - dt_s, -dt_s], np.arange(n) * dt_s, [n * dt_s]]
    )
    corner_t = np.concatenate([corner_t, [max(t_end_s, n * dt_s) + dt_s]])
    corner_v = np.concatenate([[idle_v, idle_v], samples_v, [idle_v, idle_v]])
    # Keep the corners where the slope changes (a straight stretch needs no extra points).
    slope = np.diff(corner_v) / np.diff(corner_t)
    bends = np.concatenate(
        [[True], np.abs(np.diff(slope)) > 1e-9 * (1.0 + np.abs(slope[1:])), [True]]
    )
    inside = bends & (corner_t > t_start_s) & (corner_t < t_end_s)
    if np.count_nonzero(inside) <= MAX_SIM_POINTS:
        time_s = np.union1d(time_s, corner_t[inside])
    voltage_v = np.interp(time_s, corner_t, corner_v)
    return time_s, voltage_v
