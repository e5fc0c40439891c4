"""Array tester for 1T1R crossbars (ArC TWO / FPGA digital-pattern class), its SCPI dialect.

The dialect is documented in docs/array-tester.md (the simulated instrument,
``instruments.sim.array_tester``, implements the same table). Lines: word lines (gates, one per
row), bit lines (one per column), source lines (one per row). The safety envelope applies per
line (``max_wordline_v``, ``max_bitline_v``, ``max_sourceline_v``), to pulse width and
worst-case pulse energy, and to the current: a SET (bit line above source line) is refused
unless the bit-line compliance was set first; the outputs go on only with the probe card in
contact. Everything is checked before anything is sent.

    tester = ArrayTester(rm.open_resource("TCPIP::10.0.0.7::5025::SOCKET"), guard=guard)
    tester.configure_read(read_v=0.2, gate_v=3.3, aperture_s=100e-6, mode="cell")
    tester.output_enabled = True
    g = tester.read_row(5)                              # (columns,) S
    result = tester.program_row(5, targets, ProgramSettings(scheme="igvva"))
    currents = tester.mvm(row_v, gate_v=3.3)            # (B, columns) A
    tester.shutdown()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from instruments.errors import GarbledReply, SettingRangeError
from instruments.roles import ArrayTester as ArrayTesterRole
from instruments.roles import register_model
from instruments.scpi import ScpiInstrument, ScpiProperty, scpi_control, scpi_measurement
from instruments.validators import (
    as_bool,
    format_on_off,
    in_range,
    integer_in_range,
    one_of,
    parse_bool,
    parse_float,
)

MAX_LINE_V = 5.0
MAX_READ_V = 0.5
VECTORS_PER_COMMAND = 1024  # MVM blocks of at most 1024 x rows float64 (512 kB for 64 rows)
REPLY_BUDGET_S = 60.0  # extra reply time for an on-instrument loop (write-verify, forming)


@dataclass(frozen=True)
class ProgramSettings:
    """A row write-verify on the instrument (``:PROGram`` subsystem); SI units."""

    scheme: str = "igvva"
    tolerance_siemens: float = 4e-6
    width_s: float = 1e-6
    compliance_a: float = 1.5e-3
    set_bl_v: float = 1.8
    gate_start_v: float = 0.9
    gate_stop_v: float = 2.8
    gate_step_v: float = 0.01
    set_gate_v: float = 2.2
    bl_start_v: float = 0.8
    bl_stop_v: float = 2.0
    bl_step_v: float = 0.02
    reset_start_v: float = 0.7
    reset_stop_v: float = 1.6
    reset_step_v: float = 0.02
    reset_gate_v: float = 3.3
    max_attempts: int = 100


@dataclass(frozen=True)
class FormingSettings:
    """Row forming on the instrument (``:FORM`` subsystem): bit-line pulses of rising amplitude
    at the forming gate until a verify read exceeds the threshold."""

    start_v: float = 2.0
    stop_v: float = 4.0
    step_v: float = 0.05
    width_s: float = 1e-4
    gate_v: float = 0.9
    threshold_siemens: float = 2e-6
    compliance_a: float = 1e-3


@dataclass
class ProgramResult:
    """Per cell of a programmed row: pulses, final verify read, success, final gate and
    bit-line amplitude; the row's duration on the instrument."""

    attempts: np.ndarray
    conductance_siemens: np.ndarray
    success: np.ndarray
    gate_v: np.ndarray
    bl_v: np.ndarray
    duration_s: float


def _size(reply: str) -> tuple[int, int]:
    rows, cols = (int(x) for x in reply.strip().split(","))
    if rows < 1 or cols < 1:
        raise ValueError(f"array size {rows}x{cols}")
    return rows, cols


_PROGRAM = {  # ProgramSettings field -> declared setting
    "scheme": "prog_scheme",
    "tolerance_siemens": "prog_tolerance_siemens",
    "width_s": "prog_width_s",
    "set_bl_v": "prog_bl_v",
    "gate_start_v": "prog_gate_start_v",
    "gate_stop_v": "prog_gate_stop_v",
    "gate_step_v": "prog_gate_step_v",
    "set_gate_v": "prog_gate_fixed_v",
    "bl_start_v": "prog_bl_start_v",
    "bl_stop_v": "prog_bl_stop_v",
    "bl_step_v": "prog_bl_step_v",
    "reset_start_v": "prog_reset_start_v",
    "reset_stop_v": "prog_reset_stop_v",
    "reset_step_v": "prog_reset_step_v",
    "reset_gate_v": "prog_reset_gate_v",
    "max_attempts": "prog_attempts",
}
_FORMING = {
    "start_v": "form_start_v",
    "stop_v": "form_stop_v",
    "step_v": "form_step_v",
    "width_s": "form_width_s",
    "gate_v": "form_gate_v",
    "threshold_siemens": "form_threshold_siemens",
}


def _line(set_cmd: str, line: str, doc: str, low: float = -MAX_LINE_V) -> Any:
    return scpi_control(
        set_cmd.split(" ")[0] + "?", set_cmd, parse_float, unit="V",
        validator=in_range(low, MAX_LINE_V), envelope_key=line, doc=doc,
    )  # fmt: skip


def _value(
    set_cmd: str, low: float, high: float, unit: str, doc: str, key: str | None = None
) -> Any:
    return scpi_control(
        set_cmd.split(" ")[0] + "?", set_cmd, parse_float, unit=unit,
        validator=in_range(low, high), envelope_key=key, doc=doc,
    )  # fmt: skip


@register_model("array-tester", role="array_tester")
class ArrayTester(ScpiInstrument, ArrayTesterRole):
    """A 1T1R array tester over SCPI (docs/array-tester.md)."""

    IDENTITY_PATTERN = r"BRUNO-LAB,AT-1T1R-\d+,"
    ERROR_QUERY = ":SYST:ERR?"

    wordline_v = _line(
        ":SOUR:WL:VOLT {}", "wordline", "Control the word-line (gate) level of a pulse."
    )
    bitline_v = _line(":SOUR:BL:VOLT {}", "bitline", "Control the bit-line level of a pulse.")
    sourceline_v = _line(
        ":SOUR:SL:VOLT {}", "sourceline", "Control the source-line level of a pulse."
    )
    compliance_a = _value(
        ":SOUR:BL:CURR:LIM {}",
        0.0,
        0.1,
        "A",
        "Control the bit-line current clamp (0: not set).",
        "current_a",
    )
    pulse_width_s = _value(":PULS:WIDT {}", 10e-9, 1e-3, "s", "Control the pulse width.", "width")
    read_v = _value(":SENS:VOLT {}", 0.01, MAX_READ_V, "V", "Control the read voltage.", "bitline")
    read_gate_v = _line(":SENS:GATE {}", "wordline", "Control the word line during reads.", 0.0)
    aperture_s = _value(":SENS:APER {}", 10e-6, 10e-3, "s", "Control one conversion's time.")
    read_mode = scpi_control(
        ":SENS:MODE?", ":SENS:MODE {}", lambda r: r.strip().lower(), formatter=lambda v: v.upper(),
        validator=one_of("cell", "row"),
        doc="Control the read mode: cell by cell, or a row at once.",
    )  # fmt: skip
    prog_scheme = scpi_control(
        ":PROG:SCH?", ":PROG:SCH {}", lambda r: r.strip().lower(), formatter=lambda v: v.upper(),
        validator=one_of("igvva", "ispva"), doc="Control the write-verify scheme.",
    )  # fmt: skip
    prog_tolerance_siemens = _value(":PROG:TOL {}", 1e-8, 1e-3, "S", "Control the verify window.")
    prog_width_s = _value(
        ":PROG:WIDT {}", 10e-9, 1e-3, "s", "Control the programming pulse width.", "width"
    )
    prog_bl_v = _line(":PROG:BL:VOLT {}", "bitline", "Control the IGVVA SET amplitude.", 0.0)
    prog_gate_start_v = _line(
        ":PROG:GATE:STAR {}", "wordline", "Control the IGVVA gate start.", 0.0
    )
    prog_gate_stop_v = _line(":PROG:GATE:STOP {}", "wordline", "Control the IGVVA gate end.", 0.0)
    prog_gate_step_v = _value(":PROG:GATE:STEP {}", 1e-4, 1.0, "V", "Control the IGVVA gate step.")
    prog_gate_fixed_v = _line(":PROG:GATE:FIX {}", "wordline", "Control the ISPVA gate.", 0.0)
    prog_bl_start_v = _line(":PROG:BL:STAR {}", "bitline", "Control the ISPVA ramp start.", 0.0)
    prog_bl_stop_v = _line(":PROG:BL:STOP {}", "bitline", "Control the ISPVA ramp end.", 0.0)
    prog_bl_step_v = _value(":PROG:BL:STEP {}", 1e-4, 1.0, "V", "Control the ISPVA step.")
    prog_reset_start_v = _line(":PROG:RES:STAR {}", "sourceline", "Control the RESET start.", 0.0)
    prog_reset_stop_v = _line(":PROG:RES:STOP {}", "sourceline", "Control the RESET end.", 0.0)
    prog_reset_step_v = _value(":PROG:RES:STEP {}", 1e-4, 1.0, "V", "Control the RESET step.")
    prog_reset_gate_v = _line(":PROG:RES:GATE {}", "wordline", "Control the RESET gate.", 0.0)
    prog_attempts = scpi_control(
        ":PROG:ATT?", ":PROG:ATT {}", lambda r: int(float(r)), formatter=lambda v: str(int(v)),
        validator=integer_in_range(1, 10_000), doc="Control the pulses per cell at most.",
    )  # fmt: skip
    form_start_v = _line(":FORM:STAR {}", "bitline", "Control the forming ramp start.", 0.0)
    form_stop_v = _line(":FORM:STOP {}", "bitline", "Control the forming ramp end.", 0.0)
    form_step_v = _value(":FORM:STEP {}", 1e-3, 1.0, "V", "Control the forming step.")
    form_width_s = _value(
        ":FORM:WIDT {}", 10e-9, 1e-2, "s", "Control the forming pulse width.", "width"
    )
    form_gate_v = _line(":FORM:GATE {}", "wordline", "Control the forming gate.", 0.0)
    form_threshold_siemens = _value(
        ":FORM:THR {}", 1e-9, 1e-3, "S", "Control the formed threshold."
    )
    mvm_gate_v = _line(":MVM:GATE {}", "wordline", "Control the word lines during an MVM.", 0.0)
    output_enabled = scpi_control(
        ":OUTP?", ":OUTP {}", parse_bool, formatter=format_on_off, validator=as_bool,
        envelope_key="output", doc="Control whether the line drivers are connected.",
    )  # fmt: skip
    size = scpi_measurement(":ARR:SIZE?", _size, doc="Get (rows, columns) of the array.")

    def __init__(self, resource: Any, **kwargs: Any) -> None:
        self._forget()
        super().__init__(resource, **kwargs)

    def _forget(self) -> None:
        self._sent: dict[str, Any] = {}
        self._output_on: bool | None = None

    def _after_reset(self) -> None:
        self._forget()
        self._output_on = False

    def _after_set(self, name: str, value: Any) -> None:
        self._sent[name] = value
        if name == "output_enabled":
            self._output_on = bool(value)

    # ----- the envelope ---------------------------------------------------------------------

    def _check_envelope(self, prop: ScpiProperty, value: Any) -> None:
        key = prop.envelope_key
        if key in ("wordline", "bitline", "sourceline"):
            self.guard.check_line(self.name, key, float(value))
        elif key == "width":
            limit = self.guard.limits.max_pulse_width_s
            if float(value) > limit:
                self.guard.refuse(self.name, prop.name, value, "max_pulse_width_s", limit)
        elif key == "output":
            if value:
                self.guard.check_contact(self.name, "output_enabled")
        else:
            super()._check_envelope(prop, value)

    def _check_set_pulse(
        self, amplitude_v: float, width_s: float, compliance_a: float | None
    ) -> None:
        """A SET needs its compliance set (and within the envelope); every pulse its width and
        energy within the envelope."""
        self.guard.check_compliance_set(self.name, compliance_a if compliance_a else None)
        self.guard.check_pulse(self.name, "pulse", amplitude_v, width_s)

    # ----- reads ----------------------------------------------------------------------------------

    def array_size(self) -> tuple[int, int]:
        rows, cols = self.size
        return int(rows), int(cols)

    def configure_read(
        self, read_v: float, gate_v: float, aperture_s: float, mode: str = "cell"
    ) -> None:
        self.configure_settings(
            ("read_v", read_v), ("read_gate_v", gate_v), ("aperture_s", aperture_s),
            ("read_mode", mode),
        )  # fmt: skip

    def _expected_read_s(self, n_conversions: int) -> float:
        aperture = float(self._sent.get("aperture_s", 100e-6))
        return n_conversions * (aperture + 20e-6)

    def read_cell(self, row: int, col: int) -> float:
        return float(self.query_parsed(f":MEAS:COND:CELL? {int(row)},{int(col)}", parse_float))

    def read_row(self, row: int) -> np.ndarray:
        with self.timeout_extended(1.0 + 4 * self._expected_read_s(1024)):
            return self.query_binary(f":MEAS:COND:ROW? {int(row)}", datatype="d")

    def read_array(self) -> np.ndarray:
        rows, cols = self.array_size()
        with self.timeout_extended(10.0 + 4 * rows * self._expected_read_s(cols)):
            flat = self.query_binary(":MEAS:COND:ARR?", datatype="d")
        if flat.size != rows * cols:
            raise GarbledReply(
                f"{flat.size} values for a {rows}x{cols} array", instrument=self.name,
                command=":MEAS:COND:ARR?",
            )  # fmt: skip
        return flat.reshape(rows, cols)

    # ----- pulses ------------------------------------------------------------------------------

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
        if row is not None and col is not None:
            select = f":ROUT:SEL:CELL {int(row)},{int(col)}"
        elif row is not None:
            select = f":ROUT:SEL:ROW {int(row)}"
        elif col is not None:
            select = f":ROUT:SEL:COL {int(col)}"
        else:
            raise SettingRangeError(f"{self.name}: pulse: give a row, a column or both")
        amplitude = abs(float(bitline_v) - float(sourceline_v))
        if bitline_v > sourceline_v:
            self._check_set_pulse(amplitude, width_s, compliance_a)
        else:
            self.guard.check_pulse(self.name, "pulse", amplitude, width_s)
        # compliance first: the instrument never sees a SET level without its clamp
        self.configure_settings(
            ("compliance_a", compliance_a), select, ("wordline_v", wordline_v),
            ("sourceline_v", sourceline_v), ("bitline_v", bitline_v), ("pulse_width_s", width_s),
            ":PULS:APPL",
        )  # fmt: skip
        return self.query_binary(":PULS:CURR?", datatype="d")

    # ----- on-instrument loops -------------------------------------------------------------------

    def configure_program(self, settings: ProgramSettings) -> None:
        """Send the write-verify settings (each checked against the envelope first, and the
        largest SET and RESET pulses it may apply)."""
        s = settings
        set_top = s.set_bl_v if s.scheme == "igvva" else s.bl_stop_v
        self._check_set_pulse(set_top, s.width_s, s.compliance_a)
        self.guard.check_pulse(self.name, "RESET pulse", s.reset_stop_v, s.width_s)
        items: list[Any] = [("compliance_a", s.compliance_a)]
        items += [(_PROGRAM[f], getattr(s, f)) for f in _PROGRAM]
        self.configure_settings(*items)

    def program_row(
        self, row: int, targets_siemens: np.ndarray, settings: ProgramSettings | None = None
    ) -> ProgramResult:
        """Write-verify ``row`` to per-cell targets (S; NaN leaves a cell alone) on the
        instrument; ``settings`` are sent first when given (else the last ones hold)."""
        if settings is not None:
            self.configure_program(settings)
        if self._sent.get("compliance_a") in (None, 0.0):
            self.guard.check_compliance_set(self.name, None)
        t = np.asarray(targets_siemens, dtype=np.float64).reshape(-1)
        finite = t[np.isfinite(t)]
        if finite.size and (finite.min() <= 0 or finite.max() > 1e-2):
            raise SettingRangeError(f"{self.name}: program_row: targets in (0, 10 mS] or NaN")
        with self.timeout_extended(REPLY_BUDGET_S):
            self.write_binary(f":PROG:ROW {int(row)},", t, datatype="d")
            self.wait_complete()
            attempts = self.query_binary(":PROG:DATA:ATT?", datatype="i")
            g = self.query_binary(":PROG:DATA:COND?", datatype="d")
            success = self.query_binary(":PROG:DATA:SUCC?", datatype="i")
            gate = self.query_binary(":PROG:DATA:GATE?", datatype="d")
            bl = self.query_binary(":PROG:DATA:BL?", datatype="d")
            duration = float(self.query_parsed(":PROG:DATA:TIME?", parse_float))
        self.check_errors()
        if not attempts.size == g.size == success.size == t.size:
            raise GarbledReply(
                f"write-verify results for {g.size} cells, {t.size} targets sent",
                instrument=self.name, command=":PROG:ROW",
            )  # fmt: skip
        return ProgramResult(attempts.astype(np.int64), g, success.astype(bool), gate, bl, duration)

    def form_row(self, row: int, settings: FormingSettings | None = None) -> np.ndarray:
        """Form a row's pristine cells on the instrument; the forming amplitude per cell."""
        if settings is not None:
            s = settings
            self._check_set_pulse(s.stop_v, s.width_s, s.compliance_a)
            items: list[Any] = [("compliance_a", s.compliance_a)]
            items += [(_FORMING[f], getattr(s, f)) for f in _FORMING]
            self.configure_settings(*items)
        with self.timeout_extended(REPLY_BUDGET_S):
            self.write(f":FORM:ROW {int(row)}")
            self.wait_complete()
            v_form = self.query_binary(":FORM:DATA?", datatype="d")
        self.check_errors()
        return v_form

    def mvm(self, row_v: np.ndarray, gate_v: float) -> np.ndarray:
        """Column currents (B, columns), A, for row (source-line) voltages (B, rows), V; sent in
        blocks of at most ``VECTORS_PER_COMMAND`` vectors."""
        v = np.asarray(row_v, dtype=np.float64)
        if v.ndim == 1:
            v = v[None]
        if v.size == 0 or not np.all(np.isfinite(v)):
            raise SettingRangeError(f"{self.name}: mvm: finite row voltages required")
        largest = float(np.abs(v).max())
        self.guard.check_line(self.name, "sourceline", largest)
        if largest > MAX_READ_V:
            raise SettingRangeError(f"{self.name}: mvm: |V| {largest:g} above {MAX_READ_V} V")
        self.configure_settings(("mvm_gate_v", gate_v))
        out = []
        for k in range(0, v.shape[0], VECTORS_PER_COMMAND):
            part = np.ascontiguousarray(v[k : k + VECTORS_PER_COMMAND])
            with self.timeout_extended(REPLY_BUDGET_S):
                self.write_binary(":MVM:VECT ", part.reshape(-1), datatype="d")
                currents = self.query_binary(":MVM:CURR?", datatype="d")
            if currents.size % part.shape[0]:
                raise GarbledReply(
                    f"{currents.size} currents for {part.shape[0]} vectors", instrument=self.name,
                    command=":MVM:CURR?",
                )  # fmt: skip
            out.append(currents.reshape(part.shape[0], -1))
        self.check_errors()
        return np.concatenate(out)

    # ----- safe state --------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Every line at 0 V, drivers released (always allowed)."""
        self.write(":SOUR:WL:VOLT 0;:SOUR:BL:VOLT 0;:SOUR:SL:VOLT 0")
        self.write(":OUTP OFF")
        self._output_on = False
        self.check_errors()

    def ensure_safe(self) -> None:
        """Shutdown unless this driver knows the drivers are released."""
        if self._output_on is not False:
            self.shutdown()


__all__ = ["ArrayTester", "FormingSettings", "ProgramResult", "ProgramSettings"]
