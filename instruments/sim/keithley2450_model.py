"""The simulated 2450's measurements: readings, reading buffers, source lists and sweeps.

A mixin of :class:`instruments.sim.keithley2450.Keithley2450Server` (which holds the command
table); each method here is the ``run``/``ask`` of a table entry. Followed: 2450 Reference
Manual, ":READ?", ":MEASure:<function>?", ":FETCh?", ":TRACe" (buffers, elements), the sweep
commands (their trigger model clears the buffer, turns the output on, steps the source with
the delay before each reading, repeats ``count`` times, sweeps back when ``dual``) and the
sweep delay limits (0, or 50 µs to 10 ks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from instruments.sim.scpi_message import CommandError
from instruments.sim.scpi_params import (
    Boolean,
    Choice,
    Number,
    String,
    keithley_real,
    parse_number_list,
)

SOURCE_RANGES_V = (0.02, 0.2, 2.0, 20.0, 200.0)
CURRENT_RANGES_A = (10e-9, 100e-9, 1e-6, 10e-6, 100e-6, 1e-3, 10e-3, 100e-3, 1.0)
OVERFLOW = 9.9e37
NOT_A_NUMBER = 9.91e37
_ELEMENT = Choice(
    "READing", "SOURce", "RELative", "SEConds", "FRACtional", "UNIT", "SOURUNIT", "STATus",
    "SOURSTATus", "TSTamp", "DATE", "TIME", "FORMatted", "SOURFORMatted",
)  # fmt: skip
_RANGE_TYPE = Choice("AUTO", "BEST", "FIXed")
_BOOL = Boolean()
_COUNT = Number(1, 268_435_455, integer=True, special={"INFinite": 268_435_455})
_UNITS = {"CURR:DC": "Amp DC", "VOLT:DC": "Volt DC", "RES": "Ohm"}


@dataclass
class Reading:
    """One buffer entry: the source value, the reading, its unit and its virtual time."""

    source_v: float
    value: float
    unit: str
    time_s: float


@dataclass
class ReadingBuffer:
    """A 2450 reading buffer: a ring of ``capacity`` readings."""

    name: str
    capacity: int
    readings: list[Reading] = field(default_factory=list)

    def add(self, reading: Reading) -> None:
        self.readings.append(reading)
        if len(self.readings) > self.capacity:
            del self.readings[0]


class SmuModel:
    """Readings, buffers and sweeps of the simulated 2450 (mixed into its server)."""

    state: Any
    bench: Any

    # ----- readings -----------------------------------------------------------------------------

    def _reading(self, buffer: ReadingBuffer, settle_s: float = 0.0) -> Reading:
        """One measurement of the active function at the source level, stored in ``buffer``."""
        st = self.state
        source_v = self.output_v(st.source_v)  # type: ignore[attr-defined]
        current_a = self._current_a(source_v, settle_s)
        function = st.sense_function
        if function == "CURR:DC":
            value = current_a
        elif function == "VOLT:DC":
            value = source_v
        else:
            value = source_v / current_a if current_a not in (0.0, OVERFLOW) else OVERFLOW
        reading = Reading(st.source_v, value, _UNITS[function], self.bench.clock.now_s())
        buffer.add(reading)
        return reading

    def _current_a(self, voltage_v: float, settle_s: float) -> float:
        """The bench's current at ``voltage_v``, on the measure range, quantized, A."""
        st = self.state
        current_a, st.tripped = self.bench.smu_reading(
            voltage_v, st.current_limit_a, st.nplc, settle_s
        )
        if st.curr_autorange:
            st.curr_range = _range_for(abs(current_a))
        if abs(current_a) > st.curr_range * 1.05:
            return OVERFLOW
        lsb_a = st.curr_range * 1e-6  # 6½ digits: 1 ppm of range
        return round(current_a / lsb_a) * lsb_a

    def _buffer(self, name: str | None) -> ReadingBuffer:
        buffers = self.state.buffers
        key = name if name else "defbuffer1"
        if key not in buffers:
            raise CommandError(-224, f"Illegal parameter value; no reading buffer {key}")
        return buffers[key]

    def _measure_into(self, name: str | None, elements: list) -> str:
        st = self.state
        buffer = self._buffer(name)
        if not st.output_on:  # no measurement with the output off: NAN and an event
            self.push_error(-221, "Settings conflict; output is off")  # type: ignore[attr-defined]
            return keithley_real(NOT_A_NUMBER)
        reading = None
        for _ in range(int(st.count)):
            reading = self._reading(buffer, st.source_delay_s)
        assert reading is not None
        return self._format_elements(reading, buffer, elements)

    def _read(self, call: Any, name: str | None, elements: list) -> str:
        return self._measure_into(name, elements)

    _measure = _read

    def _measure_as(self, function: str, name: str | None, elements: list) -> str:
        self.state.sense_function = function
        return self._measure_into(name, elements)

    def _measure_current(self, call: Any, name: str | None, elements: list) -> str:
        return self._measure_as("CURR:DC", name, elements)

    def _measure_voltage(self, call: Any, name: str | None, elements: list) -> str:
        return self._measure_as("VOLT:DC", name, elements)

    def _measure_resistance(self, call: Any, name: str | None, elements: list) -> str:
        return self._measure_as("RES", name, elements)

    def _fetch(self, call: Any, name: str | None, elements: list) -> str:
        buffer = self._buffer(name)
        if not buffer.readings:
            raise CommandError(-230, "Data corrupt or stale; buffer empty")
        return self._format_elements(buffer.readings[-1], buffer, elements)

    def _format_elements(self, reading: Reading, buffer: ReadingBuffer, elements: list) -> str:
        words = [_ELEMENT.parse(e) for e in elements] or ["READ"]
        start_s = buffer.readings[0].time_s if buffer.readings else reading.time_s
        out = []
        for word in words:
            if word in ("READ", "FORM"):
                out.append(keithley_real(reading.value))
            elif word in ("SOUR", "SOURFORM"):
                out.append(keithley_real(reading.source_v))
            elif word == "REL":
                out.append(keithley_real(reading.time_s - start_s))
            elif word in ("SEC", "FRAC"):
                whole = math.floor(reading.time_s)
                out.append(str(whole) if word == "SEC" else keithley_real(reading.time_s - whole))
            elif word == "UNIT":
                out.append(reading.unit)
            elif word == "SOURUNIT":
                out.append("Volt DC")
            elif word in ("STAT", "SOURSTAT"):
                out.append("0")
            else:  # TST, DATE, TIME: the virtual clock from the lab's start
                out.append(f"{reading.time_s:.9f}")
        return ",".join(out)

    # ----- buffers ------------------------------------------------------------------------------

    def _trace_make(self, call: Any, name: str, size: float, style: list) -> None:
        if name in self.state.buffers:
            raise CommandError(-224, f"Illegal parameter value; buffer {name} exists")
        self.state.buffers[name] = ReadingBuffer(name, int(size))

    def _trace_delete(self, call: Any, name: str) -> None:
        if name in ("defbuffer1", "defbuffer2"):
            raise CommandError(-221, "Settings conflict; a default buffer cannot be deleted")
        self._buffer(name)
        del self.state.buffers[name]

    def _trace_clear(self, call: Any, name: str | None) -> None:
        self._buffer(name).readings.clear()

    def _trace_actual(self, call: Any, name: str | None) -> str:
        return str(len(self._buffer(name).readings))

    def _trace_start(self, call: Any, name: str | None) -> str:
        return "1" if self._buffer(name).readings else "0"

    def _trace_end(self, call: Any, name: str | None) -> str:
        return str(len(self._buffer(name).readings))

    def _trace_points(self, call: Any, size: float, name: str | None) -> None:
        buffer = self._buffer(name)
        buffer.capacity = int(size)
        del buffer.readings[: max(0, len(buffer.readings) - buffer.capacity)]

    def _trace_points_q(self, call: Any, name: str | None) -> str:
        return str(self._buffer(name).capacity)

    def _trace_data(
        self, call: Any, start: float, end: float, name: str | None, elements: list
    ) -> str:
        buffer = self._buffer(name)
        first, last = int(start), int(end)
        if not 1 <= first <= last <= len(buffer.readings):
            raise CommandError(-222, "Data out of range; no such readings")
        return ",".join(
            self._format_elements(reading, buffer, elements)
            for reading in buffer.readings[first - 1 : last]
        )

    def _trace_trigger(self, call: Any, name: str | None) -> None:
        self._measure_into(name, [])

    def _stats(self, name: str | None) -> np.ndarray:
        values = np.array([r.value for r in self._buffer(name).readings], dtype=np.float64)
        if values.size == 0:
            raise CommandError(-230, "Data corrupt or stale; buffer empty")
        return values

    def _stat_average(self, call: Any, name: str | None) -> str:
        return keithley_real(float(np.mean(self._stats(name))))

    def _stat_maximum(self, call: Any, name: str | None) -> str:
        return keithley_real(float(np.max(self._stats(name))))

    def _stat_minimum(self, call: Any, name: str | None) -> str:
        return keithley_real(float(np.min(self._stats(name))))

    def _stat_stddev(self, call: Any, name: str | None) -> str:
        values = self._stats(name)
        return keithley_real(float(np.std(values, ddof=1)) if values.size > 1 else 0.0)

    # ----- source list and sweeps ---------------------------------------------------------------

    def _list_values(self, elements: list) -> list[float]:
        values = parse_number_list(elements, -210.0, 210.0, 100)  # at most 100 per command
        return [float(v) for v in values]

    def _list(self, call: Any, elements: list) -> None:
        self.state.sweep_list_v = self._list_values(elements)

    def _list_append(self, call: Any, elements: list) -> None:
        values = self._list_values(elements)
        if len(self.state.sweep_list_v) + len(values) > 2500:
            raise CommandError(-222, "Data out of range; source list full (2500)")
        self.state.sweep_list_v = [*self.state.sweep_list_v, *values]

    def _list_q(self, call: Any) -> str:
        return ",".join(keithley_real(v) for v in self.state.sweep_list_v)

    def _list_points(self, call: Any) -> str:
        return str(len(self.state.sweep_list_v))

    def _sweep_options(self, options: list, with_range: bool, n_max: int) -> dict[str, Any]:
        """The optional sweep parameters in the manual's order, checked as the 2450 does."""
        names = ["delay", "count", "range", "fail_abort", "dual", "buffer", "asymptote"]
        if not with_range:
            names = ["delay", "count", "fail_abort", "buffer"]
        names = names[:n_max]
        if len(options) > len(names):
            raise CommandError(-108, "Parameter not allowed")
        parsers = {
            "delay": Number(-1.0, 1e4, unit="S"), "count": _COUNT, "range": _RANGE_TYPE,
            "fail_abort": _BOOL, "dual": _BOOL, "buffer": String(max_length=31),
            "asymptote": Number(-210.0, 210.0, unit="V"),
        }  # fmt: skip
        pairs = zip(names, options, strict=False)
        parsed = {name: parsers[name].parse(value) for name, value in pairs}
        delay_s = float(parsed.get("delay", 0.0))
        if delay_s != 0.0 and not 50e-6 <= delay_s <= 1e4 and delay_s != -1.0:
            raise CommandError(-222, "Data out of range; sweep delay is 0 or 50e-6..1e4 s")
        return parsed

    def _arm_sweep(self, values: list[float], options: dict[str, Any]) -> None:
        st = self.state
        if options.get("dual"):
            values = values + values[-2::-1]
        count = int(options.get("count", 1))
        if len(values) * count > 11_000_000:
            raise CommandError(-222, "Data out of range; sweep too long")
        buffer = str(options.get("buffer", "defbuffer1"))
        self._buffer(buffer)
        st.sweep = values * count
        delay_s = float(options.get("delay", 0.0))
        st.sweep_delay_s = 0.0 if delay_s == -1.0 else delay_s  # -1: auto delay (none needed)
        st.sweep_buffer = buffer
        st.sweep_fail_abort = bool(options.get("fail_abort", True))
        st.sweep_range = str(options.get("range", "BEST"))

    def _sweep_linear(self, call: Any, start: float, stop: float, n: float, options: list) -> None:
        parsed = self._sweep_options(options, True, 6)
        self._arm_sweep([float(v) for v in np.linspace(start, stop, int(n))], parsed)

    def _sweep_step(self, call: Any, start: float, stop: float, step: float, options: list) -> None:
        if step == 0.0 or (stop - start) / step < 0:
            raise CommandError(-222, "Data out of range; step does not reach the stop value")
        n = math.floor((stop - start) / step + 1e-9) + 1
        if n > 2500:
            raise CommandError(-222, "Data out of range; more than 2500 steps")
        parsed = self._sweep_options(options, True, 6)
        self._arm_sweep([start + i * step for i in range(n)], parsed)

    def _sweep_log(self, call: Any, start: float, stop: float, n: float, options: list) -> None:
        parsed = self._sweep_options(options, True, 7)
        asymptote = float(parsed.get("asymptote", 0.0))
        low, high = start - asymptote, stop - asymptote
        if low == 0.0 or high == 0.0 or (low > 0) != (high > 0):
            raise CommandError(-222, "Data out of range; a log sweep cannot cross the asymptote")
        sign = 1.0 if low > 0 else -1.0
        values = sign * np.logspace(math.log10(abs(low)), math.log10(abs(high)), int(n))
        self._arm_sweep([float(v + asymptote) for v in values], parsed)

    def _sweep_list(self, call: Any, index: float, options: list) -> None:
        st = self.state
        if not st.sweep_list_v or int(index) > len(st.sweep_list_v):
            raise CommandError(-221, "Settings conflict; no source list at that index")
        parsed = self._sweep_options(options, False, 4)
        self._arm_sweep(st.sweep_list_v[int(index) - 1 :], parsed)

    def _init(self, call: Any) -> None:
        """Run the armed sweep: buffer cleared, output on, each point held then measured."""
        st = self.state
        if st.sweep is None:
            raise CommandError(-221, "Settings conflict; no trigger model")
        buffer = self._buffer(st.sweep_buffer)
        buffer.readings.clear()
        st.output_on = True
        if st.sweep_range == "BEST":
            st.source_range_v = _source_range_for(max(abs(v) for v in st.sweep))
        self.bench.smu_changed()
        for voltage_v in st.sweep:
            if st.sweep_range == "AUTO":
                st.source_range_v = _source_range_for(abs(voltage_v))
            st.source_v = voltage_v
            self._reading(buffer, st.sweep_delay_s)
            if st.tripped and st.sweep_fail_abort:
                break

    def _abort(self, call: Any) -> None:
        """Nothing runs in the background: a sweep completes inside ``:INIT`` (virtual time)."""


def range_for(magnitude: float, ranges: tuple[float, ...]) -> float:
    """The smallest range that holds ``magnitude`` (the largest if none does)."""
    for value in ranges:
        if magnitude <= value * 1.0000001:
            return value
    return ranges[-1]


def _range_for(magnitude_a: float) -> float:
    return range_for(magnitude_a, CURRENT_RANGES_A)


def _source_range_for(magnitude_v: float) -> float:
    return range_for(magnitude_v, SOURCE_RANGES_V)
