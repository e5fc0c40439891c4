"""Validators (strict: refuse, never clip), reply parsers and value formatters for drivers.

A validator is ``check(value, where) -> value``; it raises ``SettingRangeError`` naming
``where``, the value and the allowed range. Parsers turn one reply line into a Python value
and raise ``ValueError`` on anything else (the transport turns that into ``GarbledReply``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from instruments.errors import SettingRangeError

Validator = Callable[[Any, str], Any]


# -- validators: strict, never clipping ----------------------------------------------------


def in_range(low: float, high: float) -> Validator:
    """A validator accepting finite numbers in ``[low, high]``; anything else is refused."""

    def check(value: Any, where: str) -> float:
        number = float(value)
        if not math.isfinite(number) or not low <= number <= high:
            raise SettingRangeError(f"{where}: {value!r} outside the range [{low:g}, {high:g}]")
        return number

    return check


def integer_in_range(low: int, high: int) -> Validator:
    """A validator accepting integers in ``[low, high]``."""

    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or int(value) != value:
            raise SettingRangeError(f"{where}: {value!r} is not an integer")
        number = int(value)
        if not low <= number <= high:
            raise SettingRangeError(f"{where}: {value!r} outside the range [{low}, {high}]")
        return number

    return check


def one_of(*allowed: Any) -> Validator:
    """A validator accepting exactly one of ``allowed``."""

    def check(value: Any, where: str) -> Any:
        if value not in allowed:
            raise SettingRangeError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value

    return check


def as_bool(value: Any, where: str) -> bool:
    """A validator for on/off settings: only real booleans (or 0/1)."""
    if value in (True, False, 0, 1):
        return bool(value)
    raise SettingRangeError(f"{where}: {value!r} is not a boolean")


# -- reply parsers and formatters ----------------------------------------------------------


def parse_float(reply: str) -> float:
    """An ASCII number (``1.234567E-06``, ``+1.0``)."""
    return float(reply.strip())


def parse_int(reply: str) -> int:
    """An ASCII integer, possibly signed (``+1``)."""
    return int(reply.strip())


def parse_bool(reply: str) -> bool:
    """``0|1`` (also ``+0|+1``, ``ON|OFF``)."""
    text = reply.strip().upper()
    if text in ("1", "+1", "ON"):
        return True
    if text in ("0", "+0", "OFF"):
        return False
    raise ValueError(f"not a boolean reply: {reply!r}")


def format_float(value: float) -> str:
    """A float as SCPI accepts it, nine significant digits (``0.001``, ``1.5e-07``)."""
    return f"{float(value):.9g}"


def format_on_off(value: bool) -> str:
    return "ON" if value else "OFF"


_ERROR_RE = re.compile(r'^\s*([+-]?\d+)\s*,\s*"?(.*?)"?\s*$')


def parse_error_entry(reply: str) -> tuple[int, str]:
    """``<code>,"<text>"`` from ``SYST:ERR?`` as ``(code, text)``."""
    match = _ERROR_RE.match(reply)
    if match is None:
        raise ValueError(f"not an error-queue entry: {reply!r}")
    return int(match.group(1)), match.group(2)
