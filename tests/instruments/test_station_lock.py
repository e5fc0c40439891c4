"""The per-process bench lock: held across reconnects, refused to another process naming the
holder, released when the holder closes its bench or dies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from instruments import station_lock

REPO = Path(__file__).resolve().parents[2]
RESOURCES = ["TCPIP::smu.test::5025::SOCKET", "TCPIP::prober.test::1234::SOCKET"]
TRY = (
    "import sys; from instruments import station_lock as s\n"
    "try:\n    s.acquire(sys.argv[1:], 'station.yaml')\nexcept s.StationBusy as e:\n"
    "    print(e); sys.exit(2)\nprint('acquired')\n"
)


def _other_process(*resources: str, lock_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), station_lock.ENV_LOCK_DIR: str(lock_dir)}
    return subprocess.run(
        [sys.executable, "-c", TRY, *resources], capture_output=True, text=True, env=env,
        timeout=60, check=False,
    )  # fmt: skip


def test_another_process_is_refused_until_released(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(station_lock.ENV_LOCK_DIR, str(tmp_path))
    held = station_lock.acquire(RESOURCES, "station.yaml")
    try:
        again = station_lock.acquire(RESOURCES[:1], "station.yaml")  # same process: counted
        station_lock.release(again)
        assert station_lock.held_by_me(RESOURCES[0])
        other = _other_process(RESOURCES[1], lock_dir=tmp_path)
        assert other.returncode == 2
        assert f"is in use by pid {os.getpid()}" in other.stdout and RESOURCES[1] in other.stdout
        # an unrelated instrument is free
        assert _other_process("GPIB0::12::INSTR", lock_dir=tmp_path).returncode == 0
    finally:
        station_lock.release(held)
    assert not station_lock.held_by_me(RESOURCES[0])
    assert _other_process(*RESOURCES, lock_dir=tmp_path).returncode == 0


def test_all_or_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(station_lock.ENV_LOCK_DIR, str(tmp_path))
    held = station_lock.acquire(RESOURCES[1:], "a.yaml")
    try:
        # another process wanting the SMU and the (held) prober gets neither
        other = _other_process(*RESOURCES, lock_dir=tmp_path)
        assert other.returncode == 2
    finally:
        station_lock.release(held)
    assert _other_process(RESOURCES[0], lock_dir=tmp_path).returncode == 0


def test_open_bench_refuses_a_busy_station_before_opening_anything(tmp_path, monkeypatch):
    import yaml

    from instruments.station import open_bench

    monkeypatch.setenv(station_lock.ENV_LOCK_DIR, str(tmp_path))
    path = tmp_path / "station.yaml"
    smu = {"model": "keithley2450", "resource": RESOURCES[0]}
    path.write_text(yaml.safe_dump({"instruments": {"smu": smu}}))
    code = (
        "import sys, time; from instruments.station_lock import acquire\n"
        f"acquire([{RESOURCES[0]!r}], 'x'); print('held', flush=True); time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), station_lock.ENV_LOCK_DIR: str(tmp_path)}
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=env)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

        class NoTraffic:
            def open_resource(self, *a, **k):  # pragma: no cover - must not be reached
                raise AssertionError("an instrument was opened")

        with pytest.raises(station_lock.StationBusy, match=f"pid {holder.pid}"):
            open_bench(path, resource_manager=NoTraffic())
    finally:
        holder.kill()
        holder.wait()


def test_two_spellings_of_one_instrument_are_one_lock(tmp_path, monkeypatch) -> None:
    """pyvisa's own normal form: TCPIP/TCPIP0, letter case and the default INSTR suffix do not
    make a second instrument; in this process a second spelling is counted, not refused."""
    monkeypatch.setenv(station_lock.ENV_LOCK_DIR, str(tmp_path))
    held = station_lock.acquire(["TCPIP::smu.test::5025::SOCKET", "GPIB::12"], "a.yaml")
    try:
        again = station_lock.acquire(["tcpip0::SMU.TEST::5025::socket"], "b.yaml")
        station_lock.release(again)
        for other_name in ("TCPIP0::smu.test::5025::SOCKET", "gpib0::12::instr"):
            other = _other_process(other_name, lock_dir=tmp_path)
            assert other.returncode == 2, other.stdout + other.stderr
            assert "is in use by pid" in other.stdout and other_name in other.stdout
        assert _other_process("TCPIP::smu.test::5026::SOCKET", lock_dir=tmp_path).returncode == 0
    finally:
        station_lock.release(held)
    assert not station_lock.held_by_me("TCPIP0::SMU.TEST::5025::SOCKET")
