"""1T1R cell: an access transistor in series with the RRAM cell of :mod:`bruno_lab.devices.rram`.

Why a transistor: in a 1T1R array the word line is the gate of an n-FET whose channel sits
between the RRAM cell and the source line. During a SET the transistor saturates and holds the
current at its saturation current, so the filament self-limits at a conductance set by the gate
voltage (``G_LRS ~ I_sat(V_G) / V_hold``): gate-controlled compliance is what makes multi-level
programming (IGVVA) work, and what an SMU's slow compliance cannot do for a µs pulse.

Layout and polarity (the conventions of the array tester): ``BL -- RRAM -- X -- FET -- SL``,
the gate on the word line. A SET drives the bit line positive (cell voltage ``V_BL - V_SL > 0``,
the transistor's source is the source line: ``V_GS = V_G - V_SL``); a RESET drives the source
line positive, the source of the transistor becomes the internal node X, which sits at the
cell's voltage above the bit line, so its current limit is ``I_sat(V_G - V_BL - V_x)`` at the
operating point where the cell's current meets it (source degeneration; a RESET is given a high
gate).

Transistor model: EKV-like saturation current, valid from weak to strong inversion and smooth
(differentiable) in between::

    I_sat = I_spec * ln(1 + exp((V_GS - V_T) / (2 n U_T)))**2,   I_spec = 2 n beta U_T**2

It tends to the square law ``beta/(2n) * (V_GS - V_T)**2`` in strong inversion and to
``I_spec * exp((V_GS - V_T)/(n U_T))`` in weak inversion. During a read (small ``V_DS``) the
channel is a resistance, ``R_on = 1 / (dI/dV_DS at V_DS = 0)``, which is
``1/(beta*(V_GS - V_T))`` in strong inversion; a read solves the series circuit
``V = V_cell + I*R_on`` for the nonlinear cell. Device-to-device spread comes through
:func:`bruno_lab.devices.params.sample_population` like every other parameter set.
"""

# param_field() builds dataclasses.field(metadata=...) for the frozen parameter sets:
# ruff: noqa: RUF009
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from bruno_lab.devices.params import DeviceParams, param_field
from bruno_lab.devices.rram import (
    K_B_J_K,
    Q_C,
    SINH_ARG_MAX,
    RramParams,
    RramState,
    cell_current_a,
    rram_apply_voltage,
)

SOFTPLUS_ARG_MAX = 80.0
"""Bound of the EKV exponent (finite in float32)."""
RESET_NEWTON_STEPS = 60
"""Safeguarded Newton steps of a RESET's operating point at most (converges in ~5-8)."""
RESET_ROOT_TOL_V = 1e-13
"""A RESET's operating point is solved to this cell voltage (V)."""
SERIES_NEWTON_STEPS = 40
"""Safeguarded Newton steps of the series read (converges in ~5; the rest are a no-op)."""


@dataclasses.dataclass(frozen=True)
class TransistorParams(DeviceParams):
    """Per-cell access-transistor parameters (leading dim). Defaults: a thick-oxide n-FET of a
    130 nm 1T1R process (W/L ~ 2) whose gate voltages from ~1.0 V to ~2.2 V set SET compliances
    from ~70 µA to ~0.7 mA, i.e. the levels of a 3-bit cell from ~6 µS to ~250 µS (a wide gate
    range per level is what makes gate-controlled programming fine-grained); its channel adds
    ~0.6 kohm in series during a read at a 3.3 V gate."""

    vth_v: Tensor = param_field(0.45, "V", -0.5, 3.0, "threshold voltage V_T")
    beta_a_v2: Tensor = param_field(0.6e-3, "A/V**2", 1e-7, 1.0, "gain factor mu*Cox*W/L")
    slope_n: Tensor = param_field(1.3, "", 1.0, 3.0, "subthreshold slope factor n")
    temperature_k: Tensor = param_field(298.0, "K", 200.0, 500.0, "channel temperature")


def thermal_voltage_v(temperature_k: Tensor | float) -> Tensor:
    """U_T = k*T/q, V."""
    t = (
        temperature_k
        if isinstance(temperature_k, Tensor)
        else torch.tensor(float(temperature_k), dtype=torch.float64)
    )
    return t * (K_B_J_K / Q_C)


def specific_current_a(params: TransistorParams) -> Tensor:
    """EKV specific current I_spec = 2*n*beta*U_T**2, A."""
    u_t = thermal_voltage_v(params.temperature_k)
    return 2.0 * params.slope_n * params.beta_a_v2 * u_t * u_t


def saturation_current_a(gate_source_v: Tensor | float, params: TransistorParams) -> Tensor:
    """Saturation (compliance) current at ``V_GS``, A: the EKV interpolation above."""
    u_t = thermal_voltage_v(params.temperature_k)
    x = (torch.as_tensor(gate_source_v, dtype=params.vth_v.dtype) - params.vth_v) / (
        2.0 * params.slope_n * u_t
    )
    soft = torch.nn.functional.softplus(x.clamp(max=SOFTPLUS_ARG_MAX))
    return specific_current_a(params) * soft * soft


def gate_voltage_for_current_v(current_a: Tensor | float, params: TransistorParams) -> Tensor:
    """The ``V_GS`` whose saturation current is ``current_a`` (the inverse of
    :func:`saturation_current_a`), V: where an IGVVA ramp should start for a target."""
    u_t = thermal_voltage_v(params.temperature_k)
    ratio = (
        torch.as_tensor(current_a, dtype=params.vth_v.dtype) / specific_current_a(params)
    ).clamp(min=1e-300)
    root = ratio.sqrt()
    # softplus^-1(s) = log(expm1(s)), stable for large s as s + log1p(-exp(-s))
    inv = torch.where(
        root > 20.0, root + torch.log1p(-torch.exp(-root)), torch.log(torch.expm1(root))
    )
    return params.vth_v + 2.0 * params.slope_n * u_t * inv


def on_resistance_ohm(gate_source_v: Tensor | float, params: TransistorParams) -> Tensor:
    """Channel resistance at ``V_DS = 0`` (triode, the read condition), ohm.

    From the EKV drain current ``I = I_spec*[F(V_P) - F(V_P - V_DS)]`` (source at 0 V),
    ``F(u) = softplus(u/(2U_T))**2``, ``V_P = (V_GS - V_T)/n``: ``1/R_on = I_spec*F'(V_P)``
    ``= I_spec*softplus(x)*sigmoid(x)/U_T``, ``x = V_P/(2U_T)``; ``beta*(V_GS - V_T)`` in
    strong inversion."""
    u_t = thermal_voltage_v(params.temperature_k)
    x = (torch.as_tensor(gate_source_v, dtype=params.vth_v.dtype) - params.vth_v) / (
        2.0 * params.slope_n * u_t
    )
    x = x.clamp(max=SOFTPLUS_ARG_MAX)
    conductance = specific_current_a(params) * torch.nn.functional.softplus(x) * torch.sigmoid(x)
    return u_t / conductance.clamp(min=1e-300)


def pulse_current_limit_a(
    bit_line_v: Tensor,
    source_line_v: Tensor,
    gate_v: Tensor,
    params: TransistorParams,
    cell: RramParams | None = None,
    gap_m: Tensor | None = None,
) -> Tensor:
    """The transistor's current limit during a pulse (per cell), A.

    SET (bit line above source line): the source is the source line, ``I_sat(V_G - V_SL)``.
    RESET: the source is the node X between channel and cell, which sits at the cell's voltage
    ``V_x`` above the bit line, so the limit is ``I_sat(V_G - V_BL - V_x)`` at the operating
    point where the cell's current meets it (``I_cell(V_x) = I_sat(V_G - V_BL - V_x)``, solved
    by safeguarded Newton at the pulse's start state ``gap_m``; if the cell alone draws less at
    the full amplitude, the channel is not limiting). Without the cell: the worst case
    ``V_x = |V|``."""
    bl = torch.as_tensor(bit_line_v, dtype=params.vth_v.dtype)
    sl = torch.as_tensor(source_line_v, dtype=params.vth_v.dtype)
    gate = torch.as_tensor(gate_v, dtype=bl.dtype)
    set_limit = saturation_current_a(gate - sl, params)
    amplitude = (sl - bl).clamp(min=0.0)
    if cell is None or gap_m is None:
        reset_limit = saturation_current_a(gate - bl - amplitude, params)
        return torch.where(bl >= sl, set_limit, reset_limit)
    resets = torch.nonzero(bl < sl).reshape(-1)
    if resets.numel() == 0:
        return set_limit
    # the operating point of the RESET cells only (a SET needs none)
    sub_fet = params.select(resets)
    drive = gate.expand_as(bl)[resets] - bl[resets]  # V_G - V_BL: the limit is I_sat(drive - V_x)
    i_scale = cell.i0_a[resets] * torch.exp(-gap_m[resets] / cell.g0_m[resets])
    v_x = _reset_operating_point_v(amplitude[resets], drive, i_scale, cell.v0_v[resets], sub_fet)
    limit = set_limit.clone()
    limit[resets] = saturation_current_a(drive - v_x, sub_fet)
    return limit


def _reset_operating_point_v(
    amplitude_v: Tensor, drive_v: Tensor, i_scale_a: Tensor, v0_v: Tensor, fet: TransistorParams
) -> Tensor:
    """The cell voltage ``V_x`` in ``[0, amplitude]`` where the cell's current
    ``i_scale*sinh(V_x/V0)`` (:func:`bruno_lab.devices.rram.cell_current_a`) meets the channel's
    ``I_sat(drive - V_x)``; ``amplitude`` where the cell alone draws less. The log of their
    ratio is increasing in ``V_x``: safeguarded Newton on its bracket (bisection where a step
    leaves it), to ``RESET_ROOT_TOL_V``."""
    u_t = thermal_voltage_v(fet.temperature_k)
    two_n_ut = 2.0 * fet.slope_n * u_t
    log_ratio = torch.log(i_scale_a / specific_current_a(fet))

    def excess(v_x: Tensor) -> tuple[Tensor, Tensor]:
        """log(I_cell/I_sat) and its slope: both logs are near-linear in V_x (exponential
        branches of sinh and of weak inversion), which keeps Newton to a few steps."""
        arg = (v_x / v0_v).clamp(1e-300, SINH_ARG_MAX)
        z = ((drive_v - v_x - fet.vth_v) / two_n_ut).clamp(max=SOFTPLUS_ARG_MAX)
        soft = torch.nn.functional.softplus(z)
        f = log_ratio + torch.log(torch.sinh(arg)) - 2.0 * torch.log(soft)
        df = 1.0 / (torch.tanh(arg) * v0_v) + 2.0 * torch.sigmoid(z) / (soft * two_n_ut)
        return f, df

    # an upper bound of the root: the cell's voltage at the channel's current with no drop
    # across the cell (I_sat(drive)); close to the root when the channel is far in saturation
    top = torch.minimum(
        amplitude_v, v0_v * torch.asinh(saturation_current_a(drive_v, fet) / i_scale_a)
    )
    f_top, _ = excess(amplitude_v)
    no_root = f_top <= 0  # the channel does not limit: the cell sees the full amplitude
    lo, hi = torch.zeros_like(amplitude_v), amplitude_v.clone()
    x = torch.where(no_root, amplitude_v, top)
    for _ in range(RESET_NEWTON_STEPS):
        f, df = excess(x)
        lo = torch.where(f < 0, x, lo)
        hi = torch.where(f > 0, x, hi)
        step = x - f / df
        new = torch.where((step >= lo) & (step <= hi), step, 0.5 * (lo + hi))
        new = torch.where(no_root | (f == 0), x, new)
        done = bool((new - x).abs().max() <= RESET_ROOT_TOL_V)
        x = new
        if done:
            break
    return x


def one_t_one_r_pulse(
    bit_line_v: Tensor,
    source_line_v: Tensor,
    gate_v: Tensor,
    width_s: float,
    state: RramState,
    cell: RramParams,
    transistor: TransistorParams,
    generator: torch.Generator,
) -> tuple[Tensor, RramState]:
    """One rectangular pulse on every cell (per-cell line voltages ``[n]``, one width): returns
    the current through each cell at the end of the pulse ``[n]`` (A) and the new state.

    The cell sees ``V_BL - V_SL`` with the transistor's saturation current as its compliance
    (the RRAM model's compliance: the cell voltage drops to where the current meets the
    limit, so a SET self-limits instead of overshooting). One pulse is one sample of
    :func:`bruno_lab.devices.rram.rram_apply_voltage`: one cycle-to-cycle draw per cell. A cell
    whose gate is off (``I_sat`` of a grounded gate, picoamperes) does not move."""
    bl = torch.as_tensor(bit_line_v, dtype=cell.i0_a.dtype).reshape(-1)
    sl = torch.as_tensor(source_line_v, dtype=bl.dtype).reshape(-1).expand_as(bl)
    gate = torch.as_tensor(gate_v, dtype=bl.dtype).reshape(-1).expand_as(bl)
    limit = pulse_current_limit_a(bl, sl, gate, transistor, cell, state.gap_m)
    current, new = rram_apply_voltage((bl - sl)[:, None], width_s, state, cell, limit, generator)
    return current[:, 0], new


def series_cell_voltage_v(
    voltage_v: Tensor, gap_m: Tensor, cell: RramParams, series_ohm: Tensor
) -> Tensor:
    """The cell's share ``V_cell`` of ``voltage_v`` across the cell in series with
    ``series_ohm``: the root of ``V_cell + R*I_cell(V_cell) = V`` (safeguarded Newton, per
    cell; exact for ``R = 0``). Batched over any shape broadcasting with the cells."""
    v = torch.as_tensor(voltage_v, dtype=cell.i0_a.dtype)
    r = torch.as_tensor(series_ohm, dtype=v.dtype)
    lo = torch.minimum(v, torch.zeros_like(v))
    hi = torch.maximum(v, torch.zeros_like(v))
    x = v.clone()
    scale = cell.i0_a * torch.exp(-gap_m / cell.g0_m)
    for _ in range(SERIES_NEWTON_STEPS):
        arg = (x / cell.v0_v).clamp(-80.0, 80.0)
        f = x + r * scale * torch.sinh(arg) - v
        # the residual is increasing in x: keep a bracket and bisect where Newton leaves it
        lo = torch.where(f < 0, x, lo)
        hi = torch.where(f > 0, x, hi)
        df = 1.0 + r * scale * torch.cosh(arg) / cell.v0_v
        step = x - f / df
        inside = (step >= lo) & (step <= hi)
        new = torch.where(inside, step, 0.5 * (lo + hi))
        if bool((new - x).abs().max() <= 1e-15 * (1.0 + v.abs().max())):
            x = new
            break
        x = new
    return x


def one_t_one_r_read_current_a(
    read_v: float | Tensor,
    gate_v: float | Tensor,
    state: RramState,
    cell: RramParams,
    transistor: TransistorParams,
) -> Tensor:
    """Noiseless read current of every cell with the transistor on (A): the series circuit of
    the channel's ``R_on`` at ``gate_v`` and the nonlinear cell; a pristine cell conducts
    ``g_pristine_s`` (its megaohms dwarf ``R_on``)."""
    r_on = on_resistance_ohm(gate_v, transistor)
    v = torch.as_tensor(read_v, dtype=cell.i0_a.dtype).expand_as(state.gap_m)
    v_cell = series_cell_voltage_v(v, state.gap_m, cell, r_on)
    formed = cell_current_a(v_cell, state.gap_m, cell)
    return torch.where(state.formed, formed, cell.g_pristine_s * v)


def one_t_one_r_read_siemens(
    read_v: float,
    gate_v: float | Tensor,
    state: RramState,
    cell: RramParams,
    transistor: TransistorParams,
    generator: torch.Generator | None = None,
) -> Tensor:
    """What a read of the 1T1R stack reports, ``I/V_read`` (S): noiseless without a generator,
    else with the cell's read noise ``sigma_G = read_floor_s + read_rel*G`` (the filament's,
    :func:`bruno_lab.devices.rram.rram_read_current_a`; a pristine cell has none)."""
    g = one_t_one_r_read_current_a(read_v, gate_v, state, cell, transistor) / read_v
    if generator is None:
        return g
    eps = torch.randn(g.shape, generator=generator, dtype=torch.float64).to(g.dtype)
    noise = (cell.read_floor_s + cell.read_rel * g) * eps
    return g + torch.where(state.formed, noise, torch.zeros_like(noise))


__all__ = [
    "TransistorParams",
    "gate_voltage_for_current_v",
    "on_resistance_ohm",
    "one_t_one_r_pulse",
    "one_t_one_r_read_current_a",
    "one_t_one_r_read_siemens",
    "pulse_current_limit_a",
    "saturation_current_a",
    "series_cell_voltage_v",
    "specific_current_a",
    "thermal_voltage_v",
]
