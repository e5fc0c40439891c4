"""The transport under every driver and the declared-property machinery of SCPI drivers.

``Instrument`` owns one pyvisa message-based resource: it sets termination (``\\n`` both ways)
and the timeout explicitly, checks the identity at connect (and raises on the wrong model),
logs every write and read at DEBUG, and turns pyvisa / socket / parse failures into the typed
errors of ``instruments.errors`` in one place (``_io``).

``ScpiInstrument`` adds the error queue (``check_errors``), ``*OPC?`` synchronisation and the
declared settings: a setting is one class attribute made by ``scpi_control`` (read/write),
``scpi_measurement`` (read-only) or ``scpi_setting`` (write-only), carrying its command, unit,
validator and safety-envelope key. A value outside the instrument's range raises
``SettingRangeError``; a value beyond the safety envelope raises ``EnvelopeError``; both before
anything is sent.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import select
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Generic, TypeVar, overload

import numpy as np
from pyvisa import constants as visa_constants
from pyvisa import errors as visa_errors

from instruments.envelope import SafetyGuard
from instruments.errors import (
    ConnectionLost,
    GarbledReply,
    InstrumentErrorQueue,
    InstrumentTimeout,
    WrongInstrument,
)
from instruments.validators import (  # re-exported: drivers import them from here
    Validator,
    format_float,
    parse_error_entry,
    parse_float,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TIMEOUT_S = 5.0
MAX_ERROR_QUEUE = 32
MAX_DRAIN_LINES = 8

# -- transport ------------------------------------------------------------------------------


class Instrument:
    """One instrument over a pyvisa message-based resource (``\\n`` terminated).

    Subclasses set ``IDENTITY_QUERY`` and ``IDENTITY_PATTERN`` (a regex the reply must
    match); a reply that does not match raises ``WrongInstrument`` at construction.
    """

    IDENTITY_QUERY: ClassVar[str | None] = "*IDN?"
    IDENTITY_PATTERN: ClassVar[str] = r".+"
    MODEL_NAME: ClassVar[str] = ""  # the station file's ``model`` name, set by @register_model
    ROLE: ClassVar[str] = "instrument"
    needs_resource: ClassVar[bool] = True

    def __init__(
        self,
        resource: Any,
        *,
        role: str | None = None,
        guard: SafetyGuard | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.resource = resource
        self.role = role or self.ROLE
        self.guard = guard if guard is not None else SafetyGuard()
        self.timeout_s = float(timeout_s)
        self.idn = "not identified"
        self._stale = False  # a reply may still be on its way after a timeout
        resource.read_termination = "\n"
        resource.write_termination = "\n"
        resource.timeout = self.timeout_s * 1000.0
        self._connect()

    @property
    def name(self) -> str:
        """Role and identity, as every error message names the instrument."""
        return f"{self.role} [{self.idn}]"

    def _connect(self) -> None:
        """Read the identity and refuse the wrong model."""
        if self.IDENTITY_QUERY is None:
            return
        reply = self.query(self.IDENTITY_QUERY)
        if re.match(self.IDENTITY_PATTERN, reply.strip()) is None:
            raise WrongInstrument(
                f"identity {reply.strip()!r} is not a {type(self).__name__} "
                f"(expected /{self.IDENTITY_PATTERN}/)",
                instrument=self.name,
                command=self.IDENTITY_QUERY,
            )
        self.idn = self._identity_text(reply.strip())
        log.info("%s connected", self.name)

    def _identity_text(self, reply: str) -> str:
        """The identity as error messages show it (the reply, by default)."""
        return reply

    # the one place pyvisa / socket / decode failures become typed errors
    @contextlib.contextmanager
    def _io(self, command: str) -> Iterator[None]:
        try:
            yield
        except visa_errors.VisaIOError as exc:
            if exc.error_code == visa_constants.StatusCode.error_timeout:
                self._stale = True
                if self._peer_closed():
                    raise ConnectionLost(
                        "connection closed by the instrument", instrument=self.name, command=command
                    ) from exc
                waited_s = (getattr(self.resource, "timeout", None) or 0.0) / 1000.0
                raise InstrumentTimeout(
                    f"no reply within {waited_s or self.timeout_s:g} s",
                    instrument=self.name,
                    command=command,
                ) from exc
            raise ConnectionLost(
                f"VISA I/O error {exc.error_code}: {exc.description}",
                instrument=self.name,
                command=command,
            ) from exc
        except (OSError, EOFError) as exc:  # ConnectionError, BrokenPipe, reset, closed
            raise ConnectionLost(f"{exc}", instrument=self.name, command=command) from exc
        except (UnicodeDecodeError, struct.error) as exc:
            self._stale = True
            raise GarbledReply(
                f"undecodable reply: {exc}", instrument=self.name, command=command
            ) from exc
        except BaseException:  # Ctrl-C mid-read: a reply may be half-read or still coming
            self._stale = True
            raise

    def _peer_closed(self) -> bool:
        """Whether the socket under a pyvisa-py TCPIP SOCKET resource was closed by the peer.

        pyvisa-py reports a closed peer as a timeout; a zero-byte peek tells them apart. Other
        backends (NI-VISA) report connection loss themselves; then this returns False.
        """
        try:
            session = self.resource.visalib.sessions[self.resource.session]
            sock = session.interface
            if not isinstance(sock, socket.socket):
                return False
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except Exception:  # any backend without that layout: cannot tell
            return False

    def _drain(self) -> None:
        """After a timeout or a garbled reply, discard late replies so none is taken for the
        answer to the next command: read (and drop) lines until the instrument is quiet for
        one timeout (at most ``MAX_DRAIN_LINES`` lines)."""
        self._stale = False
        for _ in range(MAX_DRAIN_LINES):
            try:
                line = self.resource.read()
            except Exception:  # quiet (timeout), closed or undecodable: nothing more to take
                break
            log.debug("%s discarded a late reply %r", self.role, line)
        self._stale = False

    def write(self, command: str) -> None:
        """Send one command line."""
        if self._stale:
            self._drain()
        log.debug("%s > %s", self.role, command)
        with self._io(command):
            self.resource.write(command)

    def read(self, command: str = "<read>") -> str:
        """Read one reply line (``command`` only names what is being answered)."""
        with self._io(command):
            reply = self.resource.read()
        log.debug("%s < %s", self.role, reply)
        return reply

    def query(self, command: str) -> str:
        """Send a command and read its one-line reply."""
        self.write(command)
        return self.read(command)

    def query_parsed(self, command: str, parser: Callable[[str], Any]) -> Any:
        """Query and parse; a reply the parser rejects raises ``GarbledReply``."""
        reply = self.query(command)
        try:
            return parser(reply)
        except (ValueError, TypeError, IndexError) as exc:
            self._stale = True  # a garbled line may have split a reply: resynchronise
            raise GarbledReply(
                f"cannot parse reply {reply!r}: {exc}", instrument=self.name, command=command
            ) from exc

    def write_binary(
        self, prefix: str, values: np.ndarray, datatype: str = "f", big_endian: bool = False
    ) -> None:
        """Send ``prefix`` followed by an IEEE 488.2 definite-length block of ``values``."""
        if self._stale:
            self._drain()
        log.debug("%s > %s#<block of %d %s>", self.role, prefix, len(values), datatype)
        with self._io(prefix):
            self.resource.write_binary_values(
                prefix, values, datatype=datatype, is_big_endian=big_endian
            )

    def query_binary(
        self, command: str, datatype: str = "h", big_endian: bool = False
    ) -> np.ndarray:
        """Send ``command`` and read an IEEE 488.2 block reply as a numpy array."""
        if self._stale:
            self._drain()
        log.debug("%s > %s", self.role, command)
        with self._io(command):
            try:
                data = self.resource.query_binary_values(
                    command,
                    datatype=datatype,
                    is_big_endian=big_endian,
                    container=np.array,
                    expect_termination=True,
                )
            except ValueError as exc:  # pyvisa's block parser: bad header, short block
                self._stale = True
                raise GarbledReply(
                    f"bad binary block: {exc}", instrument=self.name, command=command
                ) from exc
        log.debug("%s < <block of %d %s>", self.role, len(data), datatype)
        return np.asarray(data)

    @contextlib.contextmanager
    def timeout_extended(self, extra_s: float) -> Iterator[None]:
        """Allow ``extra_s`` more seconds per reply (a sweep, a long transfer), then restore."""
        saved_ms = self.resource.timeout
        extra_s = extra_s if math.isfinite(extra_s) and extra_s > 0 else 0.0
        self.resource.timeout = (self.timeout_s + extra_s) * 1000.0
        try:
            yield
        finally:
            self.resource.timeout = saved_ms

    def snapshot(self) -> dict[str, Any]:
        """Role, model, identity and the settings this driver sent (no I/O): provenance to
        store with a measurement."""
        return {"role": self.role, "model": self.MODEL_NAME, "idn": self.idn, **self._settings()}

    def _settings(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        """Close the VISA resource (the instrument keeps its state)."""
        with contextlib.suppress(Exception):
            self.resource.close()


# -- declared properties -------------------------------------------------------------------


class ScpiControl(Generic[T]):
    """One declared setting: commands, unit, validator and envelope key in one place.

    Generic in the value type ``T`` its parser returns, so that a type checker sees
    ``smu.current_limit_a`` as a ``float`` and ``smu.output_enabled`` as a ``bool`` (and the
    class attribute ``Keithley2450.current_limit_a`` as the descriptor itself)."""

    def __init__(
        self,
        get_cmd: str | None,
        set_cmd: str | None,
        *,
        parser: Callable[[str], T],
        formatter: Callable[[Any], str] = format_float,
        unit: str = "",
        doc: str = "",
        validator: Validator | None = None,
        envelope_key: str | None = None,
    ) -> None:
        self.get_cmd = get_cmd
        self.set_cmd = set_cmd
        self.parser = parser
        self.formatter = formatter
        self.unit = unit
        self.validator = validator
        self.envelope_key = envelope_key
        self.name = "?"
        commands = " / ".join(c for c in (get_cmd, set_cmd) if c)
        self.__doc__ = f"{doc} Unit: {unit or '-'}. SCPI: {commands}."

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> ScpiControl[T]: ...
    @overload
    def __get__(self, obj: ScpiInstrument, owner: type) -> T: ...
    def __get__(self, obj: ScpiInstrument | None, owner: type) -> T | ScpiControl[T]:
        if obj is None:
            return self
        if self.get_cmd is None:
            raise AttributeError(f"{self.name} is write-only")
        value: T = obj.query_parsed(self.get_cmd, self.parser)
        return value

    def __set__(self, obj: ScpiInstrument, value: T) -> None:
        if self.set_cmd is None:
            raise AttributeError(f"{self.name} is read-only")
        obj._apply_setting(self, value)

    def command_for(self, value: Any) -> str:
        return self.set_cmd.format(self.formatter(value)) if self.set_cmd else ""


ScpiProperty = ScpiControl  # the name the drivers and the sim use


@overload
def scpi_control(
    get_cmd: str, set_cmd: str, parser: Callable[[str], T], **kwargs: Any
) -> ScpiControl[T]: ...
@overload
def scpi_control(get_cmd: str, set_cmd: str, **kwargs: Any) -> ScpiControl[float]: ...
def scpi_control(
    get_cmd: str, set_cmd: str, parser: Callable[[str], Any] = parse_float, **kwargs: Any
) -> ScpiControl[Any]:
    """A read/write setting. ``set_cmd`` holds ``{}`` where the formatted value goes."""
    return ScpiControl(get_cmd, set_cmd, parser=parser, **kwargs)


@overload
def scpi_measurement(get_cmd: str, parser: Callable[[str], T], **kwargs: Any) -> ScpiControl[T]: ...
@overload
def scpi_measurement(get_cmd: str, **kwargs: Any) -> ScpiControl[float]: ...
def scpi_measurement(
    get_cmd: str, parser: Callable[[str], Any] = parse_float, **kwargs: Any
) -> ScpiControl[Any]:
    """A read-only value."""
    return ScpiControl(get_cmd, None, parser=parser, **kwargs)


def scpi_setting(set_cmd: str, **kwargs: Any) -> ScpiControl[Any]:
    """A write-only setting (its value type is whatever its formatter takes)."""
    return ScpiControl(None, set_cmd, parser=parse_float, **kwargs)


class ScpiInstrument(Instrument):
    """An IEEE 488.2 / SCPI instrument: error queue, ``*OPC?``, declared settings.

    Setting a declared property validates, checks the envelope, sends, then reads the error
    queue; inside ``with self.batch():`` the queue is read once at the end instead.
    """

    ERROR_QUERY: ClassVar[str] = ":SYST:ERR?"
    CLEAR_AT_CONNECT: ClassVar[bool] = True

    def __init__(self, resource: Any, **kwargs: Any) -> None:
        self._batch_depth = 0
        self._sent_settings: dict[str, Any] = {}
        self._since_check: deque[str] = deque(maxlen=8)  # context for error messages
        super().__init__(resource, **kwargs)

    def _connect(self) -> None:
        super()._connect()
        self._check_mode()
        if self.CLEAR_AT_CONNECT:
            self.write("*CLS")  # errors from before we came are not ours
            self._since_check.clear()

    def _check_mode(self) -> None:
        """Drivers refuse an instrument in the wrong mode here (after the identity, before
        ``*CLS``, so errors of these queries do not outlive the connect)."""

    def write(self, command: str) -> None:
        if command != self.ERROR_QUERY:
            self._since_check.append(command)
        super().write(command)

    def write_binary(
        self, prefix: str, values: np.ndarray, datatype: str = "f", big_endian: bool = False
    ) -> None:
        self._since_check.append(prefix + "#<block>")
        super().write_binary(prefix, values, datatype, big_endian)

    def check_errors(self) -> None:
        """Read the error queue until empty; raise ``InstrumentErrorQueue`` with its entries."""
        entries: list[tuple[int, str]] = []
        for _ in range(MAX_ERROR_QUEUE):
            code, text = self.query_parsed(self.ERROR_QUERY, parse_error_entry)
            if code == 0:
                break
            entries.append((code, text))
        sent = list(self._since_check)
        self._since_check.clear()
        if entries:
            command = "; ".join(sent[-4:]) if sent else None
            raise InstrumentErrorQueue(entries, instrument=self.name, command=command)

    def wait_complete(self) -> None:
        """``*OPC?``: block until pending operations finish (within the timeout)."""
        reply = self.query("*OPC?")
        if reply.strip().lstrip("+") != "1":
            raise GarbledReply(f"*OPC? answered {reply!r}", instrument=self.name, command="*OPC?")

    def reset(self) -> None:
        """``*RST`` then ``*CLS`` and ``*OPC?``: the instrument's default state."""
        self.write("*RST")
        self.write("*CLS")
        self.wait_complete()
        self._sent_settings.clear()
        self._after_reset()
        self.check_errors()

    def _after_reset(self) -> None:
        """Drivers forget cached settings here."""

    def _settings(self) -> dict[str, Any]:
        return dict(self._sent_settings)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Send several settings, read the error queue once at the end (if all went well)."""
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
        if self._batch_depth == 0:
            self.check_errors()

    def configure_settings(self, *items: str | tuple[str, Any], check: bool = True) -> None:
        """Send plain commands and ``(setting_name, value)`` pairs in order, then check errors
        (unless ``check`` is False: the caller checks once it has sent the rest).

        Every pair is validated and checked against the envelope before the first command is
        sent, so a refused value leaves the instrument untouched.
        """
        plan: list[tuple[str, str | None, Any]] = []
        for item in items:
            if isinstance(item, str):
                plan.append((item, None, None))
                continue
            name, value = item
            prop = type(self).__dict__.get(name) or getattr(type(self), name)
            if not isinstance(prop, ScpiProperty) or prop.set_cmd is None:
                raise AttributeError(f"{type(self).__name__}.{name} is not a settable property")
            if prop.validator is not None:
                value = prop.validator(value, f"{self.name}: {name}")
            self._check_envelope(prop, value)
            plan.append((prop.command_for(value), name, value))
        for command, setting, value in plan:
            self.write(command)
            if setting is not None:
                self._sent_settings[setting] = value
                self._after_set(setting, value)
        if check:
            self.check_errors()

    def _apply_setting(self, prop: ScpiProperty, value: Any) -> None:
        where = f"{self.name}: {prop.name}"
        if prop.validator is not None:
            value = prop.validator(value, where)
        self._check_envelope(prop, value)
        self.write(prop.command_for(value))
        self._sent_settings[prop.name] = value
        self._after_set(prop.name, value)
        if self._batch_depth == 0:
            self.check_errors()

    def _check_envelope(self, prop: ScpiProperty, value: Any) -> None:
        """Refuse a value beyond the envelope (``voltage_v``, ``current_a``; drivers add more)."""
        if prop.envelope_key == "voltage_v":
            self.guard.check_voltage(self.name, prop.name, float(value))
        elif prop.envelope_key == "current_a":
            self.guard.check_current(self.name, prop.name, float(value))
        elif prop.envelope_key is not None:
            raise NotImplementedError(
                f"{type(self).__name__} has no envelope key {prop.envelope_key}"
            )

    def _after_set(self, name: str, value: Any) -> None:
        """Drivers cache what they sent here (for envelope re-checks)."""

    def settings_snapshot(self, names: Sequence[str]) -> dict[str, Any]:
        """The current values of the named declared settings (read from the instrument)."""
        return {name: getattr(self, name) for name in names}
