"""SIGKILL a process while it writes measurements with large arrays; nothing half-written remains.

The child writes measurements of several multi-chunk arrays in a loop and records in each row
how many arrays it carries. After each kill (at a random moment, several trials on the same
database) every measurement must have all its arrays, every array all its chunks with a valid
checksum, and no array or chunk may lack its parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from store_helpers import migrated_store

from bruno_lab.store.models import ArrayChunk, Measurement, StoredArray

CHILD = r"""
import sys
from datetime import UTC, datetime

import numpy as np

from bruno_lab.store import open_store

url, seed = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(seed)
store = open_store(url, chunk_bytes=256 * 1024)
dev = store.ensure_device(store.ensure_die(store.ensure_wafer("W"), 0, 0, "D"), "s", "fecap", {})
run = store.create_run({"seed": seed}, "kill-test", {}, "0")
i = 0
while True:
    n_arrays = int(rng.integers(1, 4))
    arrays = {
        f"wave{k}_a": (rng.normal(size=int(rng.integers(100_000, 300_000))), "A")
        for k in range(n_arrays)
    }
    now = datetime.now(UTC)
    print("begin", flush=True)  # from here to "end" the process is inside add_measurement
    store.add_measurement(
        run_id=run, device_id=dev, protocol="kill", parameters={}, instruments={},
        started_at=now, finished_at=now, status="ok", error=None,
        scalars={"n_arrays": n_arrays}, arrays=arrays, key=f"{seed}/{i}",
    )
    print("end", flush=True)
    i += 1
"""


def _check_consistent(url: str) -> int:
    store = migrated_store(url)
    try:
        with store.session() as s:
            orphan_arrays = s.scalar(
                select(func.count())
                .select_from(StoredArray)
                .outerjoin(Measurement, Measurement.id == StoredArray.measurement_id)
                .where(Measurement.id.is_(None))
            )
            orphan_chunks = s.scalar(
                select(func.count())
                .select_from(ArrayChunk)
                .outerjoin(StoredArray, StoredArray.id == ArrayChunk.array_id)
                .where(StoredArray.id.is_(None))
            )
            assert (orphan_arrays, orphan_chunks) == (0, 0)
            rows = s.execute(select(Measurement.id, Measurement.scalars)).all()
        for mid, scalars in rows:
            arrays = store.load_arrays(mid)  # verifies chunk count, size and sha256
            assert len(arrays) == scalars["n_arrays"], f"measurement {mid} lost arrays"
            assert all(v.size >= 100_000 for v, _ in arrays.values())
        if store.engine.dialect.name == "sqlite":
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        return len(rows)
    finally:
        store.close()


@pytest.mark.slow
def test_sigkill_mid_write_leaves_no_partial_measurement(db_url: str, tmp_path: Path) -> None:
    migrated_store(db_url).close()
    script = tmp_path / "writer.py"
    script.write_text(CHILD)
    rng = np.random.default_rng(20261124)
    total, mid_write, trial = 0, 0, 0
    while trial < 5 or (mid_write < 3 and trial < 12):  # >= 5 trials, >= 3 kills mid-write
        child = subprocess.Popen(
            [sys.executable, str(script), db_url, str(trial)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # wait for the first committed measurement, then kill at a random moment
            while (line := child.stdout.readline()) and line.strip() != "end":
                pass
            assert line, child.stderr.read()
            time.sleep(float(rng.uniform(0.05, 0.6)))
            assert child.poll() is None, child.stderr.read()
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            out, _ = child.communicate()
        assert child.returncode == -signal.SIGKILL
        lines = out.split() or [line.strip()]
        mid_write += lines[-1] == "begin"  # killed inside add_measurement
        n = _check_consistent(db_url)
        assert n > total  # every trial committed at least one measurement
        total = n
        trial += 1
    assert mid_write >= 1, "no kill landed inside a write; the test proved nothing"
