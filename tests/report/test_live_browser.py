"""The live page in a real headless Chromium (Debian's package, driven by selenium) against a
run on the simulated lab: ``bruno-lab run`` and ``bruno-lab watch`` are separate processes
sharing only the database. New dies appear within seconds of their commit, a failure's reason
is shown, the page keeps working when the runner is SIGKILLed and the run resumed, and when
the watch server itself restarts; two tabs watch at once. Screenshots of the live page and of
the wafer's report are written to $BRUNO_TEST_ARTIFACTS (else the test's tmp dir)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from browser import available, chromium, full_screenshot
from report_helpers import DEMO_TRUTH

pytestmark = pytest.mark.slow
REASON = available()

PLAN = {
    "version": 1,
    "name": "live-view-test",
    "dies": [[1, 1], [3, 1], [0, 2], [4, 2]],
    "sites": {"fecap": [0], "rram": [3], "felif": []},
    "protocols": [
        {
            "protocol": "pund",
            "params": {
                "amplitude_v": "3 V",
                "rise_s": "1 us",
                "width_s": "1 us",
                "delay_s": "2 us",
            },
        },
        {
            "protocol": "rram_forming",
            "params": {"max_v": "3.5 V", "step_v": "100 mV", "compliance_a": "100 uA"},
        },
        {"protocol": "rram_iv", "params": {"n_cycles": 1, "step_v": "100 mV"}},
    ],
}


def _cli(*args: str, log: Path | None = None) -> subprocess.Popen:
    """A bruno-lab process; its output goes to ``log`` (servers) or a pipe (read at the end)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = open(log, "a") if log is not None else subprocess.PIPE  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "bruno_lab.cli_entry", *args],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(cond: Any, timeout: float, what: str, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _committed(store: Any) -> list[tuple[int, float, str, str | None]]:
    from sqlalchemy import select

    from bruno_lab.store.models import Measurement

    with store.engine.connect() as conn:
        rows = conn.execute(
            select(
                Measurement.id, Measurement.finished_at, Measurement.key, Measurement.error
            ).order_by(Measurement.id)
        ).all()
    return [(int(i), t.timestamp(), k, e) for i, t, k, e in rows]


def _page(driver: Any) -> dict[str, Any]:
    return driver.execute_script(
        "var l = window.brunoLive; return l ? {ids: l.measurements.map(function (m) {"
        " return m.id; }), received: l.received, status: document.getElementById('run-status')"
        ".textContent, failures: document.getElementById('failures').innerText,"
        " conn: document.getElementById('conn').textContent,"
        " ended: !!document.querySelector('#bench tr.bench-ended'),"
        " dies: Array.from(document.querySelectorAll('#wafer g.die')).map(function (g) {"
        " return [g.dataset.die, +g.dataset.done, g.classList.contains('failed')]; })} : null"
    )


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_live_page_follows_a_run_through_kill_resume_and_restart(
    sim_lab_factory: Any, tmp_path: Path
) -> None:
    from bruno_lab.store import open_store
    from reporting.live.server import free_port

    shots = Path(os.environ.get("BRUNO_TEST_ARTIFACTS") or tmp_path / "artifacts")
    lab = sim_lab_factory(truth=DEMO_TRUTH, seed=1)
    station = lab.write_station(tmp_path / "station.yaml")
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(PLAN, sort_keys=False))
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    store = open_store(url, require_head=False)
    store.upgrade()
    port = free_port()
    wlog = tmp_path / "watch.log"
    watch = _cli("watch", "--db", url, "--port", str(port), "--poll-s", "0.25", log=wlog)
    procs = [watch]
    try:
        with chromium() as driver:
            _wait(lambda: _try_get(driver, f"http://127.0.0.1:{port}/"), 30, "the watch server")
            _wait(lambda: _page(driver) is not None, 20, "the page's script")
            runner = _cli(
                "run",
                str(plan),
                "--station",
                str(station),
                "--db",
                url,
                "--no-progress",
                log=tmp_path / "run.log",
            )
            procs.append(runner)
            # new dies appear within seconds of their commit
            rows = _wait(
                lambda: len(_committed(store)) >= 3 and _committed(store), 120, "three commits"
            )
            _wait(lambda: {r[0] for r in rows} <= set(_page(driver)["ids"]), 10, "the page")
            driver.save_screenshot(str(_mkdir(shots) / "live-view-running.png"))
            runner.send_signal(signal.SIGKILL)  # no clean-up: the run row stays "running"
            runner.wait(30)
            killed_at = len(_committed(store))
            page = _wait(
                lambda: (p := _page(driver)) and len(p["ids"]) == killed_at and p,
                10,
                "every commit before the kill",
            )
            assert page["status"] == "running" and page["conn"] == "live"
            assert not page["ended"]  # the bench shown is the running bench's
            dies_done = {d for d, n, _ in page["dies"] if n}
            assert "1,1" in dies_done
            # the watch server restarts too; the page reconnects by itself
            watch.send_signal(signal.SIGTERM)
            watch.wait(30)
            watch = _cli("watch", "--db", url, "--port", str(port), "--poll-s", "0.25", log=wlog)
            procs.append(watch)
            # a second viewer in another tab
            first = driver.current_window_handle
            driver.switch_to.new_window("tab")
            second = driver.current_window_handle
            _wait(lambda: _try_get(driver, f"http://127.0.0.1:{port}/"), 30, "the restart")
            driver.switch_to.window(first)
            # resume: a plain rerun of the same plan continues the interrupted run
            resumed = _cli(
                "run", str(plan), "--station", str(station), "--db", url, "--no-progress"
            )
            procs.append(resumed)
            out, _ = resumed.communicate(timeout=300)
            assert resumed.returncode in (0, 1), out
            rows = _committed(store)
            assert len(rows) == 12 and len({r[2] for r in rows}) == 12  # 4 dies x 3, no repeat
            for handle in (first, second):
                driver.switch_to.window(handle)
                page = _wait(
                    lambda: (
                        (p := _page(driver))
                        and len(p["ids"]) == 12
                        and p["status"] == "completed"
                        and p
                    ),
                    20,
                    "the resumed run, completed",
                )
                assert {d for d, n, _ in page["dies"] if n} == {"1,1", "3,1", "0,2", "4,2"}
                assert page["ended"]  # the last commit's bench is labelled history
            failed = [r for r in rows if r[3]]
            assert failed, "the demo wafer's never-formed cell at 3,1/3 fails"
            for _, _, key, error in failed:
                assert error[:60] in page["failures"]
                die = key.split("/")[0]
                assert next(d for d in page["dies"] if d[0] == die)[2]  # red frame
            driver.switch_to.window(first)
            latency = _latencies(driver, rows[killed_at:])
            print(
                f"live page update latency over {len(latency)} commits: "
                f"median {sorted(latency)[len(latency) // 2]:.2f} s, max {max(latency):.2f} s"
            )
            assert max(latency) < 5.0, latency
            full_screenshot(driver, shots / "live-view.png", width=1400, max_height=2400)
            report = tmp_path / "report.html"
            rep = _cli("report", "--wafer", "demo-wafer", "--out", str(report), "--db", url)
            out, _ = rep.communicate(timeout=300)
            assert rep.returncode == 0, out
            driver.get_log("browser")  # the live page's reconnects during the restart
            driver.get(report.as_uri())
            _wait(lambda: driver.execute_script("return !!window.Plotly"), 20, "plotly")
            errors = [
                e
                for e in driver.get_log("browser")
                if e["level"] == "SEVERE" and "favicon" not in e["message"]
            ]
            assert not errors, errors
            full_screenshot(driver, shots / "report.png", width=1400)
            assert (shots / "live-view.png").stat().st_size > 10_000
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        store.close()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _try_get(driver: Any, url: str) -> bool:
    try:
        driver.get(url)
    except Exception:
        return False
    return "bruno-lab live" in driver.title


def _latencies(driver: Any, rows: list[tuple[int, float, str, str | None]]) -> list[float]:
    received = driver.execute_script("return window.brunoLive.received")
    return [received[str(i)] / 1000.0 - t for i, t, _, _ in rows if str(i) in received]
