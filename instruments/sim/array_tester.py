"""Simulated array tester (ArC TWO / FPGA digital-pattern class) for 1T1R crossbars.

The dialect is documented command by command in docs/array-tester.md and lives once, in the
command table below. The tester reaches the array of the die site under the probe card (the
prober must be in contact with an ``rram_array`` site) and drives its lines: word lines
(gates), bit lines and source lines. It selects a cell, a row or a column, sets line voltages,
applies a pulse (with the bit-line compliance set first), reads one cell, a row or the whole
array in one command (IEEE 488.2 binary block replies of little-endian float64), runs a row
write-verify on the instrument (IGVVA or ISPVA, per-cell targets in a block) and the analog
matrix-vector product (a block of row-voltage vectors in, column currents out). The physics is
the die's :class:`instruments.sim.crossbar.Crossbar`; every command advances the bench's
virtual clock by what it takes on a bench (µs pulses, 0.1 ms conversions).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from instruments.sim.bench import VirtualBench
from instruments.sim.crossbar import Crossbar, FormSettings, ReadMode, VerifySettings
from instruments.sim.scpi_message import CommandError
from instruments.sim.scpi_params import BlockData, Boolean, Choice, Number, nr1
from instruments.sim.scpi_server import Call, TableServer
from instruments.sim.scpi_table import action, query, setting
from instruments.sim.server import ieee_block

MAX_LINE_V = 5.0
MAX_READ_V = 0.5
MAX_ROWS = 1024
MAX_VECTORS = 65_536
SETUP_S = 2e-6  # sequencer overhead per command that touches the array

_V = Number(-MAX_LINE_V, MAX_LINE_V, default=0.0, unit="V")
_POS_V = Number(0.0, MAX_LINE_V, unit="V")
_INDEX = Number(0, MAX_ROWS - 1, integer=True, fmt=nr1)
_WIDTH = Number(10e-9, 1e-3, default=1e-6, unit="S")
_BOOL = Boolean()


def _f64_block(values: Any) -> bytes:
    return ieee_block(np.ascontiguousarray(values, dtype="<f8").tobytes())


def _i32_block(values: Any) -> bytes:
    return ieee_block(np.ascontiguousarray(values, dtype="<i4").tobytes())


def _floats(block: bytes, what: str) -> np.ndarray:
    if len(block) % 8:
        raise CommandError(-104, f"Data type error; {what} is a block of float64")
    return np.frombuffer(block, dtype="<f8").astype(np.float64)


class ArrayTesterServer(TableServer):
    """The array tester's dialect over a socket, backed by the die's crossbar."""

    role = "array_tester"
    IDN = "BRUNO-LAB,AT-1T1R-64,AT0001,1.0"
    COMMANDS = (
        query(":ARRay:SIZE", "_size", doc="Rows,columns of the array under the probe card."),
        action(":ROUTe:SELect:CELL", "_select_cell", _INDEX, _INDEX,
               doc="Select one cell (row, column) for PULSe:APPLy."),
        action(":ROUTe:SELect:ROW", "_select_row", _INDEX,
               doc="Select a row: its word line and source line, every bit line."),
        action(":ROUTe:SELect:COLumn", "_select_column", _INDEX,
               doc="Select a column: its bit line, every word line and source line."),
        query(":ROUTe:SELect", "_selection", doc="NONE, CELL,<r>,<c>, ROW,<r> or COL,<c>."),
        setting(":SOURce:WL:VOLTage", _V, "wl_v", doc="Word-line (gate) voltage of a pulse."),
        setting(":SOURce:BL:VOLTage", _V, "bl_v", doc="Bit-line voltage of a pulse."),
        setting(":SOURce:SL:VOLTage", _V, "sl_v", doc="Source-line voltage of a pulse."),
        setting(":SOURce:BL:CURRent:LIMit", Number(0.0, 0.1, default=0.0, unit="A"),
                "compliance_a", doc="Bit-line driver clamp (0: not set; a SET is refused)."),
        setting(":PULSe:WIDTh", _WIDTH, "width_s", doc="Pulse width."),
        action(":PULSe:APPLy", "_pulse", doc="One pulse on the selection (SET needs compliance)."),
        query(":PULSe:CURRent", "_pulse_current",
              doc="Current through each selected cell at the end of the last pulse (block)."),
        setting(":SENSe:VOLTage", Number(0.01, MAX_READ_V, default=0.2, unit="V"), "read_v",
                doc="Read voltage on the bit lines."),
        setting(":SENSe:GATE", Number(0.0, MAX_LINE_V, default=3.3, unit="V"), "read_gate_v",
                doc="Word-line voltage during a read."),
        setting(":SENSe:APERture", Number(10e-6, 10e-3, default=100e-6, unit="S"),
                "aperture_s", doc="Integration time of one conversion."),
        setting(":SENSe:MODE", Choice("CELL", "ROW"), "read_mode",
                doc="CELL: one cell per conversion; ROW: every bit line at once."),
        query(":MEASure:CONDuctance:CELL", "_read_cell", _INDEX, _INDEX,
              doc="Conductance of one cell (S)."),
        query(":MEASure:CONDuctance:ROW", "_read_row", _INDEX,
              doc="Conductances of a row (block of columns float64, S)."),
        query(":MEASure:CONDuctance:ARRay", "_read_array",
              doc="Conductances of the whole array (block, row-major, S)."),
        setting(":PROGram:SCHeme", Choice("IGVVA", "ISPVA"), "scheme",
                doc="IGVVA: gate ramp at fixed BL; ISPVA: BL ramp at fixed gate."),
        setting(":PROGram:TOLerance", Number(1e-8, 1e-3, default=4e-6, unit="S"),
                "tolerance_siemens", doc="Verify window half-width."),
        setting(":PROGram:WIDTh", _WIDTH, "prog_width_s", doc="Programming pulse width."),
        setting(":PROGram:BL:VOLTage", Number(0.0, MAX_LINE_V, default=1.8, unit="V"),
                "set_bl_v", doc="IGVVA SET bit-line amplitude."),
        setting(":PROGram:GATE:STARt", Number(0.0, MAX_LINE_V, default=0.9, unit="V"),
                "gate_start_v", doc="IGVVA gate ramp start."),
        setting(":PROGram:GATE:STOP", Number(0.0, MAX_LINE_V, default=2.8, unit="V"),
                "gate_stop_v", doc="IGVVA gate ramp end."),
        setting(":PROGram:GATE:STEP", Number(1e-4, 1.0, default=0.01, unit="V"),
                "gate_step_v", doc="IGVVA gate step."),
        setting(":PROGram:GATE:FIXed", Number(0.0, MAX_LINE_V, default=2.2, unit="V"),
                "set_gate_v", doc="ISPVA gate."),
        setting(":PROGram:BL:STARt", Number(0.0, MAX_LINE_V, default=0.8, unit="V"),
                "bl_start_v", doc="ISPVA bit-line ramp start."),
        setting(":PROGram:BL:STOP", Number(0.0, MAX_LINE_V, default=2.0, unit="V"),
                "bl_stop_v", doc="ISPVA bit-line ramp end."),
        setting(":PROGram:BL:STEP", Number(1e-4, 1.0, default=0.02, unit="V"),
                "bl_step_v", doc="ISPVA bit-line step."),
        setting(":PROGram:RESet:STARt", Number(0.0, MAX_LINE_V, default=0.7, unit="V"),
                "reset_start_v", doc="RESET source-line amplitude ramp start."),
        setting(":PROGram:RESet:STOP", Number(0.0, MAX_LINE_V, default=1.6, unit="V"),
                "reset_stop_v", doc="RESET amplitude ramp end."),
        setting(":PROGram:RESet:STEP", Number(1e-4, 1.0, default=0.02, unit="V"),
                "reset_step_v", doc="RESET amplitude step."),
        setting(":PROGram:RESet:GATE", Number(0.0, MAX_LINE_V, default=3.3, unit="V"),
                "reset_gate_v", doc="Word-line voltage of a RESET."),
        setting(":PROGram:ATTempts", Number(1, 10_000, default=100, integer=True, fmt=nr1),
                "max_attempts", doc="Pulses per cell at most."),
        action(":PROGram:ROW", "_program_row", _INDEX, BlockData(),
               doc="Write-verify a row to per-cell targets (block of float64 S; NaN: skip)."),
        query(":PROGram:DATA:ATTempts", "_result_attempts", doc="Pulses per cell (int32 block)."),
        query(":PROGram:DATA:CONDuctance", "_result_conductance",
              doc="Final verify read per cell (float64 block, S)."),
        query(":PROGram:DATA:SUCCess", "_result_success", doc="1 inside the window (int32 block)."),
        query(":PROGram:DATA:GATE", "_result_gate", doc="Final gate per cell (float64 block)."),
        query(":PROGram:DATA:BL", "_result_bl", doc="Final bit-line amplitude (float64 block)."),
        query(":PROGram:DATA:TIME", "_result_time", doc="Virtual duration of the last row, s."),
        setting(":FORM:STARt", Number(0.0, MAX_LINE_V, default=2.0, unit="V"), "form_start_v",
                doc="Forming amplitude ramp start."),
        setting(":FORM:STOP", Number(0.0, MAX_LINE_V, default=4.0, unit="V"), "form_stop_v",
                doc="Forming amplitude ramp end."),
        setting(":FORM:STEP", Number(1e-3, 1.0, default=0.05, unit="V"), "form_step_v",
                doc="Forming amplitude step."),
        setting(":FORM:WIDTh", Number(10e-9, 1e-2, default=1e-4, unit="S"), "form_width_s",
                doc="Forming pulse width."),
        setting(":FORM:GATE", Number(0.0, MAX_LINE_V, default=0.9, unit="V"), "form_gate_v",
                doc="Forming gate (compliance)."),
        setting(":FORM:THReshold", Number(1e-9, 1e-3, default=2e-6, unit="S"),
                "form_threshold_siemens", doc="A read above it counts as formed."),
        action(":FORM:ROW", "_form_row", _INDEX, doc="Form the pristine cells of a row."),
        query(":FORM:DATA", "_form_result",
              doc="Forming amplitude per cell of the last row (float64 block; NaN: not formed)."),
        setting(":MVM:GATE", Number(0.0, MAX_LINE_V, default=3.3, unit="V"), "mvm_gate_v",
                doc="Word-line voltage of every row during a matrix-vector product."),
        action(":MVM:VECTor", "_mvm", BlockData(),
               doc="Apply vectors of row voltages (block of B x rows float64, V)."),
        query(":MVM:CURRent", "_mvm_current",
              doc="Column currents of the last vectors (block of B x columns float64, A)."),
        setting(":OUTPut[:STATe]", _BOOL, "output_on", reset=False, then="_output_changed",
                doc="Line drivers connected (ON) or every line at 0 V and released (OFF)."),
    )  # fmt: skip

    # The settings the command table writes onto this server (its own state object): numbers
    # are floats (an integer Number too), choices their canonical word, booleans bools.
    wl_v: float
    bl_v: float
    sl_v: float
    compliance_a: float
    width_s: float
    read_v: float
    read_gate_v: float
    aperture_s: float
    read_mode: str
    scheme: str
    tolerance_siemens: float
    prog_width_s: float
    set_bl_v: float
    gate_start_v: float
    gate_stop_v: float
    gate_step_v: float
    set_gate_v: float
    bl_start_v: float
    bl_stop_v: float
    bl_step_v: float
    reset_start_v: float
    reset_stop_v: float
    reset_step_v: float
    reset_gate_v: float
    max_attempts: float
    form_start_v: float
    form_stop_v: float
    form_step_v: float
    form_width_s: float
    form_gate_v: float
    form_threshold_siemens: float
    mvm_gate_v: float
    output_on: bool

    def __init__(self, bench: VirtualBench, *args: Any, **kwargs: Any) -> None:
        self.bench = bench
        super().__init__(*args, **kwargs)

    def new_state(self) -> ArrayTesterServer:
        return self

    def after_reset(self) -> None:
        self.selection: tuple[str, int, int] | None = None
        self.last_pulse_a = np.zeros(0)
        self.last_program: dict[str, np.ndarray] = {}
        self.last_program_s = 0.0
        self.last_form = np.zeros(0)
        self.last_mvm = np.zeros(0)

    def apply_reset(self) -> None:
        super().apply_reset()
        self.after_reset()

    # ----- the array under the probe card ----------------------------------------------------

    def crossbar(self) -> Crossbar:
        """The array the probe card touches; -241 when there is none (separated, not an
        array site) and -221 when the outputs are off."""
        prober = self.bench.prober.state
        if not prober.contact or prober.die_index is None:
            raise CommandError(-241, "Hardware missing; probe card not in contact")
        col, row = self.bench.wafer.dies[prober.die_index]
        try:
            array = self.bench.wafer.array(col, row, prober.site)
        except KeyError:
            raise CommandError(-241, "Hardware missing; no array at this site") from None
        array.timing = replace(array.timing, aperture_s=self.aperture_s)
        return array

    def _driven(self) -> Crossbar:
        array = self.crossbar()
        if not self.output_on:
            raise CommandError(-221, "Settings conflict; output off")
        return array

    def _advance(self, seconds: float) -> None:
        self.bench.clock.advance_s(seconds + SETUP_S)

    def _now(self) -> float:
        return self.bench.clock.now_s()

    def _output_changed(self, call: Call) -> None:
        """Nothing to simulate: released lines carry no current."""

    def _size(self, call: Call) -> str:
        array = self.crossbar()
        return f"{array.rows},{array.cols}"

    # ----- selection and manual pulses --------------------------------------------------------

    def _check_index(self, array: Crossbar, row: int | None, col: int | None) -> None:
        if row is not None and not 0 <= row < array.rows:
            raise CommandError(-222, f"Data out of range; row {row} of {array.rows}")
        if col is not None and not 0 <= col < array.cols:
            raise CommandError(-222, f"Data out of range; column {col} of {array.cols}")

    def _select_cell(self, call: Call, row: float, col: float) -> None:
        self._check_index(self.crossbar(), int(row), int(col))
        self.selection = ("CELL", int(row), int(col))

    def _select_row(self, call: Call, row: float) -> None:
        self._check_index(self.crossbar(), int(row), None)
        self.selection = ("ROW", int(row), -1)

    def _select_column(self, call: Call, col: float) -> None:
        self._check_index(self.crossbar(), None, int(col))
        self.selection = ("COL", -1, int(col))

    def _selection(self, call: Call) -> str:
        if self.selection is None:
            return "NONE"
        kind, row, col = self.selection
        return {"CELL": f"CELL,{row},{col}", "ROW": f"ROW,{row}", "COL": f"COL,{col}"}[kind]

    def _selected_cells(self, array: Crossbar) -> torch.Tensor:
        if self.selection is None:
            raise CommandError(-221, "Settings conflict; nothing selected")
        kind, row, col = self.selection
        if kind == "CELL":
            return torch.tensor([row * array.cols + col])
        if kind == "ROW":
            return array.row_cells(row)
        return torch.arange(array.rows) * array.cols + col

    def _pulse(self, call: Call) -> None:
        array = self._driven()
        cells = self._selected_cells(array)
        if self.bl_v > self.sl_v and self.compliance_a <= 0.0:
            raise CommandError(-221, "Settings conflict; SET pulse without compliance")
        current = array.pulse_cells(
            cells, self.bl_v, self.sl_v, self.wl_v, self.width_s, self._now()
        )
        if self.compliance_a > 0.0:  # the bit-line clamp: never above its limit
            current = current.clamp(-self.compliance_a, self.compliance_a)
        self.last_pulse_a = current.numpy()
        self._advance(array.pulse_time_s(self.width_s))

    def _pulse_current(self, call: Call) -> bytes:
        return _f64_block(self.last_pulse_a)

    # ----- reads ------------------------------------------------------------------------------

    def _mode(self) -> ReadMode:
        return "cell" if self.read_mode == "CELL" else "row"

    def _read_cell(self, call: Call, row: float, col: float) -> str:
        array = self._driven()
        self._check_index(array, int(row), int(col))
        g = array.read_cell(int(row), int(col), self.read_v, self.read_gate_v, self._now())
        self._advance(array.read_time_s("cell", 1))
        return f"{g:.9E}"

    def _read_row(self, call: Call, row: float) -> bytes:
        array = self._driven()
        self._check_index(array, int(row), None)
        mode = self._mode()
        g = array.read_row(int(row), self.read_v, self.read_gate_v, self._now(), mode=mode)
        self._advance(array.read_time_s(mode))
        return _f64_block(g.numpy())

    def _read_array(self, call: Call) -> bytes:
        array = self._driven()
        mode = self._mode()
        rows = []
        for r in range(array.rows):
            rows.append(array.read_row(r, self.read_v, self.read_gate_v, self._now(), mode=mode))
            self._advance(array.read_time_s(mode))
        return _f64_block(torch.stack(rows).reshape(-1).numpy())

    # ----- write-verify ---------------------------------------------------------------------------

    def verify_settings(self) -> VerifySettings:
        return VerifySettings(
            scheme="igvva" if self.scheme == "IGVVA" else "ispva",
            tolerance_siemens=self.tolerance_siemens,
            read_v=self.read_v,
            read_gate_v=self.read_gate_v,
            read_mode=self._mode(),
            width_s=self.prog_width_s,
            set_bl_v=self.set_bl_v,
            gate_start_v=self.gate_start_v,
            gate_stop_v=self.gate_stop_v,
            gate_step_v=self.gate_step_v,
            set_gate_v=self.set_gate_v,
            bl_start_v=self.bl_start_v,
            bl_stop_v=self.bl_stop_v,
            bl_step_v=self.bl_step_v,
            reset_start_v=self.reset_start_v,
            reset_stop_v=self.reset_stop_v,
            reset_step_v=self.reset_step_v,
            reset_gate_v=self.reset_gate_v,
            max_attempts=int(self.max_attempts),
        )

    def _program_row(self, call: Call, row: float, block: bytes) -> None:
        array = self._driven()
        self._check_index(array, int(row), None)
        targets = _floats(block, "the targets")
        if targets.size != array.cols:
            raise CommandError(
                -222, f"Data out of range; {targets.size} targets, {array.cols} columns"
            )
        finite = targets[np.isfinite(targets)]
        if finite.size and (finite.min() <= 0 or finite.max() > 1e-2):
            raise CommandError(-222, "Data out of range; targets in (0, 10 mS] or NaN")
        if self.compliance_a <= 0.0:
            raise CommandError(-221, "Settings conflict; SET pulse without compliance")
        result = array.write_verify_row(int(row), targets, self.verify_settings(), self._now())
        self.last_program = {
            "attempts": result.attempts,
            "conductance": result.conductance_siemens,
            "success": result.success.astype(np.int32),
            "gate": result.gate_v,
            "bl": result.bl_v,
        }
        self.last_program_s = result.duration_s
        self._advance(result.duration_s)

    def _result(self, name: str) -> np.ndarray:
        if name not in self.last_program:
            raise CommandError(-230, "Data corrupt or stale; no row programmed yet")
        return self.last_program[name]

    def _result_attempts(self, call: Call) -> bytes:
        return _i32_block(self._result("attempts"))

    def _result_conductance(self, call: Call) -> bytes:
        return _f64_block(self._result("conductance"))

    def _result_success(self, call: Call) -> bytes:
        return _i32_block(self._result("success"))

    def _result_gate(self, call: Call) -> bytes:
        return _f64_block(self._result("gate"))

    def _result_bl(self, call: Call) -> bytes:
        return _f64_block(self._result("bl"))

    def _result_time(self, call: Call) -> str:
        return f"{self.last_program_s:.9E}"

    # ----- forming ------------------------------------------------------------------------------

    def _form_row(self, call: Call, row: float) -> None:
        array = self._driven()
        self._check_index(array, int(row), None)
        settings = FormSettings(
            start_v=self.form_start_v,
            stop_v=self.form_stop_v,
            step_v=self.form_step_v,
            width_s=self.form_width_s,
            gate_v=self.form_gate_v,
            threshold_siemens=self.form_threshold_siemens,
            read_v=self.read_v,
            read_gate_v=self.read_gate_v,
        )
        self.last_form, duration = array.form_row(int(row), settings, self._now())
        self._advance(duration)

    def _form_result(self, call: Call) -> bytes:
        return _f64_block(self.last_form)

    # ----- the analog matrix-vector product -------------------------------------------------------

    def _mvm(self, call: Call, block: bytes) -> None:
        array = self._driven()
        values = _floats(block, "the vectors")
        if values.size == 0 or values.size % array.rows:
            raise CommandError(-222, f"Data out of range; a multiple of {array.rows} values")
        if values.size // array.rows > MAX_VECTORS:
            raise CommandError(-222, f"Data out of range; at most {MAX_VECTORS} vectors")
        if not np.all(np.isfinite(values)) or np.abs(values).max() > MAX_READ_V:
            raise CommandError(-222, f"Data out of range; |V| <= {MAX_READ_V} V")
        row_v = torch.as_tensor(values.reshape(-1, array.rows))
        current = array.mvm(row_v, self.mvm_gate_v, self._now())
        self.last_mvm = current.reshape(-1).numpy()
        self._advance(row_v.shape[0] * array.timing.mvm_vector_s)

    def _mvm_current(self, call: Call) -> bytes:
        return _f64_block(self.last_mvm)


# ----- the command reference of docs/array-tester.md, generated from the table --------------

DOC_BEGIN = "<!-- commands: generated by `python -m instruments.sim.array_tester --write` -->"
DOC_END = "<!-- end of generated commands -->"


def command_reference() -> str:
    """The table of every command, as docs/array-tester.md shows it."""
    from instruments.sim.scpi_table import NO_RESET, describe_params

    lines = ["| header | kind | parameters | *RST | what it does |", "|---|---|---|---|---|"]
    for command in ArrayTesterServer.COMMANDS:
        header = command.header + ("?" if command.is_query else "")
        if command.attr is not None and command.readback:
            header += " (and ?)"
        reset = ""
        if command.attr is not None and command.reset is not NO_RESET:
            reset = f"`{command.params[0].format(command.reset)}`"
        params = describe_params(command).replace("|", "\\|")
        doc = command.doc.replace("|", "\\|")
        lines.append(f"| `{header}` | {command.kind} | {params} | {reset} | {doc} |")
    return "\n".join(lines)


def render_doc(text: str) -> str:
    """``text`` (docs/array-tester.md) with its generated section replaced by the table's."""
    head, _, rest = text.partition(DOC_BEGIN)
    _, _, tail = rest.partition(DOC_END)
    return f"{head}{DOC_BEGIN}\n{command_reference()}\n{DOC_END}{tail}"


if __name__ == "__main__":  # pragma: no cover - the doc's regeneration
    import sys
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "array-tester.md"
    fresh = render_doc(doc.read_text())
    if "--write" in sys.argv:
        doc.write_text(fresh)
    elif fresh != doc.read_text():
        sys.exit("docs/array-tester.md is stale: python -m instruments.sim.array_tester --write")
