"""The bench: where instruments live (the station file), opened and wired for safety.

``open_bench(station_path) -> Bench`` reads the station YAML (``sim serve --station-out`` writes
one; a real bench has its own), opens every instrument by its ``model`` through the model
registry, checks identities, and wires the safety envelope: one ``SafetyGuard`` shared by all
drivers, told the device kind under the needles whenever the prober moves, asking the prober
for contact before any output goes on, and making every source safe before the needles move.

``Bench`` is a context manager: on exit, on an error or on Ctrl-C, ``safe_state()`` puts the
SMU at 0 V with output off, the AWG output off, then separates the chuck, and the resources
are closed.

    with open_bench("station.yaml") as bench:
        bench.prober.step_to(3, 4, site=1)
        bench.prober.contact()
        ...
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator

import instruments
from bruno_lab.errors import PlanError
from bruno_lab.strict import StrictModel
from instruments import station_lock
from instruments.envelope import Envelope, SafetyGuard
from instruments.errors import ConnectionLost, InstrumentError
from instruments.roles import MODELS, ROLES, DiePosition
from instruments.scpi import DEFAULT_TIMEOUT_S

log = logging.getLogger(__name__)

MAX_DIES = 100_000

_NOT_DRIVERS = {
    "errors", "envelope", "roles", "scpi", "station", "station_lock", "testing", "validators",
    "sim",
}  # fmt: skip


def load_driver_modules() -> None:
    """Import every module of ``instruments`` (not ``sim``): each registers its models."""
    for module in pkgutil.iter_modules(instruments.__path__):
        if module.name not in _NOT_DRIVERS and not module.name.startswith("_"):
            importlib.import_module(f"instruments.{module.name}")


_NAME = r"^[^\x00-\x1f\x7f]+$"  # printable: no newline, no control character
_HOST = re.compile(r"^[A-Za-z0-9._:\-\[\]%]+$")
MAX_TIMEOUT_S = 3600.0


def check_resource(resource: str) -> str:
    """``resource`` if it is a VISA resource name pyvisa can parse (``TCPIP::host::5025::SOCKET``,
    ``GPIB0::12::INSTR``, ...), with a sane host and port; else ValueError saying the syntax."""
    from pyvisa import rname

    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in resource):
        raise ValueError("a VISA resource name has no newline or control character")
    try:
        parsed = rname.parse_resource_name(resource)
    except Exception as exc:  # InvalidResourceName and friends
        raise ValueError(
            f"{resource!r} is not a VISA resource name ({exc}); e.g. "
            "TCPIP::192.0.2.10::5025::SOCKET or GPIB0::12::INSTR"
        ) from None
    host = getattr(parsed, "host_address", None)
    if host is not None and not _HOST.match(str(host)):
        raise ValueError(f"{resource!r}: {host!r} is not a host name or address")
    port = getattr(parsed, "port", None)
    if port is not None and not (str(port).isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"{resource!r}: port {port} is not in 1..65535")
    return resource


class InstrumentEntry(StrictModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=64, pattern=_NAME)
    resource: str | None = Field(None, min_length=1, max_length=256)
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S)

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str | None) -> str | None:
        return None if value is None else check_resource(value)


class Wiring(StrictModel):
    """How the instruments meet the device. Gains and transconductances are positive and finite;
    the routes name what the protocols know. Add a field here for a new wiring key."""

    model_config = ConfigDict(extra="forbid")

    tia_gain_v_per_a: float | None = Field(None, gt=0, le=1e12)
    felif_input_transconductance_a_per_v: float | None = Field(None, gt=0, le=1.0)
    awg_to_device: Literal["direct"] | None = None
    smu_to_device: Literal["direct"] | None = None
    switch_matrix_buses: dict[Literal["smu", "awg", "ground", "gate"], str] | None = None
    switch_matrix_gate_bias_v: float | None = Field(None, ge=0, le=5.0)


class SiteEntry(StrictModel):
    """One site of the station's wafer summary; further geometry keys carry units (``_m2``)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    site: int | None = Field(None, ge=0, le=1_000_000)
    kind: Literal["fecap", "rram", "felif", "rram_array"]
    area_m2: float | None = Field(None, gt=0, lt=1.0)
    label: str = Field("", max_length=128)


class WaferSection(StrictModel):
    """The wafer map summary (``sim serve`` writes it): dies and sites, bounded in size."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    name: str = Field("", max_length=128)
    n_dies: int | None = Field(None, ge=0, le=MAX_DIES)
    dies: list[list[int | str]] | None = Field(None, max_length=MAX_DIES)
    n_cols: int | None = Field(None, ge=1, le=1000)
    n_rows: int | None = Field(None, ge=1, le=1000)
    sites: list[SiteEntry | Literal["fecap", "rram", "felif", "rram_array"]] = Field(
        default_factory=list, max_length=100_000
    )

    @field_validator("dies")
    @classmethod
    def _dies(cls, value: list[list[int | str]] | None) -> list[list[int | str]] | None:
        for die in value or []:
            if not 2 <= len(die) <= 3 or not all(
                isinstance(v, int) and 0 <= v <= 10_000 for v in die[:2]
            ):
                raise ValueError(f"a die is [col, row] or [col, row, label] (0..10000), not {die}")
        return value


class StationFile(StrictModel):
    """The station file: instruments by role, wiring, envelope and the wafer map summary."""

    model_config = ConfigDict(extra="forbid")

    station: str = Field("bench", min_length=1, max_length=128, pattern=_NAME)
    instruments: dict[str, InstrumentEntry]
    wiring: dict[str, Any] = Field(default_factory=dict)
    envelope: dict[str, Any] | None = None
    wafer: dict[str, Any] = Field(default_factory=dict)

    @field_validator("wafer")
    @classmethod
    def _wafer(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value:
            WaferSection.model_validate(value)
        return value

    @field_validator("wiring")
    @classmethod
    def _wiring(cls, value: dict[str, Any]) -> dict[str, Any]:
        return Wiring.model_validate(value).model_dump(exclude_none=True)


def _format_error(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors()[:5]:
        where = ".".join(
            str(p) for p in err["loc"] if not str(p).startswith(("function-", "list["))
        )
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"{path}: {where or '(top level)'}: {msg}")
    return "\n".join(lines)


def load_station(path: str | Path) -> StationFile:
    """Read and validate a station file; errors name the file and field (``PlanError``)."""
    from bruno_lab.yamlio import load_yaml_file

    path = Path(path)
    data = load_yaml_file(path, "station file").data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PlanError(f"{path}: a station file is a mapping (station, instruments, wiring)")
    try:
        station = StationFile.model_validate(data)
    except ValidationError as exc:
        raise PlanError(_format_error(path, exc)) from None
    load_driver_modules()
    for role, entry in station.instruments.items():
        if role not in ROLES:
            raise PlanError(f"{path}: instruments.{role}: unknown role, allowed {list(ROLES)}")
        known = MODELS.get(entry.model)
        if known is None:
            raise PlanError(
                f"{path}: instruments.{role}.model: {entry.model!r} is not one of {sorted(MODELS)}"
            )
        if known.role != role:
            raise PlanError(
                f"{path}: instruments.{role}.model: {entry.model!r} is a {known.role}, not a {role}"
            )
        if known.cls.needs_resource and not entry.resource:
            raise PlanError(f"{path}: instruments.{role}.resource: a VISA resource is required")
    return station


def site_kinds(wafer: Mapping[str, Any]) -> dict[int, str]:
    """Site index -> device kind from the station file's ``wafer.sites``."""
    kinds: dict[int, str] = {}
    for index, entry in enumerate(wafer.get("sites") or []):
        if isinstance(entry, str):
            kinds[index] = entry
        elif isinstance(entry, Mapping) and "kind" in entry:
            kinds[int(entry.get("site", index))] = str(entry["kind"])
    return kinds


@dataclass
class Bench:
    """The opened instruments of one station (None for a role the station lacks)."""

    smu: Any = None
    awg: Any = None
    scope: Any = None
    prober: Any = None
    clock: Any = None
    array_tester: Any = None
    switch_matrix: Any = None
    guard: SafetyGuard = field(default_factory=SafetyGuard)
    wiring: dict[str, Any] = field(default_factory=dict)
    wafer: dict[str, Any] = field(default_factory=dict)
    station: str = "bench"
    reopen: dict[str, Callable[[], Any]] = field(default_factory=dict)
    locks: list[str] = field(default_factory=list)  # instrument locks this bench holds

    def __post_init__(self) -> None:
        self._kinds = site_kinds(self.wafer)
        if self.prober is not None:
            self.guard.contact_probe = lambda: bool(self.prober.in_contact)
            self._wire_prober()
        self.guard.outputs_probe = self.live_outputs

    def live_outputs(self) -> list[str]:
        """The sources whose output is on or not known to be off (a switch matrix refuses to
        change a relay while this is not empty); asks an instrument only when its driver does
        not know."""
        live = []
        for role in ("smu", "awg", "array_tester"):
            source = getattr(self, role)
            if source is None:
                continue
            known = getattr(source, "_output_on", None)
            if known is None:
                known = bool(source.output_enabled)
            if known:
                live.append(role)
        return live

    def _wire_prober(self) -> None:
        self.prober.before_move.append(self.make_sources_safe)
        self.prober.after_move.append(self._prober_moved)

    def reconnect(self, role: str) -> Any:
        """Close and reopen one instrument (same model and resource); returns the new driver.

        What the old driver knew (compliance set, waveform uploaded) is gone: the envelope
        treats the new one as unknown, so outputs need configuring again.
        """
        if role not in self.reopen:
            raise KeyError(f"no way to reopen {role!r} on this bench")
        old = getattr(self, role)
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        new = self.reopen[role]()
        setattr(self, role, new)
        if role == "prober":
            self._wire_prober()
        log.warning("%s reconnected", role)
        return new

    def snapshot(self) -> dict[str, Any]:
        """Every instrument's identity and sent settings, plus station, wiring and the device
        kind the envelope applies: what a measurement row stores as provenance (no I/O)."""
        out: dict[str, Any] = {
            "station": self.station,
            "wiring": dict(self.wiring),
            "device_kind": self.guard.device_kind,
        }
        for role, instrument in self.instruments().items():
            take = getattr(instrument, "snapshot", None)
            out[role] = take() if callable(take) else {"idn": getattr(instrument, "idn", "?")}
        return out

    def instruments(self) -> dict[str, Any]:
        return {r: getattr(self, r) for r in ROLES if getattr(self, r) is not None}

    def _prober_moved(self, die: DiePosition | None, in_contact: bool) -> None:
        if die is not None:
            self.guard.device_kind = self._kinds.get(die.site)
            log.info("prober at %s: device kind %s", die, self.guard.device_kind)

    def make_sources_safe(self) -> None:
        """SMU to 0 V and output off, AWG output off, array tester lines released (each
        skipped where known to be off)."""
        for source in (self.smu, self.awg, self.array_tester):
            if source is not None:
                source.ensure_safe()

    def safe_state(self) -> list[str]:
        """Outputs off and 0 V, then the chuck separated, each verified by reading it back.

        Every step is tried even if one fails; an instrument whose read-back shows it safe
        counts as safe even if its shutdown reported an error (e.g. an older entry in its
        error queue). The failures are logged and returned (empty: the bench is safe).
        """
        problems: list[str] = []
        steps = [
            ("smu", lambda: self.smu.shutdown(), lambda: not self.smu.output_enabled),
            ("awg", lambda: self.awg.shutdown(), lambda: not self.awg.output_enabled),
            (
                "array_tester",
                lambda: self.array_tester.shutdown(),
                lambda: not self.array_tester.output_enabled,
            ),
            (
                "switch_matrix",
                lambda: self.switch_matrix.open_all(),
                lambda: not self.switch_matrix.closed(),
            ),
            (
                "prober",
                lambda: self.prober.command("MoveChuckSeparation"),
                lambda: not self.prober.in_contact,
            ),
        ]
        for role, action, verify in steps:
            if getattr(self, role) is None:
                continue
            problem = self._make_safe(role, action, verify)
            if problem is not None and role in self.reopen:
                try:  # a dropped link is no reason to leave an output on: reconnect, retry
                    self.reconnect(role)
                except Exception as exc:
                    log.error("safe state: cannot reconnect %s: %s", role, exc)
                else:
                    problem = self._make_safe(role, action, verify)
            if problem is not None:
                problems.append(problem)
        return problems

    @staticmethod
    def _make_safe(role: str, action: Callable[[], None], verify: Callable[[], bool]) -> str | None:
        """Run one shutdown and read it back; None if the instrument is confirmed safe."""
        first: Exception | None = None
        try:
            action()
        except Exception as exc:  # a safe state is attempted whatever went wrong before
            first = exc
        try:
            safe = verify()
        except Exception as exc:
            log.error("safe state: %s not confirmed safe: %s", role, first or exc)
            return f"{role}: {first or exc}"
        if not safe:
            log.error("safe state: %s still active after shutdown", role)
            return f"{role}: still active after shutdown ({first})"
        if first is not None:
            log.warning("safe state: %s is safe, but its shutdown reported: %s", role, first)
        return None

    def close(self) -> None:
        for instrument in self.instruments().values():
            with contextlib.suppress(Exception):
                instrument.close()
        locks, self.locks = self.locks, []
        station_lock.release(locks)

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        try:
            problems = self.safe_state()
        finally:
            self.close()
        if problems and exc is None:
            raise InstrumentError("bench not left safe: " + "; ".join(problems))


def open_instrument(
    model: str,
    resource: str | None,
    *,
    role: str,
    guard: SafetyGuard,
    resource_manager: Any = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Any:
    """Open one instrument by its station ``model`` name (the registry's key)."""
    load_driver_modules()
    entry = MODELS.get(model)
    if entry is None:
        raise PlanError(f"model {model!r} is not one of {sorted(MODELS)}")
    if not entry.cls.needs_resource:
        return entry.cls(None, role=role, guard=guard)
    if resource_manager is None:
        import pyvisa

        resource_manager = pyvisa.ResourceManager("@py")
    try:
        handle = resource_manager.open_resource(
            resource, read_termination="\n", write_termination="\n", timeout=timeout_s * 1000.0
        )
    except Exception as exc:  # VisaIOError, refused, unreachable, malformed resource string
        raise ConnectionLost(
            f"cannot open {resource}: {exc}", instrument=role, command=None
        ) from exc
    try:
        return entry.cls(handle, role=role, guard=guard, timeout_s=timeout_s)
    except BaseException:
        with contextlib.suppress(Exception):
            handle.close()
        raise


def open_bench(
    station_path: str | Path,
    *,
    envelope: Envelope | None = None,
    resource_manager: Any = None,
    timeout_s: float | None = None,
) -> Bench:
    """Open every instrument of a station file; the envelope comes from ``envelope`` or the
    station file's ``envelope:`` (else the defaults of ``instruments.envelope``)."""
    station = load_station(station_path)
    if envelope is None:
        envelope = Envelope.from_mapping(station.envelope, where=f"{station_path}: envelope")
    guard = SafetyGuard(envelope)
    # one process per bench: refused (StationBusy, exit 2) before any instrument is opened
    locks = station_lock.acquire(station_lock.station_resources(station), str(station_path))
    if resource_manager is None:
        import pyvisa

        resource_manager = pyvisa.ResourceManager("@py")
    opened: dict[str, Any] = {}
    reopen: dict[str, Callable[[], Any]] = {}
    try:
        for role in ROLES:
            entry = station.instruments.get(role)
            if entry is None:
                continue
            reopen[role] = functools.partial(
                open_instrument, entry.model, entry.resource, role=role, guard=guard,
                resource_manager=resource_manager,
                timeout_s=timeout_s if timeout_s is not None else entry.timeout_s,
            )  # fmt: skip
            opened[role] = reopen[role]()
    except BaseException:
        Bench(**opened, guard=guard, locks=locks).close()
        raise
    return Bench(
        **opened, guard=guard, wiring=dict(station.wiring), wafer=dict(station.wafer),
        station=station.station, reopen=reopen, locks=locks,
    )  # fmt: skip
