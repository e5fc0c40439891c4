"""The array-tester driver against its simulated instrument over a real socket: reads in binary
blocks, on-instrument write-verify and forming, the analog MVM, virtual time, and the safety
envelope per line (refused before anything is sent)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bruno_lab.errors import EnvelopeError
from instruments.array_tester import FormingSettings, ProgramSettings
from instruments.errors import InstrumentErrorQueue

ARRAY_TRUTH = Path(__file__).resolve().parents[2] / "protocols" / "examples" / "array_truth.yaml"
DIE, SITE = (1, 1), 4


@pytest.fixture
def bench(sim_lab_factory: Any, tmp_path: Path) -> Iterator[Any]:
    from instruments.station import open_bench

    lab = sim_lab_factory(truth=ARRAY_TRUTH, seed=21)
    with open_bench(lab.write_station(tmp_path / "station.yaml")) as bench:
        bench.lab = lab
        bench.prober.step_to(*DIE, site=SITE)
        bench.prober.contact()
        yield bench


def _crossbar(bench: Any) -> Any:
    return bench.lab.wafer.array(*DIE, SITE)


def test_identity_size_and_reads_in_blocks(bench: Any) -> None:
    tester = bench.array_tester
    assert tester.array_size() == (64, 64)
    assert bench.guard.device_kind == "rram_array"
    tester.configure_read(0.2, 3.3, 100e-6, "cell")
    tester.output_enabled = True
    row = tester.read_row(3)
    assert row.shape == (64,) and row.dtype == np.float64
    whole = tester.read_array()
    assert whole.shape == (64, 64)
    truth = _crossbar(bench).isolated_conductance(0.2, 3.3).numpy().reshape(64, 64)
    pristine = ~_crossbar(bench).state.formed.numpy().reshape(64, 64)
    assert np.allclose(whole[pristine], 1e-9, atol=2e-7)  # pristine cells: sense noise (25 nS)
    assert tester.read_cell(3, 7) == pytest.approx(truth[3, 7], abs=2e-7)
    texts = bench.lab.commands("array_tester")
    assert ":MEAS:COND:ARR?" in texts and ":SENS:MODE CELL" in texts


def test_forming_and_write_verify_run_on_the_instrument_in_virtual_time(bench: Any) -> None:
    tester = bench.array_tester
    tester.configure_read(0.2, 3.3, 100e-6, "cell")
    tester.output_enabled = True
    t0 = bench.clock.now_s()
    v_form = tester.form_row(0, FormingSettings())
    assert np.nanmean(v_form) == pytest.approx(2.55, abs=0.15)
    targets = np.linspace(6e-6, 242e-6, 8)[np.arange(64) % 8]
    targets[5] = np.nan  # left alone
    result = tester.program_row(0, targets, ProgramSettings(tolerance_siemens=4e-6))
    formed = np.isfinite(v_form) & (v_form > 0)
    assert result.attempts[5] == 0 and not result.success[5]
    ok = formed & np.isfinite(targets)
    assert result.success[ok].mean() >= 0.95
    assert (
        np.abs(result.conductance_siemens[result.success] - targets[result.success]).max() <= 4e-6
    )
    elapsed = bench.clock.now_s() - t0
    # 64 cells read one conversion each (~120 us) per iteration: tens of ms of bench time
    assert 0.05 < result.duration_s < elapsed < 5.0
    assert result.gate_v.shape == (64,)


def test_the_analog_mvm_through_the_driver(bench: Any) -> None:
    tester = bench.array_tester
    tester.output_enabled = True
    v = np.zeros((2000, 64))
    v[:, ::3] = 0.2
    currents = tester.mvm(v, 3.3)  # two blocks of vectors
    assert currents.shape == (2000, 64)
    xb = _crossbar(bench)
    ideal = v @ xb.isolated_conductance(0.2, 3.3).numpy().reshape(64, 64)
    clean = ~(xb.state.stuck.numpy().reshape(64, 64) > 0).any(0)  # no stuck-LRS cell (a filament)
    assert clean.sum() > 40
    assert np.abs(currents - ideal)[:, clean].max() < 4e-8  # pristine cells: sense noise only
    assert (currents - ideal)[:, clean].std() == pytest.approx(5e-9, rel=0.1)
    records = [r for r in bench.lab.records("array_tester") if r.text.startswith(":MVM:VECT")]
    assert len(records) == 2 and len(records[0].block) == 1024 * 64 * 8


def test_the_envelope_per_line_refuses_before_anything_is_sent(bench: Any) -> None:
    tester = bench.array_tester
    tester.output_enabled = True
    lab = bench.lab
    cases = [
        (dict(wordline_v=3.0, bitline_v=1.8, sourceline_v=0.0, width_s=1e-6, compliance_a=0.0),
         "require_compliance_before_output"),
        (dict(wordline_v=4.0, bitline_v=1.8, sourceline_v=0.0, width_s=1e-6, compliance_a=1e-3),
         "max_wordline_v"),
        (dict(wordline_v=3.0, bitline_v=0.0, sourceline_v=3.0, width_s=1e-6, compliance_a=1e-3),
         "max_sourceline_v"),
        (dict(wordline_v=1.5, bitline_v=4.4, sourceline_v=0.0, width_s=1e-3, compliance_a=1e-3),
         "max_pulse_energy_j"),
        (dict(wordline_v=1.5, bitline_v=1.8, sourceline_v=0.0, width_s=1e-6, compliance_a=5e-3),
         "max_current_a"),
    ]  # fmt: skip
    for kwargs, limit in cases:
        before = len(lab.commands("array_tester"))
        with pytest.raises(EnvelopeError, match=limit):
            tester.pulse(row=2, **kwargs)
        assert len(lab.commands("array_tester")) == before, limit  # nothing was sent
    with pytest.raises(EnvelopeError, match="max_bitline_v"):
        tester.program_row(0, np.full(64, 1e-4), ProgramSettings(set_bl_v=4.8))
    bench.prober.separate()
    tester.shutdown()
    with pytest.raises(EnvelopeError, match="require_contact_for_output"):
        tester.output_enabled = True


def test_the_instrument_itself_refuses_a_set_without_compliance(bench: Any) -> None:
    tester = bench.array_tester
    tester.output_enabled = True
    tester.write(":SOUR:BL:CURR:LIM 0;:ROUT:SEL:ROW 1;:SOUR:WL:VOLT 1.5;:SOUR:BL:VOLT 1.8")
    tester.write(":PULS:APPL")
    with pytest.raises(InstrumentErrorQueue, match="-221"):
        tester.check_errors()
    assert not bool(_crossbar(bench).state.formed[64:128].any())  # nothing happened


def test_a_pulse_reports_the_transistor_limited_current(bench: Any) -> None:
    from bruno_lab.devices.one_t_one_r import saturation_current_a

    tester = bench.array_tester
    tester.output_enabled = True
    tester.form_row(6, FormingSettings())
    xb = _crossbar(bench)
    current = tester.pulse(row=6, wordline_v=1.3, bitline_v=2.0, sourceline_v=0.0,
                           width_s=1e-6, compliance_a=1e-3)  # fmt: skip
    i_sat = saturation_current_a(1.3, xb.fet_params(xb.row_cells(6))).numpy()
    live = xb.state.formed[xb.row_cells(6)].numpy() & (xb.state.stuck[xb.row_cells(6)] == 0).numpy()
    assert np.allclose(current[live], i_sat[live], rtol=1e-6)


def test_the_doc_lists_every_command_of_the_table() -> None:
    from instruments.sim import array_tester

    doc = Path(array_tester.__file__).resolve().parents[2] / "docs" / "array-tester.md"
    text = doc.read_text()
    assert text == array_tester.render_doc(text), (
        "docs/array-tester.md is stale: python -m instruments.sim.array_tester --write"
    )
