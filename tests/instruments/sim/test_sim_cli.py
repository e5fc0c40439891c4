"""``bruno-lab sim serve`` in a subprocess: writes the station file, serves, stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pyvisa
import yaml

from instruments.sim.lab import ROLES

BRUNO_LAB = Path(sys.executable).with_name("bruno-lab")


@pytest.mark.slow  # a subprocess that imports torch: several seconds
def test_sim_serve_writes_station_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    station_path = tmp_path / "station.yaml"
    process = subprocess.Popen(
        [str(BRUNO_LAB), "sim", "serve", "--seed", "5", "--station-out", str(station_path)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60.0
        while not station_path.exists() and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.1)
        station = yaml.safe_load(station_path.read_text())
        assert set(station["instruments"]) == set(ROLES)  # every simulated instrument
        assert station["instruments"]["smu"]["model"] == "keithley2450"
        assert station["wiring"]["tia_gain_v_per_a"] > 0
        manager = pyvisa.ResourceManager("@py")
        smu = manager.open_resource(
            station["instruments"]["smu"]["resource"],
            read_termination="\n",
            write_termination="\n",
            timeout=2000,
        )
        assert smu.query("*IDN?").startswith("KEITHLEY INSTRUMENTS,MODEL 2450")
        smu.close()
        manager.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0
    assert "smu: TCPIP::127.0.0.1::" in stderr


@pytest.mark.slow
def test_sim_serve_bad_truth_exits_2(tmp_path: Path) -> None:
    truth = tmp_path / "truth.yaml"
    truth.write_text("name: x\nwafer: {diameter_mm: -1}\n")
    result = subprocess.run(
        [str(BRUNO_LAB), "sim", "serve", "--truth", str(truth), "--station-out", "s.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert str(truth) in result.stderr and "diameter_mm" in result.stderr
