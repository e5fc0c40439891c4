"""Role interfaces (what protocols may call) and the model registry (what a station names).

A protocol talks to a ``SourceMeter``, a ``WaveformGenerator``, an ``Oscilloscope``, a
``ProbeStation`` and a ``Clock``, never to a model. A driver module declares its class with
``@register_model("keithley2450", role="smu")``; ``instruments.station`` imports every module of
the package, so adding a model (a Keithley 2636B in TSP, a Keysight B1500A, an MPI SENTIO) is one
new file ``instruments/<model>.py`` and its name in the station file.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, TypeVar

import numpy as np

if TYPE_CHECKING:
    from instruments.envelope import SafetyGuard

ROLES = ("smu", "awg", "scope", "prober", "clock", "array_tester", "switch_matrix")


class SourceMeter(abc.ABC):
    """A voltage source that measures current (role ``smu``). Volts and amperes."""

    @abc.abstractmethod
    def configure_voltage_source(
        self, range_v: float, current_limit_a: float, nplc: float = 1.0
    ) -> None:
        """Source voltage on ``range_v``, limit the current to ``current_limit_a``, measure
        current integrating ``nplc`` power-line cycles."""

    source_voltage_v: float
    output_enabled: bool

    @abc.abstractmethod
    def measure_current_a(self, *, raise_on_compliance: bool = True) -> float:
        """One current reading, A."""

    @abc.abstractmethod
    def sweep_voltage_list(
        self,
        voltages_v: np.ndarray,
        current_limit_a: float,
        delay_s: float,
        *,
        raise_on_compliance: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Source each voltage in turn, measure the current: ``(voltage_v, current_a)``."""

    @property
    @abc.abstractmethod
    def compliance_tripped(self) -> bool:
        """Did the source reach its current limit?"""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """0 V, output off."""


class WaveformGenerator(abc.ABC):
    """An arbitrary waveform generator (role ``awg``); samples in volts at the device."""

    @abc.abstractmethod
    def upload_waveform(
        self, name: str, samples_v: np.ndarray, sample_rate_hz: float, binary: bool = True
    ) -> None:
        """Load one period and select it; the device sees ``samples_v`` (V) at the rate."""

    @abc.abstractmethod
    def configure_burst(self, n_cycles: int) -> None:
        """Play ``n_cycles`` periods per trigger (bus-triggered)."""

    output_enabled: bool

    @abc.abstractmethod
    def trigger(self) -> None:
        """Play one burst now."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Output off."""


class Oscilloscope(abc.ABC):
    """A digitizing oscilloscope (role ``scope``)."""

    @abc.abstractmethod
    def configure(
        self,
        time_scale_s_per_div: float,
        channels: Mapping[int, tuple[float, float]],
        *,
        time_position_s: float = 0.0,
        left_edge_s: float | None = None,
    ) -> None:
        """Horizontal scale (s/div) and, per channel, ``(volts_per_div, offset_v)``;
        ``left_edge_s``: where the screen starts relative to the trigger, s."""

    @abc.abstractmethod
    def arm_single(self, timeout_s: float = 5.0) -> None:
        """Arm one acquisition on the next trigger; returns once the scope is armed."""

    @abc.abstractmethod
    def wait_complete(self) -> None:
        """Block until every command sent so far is done (``*OPC?``): e.g. armed."""

    @abc.abstractmethod
    def wait_acquired(self, timeout_s: float) -> None:
        """Block until the armed acquisition is complete (``InstrumentTimeout`` if not)."""

    @abc.abstractmethod
    def read_waveform(self, channel: int) -> tuple[np.ndarray, np.ndarray]:
        """The last acquisition of ``channel``: ``(time_s, volts)``."""


class DiePosition(NamedTuple):
    """Where the needles are on the wafer map: die column, row and site (sub-die index)."""

    column: int
    row: int
    site: int


class MapPosition(NamedTuple):
    """A die position with the chuck coordinates from home, metres."""

    column: int
    row: int
    site: int
    x_m: float
    y_m: float


class ProbeStation(abc.ABC):
    """A wafer prober (role ``prober``): wafer-map stepping, chuck contact and separation."""

    @abc.abstractmethod
    def step_first_die(self) -> DiePosition: ...

    @abc.abstractmethod
    def step_next_die(self) -> DiePosition | None:
        """The next die of the map, or None at the end of the wafer."""

    @abc.abstractmethod
    def step_to(self, column: int, row: int, site: int = 0) -> DiePosition: ...

    @abc.abstractmethod
    def position(self) -> MapPosition: ...

    @abc.abstractmethod
    def contact(self) -> None: ...

    @abc.abstractmethod
    def separate(self) -> None: ...

    @property
    @abc.abstractmethod
    def in_contact(self) -> bool: ...


class ArrayTester(abc.ABC):
    """An array tester (role ``array_tester``): drives the word, bit and source lines of the 1T1R
    array under the probe card, reads cells, rows or the whole array, runs row write-verify
    and forming on the instrument, and the analog matrix-vector product. Volts, amperes,
    siemens, seconds; rows and columns count from 0."""

    output_enabled: bool

    @abc.abstractmethod
    def array_size(self) -> tuple[int, int]:
        """(rows, columns) of the array the probe card touches."""

    @abc.abstractmethod
    def configure_read(
        self, read_v: float, gate_v: float, aperture_s: float, mode: str = "cell"
    ) -> None:
        """Read voltage (bit lines), gate (word line), conversion time, ``cell``/``row`` mode."""

    @abc.abstractmethod
    def read_cell(self, row: int, col: int) -> float:
        """One cell's conductance, S."""

    @abc.abstractmethod
    def read_row(self, row: int) -> np.ndarray:
        """A row's conductances (columns,), S."""

    @abc.abstractmethod
    def read_array(self) -> np.ndarray:
        """Every cell (rows, columns), S."""

    @abc.abstractmethod
    def pulse(
        self,
        *,
        row: int | None = None,
        col: int | None = None,
        wordline_v: float,
        bitline_v: float,
        sourceline_v: float,
        width_s: float,
        compliance_a: float,
    ) -> np.ndarray:
        """One pulse on a cell (row and col), a row (row) or a column (col); returns the current
        through each selected cell at the end of the pulse, A."""

    @abc.abstractmethod
    def program_row(self, row: int, targets_siemens: np.ndarray, settings: Any) -> Any:
        """Write-verify one row on the instrument (NaN target: leave the cell alone)."""

    @abc.abstractmethod
    def form_row(self, row: int, settings: Any) -> np.ndarray:
        """Form a row's pristine cells; the forming amplitude per cell (NaN: not formed)."""

    @abc.abstractmethod
    def mvm(self, row_v: np.ndarray, gate_v: float) -> np.ndarray:
        """Column currents (B, columns) for row voltages (B, rows), A."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Every line at 0 V, drivers released."""


class SwitchMatrix(abc.ABC):
    """A relay switch matrix (role ``switch_matrix``) between instrument rows and device columns
    (the array's lines): close and open crosspoints; never while a source is on. (The relay
    methods are ``close_channels``/``open_channels``: a driver's ``close()`` closes its VISA
    session, which ``Bench.close`` calls.)"""

    @abc.abstractmethod
    def close_channels(self, channels: list[str]) -> None:
        """Close crosspoints (e.g. ``["1A05", "1C12"]``), waiting until the relays settle."""

    @abc.abstractmethod
    def open_channels(self, channels: list[str]) -> None:
        """Open crosspoints."""

    @abc.abstractmethod
    def open_all(self) -> None:
        """Open every crosspoint."""

    @abc.abstractmethod
    def closed(self) -> list[str]:
        """The closed crosspoints."""


class Clock(abc.ABC):
    """Time as the devices see it: wall time on a real bench, virtual time in the sim."""

    @abc.abstractmethod
    def now_s(self) -> float:
        """Seconds since an arbitrary origin."""

    @abc.abstractmethod
    def wait_s(self, seconds: float) -> None:
        """Let ``seconds`` pass (for the devices)."""


# -- model registry -------------------------------------------------------------------------


class ModelClass(Protocol):
    """What the station needs of a registered model's class: whether it is opened on a VISA
    resource, and its constructor (the open resource, or None when it needs none)."""

    needs_resource: ClassVar[bool]

    def __init__(
        self,
        resource: Any,
        *,
        role: str | None = None,
        guard: SafetyGuard | None = None,
        timeout_s: float = ...,
    ) -> None: ...


@dataclass(frozen=True)
class ModelEntry:
    name: str
    role: str
    cls: type[ModelClass]


MODELS: dict[str, ModelEntry] = {}

T = TypeVar("T", bound=type[ModelClass])


def register_model(name: str, *, role: str) -> Callable[[T], T]:
    """Class decorator: the station file's ``model: <name>`` opens this class as ``role``."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")

    def decorate(cls: T) -> T:
        existing = MODELS.get(name)
        if existing is not None and existing.cls is not cls:
            raise ValueError(f"model {name!r} already registered by {existing.cls.__qualname__}")
        MODELS[name] = ModelEntry(name, role, cls)
        cls.MODEL_NAME = name  # type: ignore[attr-defined]
        cls.ROLE = role  # type: ignore[attr-defined]
        return cls

    return decorate
