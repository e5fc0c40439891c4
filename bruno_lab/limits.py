"""Caps on the command-line options that set a size, and finite-number checks for the others.

A size typed one digit too long (``--domains 100000000``, ``--n-micro 100000000``) otherwise
runs until the machine is out of memory or patience. The caps are far above any real use and
far below a runaway; a value outside them is a usage error (exit 2) naming the option.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import typer

MAX_DOMAINS = 4096  # FeCap domains (the truth file's own cap)
MAX_N_MICRO = 100_000  # micro-steps per 1 ms network step (the paper uses 1000)
MAX_EPOCHS = 100_000
MAX_HIDDEN = 65_536
MAX_BATCH = 1_000_000
MAX_THREADS = 1024
MAX_CYCLES = 100_000
MAX_PASSES = 10_000
MAX_CHUNK = 1_000_000
MAX_SIM_POINTS = 50_000_000  # samples of one device simulation (steps x micro-steps, sweep)


def finite(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False
) -> Callable[..., Any]:
    """A typer callback: the value must be finite and within [lo, hi] (``lo_open``: > lo);
    else ``BadInputError`` (exit 2) naming the option."""

    def check(param: typer.CallbackParam, value: float | None) -> float | None:
        from bruno_lab.errors import BadInputError

        if value is None:
            return value
        name = (param.opts or [param.name or "value"])[0]
        if not math.isfinite(value):
            raise BadInputError(f"{name} {value}: not a finite number")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise BadInputError(f"{name} {value}: must be {'>' if lo_open else '>='} {lo:g}")
        if hi is not None and value > hi:
            raise BadInputError(f"{name} {value}: must be <= {hi:g}")
        return value

    return check


def check_points(n: float, option: str, what: str) -> None:
    """Refuse a simulation of more than ``MAX_SIM_POINTS`` samples (exit 2)."""
    from bruno_lab.errors import BadInputError

    if not math.isfinite(n) or n > MAX_SIM_POINTS:
        raise BadInputError(
            f"{option}: {what} would be {n:.3g} samples, more than {MAX_SIM_POINTS:.0e}; "
            "shorten it or use a coarser step"
        )
