"""The simulated 1T1R crossbars of the virtual wafer: every cell as flat tensors, row-parallel.

One :class:`Crossbar` per (die, ``rram_array`` site), drawn from the truth file on first use
(``Wafer.array``): per-cell RRAM parameters from ``populations.rram`` and access transistors
from the array's ``transistor`` distributions, each times the spatially correlated factors of
the array spec (a random die offset, a wafer trend, row and column trends); stuck cells at the
array's rates. The physics is ``bruno_lab.devices.one_t_one_r`` (pulses, transistor
compliance) and ``bruno_lab.devices.crossbar`` (the DC operating point with line resistance,
for every read and the matrix-vector product); nothing here restates an equation.

Conventions (docs/array-tester.md): rows are word lines (gates) and source lines, columns are bit
lines; cell index ``k = row*cols + col``. A SET pulse raises the bit lines of the selected row
(its source line at 0 V, its word line at the SET gate voltage: the compliance); a RESET raises
the row's source line with the bit lines of the cells to reset at 0 V and every other bit line
at the source-line voltage (inhibited). Unselected rows have their word line off: their cells
see no current, so they are not simulated during pulses. Line IR drop enters every read and
MVM (the DC solve); during a µs pulse the transistor's compliance sets the current and the line
drop is neglected (documented simplification).

The write-verify and forming loops are the tester's firmware, simulated: row-parallel, each
iteration one pulse on the cells still in need and one verify read of the row, both on the
virtual clock. Relaxation: each cell keeps the virtual time of its last programming pulse and
the deviate drawn then, and drifts by ``(mu + sigma*eps)*log10(1 + t/t0)`` since then
(``bruno_lab.devices.rram.rram_relax_by``), whenever it is next looked at.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from bruno_lab.devices import crossbar as xb
from bruno_lab.devices.one_t_one_r import (
    TransistorParams,
    on_resistance_ohm,
    one_t_one_r_pulse,
    saturation_current_a,
    series_cell_voltage_v,
)
from bruno_lab.devices.rram import (
    RramParams,
    RramState,
    cell_current_a,
    rram_initial_state,
    rram_relax_by,
)
from bruno_lab.errors import PlanError
from instruments.sim.device_truth import DeviceTruth, SimDevice

DTYPE = torch.float64
STALL_LIMIT = 4
"""A cell pulsed this many times at the top of its ramp without reaching its window gives up
(out of window: the row goes on without it)."""
RELAX_MIN_DECADES = 1e-3
"""Relaxation increments smaller than this (~1e-5 nm of gap, far below read noise) wait."""
ReadMode = Literal["cell", "row"]
"""``cell``: the cells of a row are converted one after the other, each alone on its lines (no
shared-line IR drop, ``cols`` conversions); ``row``: all bit lines at once (one conversion;
the row's source line carries every cell's current, so far cells read low)."""


@dataclass(frozen=True)
class Timing:
    """The tester's timing (virtual seconds): what a pulse and a conversion cost on the bench."""

    pulse_overhead_s: float = 5e-6  # line drivers settling before and after a pulse
    read_settle_s: float = 20e-6  # read bias settling before a conversion
    aperture_s: float = 100e-6  # one ADC conversion (all bit lines in parallel)
    mvm_vector_s: float = 20e-6  # settle + integrate one input vector of a matrix-vector product


@dataclass(frozen=True)
class VerifySettings:
    """Row write-verify: IGVVA ramps the shared gate (word line) at a fixed bit-line amplitude,
    ISPVA ramps each cell's bit-line amplitude at a fixed gate; both RESET a cell that
    overshot its window with a per-cell RESET amplitude ramp."""

    scheme: Literal["igvva", "ispva"] = "igvva"
    tolerance_siemens: float = 4e-6
    read_v: float = 0.2
    read_gate_v: float = 3.3
    read_mode: ReadMode = "cell"
    width_s: float = 1e-6
    set_bl_v: float = 1.8  # IGVVA: bit-line SET amplitude
    gate_start_v: float = 0.9
    gate_stop_v: float = 2.8
    gate_step_v: float = 0.01
    set_gate_v: float = 2.2  # ISPVA: fixed gate
    bl_start_v: float = 0.8
    bl_stop_v: float = 2.0
    bl_step_v: float = 0.02
    reset_start_v: float = 0.7
    reset_stop_v: float = 1.6
    reset_step_v: float = 0.02
    reset_gate_v: float = 3.3
    max_attempts: int = 200


@dataclass(frozen=True)
class FormSettings:
    """Row forming: bit-line pulses of increasing amplitude on the still pristine cells at a
    forming gate voltage (compliance) until a verify read exceeds ``threshold_siemens``."""

    start_v: float = 2.0
    stop_v: float = 4.0
    step_v: float = 0.05
    width_s: float = 1e-4
    gate_v: float = 0.9
    threshold_siemens: float = 2e-6
    read_v: float = 0.2
    read_gate_v: float = 3.3


@dataclass
class VerifyResult:
    """Per cell of a row: attempts (pulses), the verify read that passed (the last read for a
    cell that did not pass), S, success, the final gate and bit-line amplitude, and the virtual
    time the row took."""

    attempts: np.ndarray
    conductance_siemens: np.ndarray
    success: np.ndarray
    gate_v: np.ndarray
    bl_v: np.ndarray
    duration_s: float


@dataclass
class Crossbar:
    """One 1T1R array: parameters and state of all ``rows*cols`` cells, row-major."""

    rows: int
    cols: int
    r_row_ohm: float
    r_col_ohm: float
    sense_noise_a: float
    cell: RramParams
    fet: TransistorParams
    state: RramState
    generator: torch.Generator
    programmed_at_s: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=DTYPE))
    relax_eps: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=DTYPE))
    relaxed_decades: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=DTYPE))
    timing: Timing = field(default_factory=Timing)
    pulses: int = 0  # cell pulses applied since the array was drawn (tests, statistics)

    # ----- drawing -------------------------------------------------------------------------

    @classmethod
    def draw(cls, wafer: Any, col: int, row: int, site: int) -> Crossbar:
        """The array at ``(col, row, site)`` of ``wafer`` (an ``instruments.sim.wafer.Wafer``)."""
        spec = wafer.truth.sites[site].array
        population = wafer.truth.populations["rram"]
        where = f"truth sites[{site}].array"
        n = spec.n_cells
        rng = np.random.default_rng([wafer.seed, col, row, site, zlib.crc32(b"rram_array")])
        r_idx = np.repeat(np.arange(spec.rows), spec.cols) - (spec.rows - 1) / 2.0
        c_idx = np.tile(np.arange(spec.cols), spec.rows) - (spec.cols - 1) / 2.0
        x_um, y_um = wafer.die_position_um(col, row)
        cell_names, fet_names = set(RramParams.specs()), set(TransistorParams.specs())
        for name in [*spec.gradients, *spec.die_sigma_rel, *spec.die_gradients]:
            if name not in cell_names | fet_names:
                raise PlanError(
                    f"{where}: {name!r} is neither an RramParams nor a TransistorParams field"
                )
        for name in spec.transistor:
            if name not in fet_names:
                raise PlanError(f"{where}.transistor: {name!r} is not a TransistorParams field")

        def spatial(name: str) -> np.ndarray:
            factor = np.ones(n)
            grad = spec.gradients.get(name)
            if grad is not None:
                factor += grad.row_rel * r_idx + grad.col_rel * c_idx
            trend = spec.die_gradients.get(name)
            if trend is not None:
                factor += trend.x_rel_per_mm * x_um / 1e3 + trend.y_rel_per_mm * y_um / 1e3
            sigma = spec.die_sigma_rel.get(name, 0.0)
            if sigma:  # one offset per die and parameter, from its own stream
                die = np.random.default_rng([wafer.seed, col, row, zlib.crc32(name.encode())])
                factor += sigma * die.standard_normal()
            return factor

        def draw_fields(specs: dict[str, Any], dists: dict[str, Any]) -> dict[str, Tensor]:
            values: dict[str, Tensor] = {}
            for name in sorted(specs):
                dist = dists.get(name)
                if dist is None:
                    base = np.full(n, specs[name].default)
                else:
                    eps = rng.standard_normal(n)
                    if dist.family == "lognormal":
                        base = dist.mean * np.exp(dist.sigma_rel * eps - 0.5 * dist.sigma_rel**2)
                    else:
                        base = dist.mean * (1.0 + dist.sigma_rel * eps)
                    if dist.min is not None or dist.max is not None:
                        base = np.clip(base, dist.min, dist.max)
                values[name] = torch.as_tensor(base * spatial(name), dtype=DTYPE)
            return values

        cell = RramParams(**draw_fields(RramParams.specs(), dict(population.params)))
        fet = TransistorParams(**draw_fields(TransistorParams.specs(), dict(spec.transistor)))
        cell.check_bounds(f"{where}: drawn cell parameters")
        fet.check_bounds(f"{where}: drawn transistor parameters")
        u = rng.random(n)
        stuck = np.zeros(n, dtype=np.int8)
        stuck[u < spec.stuck_lrs_rate] = 1
        stuck[(u >= spec.stuck_lrs_rate) & (u < spec.stuck_lrs_rate + spec.stuck_hrs_rate)] = -1
        stuck_t = torch.as_tensor(stuck)
        pristine = rram_initial_state(cell)
        state = RramState(
            torch.where(stuck_t > 0, cell.gap_min_m, pristine.gap_m), stuck_t > 0, stuck_t
        )
        seed = int(rng.integers(0, 2**62))
        return cls(
            rows=spec.rows,
            cols=spec.cols,
            r_row_ohm=spec.source_line_ohm_per_cell,
            r_col_ohm=spec.bit_line_ohm_per_cell,
            sense_noise_a=spec.sense_noise_a,
            cell=cell,
            fet=fet,
            state=state,
            generator=torch.Generator().manual_seed(seed),
            programmed_at_s=torch.zeros(n, dtype=DTYPE),
            relax_eps=torch.zeros(n, dtype=DTYPE),
            relaxed_decades=torch.zeros(n, dtype=DTYPE),
        )

    @property
    def n_cells(self) -> int:
        return self.rows * self.cols

    def row_cells(self, row: int) -> Tensor:
        """Flat indices of a row's cells."""
        self._check_row(row)
        return torch.arange(row * self.cols, (row + 1) * self.cols)

    def _check_row(self, row: int) -> None:
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} outside 0..{self.rows - 1}")

    # ----- state bookkeeping -----------------------------------------------------------------

    def _stacked(self, kind: str) -> tuple[list[str], Tensor]:
        """Every parameter field stacked ``[fields, n]`` (one gather selects a subset)."""
        cache = self.__dict__.setdefault("_stack_cache", {})
        if kind not in cache:
            params = self.cell if kind == "cell" else self.fet
            names = list(type(params).specs())
            cache[kind] = (names, torch.stack([getattr(params, f) for f in names]))
        return cache[kind]

    def cell_params(self, idx: Tensor) -> RramParams:
        names, stack = self._stacked("cell")
        return RramParams(**dict(zip(names, stack[:, idx].unbind(0), strict=True)))

    def fet_params(self, idx: Tensor) -> TransistorParams:
        names, stack = self._stacked("fet")
        return TransistorParams(**dict(zip(names, stack[:, idx].unbind(0), strict=True)))

    def _sub(self, idx: Tensor) -> tuple[RramState, RramParams, TransistorParams]:
        s = self.state
        return (
            RramState(s.gap_m[idx], s.formed[idx], s.stuck[idx]),
            self.cell_params(idx),
            self.fet_params(idx),
        )

    def _put(self, idx: Tensor, new: RramState) -> None:
        self.state.gap_m[idx] = new.gap_m  # the state's tensors are the crossbar's own
        self.state.formed[idx] = new.formed

    def relax_to(self, now_s: float, idx: Tensor | None = None) -> None:
        """Apply the log-time drift of cells ``idx`` (all by default) up to ``now_s``.

        Increments below ``RELAX_MIN_DECADES`` are left for later (they are never lost: the
        drift is computed from the time since programming), which keeps the µs loops of a
        write-verify free of relaxation bookkeeping."""
        if idx is None:
            idx = torch.arange(self.n_cells)
        elapsed = (now_s - self.programmed_at_s[idx]).clamp(min=0.0)
        decades = torch.log10(1.0 + elapsed / self._stacked_field("cell", "relax_t0_s")[idx])
        step = decades - self.relaxed_decades[idx]
        due = step > RELAX_MIN_DECADES
        if not bool(due.any()):
            return
        idx, step, decades = idx[due], step[due], decades[due]
        state = RramState(self.state.gap_m[idx], self.state.formed[idx], self.state.stuck[idx])
        self._put(idx, rram_relax_by(state, self.cell_params(idx), step, self.relax_eps[idx]))
        self.relaxed_decades[idx] = decades

    def _stacked_field(self, kind: str, name: str) -> Tensor:
        names, stack = self._stacked(kind)
        return stack[names.index(name)]

    def _programmed(self, idx: Tensor, now_s: float) -> None:
        """Cells ``idx`` were pulsed at ``now_s``: their relaxation starts again."""
        self.programmed_at_s[idx] = now_s
        self.relaxed_decades[idx] = 0.0
        eps = torch.randn(idx.numel(), generator=self.generator, dtype=DTYPE)
        self.relax_eps[idx] = eps
        self.pulses += int(idx.numel())

    # ----- pulses ----------------------------------------------------------------------------

    def pulse_cells(
        self,
        idx: Tensor,
        bl_v: Tensor | float,
        sl_v: Tensor | float,
        gate_v: Tensor | float,
        width_s: float,
        now_s: float,
    ) -> Tensor:
        """One pulse on cells ``idx`` with per-cell line voltages (a tensor, or one value for
        every cell); returns the current through each at the end of the pulse (A). The caller
        advances the clock."""
        if idx.numel() == 0:
            return torch.zeros(0, dtype=DTYPE)
        self.relax_to(now_s, idx)
        state, params, fet = self._sub(idx)
        as_t = lambda v: torch.as_tensor(v, dtype=DTYPE).expand(idx.numel())  # noqa: E731
        current, new = one_t_one_r_pulse(
            as_t(bl_v), as_t(sl_v), as_t(gate_v), width_s, state, params, fet, self.generator
        )
        self._put(idx, new)
        self._programmed(idx, now_s + width_s)
        return current

    # ----- DC: reads and the matrix-vector product ---------------------------------------------

    def _g_diff_bound(self, idx: Tensor, v_max: float) -> float:
        """The cells' largest differential conductance for |V| <= ``v_max`` (S): the damping
        of the DC solve follows the array's actual state, not a worst case."""
        p = self.cell_params(idx)
        scale = p.i0_a * torch.exp(-self.state.gap_m[idx] / p.g0_m)
        g = scale * torch.cosh((v_max / p.v0_v).clamp(max=80.0)) / p.v0_v
        g = torch.where(self.state.formed[idx], g, p.g_pristine_s)
        return float(g.max()) if g.numel() else 0.0

    def _cell_current_fn(self, idx: Tensor, shape: tuple[int, int]) -> Any:
        """``f(V_x)`` of the cells ``idx`` laid out as ``shape`` (formed: the filament's I-V;
        pristine: ``g_pristine_s``)."""
        gap = self.state.gap_m[idx].reshape(shape)
        formed = self.state.formed[idx].reshape(shape)
        sub = self.cell_params(idx)
        p = RramParams(**{n: getattr(sub, n).reshape(shape) for n in RramParams.specs()})

        def current(v_x: Tensor) -> Tensor:
            return torch.where(formed, cell_current_a(v_x, gap, p), p.g_pristine_s * v_x)

        return current

    def _solve_block(
        self,
        idx: Tensor,
        shape: tuple[int, int],
        row_v: Tensor,
        col_v: Tensor,
        gate_v: float,
        r_row_ohm: float,
        r_col_ohm: float,
        now_s: float,
    ) -> tuple[xb.CrossbarSolution, Tensor]:
        """The DC operating point of the cells ``idx`` (a block ``shape`` of the array whose
        word lines are on at ``gate_v``; every other cell is off and carries nothing) and the
        cells' chord conductance at their own voltage."""
        self.relax_to(now_s, idx)
        r_on = on_resistance_ohm(gate_v, self.fet_params(idx)).reshape(shape)
        f = self._cell_current_fn(idx, shape)
        v_max = float(torch.as_tensor(row_v).abs().max()) + float(
            torch.as_tensor(col_v).abs().max()
        )
        sol = xb.crossbar_solve(
            row_v, col_v, f, active=torch.ones(shape, dtype=torch.bool), series_ohm=r_on,
            r_row_ohm=r_row_ohm, r_col_ohm=r_col_ohm,
            g_max_siemens=self._g_diff_bound(idx, v_max), rtol=1e-7,
        )  # fmt: skip
        v_x = sol.cell_voltage_v
        small = v_x.abs() <= 1e-12
        g = sol.cell_current_a / torch.where(small, torch.ones_like(v_x), v_x)
        g = torch.where(small, torch.zeros_like(g), g)
        formed = self.state.formed[idx].reshape(shape)
        return sol, torch.where(formed, g, torch.zeros_like(g))

    def _sensed(self, sol: xb.CrossbarSolution, g: Tensor, idx: Tensor, noisy: bool) -> Tensor:
        """Column currents ``[B, C]`` plus (if ``noisy``) each cell's read noise, summed over its
        column, and the sense amplifier's noise."""
        if not noisy:
            return sol.col_current_a
        shape = g.shape[-2:]
        formed = self.state.formed[idx].reshape(shape)  # a pristine cell has no filament noise
        sigma = xb.column_noise_sigma_a(
            torch.where(formed, sol.cell_voltage_v, torch.zeros_like(sol.cell_voltage_v)),
            g,
            self.cell.read_floor_s[idx].reshape(shape),
            self.cell.read_rel[idx].reshape(shape),
        )
        sigma = torch.sqrt(sigma * sigma + self.sense_noise_a**2)
        eps = torch.randn(sigma.shape, generator=self.generator, dtype=DTYPE)
        return sol.col_current_a + sigma * eps

    def _read_context(self, idx: Tensor, line_ohm: Tensor, gate_v: float) -> tuple[Any, ...]:
        """What repeated single-cell reads of ``idx`` share: the cells' parameters and the series
        resistance of their lines and channels at ``gate_v``."""
        p, fet = self.cell_params(idx), self.fet_params(idx)
        return idx, p, on_resistance_ohm(gate_v, fet) + line_ohm

    def _isolated_current_a(self, ctx: tuple[Any, ...], read_v: float) -> tuple[Tensor, Tensor]:
        """Each cell of the context alone on its lines: the series circuit of its lines, the
        channel's ``R_on`` and the cell; returns (current, cell voltage)."""
        idx, p, r = ctx
        gap, formed = self.state.gap_m[idx], self.state.formed[idx]
        v = torch.full_like(gap, read_v)
        v_x = series_cell_voltage_v(v, gap, p, r)
        i = torch.where(formed, cell_current_a(v_x, gap, p), p.g_pristine_s * v)
        return i, v_x

    def _read_cells(self, ctx: tuple[Any, ...], read_v: float, now_s: float, noisy: bool) -> Tensor:
        """Sequential single-cell reads of the context's cells (S): what :meth:`read_row` in
        ``cell`` mode and :meth:`read_cell` report."""
        idx, p, _ = ctx
        self.relax_to(now_s, idx)
        i, v_x = self._isolated_current_a(ctx, read_v)
        if noisy:
            formed = self.state.formed[idx]
            chord = torch.where(formed, i / v_x.clamp(min=1e-12), torch.zeros_like(i))
            cell_sigma = (p.read_floor_s + p.read_rel * chord) * v_x
            cell_sigma = torch.where(formed, cell_sigma, torch.zeros_like(cell_sigma))
            sigma = torch.sqrt(cell_sigma * cell_sigma + self.sense_noise_a**2)
            i = i + sigma * torch.randn(i.shape, generator=self.generator, dtype=DTYPE)
        return i / read_v

    def _row_read_context(self, row: int, gate_v: float) -> tuple[Any, ...]:
        cols = torch.arange(self.cols, dtype=DTYPE)
        line = self.r_row_ohm * (cols + 1.0) + self.r_col_ohm * (row + 1.0)
        return self._read_context(self.row_cells(row), line, gate_v)

    def read_row(
        self,
        row: int,
        read_v: float,
        gate_v: float,
        now_s: float,
        noisy: bool = True,
        mode: ReadMode = "cell",
    ) -> Tensor:
        """Read a row (S per column): its word line on at ``gate_v``, its source line at 0 V
        (driven from its left end), bit lines at ``read_v`` (driven from the top, through
        ``row + 1`` segments that carry only this row's cell). ``mode``: see ``ReadMode``."""
        if mode == "cell":
            return self._read_cells(self._row_read_context(row, gate_v), read_v, now_s, noisy)
        idx = self.row_cells(row)
        sol, g = self._solve_block(
            idx, (1, self.cols), torch.zeros(1, 1, dtype=DTYPE),
            torch.full((1, self.cols), read_v, dtype=DTYPE), gate_v,
            self.r_row_ohm, self.r_col_ohm * (row + 1), now_s,
        )  # fmt: skip
        # the current flows from the bit lines into the cells: sensed with the opposite sign
        return -self._sensed(sol, g, idx, noisy)[0] / read_v

    def read_cell(
        self, row: int, col: int, read_v: float, gate_v: float, now_s: float, noisy: bool = True
    ) -> float:
        """One cell alone (its word line and bit line only, the rest off), S."""
        self._check_row(row)
        if not 0 <= col < self.cols:
            raise IndexError(f"column {col} outside 0..{self.cols - 1}")
        idx = torch.tensor([row * self.cols + col])
        line = torch.tensor([self.r_row_ohm * (col + 1) + self.r_col_ohm * (row + 1)], dtype=DTYPE)
        ctx = self._read_context(idx, line, gate_v)
        return float(self._read_cells(ctx, read_v, now_s, noisy)[0])

    def read_array(
        self, read_v: float, gate_v: float, now_s: float, noisy: bool = True,
        mode: ReadMode = "cell",
    ) -> Tensor:  # fmt: skip
        """Every row in turn (``[rows, cols]``, S)."""
        rows = [self.read_row(r, read_v, gate_v, now_s, noisy, mode) for r in range(self.rows)]
        return torch.stack(rows)

    def mvm(self, row_v: Tensor, gate_v: float, now_s: float, noisy: bool = True) -> Tensor:
        """Analog matrix-vector products: rows (source lines) at ``row_v [B, R]``, every word
        line on, bit lines held at 0 V by the sense amplifiers; column currents ``[B, C]``, A."""
        idx = torch.arange(self.n_cells)
        row_v = torch.as_tensor(row_v, dtype=DTYPE).reshape(-1, self.rows)
        sol, g = self._solve_block(
            idx, (self.rows, self.cols), row_v, torch.zeros(self.cols, dtype=DTYPE), gate_v,
            self.r_row_ohm, self.r_col_ohm, now_s,
        )  # fmt: skip
        return self._sensed(sol, g, idx, noisy)

    def isolated_conductance(self, read_v: float, gate_v: float) -> Tensor:
        """Truth for tests: each cell's noiseless read alone with ideal lines (the 1T1R stack:
        channel ``R_on`` and cell), S, ``[n]``."""
        idx = torch.arange(self.n_cells)
        ctx = self._read_context(idx, torch.zeros(self.n_cells, dtype=DTYPE), gate_v)
        return self._isolated_current_a(ctx, read_v)[0] / read_v

    # ----- the tester's firmware: row write-verify and forming ---------------------------------

    def read_time_s(self, mode: ReadMode = "row", n_cells: int | None = None) -> float:
        """Virtual time of reading a row: one conversion (``row``), one per cell (``cell``)."""
        conversions = 1 if mode == "row" else (self.cols if n_cells is None else n_cells)
        return conversions * (self.timing.read_settle_s + self.timing.aperture_s)

    def pulse_time_s(self, width_s: float) -> float:
        return self.timing.pulse_overhead_s + width_s

    def write_verify_row(
        self, row: int, targets_siemens: np.ndarray, s: VerifySettings, now_s: float
    ) -> VerifyResult:
        """Program the cells of ``row`` to their targets (NaN: leave that cell alone).

        Every iteration pulses the cells still outside ``target +- tolerance`` (a SET below the
        window, a RESET above it), then reads the whole row. IGVVA: the word line (the gate,
        shared by the row) climbs from ``gate_start_v`` in passes; a SET at gate V_G lands near
        the compliance level ``I_sat(V_G)`` sets, so a cell reaches its window at its own gate
        on the way up. The gate advances by ``k*step`` per iteration, ``k`` in 1..8 the number of
        steps the closest cell can take before its window at its last measured rise per step.
        A cell that overshoots comes down by RESET pulses of rising amplitude; one that falls
        below its window waits for the next pass, which starts again from ``gate_start_v``
        with half the step. ISPVA: the gate is fixed at ``set_gate_v`` and each cell's
        bit-line amplitude climbs from ``bl_start_v`` by its own step (halved after an
        overshoot, which RESETs the cell down as above). A cell stops after ``max_attempts``."""
        self._check_row(row)
        t = torch.as_tensor(np.asarray(targets_siemens, dtype=np.float64).reshape(-1))
        if t.numel() != self.cols:
            raise ValueError(f"{t.numel()} targets for a row of {self.cols} cells")
        idx_all = self.row_cells(row)
        want = torch.isfinite(t)
        t = torch.where(want, t, torch.zeros_like(t))
        tol = s.tolerance_siemens
        n = self.cols
        attempts = torch.zeros(n, dtype=torch.int64)
        stalled = torch.zeros(n, dtype=torch.int64)  # pulses at a ramp's top without effect
        ramping = want.clone()  # in the current pass's SET ramp
        bl = torch.full((n,), s.bl_start_v, dtype=DTYPE)
        bl_step = torch.full((n,), s.bl_step_v, dtype=DTYPE)
        reset_v = torch.full((n,), s.reset_start_v, dtype=DTYPE)
        rise = torch.full((n,), math.nan, dtype=DTYPE)  # last SET's rise per gate step, S
        overshot_at = torch.full((n,), math.inf, dtype=DTYPE)  # gate of a cell's last overshoot
        gate, step = s.gate_start_v, s.gate_step_v
        last_increment = 0.0  # the gate's last move, V
        elapsed = 0.0
        ctx = self._row_read_context(row, s.read_gate_v) if s.read_mode == "cell" else None

        def verify_read(at_s: float) -> Tensor:
            if ctx is not None:
                return self._read_cells(ctx, s.read_v, at_s, True)
            return self.read_row(row, s.read_v, s.read_gate_v, at_s, mode="row")

        g = verify_read(now_s)
        elapsed += self.read_time_s(s.read_mode)
        verified = torch.zeros(n, dtype=torch.bool)  # passed a verify: masked from then on
        reported = g.clone()  # the verify read that passed (or the last one)
        for _ in range(4 * s.max_attempts + 16):
            budget = (attempts < s.max_attempts) & (stalled < STALL_LIMIT)
            passed = want & ~verified & ((g - t).abs() <= tol)
            reported = torch.where(passed, g, reported)
            verified |= passed
            high = want & ~verified & (g > t + tol) & budget
            low = want & ~verified & (g < t - tol) & budget
            sets = low & ramping
            if s.scheme == "igvva" and not bool(sets.any()) and not bool(high.any()):
                waiting = low & ~ramping
                if not bool(waiting.any()):
                    break
                ramping = ramping | waiting  # the next pass, finer, from below the lowest
                step = max(step / 2.0, s.gate_step_v / 8.0)  # gate at which a cell overshot
                lowest = float(overshot_at[waiting].min())
                gate = s.gate_start_v if not math.isfinite(lowest) else lowest - 4.0 * step
                gate = max(s.gate_start_v, gate)
                rise.fill_(math.nan)
                last_increment = 0.0
                continue
            if s.scheme == "ispva":
                sets = low
            if not bool(sets.any()) and not bool(high.any()):
                break
            k_set = torch.nonzero(sets).reshape(-1)
            k_reset = torch.nonzero(high).reshape(-1)
            # SET phase (source line at 0 V, bit lines of the cells to set high) and RESET phase
            # (source line high, bit lines of the cells to reset at 0 V, the rest inhibited):
            # two pulses on the bench; the cells are independent, so one physics call
            bl_v = torch.zeros(n, dtype=DTYPE)
            sl_v = torch.zeros(n, dtype=DTYPE)
            gates = torch.full((n,), s.reset_gate_v, dtype=DTYPE)
            if s.scheme == "igvva":
                bl_v[k_set] = s.set_bl_v
                gates[k_set] = gate
            else:
                bl_v[k_set] = bl[k_set]
                gates[k_set] = s.set_gate_v
            sl_v[k_reset] = reset_v[k_reset]
            both = torch.cat([k_set, k_reset])
            self.pulse_cells(
                idx_all[both], bl_v[both], sl_v[both], gates[both], s.width_s, now_s + elapsed
            )
            elapsed += self.pulse_time_s(s.width_s) * (bool(k_set.numel()) + bool(k_reset.numel()))
            attempts[sets | high] += 1
            g_new = verify_read(now_s + elapsed)
            elapsed += self.read_time_s(s.read_mode)
            above = g_new > t + tol
            below = g_new < t - tol
            at_top = high & (reset_v >= s.reset_stop_v) & above
            if s.scheme == "igvva":
                at_top |= sets & below & (gate >= s.gate_stop_v)
            else:
                at_top |= sets & below & (bl >= s.bl_stop_v)
            stalled = torch.where(at_top, stalled + 1, torch.zeros_like(stalled))
            # RESET amplitude: up while still above the window, two steps back once a RESET
            # brought the cell in or below it (the next one starts near what worked)
            reset_v = torch.where(
                high & above, (reset_v + s.reset_step_v).clamp(max=s.reset_stop_v),
                torch.where(
                    high, (reset_v - 2.0 * s.reset_step_v).clamp(min=s.reset_start_v), reset_v
                ),
            )  # fmt: skip
            if s.scheme == "igvva":
                overshot_at = torch.where(
                    sets & above, torch.full_like(overshot_at, gate), overshot_at
                )
                ramping = ramping & ~(sets & above) & ~(high & below)  # wait for the next pass
                climbing = sets & below
                if bool(climbing.any()):
                    # the rise per volt of gate each cell showed on its last SET; the next
                    # increment lets every climbing cell rise by at most half its distance to
                    # the top of its window: cells close in geometrically and the last step
                    # into a window is about one tolerance (the landing spread follows it)
                    if last_increment > 0:
                        rise = torch.where(sets, (g_new - g) / last_increment, rise)
                    allowed = 0.5 * (t + tol - g_new) / rise
                    allowed = allowed[climbing & torch.isfinite(allowed) & (rise > 0)]
                    increment = 8.0 * step if allowed.numel() == 0 else float(allowed.min())
                    increment = min(max(increment, step / 8.0), 8.0 * step)
                    last_increment = min(s.gate_stop_v, gate + increment) - gate
                    gate += last_increment
            else:
                climbing = sets & below
                bl = torch.where(climbing, (bl + bl_step).clamp(max=s.bl_stop_v), bl)
                over = sets & above
                bl = torch.where(over, (bl - 2.0 * bl_step).clamp(min=s.bl_start_v), bl)
                bl_step = torch.where(over, (bl_step / 2.0).clamp(min=s.bl_step_v / 8.0), bl_step)
            g = g_new
        passed = want & ~verified & ((g - t).abs() <= tol)
        verified |= passed
        reported = torch.where(verified, torch.where(passed, g, reported), g)
        return VerifyResult(
            attempts=attempts.numpy(),
            conductance_siemens=reported.numpy(),
            success=verified.numpy(),
            gate_v=np.full(n, gate if s.scheme == "igvva" else s.set_gate_v),
            bl_v=(bl if s.scheme == "ispva" else torch.full_like(bl, s.set_bl_v)).numpy(),
            duration_s=elapsed,
        )

    def form_row(self, row: int, s: FormSettings, now_s: float) -> tuple[np.ndarray, float]:
        """Form the pristine cells of ``row``: returns the forming amplitude per cell (NaN where
        a cell did not form by ``stop_v``; 0 for a cell already formed) and the virtual time."""
        idx_all = self.row_cells(row)
        v_form = np.where(self.state.formed[idx_all].numpy(), 0.0, math.nan)
        elapsed = 0.0
        amplitude = s.start_v
        while amplitude <= s.stop_v + 1e-12:
            todo = torch.as_tensor(np.isnan(v_form))
            todo &= self.state.stuck[idx_all] >= 0
            if not bool(todo.any()):
                break
            cells = torch.nonzero(todo).reshape(-1)
            self.pulse_cells(idx_all[cells], amplitude, 0.0, s.gate_v, s.width_s, now_s + elapsed)
            elapsed += self.pulse_time_s(s.width_s)
            g = self.read_row(row, s.read_v, s.read_gate_v, now_s + elapsed, mode="row")
            elapsed += self.read_time_s("row")
            formed = todo & (g > s.threshold_siemens)
            v_form[formed.numpy()] = amplitude
            amplitude += s.step_v
        return v_form, elapsed


class CellView(SimDevice):
    """One crossbar cell seen as a single device (what a switch matrix connects the SMU or the
    AWG to): its state reads from and writes to the crossbar, relaxation is the crossbar's
    (``last_touched_s`` is always now, so the bench adds none), and the word line held at
    ``gate_v`` limits its current to the transistor's ``I_sat`` (``extra["current_limit_a"]``,
    which the bench's physics applies on top of the SMU's compliance). The transistor's channel
    resistance and the lines are left out on this path (the array tester's reads have them)."""

    def __init__(
        self,
        crossbar: Crossbar,
        index: int,
        where: tuple[int, int, int],
        gate_v: float,
        now_s: Any,
    ) -> None:
        self._crossbar = crossbar
        self._idx = torch.tensor([index])
        self._now_s = now_s
        col, row, site = where
        truth = DeviceTruth(col, row, site, "rram", 1e-14, {}, 1, None)
        super().__init__(truth=truth)
        self.extra["params"] = crossbar.cell_params(self._idx)
        limit = saturation_current_a(gate_v, crossbar.fet_params(self._idx))
        self.extra["current_limit_a"] = float(limit[0])
        self.extra["cell"] = (index // crossbar.cols, index % crossbar.cols)

    @property
    def state(self) -> RramState | None:
        xb_ = self._crossbar
        xb_.relax_to(self._now_s(), self._idx)
        s = xb_.state
        return RramState(s.gap_m[self._idx], s.formed[self._idx], s.stuck[self._idx])

    @state.setter
    def state(self, value: RramState | None) -> None:
        if value is None:  # the dataclass's own initialisation
            return
        xb_ = self._crossbar
        moved = bool((xb_.state.gap_m[self._idx] != value.gap_m).any())
        xb_._put(self._idx, value)
        if moved:
            xb_._programmed(self._idx, self._now_s())

    @property
    def last_touched_s(self) -> float:
        return float(self._now_s())

    @last_touched_s.setter
    def last_touched_s(self, value: float) -> None:
        """The crossbar keeps each cell's time since programming itself."""
