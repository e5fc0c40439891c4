"""Ferroelectric capacitor (HZO + interlayer) physics: the one place these equations live.

The lumped model of the design (SI units, ``eps0`` the vacuum permittivity)::

    C0   = eps0*eps_hzo*A/t_hzo                        linear dielectric of the HZO layer
    k_c  = eps_int/(t_hzo*eps_int + t_int*eps_hzo)      field per volt across the stack, 1/m
    k_d  = t_int/(eps0*(t_hzo*eps_int + t_int*eps_hzo)) depolarization field per C/m², V*m/C
    E    = (V - V_imprint)*k_c - P*k_d                  field in the ferroelectric, V/m
    tau(E) = tau0*exp((E_a/(|E| + soft_E))**alpha)      switching time (Merz-law-like)
    dP/dt  = (sign(E)*P_s - P)/tau(E)                   P clipped to [-P_s, P_s]
    I_leak = (I0*A*(exp(V/V_t) - 1) + I_dsc)*sign(V)

The exponent is bounded (``x <= X_MAX``) and written as a rate ``exp(-x)/tau0`` so that no
``inf`` or ``nan`` appears in float32 or float64, forward or backward.

A leaf: it imports only ``params``. The FeLIF neuron (``felif_core``) composes ``FeCapParams``
and calls these functions; the multi-domain simulation of a measured capacitor under any voltage
waveform is ``fecap_sim.fecap_simulate``, the standard waveforms and P-V loop features are in
``fecap_waveforms``.
"""

# param_field() builds dataclasses.field(metadata=...) for the frozen parameter sets:
# ruff: noqa: RUF009
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from bruno_lab.devices.params import DeviceParams, param_field

EPS0_F_M = 8.8541878128e-12
"""Vacuum permittivity, F/m."""
X_MAX = 80.0
"""Bound on the switching exponent ``(E_a/(|E|+soft_E))**alpha``: rate floor exp(-80)/tau0."""
LEAK_EXP_MAX = 40.0
"""Bound on ``V/V_t`` in the diode-like leakage (only reached far beyond any safe bias)."""


@dataclasses.dataclass(frozen=True)
class FeCapParams(DeviceParams):
    """One HZO FeCap per device (leading dim). Defaults: the design's (BRUNO paper's code)."""

    area_m2: Tensor = param_field(25e-12, "m**2", 1e-16, 1e-6, "capacitor area")
    t_hzo_m: Tensor = param_field(10e-9, "m", 1e-9, 1e-7, "HZO (ferroelectric) thickness")
    t_int_m: Tensor = param_field(1.375e-9, "m", 0.0, 2e-8, "interlayer thickness")
    eps_hzo: Tensor = param_field(25.2, "", 1.0, 200.0, "relative permittivity of HZO")
    eps_int: Tensor = param_field(33.0, "", 1.0, 200.0, "relative permittivity of interlayer")
    e_a_v_m: Tensor = param_field(12.7e8, "V/m", 1e6, 1e11, "activation field")
    ps_c_m2: Tensor = param_field(0.22, "C/m**2", 1e-4, 2.0, "saturation polarization")
    tau0_s: Tensor = param_field(1e-13, "s", 1e-16, 1e-6, "switching time at infinite field")
    alpha: Tensor = param_field(1.3, "", 0.2, 10.0, "Merz-law exponent")
    soft_e_v_m: Tensor = param_field(5e-6, "V/m", 1e-12, 1e6, "field softening at E = 0")
    i0_a_m2: Tensor = param_field(1e-4, "A/m**2", 0.0, 1e6, "leakage saturation density")
    v_t_v: Tensor = param_field(0.32, "V", 0.01, 10.0, "leakage slope voltage")
    i_dsc_a: Tensor = param_field(10e-12, "A", 0.0, 1e-3, "constant discharge current")
    c_par_f: Tensor = param_field(15e-15, "F", 0.0, 1e-9, "parasitic capacitance in parallel")
    imprint_v: Tensor = param_field(0.0, "V", -5.0, 5.0, "imprint: shift of the P-V loop")
    e_a_spread_rel: Tensor = param_field(
        0.1, "", 0.0, 2.0, "log-normal sigma of domain activation fields (unused at K = 1)"
    )


def linear_capacitance_f(p: Any) -> Tensor:
    """C0 + C_par: the linear (non-switching) capacitance of the membrane, F."""
    c0 = EPS0_F_M * p.eps_hzo * p.area_m2 / p.t_hzo_m
    return c0 + p.c_par_f


def field_coefficients(p: Any) -> tuple[Tensor, Tensor]:
    """(k_c in 1/m, k_d in V*m/C): E = V*k_c - P*k_d across the HZO + interlayer stack."""
    denom = p.t_hzo_m * p.eps_int + p.t_int_m * p.eps_hzo
    return p.eps_int / denom, p.t_int_m / (EPS0_F_M * denom)


def ferroelectric_field_v_m(
    voltage_v: Tensor, polarization_c_m2: Tensor, p: Any, imprint_v: Tensor | float = 0.0
) -> Tensor:
    """Field in the ferroelectric layer, V/m, for the voltage across the stack and P."""
    k_c, k_d = field_coefficients(p)
    return (voltage_v - imprint_v) * k_c - polarization_c_m2 * k_d


def switching_exponent(field_v_m: Tensor, p: Any, e_a_v_m: Tensor | None = None) -> Tensor:
    """x = (E_a/(|E| + soft_E))**alpha, bounded by X_MAX (tau = tau0*exp(x))."""
    e_a = p.e_a_v_m if e_a_v_m is None else e_a_v_m
    x = (e_a / (field_v_m.abs() + p.soft_e_v_m)) ** p.alpha
    return x.clamp(max=X_MAX)


def switching_time_s(field_v_m: Tensor, p: Any, e_a_v_m: Tensor | None = None) -> Tensor:
    """tau(E) = tau0*exp(x), s (finite: the exponent is bounded)."""
    return p.tau0_s * torch.exp(switching_exponent(field_v_m, p, e_a_v_m))


def switching_rate_per_s(field_v_m: Tensor, p: Any, e_a_v_m: Tensor | None = None) -> Tensor:
    """1/tau(E) = exp(-x)/tau0, 1/s: the numerically safe form used by every integrator."""
    return torch.exp(-switching_exponent(field_v_m, p, e_a_v_m)) / p.tau0_s


def polarization_rate_c_m2_s(
    field_v_m: Tensor, polarization_c_m2: Tensor, p: Any, e_a_v_m: Tensor | None = None
) -> Tensor:
    """dP/dt = (sign(E)*P_s - P)/tau(E), C/(m²·s)."""
    target = torch.sign(field_v_m) * p.ps_c_m2
    return (target - polarization_c_m2) * switching_rate_per_s(field_v_m, p, e_a_v_m)


def leakage_current_a(voltage_v: Tensor, p: Any) -> Tensor:
    """I_leak = (I0*A*(exp(V/V_t) - 1) + I_dsc)*sign(V), A (exponent bounded)."""
    arg = (voltage_v / p.v_t_v).clamp(max=LEAK_EXP_MAX)
    return (p.i0_a_m2 * p.area_m2 * torch.expm1(arg) + p.i_dsc_a) * torch.sign(voltage_v)
