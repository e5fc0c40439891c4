"""What every protocol shares: the device it runs on, typed parameters with units, its result.

A protocol is a function ``run(bench, device, params) -> ProtocolResult``; it talks to the
instruments through the ``Bench`` and never touches the store (the orchestrator stores). Its
parameters are a pydantic model whose float fields carry the unit in their name and accept
quantities with units in plan files ("1.5 V", "100 ns"); ``check_envelope(guard)`` checks the
very waveforms and sweeps the protocol will send against the safety envelope before anything
runs (the driver layer refuses again, whoever asks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BeforeValidator, ConfigDict

from bruno_lab.errors import UnitError
from bruno_lab.strict import StrictModel
from bruno_lab.units import parse_quantity
from protocols.seams import BenchView


def _quantity_parser(unit: str) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return parse_quantity(value, unit, where="value")
            except UnitError as exc:
                # pydantic turns ValueError into a field error; the plan loader adds file/line.
                raise ValueError(str(exc).removeprefix("value: ")) from None
        if isinstance(value, list):
            return [parse(v) for v in value]
        return value

    return parse


def _q(unit: str) -> BeforeValidator:
    return BeforeValidator(_quantity_parser(unit))


# Float fields in SI units that also accept "1.5 V"-style strings in plans.
Volts = Annotated[float, _q("V")]
Seconds = Annotated[float, _q("s")]
Amperes = Annotated[float, _q("A")]
Hertz = Annotated[float, _q("Hz")]
Siemens = Annotated[float, _q("S")]
VoltsList = Annotated[list[float], _q("V")]
SecondsList = Annotated[list[float], _q("s")]
AmperesList = Annotated[list[float], _q("A")]
HertzList = Annotated[list[float], _q("Hz")]


class ProtocolParams(StrictModel):
    """Base of every protocol's parameters: frozen, unknown fields refused, SI floats (finite;
    a boolean is never a number: ``bruno_lab.strict``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Device kinds the protocol applies to ("fecap", "rram", "felif").
    kinds: ClassVar[tuple[str, ...]] = ()

    def expand(self) -> list[ProtocolParams]:
        """The measurement rows this entry makes (one by default; pv_loop: one per frequency)."""
        return [self]

    def check_envelope(self, guard: Any, wiring: Any = None) -> None:
        """Check every stimulus this protocol will send against ``guard``
        (an ``instruments.envelope.SafetyGuard`` for the device kind), before anything runs.
        ``wiring`` is the station's wiring section (e.g. the FeLIF transconductance).

        Protocols build the very waveforms and sweeps they will send and pass them to the
        guard's ``check_waveform`` / ``check_sweep`` / ``check_current``; a refusal raises
        ``EnvelopeError`` naming the limit and the value.
        """
        raise NotImplementedError

    def estimate_s(self) -> float:
        """A rough wall-time estimate of one run on a bench, for dry-run schedules and ETAs."""
        raise NotImplementedError

    def as_record(self) -> dict[str, Any]:
        """The parameters as stored with the measurement (unit-suffixed keys, JSON values)."""
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class DeviceUnderTest:
    """One device on the wafer: its die (column, row, label), site index, kind and geometry."""

    die_col: int
    die_row: int
    die_label: str
    site: int
    kind: str
    geometry: dict[str, float] = field(default_factory=dict)

    @property
    def area_m2(self) -> float:
        """Electrode area; FeCap and FeLIF protocols divide charges by it."""
        area = self.geometry.get("area_m2")
        if area is None or not area > 0:
            raise ValueError(f"device {self.die_label}/{self.site} has no positive area_m2")
        return float(area)


class DeviceFailure(Exception):
    """The device, not the bench, failed: a short, compliance everywhere, no switching.

    Protocols raise it with a reason; the orchestrator records it on the measurement and the run
    goes on. Arrays measured so far may be attached so the failure keeps its evidence.
    """

    def __init__(
        self, reason: str, arrays: dict[str, tuple[np.ndarray, str]] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.arrays = arrays or {}


@dataclass
class ProtocolResult:
    """Raw arrays (name -> (values, unit)) and scalar results (unit-suffixed names) of a run."""

    arrays: dict[str, tuple[np.ndarray, str]]
    scalars: dict[str, float]

    def __post_init__(self) -> None:
        for name, (values, unit) in self.arrays.items():
            if not isinstance(values, np.ndarray) or not isinstance(unit, str):
                raise TypeError(f"array {name!r} must be (ndarray, unit str)")
        self.scalars = {k: float(v) for k, v in self.scalars.items()}


@dataclass(frozen=True)
class ProtocolSpec:
    """A registered protocol: its stored name, parameter class and run function."""

    name: str
    params_cls: type[ProtocolParams]
    run: Callable[[Any, DeviceUnderTest, Any], ProtocolResult]
    doc: str = ""


def check_before_run(bench: BenchView, params: ProtocolParams) -> None:
    """Check ``params`` against the bench's envelope (its guard knows the device kind under
    the needles) before a protocol sends anything; ``EnvelopeError`` names the limit."""
    guard = getattr(bench, "guard", None)
    if guard is not None:
        params.check_envelope(guard, getattr(bench, "wiring", None))


def log_spaced(start: float, stop: float, n: int) -> np.ndarray:
    """``n`` log-spaced points from ``start`` to ``stop`` (both > 0)."""
    return np.geomspace(start, stop, n)
