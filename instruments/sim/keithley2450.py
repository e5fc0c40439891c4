"""Simulated Keithley 2450 SMU, its SCPI command set as a command table.

Followed: Keithley 2450 Reference Manual (2450-901-01), chapter "SCPI command reference"
(``:SOURce``, ``:SENSe``, ``:MEASure``, ``:READ``, ``:TRACe``, ``:OUTPut`` subsystems, the sweep
commands ``:SOURce[1]:SWEep:<function>:LINear|LINear:STEP|LOG|LIST``) and the 2450 Quick Start
Guide (2450-903-01) on the interlock. Sources voltage, measures current (or voltage, or
resistance V/I). The current is what the bench's physics computes for the device under the
needles, limited by the current limit (``:SOUR:VOLT:ILIM:TRIP?`` reports a hit), on the
selected range (auto or fixed; beyond 1.05x the range reads overflow 9.9E+37) with noise and
6½-digit quantization. A reading integrates over NPLC power-line cycles (50 Hz) of virtual
time. Readings go to reading buffers (``defbuffer1``, ``defbuffer2`` and ``:TRAC:MAKE`` ones).

Command language (``*LANG?``): the front-panel setting, SCPI by default; ``*LANG`` takes
effect at the next power cycle (:meth:`Keithley2450Server.power_cycle`). In TSP mode only the
IEEE 488.2 common commands are understood; anything else is a TSP syntax error (-285) and gets
no reply, as on the instrument. Interlock: when the rear-panel interlock is not asserted
(``interlock_asserted = False``, the hardware), the output is limited to ±42 V and turning
it on above that raises event 5074 "Output voltage limited by interlock".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from instruments.sim.keithley2450_model import (
    CURRENT_RANGES_A,
    SOURCE_RANGES_V,
    ReadingBuffer,
    SmuModel,
    range_for,
)
from instruments.sim.scpi_message import CommandError
from instruments.sim.scpi_params import Boolean, Choice, Number, String, keithley_real, nr1
from instruments.sim.scpi_server import Call, TableServer, Values
from instruments.sim.scpi_table import Command, action, query, setting

MAX_VOLTAGE_V = 210.0
INTERLOCK_LIMIT_V = 42.0
LINE_FREQUENCY_HZ = 50
SWEEP_DELAY_MIN_S = 50e-6  # a sweep delay is 0 or 50 µs..10 ks
SWEEP_DELAY_MAX_S = 1e4
LIST_MAX_VALUES = 2500
LIST_VALUES_PER_COMMAND = 100
EVENT_INTERLOCK = 5074

_REAL = keithley_real
_BOOL = Boolean()
_BUFFER_NAME = String(max_length=31, optional=True)
_LEVEL = Number(-MAX_VOLTAGE_V, MAX_VOLTAGE_V, unit="V")
_POINTS = Number(2, LIST_MAX_VALUES, integer=True)
_SWEEP_OPTIONS = Values("[<delay>, <count>, AUTO|BEST|FIXed, <failAbort>, <dual>, <buffer>]")
_FUNCTIONS = (
    ("curr", "CURRent[:DC]", 1.05, 1e-4),
    ("volt", "VOLTage[:DC]", 210.0, 0.02),
    ("res", "RESistance", 2e8, 2e5),
)  # (prefix, node, full scale, range at *RST)


@dataclass
class SmuState:
    """Everything the 2450 is set to (the table fills the settings at ``*RST``)."""

    source_function: str = "VOLT"
    source_v: float = 0.0
    source_range_v: float = 0.02
    source_autorange: bool = True
    source_delay_s: float = 0.0
    source_delay_auto: bool = True
    source_readback: bool = True
    current_limit_a: float = 105e-6
    off_mode: str = "NORM"
    sense_function: str = "CURR:DC"
    count: int = 1
    terminals: str = "FRON"
    output_on: bool = False
    tripped: bool = False
    data_format: str = "ASC"
    sweep_list_v: list[float] = field(default_factory=list)
    sweep: list[float] | None = None  # the armed trigger model's source values
    sweep_delay_s: float = 0.0
    sweep_buffer: str = "defbuffer1"
    sweep_fail_abort: bool = True
    sweep_range: str = "AUTO"
    buffers: dict[str, ReadingBuffer] = field(default_factory=dict)
    # per sense function: range, autorange, NPLC, 4-wire, autozero
    curr_range: float = 1e-4
    curr_autorange: bool = True
    curr_nplc: float = 1.0
    curr_rsense: bool = False
    curr_azero: bool = True
    volt_range: float = 0.02
    volt_autorange: bool = True
    volt_nplc: float = 1.0
    volt_rsense: bool = False
    volt_azero: bool = True
    res_range: float = 2e5
    res_autorange: bool = True
    res_nplc: float = 1.0
    res_rsense: bool = False
    res_azero: bool = True

    @property
    def nplc(self) -> float:
        """The integration time of the active sense function, power-line cycles."""
        return float(getattr(self, f"{_prefix(self.sense_function)}_nplc"))

    @property
    def buffer(self) -> list[tuple[float, float]]:
        """``defbuffer1`` as (source V, reading) pairs (what older tests read)."""
        return [(r.source_v, r.value) for r in self.buffers["defbuffer1"].readings]


def _prefix(sense_function: str) -> str:
    return {"CURR:DC": "curr", "VOLT:DC": "volt", "RES": "res"}[sense_function]


def _sense_commands() -> list[Command]:
    """The per-function :SENSe commands, one set for each of CURR, VOLT, RES."""
    commands: list[Command] = []
    for prefix, node, full_scale, reset_range in _FUNCTIONS:
        base = f"[:SENSe[1]]:{node}"
        commands += [
            setting(f"{base}:RANGe[:UPPer]", Number(0.0, full_scale, default=full_scale,
                    fmt=_REAL), f"{prefix}_range", reset=reset_range,
                    check="_check_sense_range", doc="Fixed measure range (autorange off)."),
            setting(f"{base}:RANGe:AUTO", _BOOL, f"{prefix}_autorange", reset=True),
            setting(f"{base}:NPLCycles", Number(0.01, 10.0, default=1.0, fmt=_REAL),
                    f"{prefix}_nplc", reset=1.0, doc="Integration time, power-line cycles."),
            setting(f"{base}:RSENse", _BOOL, f"{prefix}_rsense", reset=False,
                    doc="4-wire sense (no lead resistance is simulated)."),
            setting(f"{base}:AZERo[:STATe]", _BOOL, f"{prefix}_azero", reset=True),
        ]  # fmt: skip
    return commands


class Keithley2450Server(TableServer, SmuModel):
    """The 2450's SCPI dialect over a socket, backed by the virtual bench."""

    role = "smu"
    IDN = "KEITHLEY INSTRUMENTS,MODEL 2450,04512345,1.7.12b"
    ERROR_NONE = '0,"No error"'
    COMMANDS = (
        setting(":SOURce[1]:FUNCtion[:MODE]", Choice("VOLTage", "CURRent"), "source_function",
                reset="VOLT", check="_check_source_function",
                doc="Source function; the sim sources voltage only (CURR: -221)."),
        setting(":SOURce[1]:VOLTage[:LEVel][:IMMediate][:AMPLitude]",
                Number(-MAX_VOLTAGE_V, MAX_VOLTAGE_V, default=0.0, unit="V", fmt=_REAL),
                "source_v", reset=0.0, check="_check_source_v", then="_source_changed",
                doc="Source voltage; on autorange the range follows it."),
        setting(":SOURce[1]:VOLTage:RANGe", Number(0.0, MAX_VOLTAGE_V, default=200.0,
                unit="V", fmt=_REAL), "source_range_v", reset=0.02, check="_check_source_range",
                doc="Source range (the smallest of 20 mV..200 V holding the value)."),
        setting(":SOURce[1]:VOLTage:RANGe:AUTO", _BOOL, "source_autorange", reset=True),
        setting(":SOURce[1]:VOLTage:ILIMit[:LEVel]", Number(1e-9, 1.05, default=105e-6,
                unit="A", fmt=_REAL), "current_limit_a", reset=105e-6,
                doc="Current limit (compliance) while sourcing voltage."),
        query(":SOURce[1]:VOLTage:ILIMit[:LEVel]:TRIPped", "_tripped",
              doc="1 if the last reading was at the current limit."),
        setting(":SOURce[1]:VOLTage:DELay", Number(0.0, 1e4, default=0.0, unit="S",
                fmt=_REAL), "source_delay_s", reset=0.0, doc="Source delay before a reading."),
        setting(":SOURce[1]:VOLTage:DELay:AUTO", _BOOL, "source_delay_auto", reset=True),
        setting(":SOURce[1]:VOLTage:READ:BACK", _BOOL, "source_readback", reset=True),
        action(":SOURce[1]:LIST:VOLTage", "_list", Values("<v1>, <v2>, ... (1..100)"),
               doc="Source list (replaces it)."),
        action(":SOURce[1]:LIST:VOLTage:APPend", "_list_append", Values("<v1>, ... (1..100)")),
        query(":SOURce[1]:LIST:VOLTage", "_list_q"),
        query(":SOURce[1]:LIST:VOLTage:POINts", "_list_points"),
        action(":SOURce[1]:SWEep:VOLTage:LINear", "_sweep_linear", _LEVEL, _LEVEL, _POINTS,
               _SWEEP_OPTIONS, doc="Linear sweep trigger model: start, stop, points, options."),
        action(":SOURce[1]:SWEep:VOLTage:LINear:STEP", "_sweep_step", _LEVEL, _LEVEL, _LEVEL,
               _SWEEP_OPTIONS, doc="Linear sweep by step size: start, stop, step, options."),
        action(":SOURce[1]:SWEep:VOLTage:LOG", "_sweep_log", _LEVEL, _LEVEL, _POINTS,
               Values(_SWEEP_OPTIONS.name[:-1] + ", <asymptote>]"),
               doc="Logarithmic sweep: start, stop, points, options."),
        action(":SOURce[1]:SWEep:VOLTage:LIST", "_sweep_list",
               Number(1, LIST_MAX_VALUES, integer=True),
               Values("[<delay>, <count>, <failAbort>, <buffer>]"),
               doc="Sweep over the source list from an index."),
        setting("[:SENSe[1]]:FUNCtion[:ON]", Choice("CURRent[:DC]", "VOLTage[:DC]",
                "RESistance", quoted=True, reply=lambda v: f'"{v}"'), "sense_function",
                reset="CURR:DC", doc="Measure function (a quoted string)."),
        *_sense_commands(),
        setting("[:SENSe[1]]:COUNt", Number(1, 300000, default=1, integer=True, fmt=nr1),
                "count", reset=1, doc="Readings per :READ?/:MEAS? request."),
        action("[:SENSe[1]]:AZERo:ONCE", "_nothing_to_do", doc="Refresh the zero once."),
        query(":READ", "_read", _BUFFER_NAME, Values("[<elements>]"),
              doc="Make the readings (:SENS:COUN) into a buffer, reply the last."),
        query(":MEASure", "_measure", _BUFFER_NAME, Values("[<elements>]")),
        query(":MEASure:CURRent[:DC]", "_measure_current", _BUFFER_NAME, Values("[<elem>]"),
              doc="Select current and make a reading."),
        query(":MEASure:VOLTage[:DC]", "_measure_voltage", _BUFFER_NAME, Values("[<elem>]")),
        query(":MEASure:RESistance", "_measure_resistance", _BUFFER_NAME, Values("[<elem>]")),
        query(":FETCh", "_fetch", _BUFFER_NAME, Values("[<elements>]"),
              doc="The last reading of a buffer."),
        action(":TRACe:MAKE", "_trace_make", String(max_length=31), Number(10, 11_000_000,
               integer=True), Values("[<style>]"), doc="Make a reading buffer."),
        action(":TRACe:DELete", "_trace_delete", String(max_length=31)),
        action(":TRACe:CLEar", "_trace_clear", _BUFFER_NAME),
        query(":TRACe:ACTual", "_trace_actual", _BUFFER_NAME, doc="Readings in a buffer."),
        query(":TRACe:ACTual:STARt", "_trace_start", _BUFFER_NAME),
        query(":TRACe:ACTual:END", "_trace_end", _BUFFER_NAME),
        action(":TRACe:POINts", "_trace_points", Number(1, 11_000_000, integer=True),
               _BUFFER_NAME, doc="Buffer capacity."),
        query(":TRACe:POINts", "_trace_points_q", _BUFFER_NAME),
        query(":TRACe:DATA", "_trace_data", Number(1, 11_000_000, integer=True),
              Number(1, 11_000_000, integer=True), _BUFFER_NAME, Values("[<elements>]"),
              doc="Elements of readings start..end (READ, SOUR, REL, UNIT, ...)."),
        action(":TRACe:TRIGger", "_trace_trigger", _BUFFER_NAME, doc="One reading into a buffer."),
        query(":TRACe:STATistics:AVERage", "_stat_average", _BUFFER_NAME),
        query(":TRACe:STATistics:MAXimum", "_stat_maximum", _BUFFER_NAME),
        query(":TRACe:STATistics:MINimum", "_stat_minimum", _BUFFER_NAME),
        query(":TRACe:STATistics:STDDev", "_stat_stddev", _BUFFER_NAME),
        setting(":OUTPut[1][:STATe]", _BOOL, "output_on", reset=False, check="_check_output",
                then="_source_changed", doc="Output on/off (limited to ±42 V without interlock)."),
        query(":OUTPut[1]:INTerlock:TRIPped", "_interlock",
              doc="1: interlock asserted (all ranges); 0: output limited to ±42 V."),
        setting(":OUTPut[1]:VOLTage[:DC]:SMODe", Choice("NORMal", "HIMPedance", "ZERO",
                "GUARd"), "off_mode", reset="NORM", doc="Output-off state."),
        setting(":ROUTe:TERMinals", Choice("FRONt", "REAR"), "terminals", reset="FRON"),
        setting(":FORMat[:DATA]", Choice("ASCii"), "data_format", reset="ASC"),
        action(":INITiate[:IMMediate]", "_init", doc="Run the armed sweep's trigger model."),
        action(":ABORt", "_abort", doc="Stop the trigger model."),
        query(":SYSTem:LFRequency", "_line_frequency", doc="Power-line frequency, Hz: 50."),
        action(":STATus:CLEar", "_status_clear", doc="Event registers cleared."),
        action("*LANG", "_set_language", Choice("SCPI", "TSP", "SCPI2400"),
               doc="Command set at the next power cycle."),
        query("*LANG", "_language", doc="Command set in use: SCPI, TSP or SCPI2400."),
    )  # fmt: skip

    def __init__(self, bench: Any, *args: Any, **kwargs: Any) -> None:
        self.bench = bench
        self.language = "SCPI"  # the front-panel Command Set
        self.next_language = "SCPI"
        self.interlock_asserted = True  # the rear-panel interlock circuit (hardware)
        super().__init__(*args, **kwargs)

    def new_state(self) -> SmuState:
        return SmuState()

    def after_reset(self) -> None:
        st = self.state
        st.tripped = False
        st.sweep_list_v = []
        st.sweep = None
        st.buffers = {name: ReadingBuffer(name, 100_000) for name in ("defbuffer1", "defbuffer2")}
        self.bench.smu_changed()

    def apply_reset(self) -> None:
        super().apply_reset()
        if not getattr(self.state, "buffers", None):
            self.state.buffers = {
                name: ReadingBuffer(name, 100_000) for name in ("defbuffer1", "defbuffer2")
            }

    def power_cycle(self) -> None:
        """Power off and on: the language chosen with ``*LANG`` takes effect, settings reset."""
        self.language = self.next_language
        self.status.clear()
        self._common_rst(None)  # type: ignore[arg-type]

    # ----- the command language -----------------------------------------------------------------

    def handle(self, text: str, block: bytes | None) -> Any:
        if self.language != "SCPI" and not text.lstrip(" :").startswith("*"):
            self.push_error(-285, "TSP Syntax error; SCPI command in TSP mode")
            return None
        return super().handle(text, block)

    def _set_language(self, call: Call, language: str) -> None:
        self.next_language = language

    def _language(self, call: Call) -> str:
        return self.language

    # ----- checks and hooks ---------------------------------------------------------------------

    def _check_source_function(self, call: Call, function: str) -> str:
        if function != "VOLT":
            raise CommandError(-221, "Settings conflict; the sim sources voltage only")
        return function

    def _check_source_v(self, call: Call, value_v: float) -> float:
        st = self.state
        if st.source_autorange:
            st.source_range_v = range_for(abs(value_v), SOURCE_RANGES_V)
        elif abs(value_v) > st.source_range_v * 1.05:
            raise CommandError(-222, "Data out of range; beyond the source range")
        return value_v

    def _check_source_range(self, call: Call, value_v: float) -> float:
        self.state.source_autorange = False
        return range_for(abs(value_v), SOURCE_RANGES_V)

    def _check_sense_range(self, call: Call, value: float) -> float:
        prefix = call.command.attr.split("_")[0]  # type: ignore[union-attr]
        setattr(self.state, f"{prefix}_autorange", False)
        if prefix == "curr":
            return range_for(value, CURRENT_RANGES_A)
        return value

    def _check_output(self, call: Call, on: bool) -> bool:
        if on and not self.interlock_asserted and abs(self.state.source_v) > INTERLOCK_LIMIT_V:
            self.push_error(EVENT_INTERLOCK, "Output voltage limited by interlock")
        if not on:
            self.state.tripped = False
        return on

    def _source_changed(self, call: Call | None) -> None:
        if (
            call is not None
            and call.command.attr == "source_v"
            and self.state.output_on
            and not self.interlock_asserted
            and abs(self.state.source_v) > INTERLOCK_LIMIT_V
        ):
            self.push_error(EVENT_INTERLOCK, "Output voltage limited by interlock")
        self.bench.smu_changed()

    def output_v(self, level_v: float) -> float:
        """What reaches the terminals for a programmed level: ±42 V without the interlock."""
        if self.interlock_asserted:
            return level_v
        return max(-INTERLOCK_LIMIT_V, min(INTERLOCK_LIMIT_V, level_v))

    def _nothing_to_do(self, call: Call) -> None:
        """Autozero refresh: the simulated ADC has no offset to track."""

    def _tripped(self, call: Call) -> str:
        return "1" if self.state.tripped else "0"

    def _interlock(self, call: Call) -> str:
        return "1" if self.interlock_asserted else "0"

    def _line_frequency(self, call: Call) -> str:
        return str(LINE_FREQUENCY_HZ)

    def _status_clear(self, call: Call) -> None:
        self.status.operation.event = 0
        self.status.questionable.event = 0
