"""``TableServer``: a simulated SCPI instrument driven by its command table.

Subclasses set ``COMMANDS`` (see :mod:`instruments.sim.scpi_table`), ``IDN`` and a ``state``
object; this class does the rest, once for every instrument:

- splits each program message into units (:mod:`instruments.sim.scpi_message`) and applies the
  SCPI path rule (SCPI-99 vol. 1, 6.2.4): a header without a leading ``:`` continues in the
  subsystem of the previous one; ``:`` returns to the root; common commands (``*XXX``) leave
  the path alone;
- resolves headers in short or long form with optional nodes and numeric suffixes;
- parses data by the table's parameter types, stores settings, answers ``?`` readbacks (also
  ``? MIN|MAX|DEF``), applies every setting's ``*RST`` value;
- joins the replies of several queries in one message with ``;`` (IEEE 488.2 8.4.1);
- queues errors with their numbers; a command error (-100 family) discards the rest of the
  message (IEEE 488.2 6.1.6.1.1), an execution error only its own unit;
- keeps the status system (:mod:`instruments.sim.scpi_status`) and the IEEE 488.2 common
  commands, the SCPI ``:SYSTem:ERRor`` and ``:STATus`` subsystems included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

from instruments.sim.scpi_message import CommandError, Element, MessageError, split_message
from instruments.sim.scpi_params import Number, Param, nr1, signed_nr1
from instruments.sim.scpi_status import StatusSystem
from instruments.sim.scpi_table import (
    NO_RESET,
    Command,
    CommandTable,
    action,
    numeric_param,
    query,
)
from instruments.sim.server import Deferred, LineServer

__all__ = ["Call", "TableServer", "Values", "WaitAfter"]

_REGISTER = Number(0, 65535, integer=True, fmt=nr1)
_BYTE = Number(0, 255, integer=True, fmt=nr1)
_MINMAXDEF = {"MIN": "low", "MINIMUM": "low", "MAX": "high", "MAXIMUM": "high"}


class Call(NamedTuple):
    """What a table method receives: the command, its numeric suffixes, its target object."""

    command: Command
    suffixes: tuple[int, ...]
    target: Any


class Values(Param):
    """All remaining data elements, unparsed (a list of numbers, a list of names)."""

    name = "<values>"
    optional = True

    def __init__(self, name: str = "<values>") -> None:
        self.name = name

    def parse(self, element: Element, current: Any = None) -> Any:  # pragma: no cover
        raise NotImplementedError("Values takes the remaining elements as a list")


COMMON_COMMANDS: tuple[Command, ...] = (
    query("*IDN", "_common_idn", doc="Identity: manufacturer,model,serial,firmware."),
    action("*RST", "_common_rst", doc="Every setting to its table reset value; operations end."),
    action("*CLS", "_common_cls", doc="Error queue, ESR and event registers cleared."),
    action("*ESE", "_common_set_ese", _BYTE, doc="Standard event status enable mask."),
    query("*ESE", "_common_ese"),
    query("*ESR", "_common_esr", doc="Standard event status register; reading clears it."),
    action("*SRE", "_common_set_sre", _BYTE, doc="Service request enable mask."),
    query("*SRE", "_common_sre"),
    query("*STB", "_common_stb", doc="Status byte (EAV 4, QUES 8, ESB 32, MSS 64, OPER 128)."),
    action("*OPC", "_common_opc", doc="Set ESR bit 0 when every pending operation has finished."),
    query("*OPC", "_common_opc_q", doc="Answer 1 when every pending operation has finished."),
    action("*WAI", "_common_wai", doc="Execute nothing more until pending operations finish."),
    query("*TST", "_common_tst", doc="Self-test: 0 (passed)."),
    query(":SYSTem:ERRor[:NEXT]", "_common_err", doc='Oldest error (code,"text"), removed.'),
    query(":SYSTem:ERRor:COUNt", "_common_err_count", doc="Number of queued errors."),
    query(":SYSTem:ERRor:ALL", "_common_err_all", doc="Every queued error, removed."),
    query(":SYSTem:VERSion", "_common_version", doc="SCPI version: 1999.0."),
    action(":STATus:PRESet", "_common_stat_preset", doc="OPER/QUES enable registers to 0."),
    query(":STATus:OPERation[:EVENt]", "_common_oper_event"),
    query(":STATus:OPERation:CONDition", "_common_oper_condition"),
    action(":STATus:OPERation:ENABle", "_common_set_oper_enable", _REGISTER),
    query(":STATus:OPERation:ENABle", "_common_oper_enable"),
    query(":STATus:QUEStionable[:EVENt]", "_common_ques_event"),
    query(":STATus:QUEStionable:CONDition", "_common_ques_condition"),
    action(":STATus:QUEStionable:ENABle", "_common_set_ques_enable", _REGISTER),
    query(":STATus:QUEStionable:ENABle", "_common_ques_enable"),
)


class TableServer(LineServer):
    """A SCPI instrument whose dialect is its command table (see the module docstring)."""

    COMMANDS: ClassVar[tuple[Command, ...]] = ()
    SUFFIX_RANGES: ClassVar[dict[str, Sequence[int]]] = {}
    IDN: ClassVar[str] = ""
    ERROR_NONE: ClassVar[str] = '0,"No error"'
    QUEUE_DEPTH: ClassVar[int] = 10
    _tables: ClassVar[dict[type, CommandTable]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.status = StatusSystem(self.error_queue, self.QUEUE_DEPTH)
        self.table = self.command_table()
        self._signed = self.ERROR_NONE.startswith("+")
        self.state: Any = self.new_state()
        self.apply_reset()

    @classmethod
    def command_table(cls) -> CommandTable:
        """The class's compiled table (common commands first), built once per class."""
        table = TableServer._tables.get(cls)
        if table is None:
            table = CommandTable((*COMMON_COMMANDS, *cls.COMMANDS), cls.SUFFIX_RANGES)
            TableServer._tables[cls] = table
        return table

    # ----- what an instrument provides -----------------------------------------------------

    def new_state(self) -> Any:
        """The instrument's state object (power-on; settings then take their reset values)."""
        return self

    def unit(self, number: int) -> Any:
        """The target of a ``per_unit`` command with suffix ``number`` (a channel)."""
        return self.state

    def units(self) -> list[Any]:
        """Every unit, for ``*RST``."""
        return [self.state]

    def after_reset(self) -> None:
        """Hook: what else ``*RST`` does (clear buffers, tell the bench)."""

    # ----- errors and status -----------------------------------------------------------------

    def push_error(self, code: int, text: str) -> None:
        self.status.push_error(code, text)

    def error_reply(self) -> str:
        error = self.pop_error()
        if error is None:
            return self.ERROR_NONE
        code, text = error
        return f'{code:+d},"{text}"' if self._signed else f'{code},"{text}"'

    def apply_reset(self) -> None:
        """Every table setting to its ``*RST`` value, on every unit."""
        for command in self.table.commands:
            if command.attr is None or command.reset is NO_RESET:
                continue
            targets = self.units() if command.per_unit else [self.state]
            for target in targets:
                setattr(target, command.attr, command.reset)

    # ----- the message loop --------------------------------------------------------------------

    def handle(self, text: str, block: bytes | None) -> str | bytes | Deferred | None:
        try:
            units = split_message(text, [block] if block is not None else None)
        except MessageError as exc:  # the units before the malformed one still run
            reply = self._run_units(exc.units, 0, [], ())
            self.push_error(exc.code, exc.text)
            return reply
        return self._run_units(units, 0, [], ())

    def _run_units(
        self, units: list, start: int, replies: list, path: tuple[str, ...]
    ) -> str | bytes | Deferred | None:
        resolve = self.table.resolve
        for index in range(start, len(units)):
            unit = units[index]
            header = unit.header
            is_query = header[-1] == "?"
            name = header[:-1] if is_query else header
            if name[0] == ":" and name[1:2] == "*":
                name = name[1:]  # ':*CLS' is taken as '*CLS', as the instruments do
            try:
                if name[0] == "*":
                    command, suffixes = resolve((name,), is_query)
                else:
                    if name[0] == ":":
                        tokens = tuple(name[1:].split(":"))
                    else:
                        tokens = path + tuple(name.split(":"))
                    command, suffixes = resolve(tokens, is_query)
                    path = tokens[:-1]
                reply = self._execute(command, suffixes, unit.data, is_query)
            except CommandError as exc:
                self.push_error(exc.code, exc.text)
                if -199 <= exc.code <= -100:
                    break  # a command error: the rest of the message is discarded
                continue
            except _Wait:
                return self._resume_later(units, index, replies, path)
            except WaitAfter:  # done its part; what follows waits for the bench
                return self._resume_later(units, index + 1, replies, path)
            if reply is not None:
                replies.append(reply)
        return _joined(replies)

    def _resume_later(
        self, units: list, start: int, replies: list, path: tuple[str, ...]
    ) -> Deferred:
        """The rest of the message, from unit ``start``, once no operation is pending."""

        def resume() -> str | bytes | Deferred | None:
            return self._run_units(units, start, replies, path)

        return Deferred(self.status.idle, resume)

    def _execute(
        self, command: Command, suffixes: tuple[int, ...], data: list, is_query: bool
    ) -> str | bytes | None:
        target = self.unit(suffixes[0]) if command.per_unit else self.state
        call = Call(command, suffixes, target)
        if command.attr is not None:
            if is_query:
                return self._readback(call, data)
            if not data:
                raise CommandError(-109, "Missing parameter")
            if len(data) > 1:
                raise CommandError(-108, "Parameter not allowed")
            value = command.params[0].parse(data[0], getattr(target, command.attr, None))
            if command.check is not None:
                value = getattr(self, command.check)(call, value)
            setattr(target, command.attr, value)
            if command.then is not None:
                getattr(self, command.then)(call)
            return None
        values = _parse_all(command.params, data)
        method = getattr(self, command.ask if is_query else command.run)  # type: ignore[arg-type]
        return method(call, *values)

    def _readback(self, call: Call, data: list) -> str:
        command = call.command
        param = command.params[0]
        if command.show is not None:  # the instrument's own readback (it may take MIN/MAX)
            return getattr(self, command.show)(call, data)
        if data:
            number = numeric_param(command)
            word = data[0].upper() if type(data[0]) is str else ""
            if number is None or len(data) > 1 or not (word in _MINMAXDEF or word[:3] == "DEF"):
                raise CommandError(-108, "Parameter not allowed")
            bound = number.default if word[:3] == "DEF" else getattr(number, _MINMAXDEF[word])
            return param.format(bound)
        return param.format(getattr(call.target, command.attr))  # type: ignore[arg-type]

    # ----- operations (pending until the bench finishes) --------------------------------------

    def begin_operation(self, name: str) -> None:
        self.status.begin(name)

    def end_operation(self, name: str) -> None:
        self.status.end(name)

    # ----- IEEE 488.2 common commands and the SCPI status subsystem ----------------------------

    def _common_idn(self, call: Call) -> str:
        return self.IDN

    def _common_rst(self, call: Call) -> None:
        self.status.abort()
        self.apply_reset()
        self.after_reset()

    def _common_cls(self, call: Call) -> None:
        self.status.clear()

    def _common_set_ese(self, call: Call, value: float) -> None:
        self.status.ese = int(value)

    def _common_ese(self, call: Call) -> str:
        return self._nr1(self.status.ese)

    def _common_esr(self, call: Call) -> str:
        return self._nr1(self.status.read_esr())

    def _common_set_sre(self, call: Call, value: float) -> None:
        self.status.sre = int(value) & ~64  # bit 6 cannot be enabled (IEEE 488.2 11.3.2.3)

    def _common_sre(self, call: Call) -> str:
        return self._nr1(self.status.sre)

    def _common_stb(self, call: Call) -> str:
        return self._nr1(self.status.stb())

    def _common_opc(self, call: Call) -> None:
        self.status.arm_opc()

    def _common_opc_q(self, call: Call) -> str:
        if self.status.pending:
            raise _Wait
        return "1"

    def _common_wai(self, call: Call) -> None:
        if self.status.pending:
            raise _Wait

    def _common_tst(self, call: Call) -> str:
        return self._nr1(0)

    def _common_err(self, call: Call) -> str:
        return self.error_reply()

    def _common_err_count(self, call: Call) -> str:
        return self._nr1(len(self.error_queue))

    def _common_err_all(self, call: Call) -> str:
        replies = [self.error_reply() for _ in range(len(self.error_queue))]
        return ",".join(replies) or self.ERROR_NONE

    def _common_version(self, call: Call) -> str:
        return "1999.0"

    def _common_stat_preset(self, call: Call) -> None:
        self.status.preset()

    def _common_oper_event(self, call: Call) -> str:
        return self._nr1(self.status.operation.read_event())

    def _common_oper_condition(self, call: Call) -> str:
        return self._nr1(self.status.operation.condition)

    def _common_set_oper_enable(self, call: Call, value: float) -> None:
        self.status.operation.enable = int(value)

    def _common_oper_enable(self, call: Call) -> str:
        return self._nr1(self.status.operation.enable)

    def _common_ques_event(self, call: Call) -> str:
        return self._nr1(self.status.questionable.read_event())

    def _common_ques_condition(self, call: Call) -> str:
        return self._nr1(self.status.questionable.condition)

    def _common_set_ques_enable(self, call: Call, value: float) -> None:
        self.status.questionable.enable = int(value)

    def _common_ques_enable(self, call: Call) -> str:
        return self._nr1(self.status.questionable.enable)

    def _nr1(self, value: int) -> str:
        return signed_nr1(value) if self._signed else nr1(value)


class _Wait(Exception):
    """Internal: ``*OPC?``/``*WAI`` met a pending operation; the connection must wait."""


class WaitAfter(Exception):
    """Raised by a blocking command after it started its operation (``:DIGitize``): the
    connection executes nothing more until every pending operation has finished."""


def _parse_all(params: tuple[Param, ...], data: list) -> list[Any]:
    """Positional parameters; ``Values`` takes the rest; -108 for extra, -109 for missing."""
    values: list[Any] = []
    for index, param in enumerate(params):
        if isinstance(param, Values):
            values.append(list(data[index:]))
            return values
        if index < len(data):
            values.append(param.parse(data[index]))
        elif param.optional:
            values.append(getattr(param, "default", None))
        else:
            raise CommandError(-109, "Missing parameter")
    if len(data) > len(params):
        raise CommandError(-108, "Parameter not allowed")
    return values


def _joined(replies: list) -> str | bytes | None:
    if not replies:
        return None
    if len(replies) == 1:
        return replies[0]
    if any(isinstance(r, bytes) for r in replies):
        return b";".join(r if isinstance(r, bytes) else r.encode("latin-1") for r in replies)
    return ";".join(replies)
