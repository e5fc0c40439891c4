"""RRAM (HfOx-like 1T1R/1R cell): the Stanford-PKU filament-gap model, extended with lab effects.

Model family: Stanford-PKU gap model (Jiang, Wong et al., Stanford RRAM Verilog-A model v1.0.0,
doi:10.4231/D37H1DN48; Guan, Yu, Wong, IEEE EDL 2012). Why: one continuous state (the tunnelling
gap g between filament tip and electrode) gives analytic I-V, SET/RESET thresholds that move
smoothly with amplitude *and* width (needed for program-and-verify onto 8 levels), self-limiting
SET under current compliance, and few parameters to fit per device; it was fitted to HfOx, the
material of the published multi-level 1T1R arrays. JART VCM is more physical but needs a
vacancy-concentration ODE with stiff ionic terms and ~30 parameters, too heavy for thousands of
devices in a fit.

Equations (SI units; kT/q the thermal voltage at T)::

    I     = I0*exp(-g/g0)*sinh(V/V0)                                  (formed cell)
    dg/dt = -v0*exp(-q*Ea/(k*T))*sinh(gamma*a0*q*V/(L*k*T))           (V > 0 closes the gap: SET)
    gamma = gamma0 - beta*(g/g1)**3,   T = min(T0 + |V*I|*Rth, T_MAX),   g in [g_min, g_max]

Extensions (what a lab sees): a pristine cell conducts ``g_pristine_s`` until it *forms*, with a
time-dependent breakdown rate ``exp((V - V_form)/V_form_slope)/tau_form`` (V_form spread per
device); compliance ``current_limit_a`` caps |I| by lowering the cell voltage to
``V0*asinh(I_c/(I0*exp(-g/g0)))`` (as an SMU or the 1T1R transistor does), which makes SET
self-limiting at a level set by I_c; cycle-to-cycle noise multiplies every gap change by
``1 + sigma_c2c*eps``; read noise ``sigma_G = read_floor_s + read_rel*G`` on every read; relaxation
``dg = (mu + sigma*eps)*log10(1 + t/t0)``; stuck cells (+1 stuck at g_min, -1 stuck at g_max).
"""

# param_field() builds dataclasses.field(metadata=...) for the frozen parameter sets:
# ruff: noqa: RUF009
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch
from torch import Tensor

from bruno_lab.devices.params import DeviceParams, param_field, sample_population

K_B_J_K = 1.380649e-23
Q_C = 1.602176634e-19
SINH_ARG_MAX = 80.0
"""Bound on every sinh/exp argument (finite in float32 as in float64)."""
T_MAX_K = 2000.0
"""Cap of the filament temperature (only reached in an unlimited SET, where the gap is closed)."""
MAX_GAP_STEP_M = 0.01e-9
"""Largest gap change per internal sub-step: resolves the self-limiting SET under compliance."""


@dataclasses.dataclass(frozen=True)
class RramParams(DeviceParams):
    """Per-device RRAM parameters (leading dim). Defaults: Stanford model v1.0.0 values except
    Ea = 1.0 eV, vel0 = 25 m/s, gamma0 = 14.2 and a filament thermal resistance Rth = 3e5 K/W
    (Stanford: 2.1e3), chosen for HfOx 1T1R behaviour: DC (1 V/s) SET near +0.8 V under 100 µA
    compliance, gradual DC RESET between -0.5 and -0.8 V, no read disturb at 0.2 V, and a
    RESET that self-limits through Joule heating (less current, cooler filament, slower ions), so
    that RESET pulses of increasing amplitude walk a cell down through 8 levels from 242 µS to
    6 µS. Lab extensions as in the module docstring."""

    i0_a: Tensor = param_field(1e-3, "A", 1e-6, 1e-1, "current prefactor I0")
    g0_m: Tensor = param_field(0.25e-9, "m", 0.05e-9, 1e-9, "gap decay length g0")
    v0_v: Tensor = param_field(0.25, "V", 0.05, 2.0, "I-V nonlinearity V0")
    vel0_m_s: Tensor = param_field(25.0, "m/s", 1e-3, 1e6, "gap velocity prefactor")
    ea_ev: Tensor = param_field(1.0, "eV", 0.1, 3.0, "activation energy of ion migration")
    a0_m: Tensor = param_field(0.25e-9, "m", 0.05e-9, 1e-9, "atomic hopping distance")
    l_m: Tensor = param_field(5e-9, "m", 1e-9, 5e-8, "oxide thickness")
    gamma0: Tensor = param_field(14.2, "", 1.0, 50.0, "field enhancement at zero gap")
    beta: Tensor = param_field(0.8, "", 0.0, 5.0, "decline of field enhancement with gap")
    g1_m: Tensor = param_field(1e-9, "m", 0.1e-9, 1e-8, "gap scale of the enhancement decline")
    gap_min_m: Tensor = param_field(0.1e-9, "m", 0.0, 1e-9, "smallest gap (strongest filament)")
    gap_max_m: Tensor = param_field(1.7e-9, "m", 0.5e-9, 5e-9, "largest gap (weakest state)")
    t0_k: Tensor = param_field(298.0, "K", 200.0, 500.0, "ambient temperature")
    rth_k_w: Tensor = param_field(3e5, "K/W", 0.0, 1e7, "filament thermal resistance")
    v_form_v: Tensor = param_field(2.5, "V", 0.5, 10.0, "forming voltage (rate 1/tau_form)")
    v_form_slope_v: Tensor = param_field(0.05, "V", 1e-3, 1.0, "forming rate e-fold per volt")
    tau_form_s: Tensor = param_field(1e-3, "s", 1e-12, 1e3, "forming time at V = V_form")
    g_pristine_s: Tensor = param_field(1e-9, "S", 0.0, 1e-5, "pristine (unformed) conductance")
    sigma_c2c: Tensor = param_field(0.15, "", 0.0, 2.0, "cycle-to-cycle spread of a gap change")
    read_floor_s: Tensor = param_field(0.2e-6, "S", 0.0, 1e-4, "read noise floor (sigma of G)")
    read_rel: Tensor = param_field(0.005, "", 0.0, 0.5, "read noise sigma relative to G")
    relax_mu_m: Tensor = param_field(0.01e-9, "m", -1e-9, 1e-9, "mean gap drift per decade")
    relax_sigma_m: Tensor = param_field(0.01e-9, "m", 0.0, 1e-9, "gap drift spread per decade")
    relax_t0_s: Tensor = param_field(1.0, "s", 1e-9, 1e6, "relaxation onset time")


class RramState(NamedTuple):
    """Per device: tunnelling gap (m), formed yet, stuck code (0 ok, +1 at g_min, -1 at g_max)."""

    gap_m: Tensor
    formed: Tensor
    stuck: Tensor


def rram_initial_state(params: RramParams, formed: bool = False) -> RramState:
    """Pristine cells (gap at g_max, not formed), or formed ones in the high-resistance state."""
    gap = params.gap_max_m.clone()
    n = gap.shape[0]
    return RramState(
        gap,
        torch.full((n,), formed, dtype=torch.bool, device=gap.device),
        torch.zeros(n, dtype=torch.int8, device=gap.device),
    )


def rram_stuck_state(state: RramState, params: RramParams, lrs: bool | Tensor) -> RramState:
    """Mark every device stuck: at low resistance (gap g_min, formed) where ``lrs``, else at high
    resistance (gap g_max, never forms). ``lrs`` is a bool or a per-device bool tensor."""
    on = torch.as_tensor(lrs, dtype=torch.bool, device=state.gap_m.device).expand_as(state.formed)
    gap = torch.where(on, params.gap_min_m, params.gap_max_m)
    stuck = torch.where(on, 1, -1).to(torch.int8)
    return RramState(gap, on, stuck)


def cell_current_a(voltage_v: Tensor, gap_m: Tensor, params: RramParams) -> Tensor:
    """Formed-cell current I0*exp(-g/g0)*sinh(V/V0), A (differentiable; args bounded)."""
    arg = (voltage_v / params.v0_v).clamp(-SINH_ARG_MAX, SINH_ARG_MAX)
    return params.i0_a * torch.exp(-gap_m / params.g0_m) * torch.sinh(arg)


def rram_conductance_siemens(
    state: RramState, params: RramParams, read_voltage_v: float = 0.2
) -> Tensor:
    """Noiseless read conductance I(V_read)/V_read, S; pristine cells give ``g_pristine_s``."""
    g = cell_current_a(torch.as_tensor(read_voltage_v), state.gap_m, params) / read_voltage_v
    return torch.where(state.formed, g, params.g_pristine_s)


def rram_read_current_a(
    read_voltage_v: float, state: RramState, params: RramParams, generator: torch.Generator
) -> Tensor:
    """One noisy read: ``G + (read_floor_s + read_rel*G)*eps`` times V_read, A."""
    g = rram_conductance_siemens(state, params, read_voltage_v)
    eps = _randn(g, generator)
    return read_voltage_v * (g + (params.read_floor_s + params.read_rel * g) * eps)


def _randn(like: Tensor, generator: torch.Generator) -> Tensor:
    eps = torch.randn(like.shape, generator=generator, dtype=torch.float64)
    return eps.to(dtype=like.dtype, device=like.device)


def _device_voltage(v: Tensor, gap: Tensor, p: RramParams, limit: Tensor | None) -> Tensor:
    """Voltage left across the cell when the source's current limit I_c is reached."""
    if limit is None:
        return v
    i_scale = p.i0_a * torch.exp(-gap / p.g0_m)
    v_max = p.v0_v * torch.asinh(limit / i_scale)
    return torch.sign(v) * torch.minimum(v.abs(), v_max)


def gap_rate_m_s(voltage_v: Tensor, gap_m: Tensor, params: RramParams) -> Tensor:
    """dg/dt of the Stanford-PKU model at the cell voltage (self-heating included), m/s."""
    i = cell_current_a(voltage_v, gap_m, params)
    temp = (params.t0_k + (voltage_v * i).abs() * params.rth_k_w).clamp(max=T_MAX_K)
    v_th = K_B_J_K * temp / Q_C
    gamma = params.gamma0 - params.beta * (gap_m / params.g1_m) ** 3
    arg = (gamma * params.a0_m * voltage_v / (params.l_m * v_th)).clamp(-SINH_ARG_MAX, SINH_ARG_MAX)
    return -params.vel0_m_s * torch.exp(-params.ea_ev / v_th) * torch.sinh(arg)


def _integrate_gap(
    v: Tensor, dt_s: float, gap: Tensor, live: Tensor, p: RramParams, limit: Tensor | None
) -> Tensor:
    """The gap after ``v`` is held for ``dt_s`` on the ``live`` cells: explicit sub-steps of at
    most ``MAX_GAP_STEP_M`` each (per cell), a cell stopping at a bound it moves against.

    The expressions of :func:`_device_voltage` and :func:`gap_rate_m_s`, evaluated in the same
    order (bitwise the same result), with the loop's invariants hoisted and ``I0*exp(-g/g0)``
    shared: this loop is the simulated lab's hottest (every pulse of every cell)."""
    remaining = torch.full_like(v, dt_s)
    abs_v, sign_v = v.abs(), torch.sign(v)
    neg_vel0, neg_ea = -p.vel0_m_s, -p.ea_ev
    step_live = live & (remaining > 0)
    for _ in range(10_000):
        if not bool(step_live.any()):
            break
        i_scale = p.i0_a * torch.exp(-gap / p.g0_m)
        if limit is None:
            vd = v
        else:
            vd = sign_v * torch.minimum(abs_v, p.v0_v * torch.asinh(limit / i_scale))
        i = i_scale * torch.sinh((vd / p.v0_v).clamp(-SINH_ARG_MAX, SINH_ARG_MAX))
        temp = (p.t0_k + (vd * i).abs() * p.rth_k_w).clamp(max=T_MAX_K)
        v_th = K_B_J_K * temp / Q_C
        gamma = p.gamma0 - p.beta * (gap / p.g1_m) ** 3
        arg = (gamma * p.a0_m * vd / (p.l_m * v_th)).clamp(-SINH_ARG_MAX, SINH_ARG_MAX)
        rate = neg_vel0 * torch.exp(neg_ea / v_th) * torch.sinh(arg)
        h = torch.minimum(remaining, MAX_GAP_STEP_M / rate.abs().clamp(min=1e-300))
        new = (gap + rate * h).clamp(p.gap_min_m, p.gap_max_m)
        at_bound = (new == p.gap_min_m) & (rate < 0) | (new == p.gap_max_m) & (rate > 0)
        gap = torch.where(step_live, new, gap)
        remaining = torch.where(step_live & ~at_bound, remaining - h, torch.zeros_like(h))
        step_live = live & (remaining > 0)
    return gap


def rram_apply_voltage(
    voltage_v: Tensor,
    dt_s: float,
    state: RramState,
    params: RramParams,
    current_limit_a: float | Tensor | None,
    generator: torch.Generator,
) -> tuple[Tensor, RramState]:
    """Apply ``voltage_v [n, T]`` (each sample held for ``dt_s``) and return the current through
    the cell at the end of each sample ``[n, T]`` (A, compliance applied) and the new state.

    ``current_limit_a``: None (no limit), a float, ``[n]`` or ``[n, T]`` (e.g. a SET compliance on
    the positive half of a sweep and a higher one for RESET, as a 1T1R gate voltage would set).
    The compliance also holds in RESET: a RESET needs more current than the SET compliance.

    DC sweeps are fine staircases; pulses are one or a few samples. Within a sample the gap moves
    in sub-steps of at most ``MAX_GAP_STEP_M`` (each device its own), so SET under compliance
    self-limits instead of overshooting. Cycle-to-cycle noise: each sample's gap change is scaled
    by ``max(0, 1 + sigma_c2c*eps)``, one draw per device and sample."""
    v_all = torch.as_tensor(voltage_v, dtype=params.i0_a.dtype)
    if v_all.ndim == 1:
        v_all = v_all[:, None]
    limits = (
        None if current_limit_a is None else torch.as_tensor(current_limit_a, dtype=v_all.dtype)
    )
    gap, formed, stuck = state.gap_m.clone(), state.formed.clone(), state.stuck
    out = torch.empty_like(v_all)
    was_formed = formed
    for j in range(v_all.shape[1]):
        v = v_all[:, j]
        limit = limits[:, j] if limits is not None and limits.ndim == 2 else limits
        formed = _forming(v, dt_s, formed, stuck, params, generator)
        just_formed = formed & ~was_formed
        was_formed = formed
        gap = torch.where(just_formed, params.gap_max_m, gap)
        g_start = gap
        gap = _integrate_gap(v, dt_s, gap, formed & (stuck == 0), params, limit)
        noise = (1.0 + params.sigma_c2c * _randn(gap, generator)).clamp(min=0.0)
        gap = (g_start + (gap - g_start) * noise).clamp(params.gap_min_m, params.gap_max_m)
        gap = torch.where(
            stuck > 0, params.gap_min_m, torch.where(stuck < 0, params.gap_max_m, gap)
        )
        vd = _device_voltage(v, gap, params, limit)
        i_cell = torch.where(formed, cell_current_a(vd, gap, params), params.g_pristine_s * v)
        out[:, j] = i_cell
    return out, RramState(gap, formed, stuck)


def rram_apply_pulse(
    voltage_v: Tensor,
    duration_s: Tensor,
    state: RramState,
    params: RramParams,
    current_limit_a: float | None,
    generator: torch.Generator,
) -> tuple[Tensor, RramState]:
    """Apply one pulse given as piecewise-constant segments (``voltage_v [T]`` held for
    ``duration_s [T]``, the same for every device) and return the current at the end of each
    segment ``[n, T]`` (A) and the new state.

    Why not ``rram_apply_voltage`` sample by sample: its cycle-to-cycle noise is one draw per
    sample, so a pulse resolved by a fine time grid would average the noise away and the
    switching variability would depend on the grid. A pulse is one switching event: the gap
    evolves deterministically through every segment (sub-stepped as there), then its total
    change is scaled by ``max(0, 1 + sigma_c2c*eps)`` once per device. Segments at 0 V move
    nothing (no field, no forming) and are skipped; adjacent equal segments may be merged by
    the caller (the evolution within a held voltage is sub-stepped, so merging is exact)."""
    volts = torch.as_tensor(voltage_v, dtype=params.i0_a.dtype).reshape(-1)
    durations = torch.as_tensor(duration_s, dtype=volts.dtype).reshape(-1)
    quiet = params.replace(sigma_c2c=0.0)
    n = state.gap_m.shape[0]
    out = torch.zeros((n, volts.numel()), dtype=volts.dtype, device=state.gap_m.device)
    start, current = state, state
    for k, (v, dt) in enumerate(zip(volts.tolist(), durations.tolist(), strict=True)):
        if v == 0.0 or dt <= 0.0:
            continue
        level = torch.full((n, 1), v, dtype=volts.dtype, device=out.device)
        i, current = rram_apply_voltage(level, dt, current, quiet, current_limit_a, generator)
        out[:, k] = i[:, 0]
    # a cell that formed during the pulse starts its switching from g_max
    g_start = torch.where(start.formed, start.gap_m, params.gap_max_m)
    noise = (1.0 + params.sigma_c2c * _randn(current.gap_m, generator)).clamp(min=0.0)
    gap = (g_start + (current.gap_m - g_start) * noise).clamp(params.gap_min_m, params.gap_max_m)
    gap = torch.where(current.formed & (current.stuck == 0), gap, current.gap_m)
    return out, RramState(gap, current.formed, current.stuck)


def forming_rate_per_s(
    voltage_v: Tensor,
    v_form_v: Tensor | float,
    v_form_slope_v: Tensor | float,
    tau_form_s: Tensor | float,
) -> Tensor:
    """Breakdown rate of a pristine cell held at ``voltage_v``, 1/s:
    ``exp((V - V_form)/V_form_slope)/tau_form`` (exponent bounded; only V > 0 forms a cell).
    Public so that calibration integrates the same hazard over a measured staircase."""
    arg = ((voltage_v - v_form_v) / v_form_slope_v).clamp(max=SINH_ARG_MAX)
    return torch.exp(arg) / tau_form_s


def _forming(
    v: Tensor, dt_s: float, formed: Tensor, stuck: Tensor, p: RramParams, gen: torch.Generator
) -> Tensor:
    """Pristine cells break down with probability 1 - exp(-dt*rate(V)) per sample (V > 0)."""
    rate = forming_rate_per_s(v, p.v_form_v, p.v_form_slope_v, p.tau_form_s)
    prob = -torch.expm1(-dt_s * rate)
    u = torch.rand(v.shape, generator=gen, dtype=torch.float64).to(v.dtype)
    can = (stuck >= 0) & (v > 0)
    return formed | (can & (u < prob)) | (stuck > 0)


def rram_form(
    state: RramState,
    params: RramParams,
    generator: torch.Generator,
    max_voltage_v: float = 4.0,
    ramp_rate_v_s: float = 1.0,
    step_v: float = 0.01,
    current_limit_a: float = 100e-6,
) -> tuple[RramState, Tensor]:
    """Forming by a compliance-limited voltage ramp; returns (state, forming voltage per device,
    NaN where the cell did not form, e.g. stuck-off). Each cell is swept only until it forms."""
    n_steps = round(max_voltage_v / step_v)
    dt = step_v / ramp_rate_v_s
    v_form = torch.full_like(state.gap_m, float("nan"))
    for k in range(1, n_steps + 1):
        todo = ~state.formed & (state.stuck >= 0)
        if not bool(todo.any()):
            break
        v = torch.where(todo, torch.tensor(k * step_v, dtype=state.gap_m.dtype), 0.0)
        _, new = rram_apply_voltage(v[:, None], dt, state, params, current_limit_a, generator)
        v_form = torch.where(new.formed & ~state.formed, k * step_v, v_form)
        state = new
    return state, v_form


def rram_relax(
    state: RramState, params: RramParams, elapsed_s: float, generator: torch.Generator
) -> RramState:
    """Relaxation after programming: ``dg = (mu + sigma*eps)*log10(1 + t/t0)`` per device (a bake
    is a longer ``elapsed_s``); stuck and pristine cells do not move."""
    decades = math.log10(1.0 + elapsed_s / float(params.relax_t0_s.reshape(-1)[0]))
    eps = _randn(state.gap_m, generator)
    return rram_relax_by(state, params, torch.full_like(state.gap_m, decades), eps)


def rram_relax_by(state: RramState, params: RramParams, decades: Tensor, eps: Tensor) -> RramState:
    """The relaxation step of :func:`rram_relax` with per-device ``decades`` of log time and
    deviates ``eps`` given: ``dg = (mu + sigma*eps)*decades``. An array simulation that keeps
    each cell's time since programming and one deviate per programming event applies the
    increments of ``log10(1 + t/t0)`` through it, so the drift depends on the time since
    programming, not on how often the cell was looked at."""
    dg = (params.relax_mu_m + params.relax_sigma_m * eps) * decades
    ok = state.formed & (state.stuck == 0)
    gap = torch.where(ok, (state.gap_m + dg).clamp(params.gap_min_m, params.gap_max_m), state.gap_m)
    return RramState(gap, state.formed, state.stuck)


def sample_rram_population(
    mean: RramParams,
    sigma_rel: dict[str, float],
    n: int,
    generator: torch.Generator,
    stuck_on_rate: float = 0.0,
    stuck_off_rate: float = 0.0,
    formed: bool = False,
) -> tuple[RramParams, RramState]:
    """``n`` devices with device-to-device spread (theta = mu*(1 + sigma*eps)) and stuck cells
    at the given rates (+1 stuck at low resistance, -1 stuck at high resistance / never forms)."""
    params = sample_population(mean, sigma_rel, n, generator)
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    stuck = torch.zeros(n, dtype=torch.int8)
    stuck[u < stuck_on_rate] = 1
    stuck[(u >= stuck_on_rate) & (u < stuck_on_rate + stuck_off_rate)] = -1
    state = rram_initial_state(params, formed=formed)
    stuck = stuck.to(state.gap_m.device)
    gap = torch.where(stuck > 0, params.gap_min_m, state.gap_m)
    return params, RramState(gap, state.formed | (stuck > 0), stuck)
