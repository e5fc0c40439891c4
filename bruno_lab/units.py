"""Quantities at the edges: plan files and CLI options accept "1.5 V", "100 ns", "10 uA".

Inside bruno-lab everything is a float in SI units; this module is where strings become floats.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from bruno_lab.errors import UnitError


@lru_cache(maxsize=1)
def _registry() -> Any:
    import pint

    return pint.UnitRegistry()


def parse_quantity(value: str | float | int, unit: str, *, where: str = "value") -> float:
    """Return ``value`` as a float in SI ``unit`` ("V", "s", "A", "m**2", "S" for siemens, "").

    A bare number is taken to be in ``unit`` already. A string with a unit is converted; a
    unit of the wrong dimension raises ``UnitError`` naming ``where`` and the expected unit.
    """
    if isinstance(value, bool):
        raise UnitError(f"{where}: expected a quantity in {unit or 'no unit'}, got {value!r}")
    if isinstance(value, int | float):
        return _finite(float(value), value, where)
    text = str(value).strip()
    if len(text) > 200:
        raise UnitError(f"{where}: {len(text)} characters is not a quantity")
    try:
        return _finite(float(text), text, where)  # a bare number string is in `unit` already
    except ValueError:
        pass
    except OverflowError:
        raise UnitError(f"{where}: {text!r} is out of range") from None
    ureg = _registry()
    try:
        q = ureg.Quantity(text.replace("µ", "u").replace("Ω", "ohm"))
    except Exception as exc:  # pint raises several unrelated types for garbage
        raise UnitError(f"{where}: cannot parse {text!r} as a quantity in {unit}") from exc
    if isinstance(q, int | float):
        return _finite(float(q), text, where)
    target = ureg.Unit(unit) if unit else ureg.dimensionless
    try:
        magnitude = float(q.to(target).magnitude)
    except OverflowError:
        raise UnitError(f"{where}: {text!r} is out of range") from None
    except Exception as exc:
        raise UnitError(
            f"{where}: {text!r} has unit {q.units:~} but {unit or 'a plain number'} is expected"
        ) from exc
    return _finite(magnitude, text, where)


def _finite(x: float, given: object, where: str) -> float:
    """``x`` if finite; infinities and NaN (also from overflow, "1e400 s") are UnitError."""
    if not math.isfinite(x):
        raise UnitError(f"{where}: {given!r} is not a finite quantity")
    return x
