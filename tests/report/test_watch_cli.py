"""``bruno-lab watch`` refuses a run that does not exist (exit 2) instead of serving a page for
it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("run", ["999", "-1", "0"])
def test_watch_of_a_run_that_does_not_exist_exits_2(tmp_path: Path, run: str) -> None:
    db = str(tmp_path / "lab.db")
    cli = [sys.executable, "-m", "bruno_lab.cli_entry"]
    subprocess.run([*cli, "db", "upgrade", "--db", db], check=True, capture_output=True)
    done = subprocess.run(
        [*cli, "watch", "--db", db, "--run", run], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "--run" in done.stderr and "Traceback" not in done.stderr
