"""Engineering units for display: SI names in, the units device papers print out.

Stored names carry their SI unit as a suffix (``pr_pos_c_m2``, ``e_a_v_m``, ``t_hzo_m``,
``g_lrs_siemens``). A figure or a wafer map shows each in the unit of the field: polarization in
µC/cm², fields in MV/cm, thicknesses in nm, conductances in µS (or nS for high-resistance
states), other SI units with the prefix that suits the values. Scaling to the display unit
before plotting is also what keeps colour bars free of offset notation (``1e-8 x 1.015``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

_PREFIXES = {-15: "f", -12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k", 6: "M", 9: "G"}

# SI suffix of a stored name -> (base unit symbol, what it measures)
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_c_m2", "C/m²"),
    ("_v_m", "V/m"),
    ("_a_m2", "A/m²"),
    ("_siemens", "S"),
    ("_hz", "Hz"),
    ("_m2", "m²"),
    ("_v", "V"),
    ("_a", "A"),
    ("_s", "s"),
    ("_c", "C"),
    ("_f", "F"),
    ("_m", "m"),
)

# Labels for the names the protocols and fits store (else: the name, underscores to spaces).
LABELS: dict[str, str] = {
    "pr_pos_c_m2": "Pr+",
    "pr_neg_c_m2": "Pr−",
    "vc_pos_v": "Vc+",
    "vc_neg_v": "Vc−",
    "imprint_v": "imprint",
    "switched_polarization_c_m2": "switched polarization",
    "nonswitching_charge_c": "non-switching charge",
    "switched_charge_pos_c": "switched charge +",
    "switched_charge_neg_c": "switched charge −",
    "ps_c_m2": "Ps",
    "e_a_v_m": "Ea",
    "t_hzo_m": "t HZO",
    "t_int_m": "t interlayer",
    "e_a_spread_rel": "Ea spread (rel.)",
    "firing_rate_hz": "firing rate",
    "first_spike_s": "first spike",
    "n_spikes": "spikes",
    "forming_voltage_v": "forming voltage",
    "set_voltage_v": "SET voltage",
    "reset_voltage_v": "RESET voltage",
    "g_lrs_siemens": "G LRS",
    "g_hrs_siemens": "G HRS",
    "v0_v": "V0 (I-V nonlinearity)",
    "v_form_v": "V form (model)",
    "mean_conductance_siemens": "mean G (read noise)",
    "std_conductance_siemens": "read noise σ",
    "drift_rel_per_decade": "drift per decade",
    "n_cycles_to_close": "cycles to window close",
    "n_cycles_done": "cycles done",
    "n_success": "levels reached",
    "mean_attempts": "verify pulses (mean)",
}

# Quantities centred on zero: a diverging colour map with white at 0.
SIGNED: frozenset[str] = frozenset({"imprint_v", "drift_rel_per_decade"})


@dataclass(frozen=True)
class Quantity:
    """How one stored quantity is shown: label, display unit, factor from SI, colour map."""

    name: str
    label: str
    unit: str
    factor: float
    diverging: bool = False
    log: bool = False

    @property
    def title(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def scale(self, values: Iterable[float] | float | np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * self.factor

    def format(self, value: float, *, unit: bool = True) -> str:
        text = fmt(float(value) * self.factor)
        return f"{text} {self.unit}" if unit and self.unit and text != "–" else text

    @property
    def colorscale(self) -> str:
        return "RdBu" if self.diverging else "Viridis"


def fmt(x: float, sig: int = 3) -> str:
    """A number with ``sig`` significant digits in plain notation (no exponent): 22.4, 0.253."""
    if x is None or not math.isfinite(x):
        return "–"
    if abs(x) < 1e-5:  # display units put values near 1..1000: this is zero at that scale
        return "0"
    digits = sig - 1 - math.floor(math.log10(abs(x)))
    if digits <= 0:  # >= 10**sig: an integer, never an exponent
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def pct(x: float | None, digits: int = 1) -> str:
    """A fraction as a percentage (0.6198 -> '62.0 %'); '–' when missing."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"{100.0 * x:.{digits}f} %"


def si_prefix(values: Iterable[float] | np.ndarray, base: str) -> tuple[str, float]:
    """(unit with prefix, factor) so that the median magnitude of ``values`` lies in [1, 1000)."""
    arr = np.abs(np.asarray(list(values) if not isinstance(values, np.ndarray) else values, float))
    arr = arr[np.isfinite(arr) & (arr > 0)]
    if arr.size == 0:
        return base, 1.0
    exp3 = int(math.floor(math.log10(float(np.median(arr))) / 3.0) * 3)
    exp3 = min(max(exp3, -15), 9)
    return _PREFIXES[exp3] + base, 10.0**-exp3


def base_unit(name: str) -> tuple[str, str]:
    """(stem, SI unit symbol) of a stored name: ``g_lrs_siemens`` -> (``g_lrs``, ``S``)."""
    for suffix, unit in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], unit
    if name.endswith("_rel") or name.endswith("_rel_per_decade"):
        return name, ""
    return name, ""


def quantity(name: str, values: ArrayLike | None = None) -> Quantity:
    """The display of stored quantity ``name`` (its ``values`` choose a free SI prefix)."""
    stem, unit = base_unit(name)
    label = LABELS.get(name, stem.replace("_", " "))
    diverging = name in SIGNED
    vals = np.asarray([] if values is None else list(np.ravel(values)), dtype=float)
    if unit == "C/m²":
        return Quantity(name, label, "µC/cm²", 100.0, diverging)
    if unit == "V/m":
        return Quantity(name, label, "MV/cm", 1e-8, diverging)
    if unit == "m" and stem.startswith("t_"):
        return Quantity(name, label, "nm", 1e9, diverging)
    if unit == "S":
        shown, factor = si_prefix(vals, "S") if vals.size else ("µS", 1e6)
        if shown not in ("µS", "nS", "mS", "pS"):
            shown, factor = "µS", 1e6
        return Quantity(name, label, shown, factor, diverging)
    if unit == "V":
        small = vals.size and float(np.nanmedian(np.abs(vals))) < 0.1
        return Quantity(name, label, "mV" if small else "V", 1e3 if small else 1.0, diverging)
    if name.endswith("_rel_per_decade"):
        return Quantity(name, label, "%/dec", 100.0, True)
    if unit:
        shown, factor = si_prefix(vals, unit) if vals.size else (unit, 1.0)
        return Quantity(name, label, shown, factor, diverging)
    return Quantity(name, label, "", 1.0, diverging)
