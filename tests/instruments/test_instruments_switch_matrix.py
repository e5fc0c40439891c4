"""The Keithley 707B driver against its simulated matrix: TSP crosspoints with *OPC?, no hot
switching (refused before anything is sent), and an SMU and an AWG reaching one array cell
through the matrix, the cell's transistor limiting the AWG's SET current."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bruno_lab.errors import EnvelopeError
from instruments.errors import InstrumentErrorQueue, SettingRangeError
from instruments.sim.switch_matrix import DEFAULT_GATE_BIAS_V, array_lines, line_channel
from protocols import bench_ops

ARRAY_TRUTH = Path(__file__).resolve().parents[2] / "protocols" / "examples" / "array_truth.yaml"
DIE, SITE = (1, 1), 4
ROW, COL = 9, 17


@pytest.fixture
def bench(sim_lab_factory: Any, tmp_path: Path) -> Iterator[Any]:
    from instruments.station import open_bench

    lab = sim_lab_factory(truth=ARRAY_TRUTH, seed=8)
    with open_bench(lab.write_station(tmp_path / "station.yaml")) as bench:
        bench.lab = lab
        bench.prober.step_to(*DIE, site=SITE)
        bench.prober.contact()
        yield bench


def _route(source_row: str) -> list[str]:
    lines = array_lines(64, 64)
    return [
        line_channel(lines["bl"][COL], source_row),
        line_channel(lines["sl"][ROW], "C"),
        line_channel(lines["wl"][ROW], "D"),
    ]


def test_crosspoints_close_and_open_with_opc(bench: Any) -> None:
    matrix = bench.switch_matrix
    assert matrix.closed() == []
    matrix.close_channels(_route("A"))
    assert matrix.closed() == sorted(_route("A"))
    matrix.open_channels([_route("A")[0]])
    assert matrix.closed() == sorted(_route("A")[1:])
    matrix.open_all()
    assert matrix.closed() == []
    texts = bench.lab.commands("switch_matrix")
    assert 'channel.close("2A06,12C06,7D02")' in texts  # BL 17, SL 137, WL 73
    closes = [i for i, t in enumerate(texts) if t.startswith("channel.")]
    assert all(texts[i + 1] == "*OPC?" for i in closes)  # every change waits for the relays
    with pytest.raises(SettingRangeError, match="1A01"):
        matrix.close_channels(["1J01"])
    matrix.write('channel.close("1A13")')  # column 13 does not exist on a 12-column card
    with pytest.raises(InstrumentErrorQueue, match="1115"):
        matrix.check_errors()


def test_no_relay_changes_while_a_source_is_on(bench: Any) -> None:
    matrix = bench.switch_matrix
    matrix.close_channels(_route("A"))
    smu = bench.smu
    smu.configure_voltage_source(0.24, 1e-4, 0.1)
    smu.source_voltage_v = 0.2
    smu.output_enabled = True
    before = len(bench.lab.commands("switch_matrix"))
    with pytest.raises(EnvelopeError, match="forbid_hot_switching"):
        matrix.open_all()
    with pytest.raises(EnvelopeError, match="outputs on: smu"):
        matrix.close_channels(["1B01"])
    assert len(bench.lab.commands("switch_matrix")) == before  # nothing was sent
    smu.shutdown()
    matrix.open_all()  # allowed once the output is off
    bench.array_tester.output_enabled = True
    with pytest.raises(EnvelopeError, match="array_tester"):
        matrix.close_channels(_route("A"))


def test_smu_and_awg_reach_one_cell_and_the_transistor_limits_the_set(bench: Any) -> None:
    from bruno_lab.devices.one_t_one_r import saturation_current_a

    xb = bench.lab.wafer.array(*DIE, SITE)
    k = ROW * 64 + COL
    assert bench_ops.read_conductance_siemens(bench, 0.2, 1e-4, 0.1) == pytest.approx(0, abs=1e-8)
    bench.smu.shutdown()  # nothing routed: the SMU sees an open circuit
    bench.switch_matrix.close_channels(_route("A"))
    assert bench_ops.read_conductance_siemens(bench, 0.2, 1e-4, 0.1) == pytest.approx(
        1e-9, abs=5e-9
    )
    bench.smu.shutdown()
    # form it by an SMU staircase (compliance 100 uA), then read it through the matrix
    _, i = bench_ops.dc_sweep(bench, np.arange(0, 3.6, 0.05), 1e-4, 1e-3, 0.1)
    assert bool(xb.state.formed[k]) and np.abs(i).max() >= 0.9e-4
    assert not bool(xb.state.formed[k + 1])  # the neighbour on the same row: untouched
    g = bench_ops.read_conductance_siemens(bench, 0.2, 1e-3, 0.1)
    bench.smu.shutdown()
    assert g == pytest.approx(float(xb.isolated_conductance(0.2, 3.3)[k]), rel=0.15)
    # the AWG through the matrix: its SET pulse current is held at I_sat(gate bias)
    bench.switch_matrix.open_all()
    bench.switch_matrix.close_channels(_route("B"))
    bench_ops.apply_pulse(bench, 2.0, 1e-6, edge_s=2e-8)
    burst = bench.lab.last_burst()
    i_sat = float(saturation_current_a(DEFAULT_GATE_BIAS_V, xb.fet_params(xb.row_cells(ROW)))[COL])
    assert burst.kind == "rram"
    assert float(np.max(burst.current_a)) == pytest.approx(i_sat, rel=1e-6)


def test_closing_the_bench_closes_the_matrix_session(sim_lab_factory: Any, tmp_path: Path) -> None:
    """``Bench.close`` calls every driver's ``close()``; the matrix's relay methods are
    ``close_channels``/``open_channels``, so its ``close()`` is the VISA session's, as for every
    other instrument (it used to be the relays', needing channels: the session stayed open)."""
    from pyvisa.errors import InvalidSession

    from instruments.station import open_bench

    lab = sim_lab_factory(truth=ARRAY_TRUTH, seed=8)
    bench = open_bench(lab.write_station(tmp_path / "station.yaml"))
    matrix, smu = bench.switch_matrix, bench.smu
    assert matrix.resource.session is not None and matrix.closed() == []
    bench.close()
    for driver in (matrix, smu):
        with pytest.raises(InvalidSession):
            driver.resource.session  # noqa: B018 (the property raises once the session is closed)
