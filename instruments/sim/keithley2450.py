"""Simulated Keithley 2450 SMU, SCPI command set (2450 reference manual, chapter "SCPI").

Sources voltage, measures current. The current it reports is what the bench's physics computes
for the device under the needles, limited by the current limit (the physics sees the limit and
``:SOUR:VOLT:ILIM:TRIP?`` reports a hit), on the selected range (auto or fixed; beyond 1.05x the
range reads overflow 9.9E+37) with noise and 6½-digit quantization. A reading integrates over
NPLC power-line cycles (50 Hz) of virtual time. The list sweep runs the trigger model of
``:SOUR:SWE:VOLT:LIST`` and stores source and reading pairs in ``defbuffer1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from instruments.sim.server import (
    CommandError,
    ScpiServer,
    format_float,
    parse_bool,
    parse_float,
)

SOURCE_RANGES_V = (0.02, 0.2, 2.0, 20.0, 200.0)
CURRENT_RANGES_A = (10e-9, 100e-9, 1e-6, 10e-6, 100e-6, 1e-3, 10e-3, 100e-3, 1.0)
OVERFLOW = 9.9e37
MAX_VOLTAGE_V = 210.0
MAX_BUFFER = 100_000


@dataclass
class SmuState:
    """Everything the 2450 is set to; the bench reads it."""

    source_v: float = 0.0
    source_range_v: float = 0.2
    source_autorange: bool = True
    current_limit_a: float = 105e-6
    sense_current: bool = True
    current_range_a: float = 100e-6
    current_autorange: bool = True
    nplc: float = 1.0
    output_on: bool = False
    tripped: bool = False
    sweep_list_v: list[float] = field(default_factory=list)
    sweep_delay_s: float | None = None
    buffer: list[tuple[float, float]] = field(default_factory=list)


class Keithley2450Server(ScpiServer):
    """The 2450's SCPI dialect over a socket, backed by the virtual bench."""

    role = "smu"
    IDN = "KEITHLEY INSTRUMENTS,MODEL 2450,04512345,1.7.12b"
    ERROR_NONE = '0,"No error"'
    COMMANDS = (
        ("*IDN?", "_idn"),
        ("*RST", "_rst"),
        ("*CLS", "_cls"),
        ("*OPC?", "_opc"),
        ("*WAI", "_nothing"),
        ("SYSTem:ERRor?", "_err"),
        ("SYSTem:ERRor:NEXT?", "_err"),
        ("SOURce:FUNCtion", "_source_function"),
        ("SOURce:FUNCtion?", "_source_function_q"),
        ("SOURce:VOLTage", "_source_voltage"),
        ("SOURce:VOLTage?", "_source_voltage_q"),
        ("SOURce:VOLTage:RANGe", "_source_range"),
        ("SOURce:VOLTage:RANGe?", "_source_range_q"),
        ("SOURce:VOLTage:ILIMit", "_ilim"),
        ("SOURce:VOLTage:ILIMit?", "_ilim_q"),
        ("SOURce:VOLTage:ILIMit:TRIPped?", "_trip_q"),
        ("SENSe:FUNCtion", "_sense_function"),
        ("SENSe:CURRent:RANGe", "_current_range"),
        ("SENSe:CURRent:RANGe?", "_current_range_q"),
        ("SENSe:CURRent:RANGe:AUTO", "_current_autorange"),
        ("SENSe:CURRent:RANGe:AUTO?", "_current_autorange_q"),
        ("SENSe:CURRent:NPLCycles", "_nplc"),
        ("SENSe:CURRent:NPLCycles?", "_nplc_q"),
        ("OUTPut", "_output"),
        ("OUTPut:STATe", "_output"),
        ("OUTPut?", "_output_q"),
        ("OUTPut:STATe?", "_output_q"),
        ("READ?", "_read"),
        ("MEASure:CURRent?", "_read"),
        ("SOURce:LIST:VOLTage", "_list"),
        ("SOURce:LIST:VOLTage:APPend", "_list_append"),
        ("SOURce:SWEep:VOLTage:LIST", "_sweep_list"),
        ("INITiate", "_init"),
        ("TRACe:ACTual?", "_trace_actual"),
        ("TRACe:DATA?", "_trace_data"),
        ("TRACe:CLEar", "_trace_clear"),
        ("ABORt", "_nothing"),
    )

    def __init__(self, bench, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bench = bench
        self.state = SmuState()

    # ----- common ------------------------------------------------------------------------------

    def _rst(self, s, a, b) -> None:
        self.state = SmuState()
        self.bench.smu_changed()

    # ----- source ------------------------------------------------------------------------------

    def _source_function(self, s, args, b) -> None:
        if args.upper() not in ("VOLT", "VOLTAGE"):
            raise CommandError(-224, "Illegal parameter value; only VOLT is simulated")

    def _source_function_q(self, s, a, b) -> str:
        return "VOLT"

    def _source_voltage(self, s, args, b) -> None:
        value = parse_float(args, -MAX_VOLTAGE_V, MAX_VOLTAGE_V)
        st = self.state
        if st.source_autorange:
            st.source_range_v = _range_for(abs(value), SOURCE_RANGES_V)
        elif abs(value) > st.source_range_v * 1.05:
            raise CommandError(-222, "Data out of range")
        st.source_v = value
        self.bench.smu_changed()

    def _source_voltage_q(self, s, a, b) -> str:
        return format_float(self.state.source_v)

    def _source_range(self, s, args, b) -> None:
        value = parse_float(args, -MAX_VOLTAGE_V, MAX_VOLTAGE_V)
        self.state.source_range_v = _range_for(abs(value), SOURCE_RANGES_V)
        self.state.source_autorange = False

    def _source_range_q(self, s, a, b) -> str:
        return format_float(self.state.source_range_v)

    def _ilim(self, s, args, b) -> None:
        self.state.current_limit_a = parse_float(args, 1e-9, 1.05)

    def _ilim_q(self, s, a, b) -> str:
        return format_float(self.state.current_limit_a)

    def _trip_q(self, s, a, b) -> str:
        return "1" if self.state.tripped else "0"

    # ----- sense -------------------------------------------------------------------------------

    def _sense_function(self, s, args, b) -> None:
        if args.strip().strip('"').upper() not in ("CURR", "CURRENT", "CURR:DC", "CURRENT:DC"):
            raise CommandError(-224, "Illegal parameter value; only CURR is simulated")

    def _current_range(self, s, args, b) -> None:
        value = parse_float(args, 0.0, 1.05)
        self.state.current_range_a = _range_for(value, CURRENT_RANGES_A)
        self.state.current_autorange = False

    def _current_range_q(self, s, a, b) -> str:
        return format_float(self.state.current_range_a)

    def _current_autorange(self, s, args, b) -> None:
        self.state.current_autorange = parse_bool(args)

    def _current_autorange_q(self, s, a, b) -> str:
        return "1" if self.state.current_autorange else "0"

    def _nplc(self, s, args, b) -> None:
        self.state.nplc = parse_float(args, 0.01, 10.0)

    def _nplc_q(self, s, a, b) -> str:
        return format_float(self.state.nplc)

    # ----- output and readings -----------------------------------------------------------------

    def _output(self, s, args, b) -> None:
        self.state.output_on = parse_bool(args)
        if not self.state.output_on:
            self.state.tripped = False
        self.bench.smu_changed()

    def _output_q(self, s, a, b) -> str:
        return "1" if self.state.output_on else "0"

    def _read(self, s, a, b) -> str:
        if not self.state.output_on:
            self.push_error(5074, "Output must be on to make a measurement")
            return "9.910000E+37"
        current_a = self._measure(self.state.source_v)
        self._store(self.state.source_v, current_a)
        return format_float(current_a)

    def _measure(self, voltage_v: float, settle_s: float = 0.0) -> float:
        """One reading at ``voltage_v`` (held ``settle_s`` first): physics, then the range's
        overflow and quantization."""
        st = self.state
        current_a, tripped = self.bench.smu_reading(
            voltage_v, st.current_limit_a, st.nplc, settle_s
        )
        st.tripped = tripped
        if st.current_autorange:
            st.current_range_a = _range_for(abs(current_a), CURRENT_RANGES_A)
        if abs(current_a) > st.current_range_a * 1.05:
            return OVERFLOW
        lsb_a = st.current_range_a * 1e-6  # 6½ digits: 1 ppm of range
        return round(current_a / lsb_a) * lsb_a

    def _store(self, source_v: float, current_a: float) -> None:
        buffer = self.state.buffer
        buffer.append((source_v, current_a))
        if len(buffer) > MAX_BUFFER:
            del buffer[0]

    # ----- list sweep --------------------------------------------------------------------------

    def _list(self, s, args, b) -> None:
        self.state.sweep_list_v = self._list_values(args)

    def _list_append(self, s, args, b) -> None:
        values = self._list_values(args)
        if len(self.state.sweep_list_v) + len(values) > 2500:
            raise CommandError(-222, "Data out of range; source list full")
        self.state.sweep_list_v = [*self.state.sweep_list_v, *values]

    @staticmethod
    def _list_values(args: str) -> list[float]:
        """At most 100 values per command, as on the real 2450."""
        values = [parse_float(v, -MAX_VOLTAGE_V, MAX_VOLTAGE_V) for v in args.split(",")]
        if not values or len(values) > 100:
            raise CommandError(-222, "Data out of range; 1 to 100 list values per command")
        return values

    def _sweep_list(self, s, args, b) -> None:
        parts = [p.strip() for p in args.split(",")]
        if len(parts) < 1 or parts[0] != "1" or not self.state.sweep_list_v:
            raise CommandError(-221, "Settings conflict; no source list")
        delay_s = parse_float(parts[1], 0.0, 1e4) if len(parts) > 1 else 0.0
        self.state.sweep_delay_s = delay_s

    def _init(self, s, a, b) -> None:
        st = self.state
        if st.sweep_delay_s is None:
            raise CommandError(-221, "Settings conflict; no trigger model")
        st.buffer.clear()
        st.output_on = True
        self.bench.smu_changed()
        for voltage_v in st.sweep_list_v:
            if st.source_autorange:
                st.source_range_v = _range_for(abs(voltage_v), SOURCE_RANGES_V)
            st.source_v = voltage_v
            self._store(voltage_v, self._measure(voltage_v, st.sweep_delay_s))
        st.sweep_delay_s = None

    def _trace_actual(self, s, args, b) -> str:
        return str(len(self.state.buffer))

    def _trace_clear(self, s, args, b) -> None:
        self.state.buffer.clear()

    def _trace_data(self, s, args, b) -> str:
        parts = [p.strip() for p in args.split(",")]
        try:
            start, end = int(parts[0]), int(parts[1])
        except (ValueError, IndexError):
            raise CommandError(-109, "Missing parameter") from None
        buffer = self.state.buffer
        if not 1 <= start <= end <= len(buffer):
            raise CommandError(-222, "Data out of range")
        elements = [p.upper() for p in parts[3:]] or ["READ"]
        out: list[str] = []
        for source_v, current_a in buffer[start - 1 : end]:
            for element in elements:
                if element in ("SOUR", "SOURCE"):
                    out.append(format_float(source_v))
                elif element in ("READ", "READING"):
                    out.append(format_float(current_a))
                else:
                    raise CommandError(-224, "Illegal parameter value")
        return ",".join(out)


def _range_for(magnitude: float, ranges: tuple[float, ...]) -> float:
    """The smallest range that holds ``magnitude`` (the largest if none does)."""
    for value in ranges:
        if magnitude <= value * 1.0000001:
            return value
    return ranges[-1]
