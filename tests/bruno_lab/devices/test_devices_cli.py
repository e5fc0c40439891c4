"""``bruno-lab device simulate``: JSON results, unit-aware overrides, exit 2 on bad input, plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bruno_lab.cli import app
from bruno_lab.errors import BadInputError

BIN = Path(sys.executable).parent / "bruno-lab"


def _run(*args: str) -> dict:
    result = CliRunner().invoke(app, ["device", "simulate", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_felif_spike_times_follow_a_piecewise_current():
    doc = _run("felif", "--current", "0 nA", "--current", "20 nA@3 ms", "--duration", "8 ms")
    times = doc["spike_times_s"]
    assert times and times[0] > 3e-3  # nothing before the current starts
    assert doc["n_spikes"] == len(times) and len(doc["voltage_v"]) == 8


def test_param_override_with_units_changes_the_result():
    base = _run("felif", "--current", "10 nA", "--duration", "5 ms")
    low = _run("felif", "--current", "10 nA", "--duration", "5 ms", "--param", "v_thr_v=1500 mV")
    assert low["params"]["v_thr_v"] == pytest.approx(1.5)
    assert low["spike_times_s"][0] < base["spike_times_s"][0]
    big = _run("felif", "--current", "10 nA", "--duration", "5 ms", "--param", "area_m2=50 um**2")
    assert big["params"]["area_m2"] == pytest.approx(50e-12)
    bare = _run("felif", "--current", "1e-8", "--duration", "0.005", "--param", "v_thr_v=1.5")
    assert bare["spike_times_s"] == low["spike_times_s"]  # bare numbers are SI


def test_fecap_loop_and_pund():
    doc = _run("fecap", "--amplitude", "3 V", "--frequency", "1 kHz", "--domains", "4")
    assert 0.5 < doc["loop"]["vc_pos_v"] < 2.5 and abs(doc["loop"]["imprint_v"]) < 0.01
    assert doc["pund"]["switched_polarization_c_m2"] == pytest.approx(0.44, rel=0.05)


def test_rram_iv_sweep(tmp_path):
    png = tmp_path / "iv.png"
    result = CliRunner().invoke(
        app, ["device", "simulate", "rram", "--json", "--plot", str(png), "--step", "20 mV"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    cyc = doc["cycles"][0]
    assert 1.5 < doc["forming_voltage_v"] < 3.5
    assert 0.4 < cyc["v_set_v"] < 1.2 and -1.2 < cyc["v_reset_v"] < -0.3
    assert max(cyc["current_a"]) <= 100e-6 * (1 + 1e-9)
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["felif", "--param", "e_a=3"], "valid names: area_m2"),
        (["felif", "--param", "area_m2=3 V"], "m**2 is expected"),
        (["felif", "--param", "ps_c_m2=-1"], "outside"),
    ],
)
def test_bad_input_is_a_bad_input_error_naming_the_problem(args, message):
    result = CliRunner().invoke(app, ["device", "simulate", *args])
    assert isinstance(result.exception, BadInputError)  # main() maps it to exit 2
    assert message in str(result.exception)


def test_an_unknown_model_is_a_usage_error_listing_the_models():
    result = CliRunner().invoke(app, ["device", "simulate", "memristor"])
    assert result.exit_code == 2
    assert "memristor" in result.output and "felif" in result.output and "rram" in result.output


@pytest.mark.slow
def test_bad_input_exits_2_from_the_console_script():
    proc = subprocess.run(
        [str(BIN), "device", "simulate", "felif", "--param", "nope=1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "valid names" in proc.stderr and proc.stdout == ""
