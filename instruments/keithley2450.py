"""Keithley 2450 SourceMeter, native SCPI command set (2450 Reference Manual, 2450-901-01).

The 2400-emulation language is refused at connect (its ``*IDN?`` reads ``MODEL 2400``), and so
is the TSP command set (``*LANG?`` answers ``TSP``: the error names the front-panel setting to
change). Voltage source, current measure; list sweeps run on the instrument's trigger model
and are read back from ``defbuffer1``. Every value is checked against the bench's safety
envelope before it is sent, and the output is switched on only with a compliance set and the
prober in contact.

    smu = Keithley2450(rm.open_resource("TCPIP::10.0.0.5::5025::SOCKET"), guard=guard)
    smu.configure_voltage_source(range_v=20.0, current_limit_a=1e-4, nplc=1.0)
    smu.source_voltage_v = 0.5
    smu.output_enabled = True
    i_a = smu.measure_current_a()
    smu.shutdown()

The 2450 takes at most 100 values per ``:SOUR:LIST:VOLT`` command; longer lists (up to the
2500-point capacity) are sent as one ``:SOUR:LIST:VOLT`` and then ``:SOUR:LIST:VOLT:APP`` commands
of at most 100 values each, as the reference manual describes. A sweep's delay is 0 or
50 µs..10 ks (the instrument's limits, checked before sending) and the sweep runs with
``failAbort`` OFF: a point at the current limit (a forming step) does not end the sweep.

Interlock (2450 Quick Start Guide, "Wiring the interlock"): without the rear-panel interlock
asserted the 2450 limits its output to ±42 V (event 5074) and measures the wrong voltage.
Before an output above 42 V (output on, a level change with the output on, a sweep) the
driver reads ``:OUTP:INT:TRIP?`` and raises ``InterlockOpen`` if it is not asserted. A sweep
reads the last ``len(voltages)`` readings of ``defbuffer1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from instruments.errors import (
    ComplianceHit,
    GarbledReply,
    InterlockOpen,
    SettingRangeError,
    WrongInstrument,
)
from instruments.roles import SourceMeter, register_model
from instruments.scpi import (
    ScpiInstrument,
    ScpiProperty,
    scpi_control,
    scpi_measurement,
    scpi_setting,
)
from instruments.validators import (
    as_bool,
    format_float,
    format_on_off,
    in_range,
    parse_bool,
    parse_float,
    parse_int,
)

MAX_SWEEP_POINTS = 2500  # the 2450's source-list capacity
LIST_VALUES_PER_COMMAND = 100  # :SOUR:LIST:VOLT and :SOUR:LIST:VOLT:APP take at most 100 each
POWER_LINE_HZ_MAX = 60.0  # shortest NPLC time: used for the worst-case sweep step rate
BUFFER = '"defbuffer1"'
INTERLOCK_LIMIT_V = 42.0  # without the interlock the output is limited to this
SWEEP_DELAY_MIN_S, SWEEP_DELAY_MAX_S = 50e-6, 10_000.0  # or exactly 0
LANGUAGE_SETTING = "MENU > System > Settings > Command Set: SCPI, then power-cycle"


@register_model("keithley2450", role="smu")
class Keithley2450(ScpiInstrument, SourceMeter):
    """Keithley 2450 SMU over SCPI: voltage source, current measure."""

    IDENTITY_PATTERN = r"KEITHLEY INSTRUMENTS,MODEL 2450,"

    source_voltage_v = scpi_control(
        ":SOUR:VOLT?", ":SOUR:VOLT {}", parse_float, unit="V",
        validator=in_range(-210.0, 210.0), envelope_key="voltage_v",
        doc="Control the source voltage.",
    )  # fmt: skip
    source_range_v = scpi_setting(
        ":SOUR:VOLT:RANG {}", unit="V", validator=in_range(0.0, 210.0),
        doc="Set the source voltage range (the instrument picks the range holding it).",
    )  # fmt: skip
    current_limit_a = scpi_control(
        ":SOUR:VOLT:ILIM?", ":SOUR:VOLT:ILIM {}", parse_float, unit="A",
        validator=in_range(1e-9, 1.05), envelope_key="current_a",
        doc="Control the current limit (compliance) while sourcing voltage.",
    )  # fmt: skip
    compliance_tripped = scpi_measurement(
        ":SOUR:VOLT:ILIM:TRIP?", parse_bool, doc="Get whether the source is at its current limit."
    )
    current_range_a = scpi_setting(
        ":SENS:CURR:RANG {}", unit="A", validator=in_range(1e-8, 1.05),
        doc="Set a fixed current measurement range (turns autorange off).",
    )  # fmt: skip
    current_autorange_enabled = scpi_setting(
        ":SENS:CURR:RANG:AUTO {}", formatter=format_on_off, validator=as_bool,
        doc="Set whether the current measurement range follows the reading.",
    )  # fmt: skip
    nplc = scpi_setting(
        ":SENS:CURR:NPLC {}", unit="power-line cycles", validator=in_range(0.01, 10.0),
        doc="Set the current integration time in power-line cycles.",
    )  # fmt: skip
    output_enabled = scpi_control(
        ":OUTP?", ":OUTP {}", parse_bool, formatter=format_on_off, validator=as_bool,
        envelope_key="output", doc="Control whether the output is on.",
    )  # fmt: skip

    def __init__(self, resource: Any, **kwargs: Any) -> None:
        self._forget()
        super().__init__(resource, **kwargs)

    def _check_mode(self) -> None:
        """The command language: only SCPI is spoken here (``*LANG?``, before ``*CLS``)."""
        language = self.query("*LANG?").strip().strip('"').upper()
        if language != "SCPI":
            raise WrongInstrument(
                f"the 2450 is set to the {language} command set (*LANG? answered "
                f"{language!r}); this driver speaks SCPI: on the front panel select "
                f"{LANGUAGE_SETTING}",
                instrument=self.name,
                command="*LANG?",
            )

    def _forget(self) -> None:
        self._source_voltage_v: float | None = None  # None: not known to this driver
        self._current_limit_a: float | None = None
        self._nplc = 1.0
        self._output_on: bool | None = None

    def _after_reset(self) -> None:
        self._forget()
        self._source_voltage_v, self._output_on = 0.0, False

    def _after_set(self, name: str, value: Any) -> None:
        if name == "source_voltage_v":
            self._source_voltage_v = float(value)
        elif name == "current_limit_a":
            self._current_limit_a = float(value)
        elif name == "nplc":
            self._nplc = float(value)
        elif name == "output_enabled":
            self._output_on = bool(value)

    def _check_envelope(self, prop: ScpiProperty, value: Any) -> None:
        if prop.envelope_key != "output":
            super()._check_envelope(prop, value)
            if prop.name == "source_voltage_v" and abs(float(value)) > INTERLOCK_LIMIT_V:
                on = self._output_on
                if on is None:
                    on = self.query_parsed(":OUTP?", parse_bool)
                if on:  # a live output would go there now
                    self.require_interlock(float(value), prop.name)
            return
        if not value:
            return  # switching off is always allowed
        self.guard.check_compliance_set(self.name, self._current_limit_a)
        level_v = self._source_voltage_v
        if level_v is None:
            level_v = self.query_parsed(":SOUR:VOLT?", parse_float)
        self.guard.check_voltage(self.name, "source_voltage_v (at output on)", level_v)
        self.guard.check_contact(self.name, "output_enabled")
        self.require_interlock(level_v, "output_enabled")

    def require_interlock(self, level_v: float, setting: str) -> None:
        """Above ±42 V, read the interlock (``:OUTP:INT:TRIP?``, 1 = asserted) and refuse if
        it is open: the 2450 would limit the output to ±42 V."""
        if abs(level_v) <= INTERLOCK_LIMIT_V:
            return
        if not self.query_parsed(":OUTP:INT:TRIP?", parse_bool):
            raise InterlockOpen(
                f"{setting}: {level_v:g} V needs the safety interlock asserted, and "
                f":OUTP:INT:TRIP? reads 0 (the 2450 limits its output to ±{INTERLOCK_LIMIT_V:g} V"
                "); close the interlock circuit (fixture lid, prober door)",
                instrument=self.name,
                command=":OUTP:INT:TRIP?",
            )

    def configure_voltage_source(
        self, range_v: float, current_limit_a: float, nplc: float = 1.0
    ) -> None:
        """Source voltage on ``range_v`` (V) with the current limited to ``current_limit_a``
        (A); measure current, autoranging, integrating ``nplc`` power-line cycles."""
        self.configure_settings(
            ":SOUR:FUNC VOLT",
            ("source_range_v", range_v),
            ("current_limit_a", current_limit_a),
            ':SENS:FUNC "CURR"',
            ("current_autorange_enabled", True),
            ("nplc", nplc),
        )

    def measure_current_a(self, *, raise_on_compliance: bool = True) -> float:
        """One reading of the current, A. With ``raise_on_compliance`` a reading taken at the
        current limit raises ``ComplianceHit`` (it measures the limit, not the device)."""
        current_a = self.query_parsed(":READ?", parse_float)
        if raise_on_compliance and self.compliance_tripped:
            raise ComplianceHit(
                f"current at the limit {self._current_limit_a!r} A (read {current_a:.6g} A)",
                instrument=self.name,
                command=":READ?",
            )
        return current_a

    def sweep_voltage_list(
        self,
        voltages_v: np.ndarray,
        current_limit_a: float,
        delay_s: float,
        *,
        raise_on_compliance: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run a list sweep on the instrument: each voltage (V) held ``delay_s`` then measured.

        Returns ``(voltage_v, current_a)`` as read back from the buffer (source readback and
        measured current). The output is on after the sweep (as the 2450 leaves it) at the
        last voltage. Refused before anything is sent if a voltage, the limit, a step rate or
        the contact state is beyond the envelope.
        """
        v = np.asarray(voltages_v, dtype=np.float64).ravel()
        where = f"{self.name}: sweep_voltage_list"
        if not 1 <= v.size <= MAX_SWEEP_POINTS:
            raise SettingRangeError(f"{where}: {v.size} points, allowed 1..{MAX_SWEEP_POINTS}")
        if not np.all(np.isfinite(v)) or np.max(np.abs(v)) > 210.0:
            raise SettingRangeError(f"{where}: voltages must be finite within ±210 V")
        delay_s = float(delay_s)
        if delay_s != 0.0 and not SWEEP_DELAY_MIN_S <= delay_s <= SWEEP_DELAY_MAX_S:
            raise SettingRangeError(
                f"{where}: delay_s {delay_s!r} s; the 2450 takes 0 or "
                f"{SWEEP_DELAY_MIN_S:g}..{SWEEP_DELAY_MAX_S:g} s"
            )
        current_limit_a = in_range(1e-9, 1.05)(current_limit_a, f"{where}: current_limit_a")
        self.guard.check_current(self.name, "current_limit_a", current_limit_a)
        dwell_s = delay_s + self._nplc / POWER_LINE_HZ_MAX
        start_v = self._source_voltage_v if self._source_voltage_v is not None else 0.0
        self.guard.check_sweep(self.name, v, dwell_s, start_v=start_v)
        self.guard.check_contact(self.name, "sweep output")
        self.require_interlock(float(np.max(np.abs(v))), "sweep_voltage_list")

        chunks = [
            ",".join(format_float(x) for x in v[i : i + LIST_VALUES_PER_COMMAND])
            for i in range(0, v.size, LIST_VALUES_PER_COMMAND)
        ]
        self.configure_settings(
            ":SOUR:FUNC VOLT",
            ("current_limit_a", current_limit_a),
            ":SOUR:LIST:VOLT " + chunks[0],
            *(":SOUR:LIST:VOLT:APP " + chunk for chunk in chunks[1:]),
            f":SOUR:SWE:VOLT:LIST 1,{format_float(delay_s)},1,OFF",  # count 1, no fail-abort
        )
        expected_s = v.size * dwell_s
        with self.timeout_extended(2.0 * expected_s):
            self.write(":INIT")
            self.write("*WAI")
            n = self.query_parsed(f":TRAC:ACT? {BUFFER}", parse_int)
        self._output_on = True
        self._source_voltage_v = float(v[-1])
        if n < v.size:
            raise GarbledReply(
                f"buffer holds {n} readings, the sweep has {v.size}",
                instrument=self.name, command=f":TRAC:ACT? {BUFFER}",
            )  # fmt: skip
        first = n - v.size + 1
        command = f":TRAC:DATA? {first},{n},{BUFFER},SOUR,READ"
        values = self.query_parsed(command, _parse_csv_floats)
        if values.size != 2 * v.size:
            raise GarbledReply(
                f"{values.size} values for {v.size} points", instrument=self.name, command=command
            )
        self.check_errors()
        if raise_on_compliance and self.compliance_tripped:
            raise ComplianceHit(
                f"the sweep reached the current limit {current_limit_a:g} A",
                instrument=self.name, command=":INIT",
            )  # fmt: skip
        return values[0::2].copy(), values[1::2].copy()

    def shutdown(self) -> None:
        """0 V, output off (always allowed; the envelope has nothing to refuse here)."""
        self.write(":SOUR:VOLT 0")
        self.write(":OUTP OFF")
        self._source_voltage_v, self._output_on = 0.0, False
        self.check_errors()

    def ensure_safe(self) -> None:
        """Shutdown unless this driver knows the output is already off at 0 V."""
        if self._output_on is not False or self._source_voltage_v != 0.0:
            self.shutdown()


def _parse_csv_floats(reply: str) -> np.ndarray:
    values = np.array([float(x) for x in reply.strip().split(",")], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("non-finite value in buffer data")
    return values
