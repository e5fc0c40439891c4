# ruff: noqa: E501  (the case table reads best one case per line)
"""The adversarial harness of issue 16: malformed inputs across the commands, kills, concurrency.

Run it as a user would run the CLI (one subprocess per case, a timeout and an address-space
limit each), against a simulated lab started here and a migrated SQLite database copied per case
(plus a throw-away PostgreSQL server when its binaries exist). For every case it records the
exit code, whether stderr holds a Python traceback, and whether anything was written (the case
folder's listing and file hashes, the database's row counts); a case that plants a code payload
also checks that the payload's marker was not created.

    python tests/fuzz/adversarial.py [--json OUT.json] [--only SUBSTRING] [--jobs 2]

Prints the table: inputs tried, exit-2 clean, tracebacks, wrong exit codes, written, code run.
A *bad* case is clean when it exits 2 with no traceback and writes nothing; a *control* case
(valid input) must exit 0; a *refuse* case (concurrency) has its own check. Not a pytest module:
the property-based test of the loaders and options is ``tests/fuzz/test_fuzz_*.py``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import hashlib
import json
import os
import pickle
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "loop"))

PY = sys.executable
MEM_LIMIT_BYTES = 6 * 2**30  # address space per case: torch + numba reserve ~2-3 GB of it
TRACEBACK = "Traceback (most recent call last)"


class Payload:
    """Unpickling this calls ``os.mkdir(marker)``: proof that a loader ran code from a file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (self.marker,))


@dataclass
class Case:
    name: str
    category: str
    argv: list[str] | None = None  # bruno-lab arguments ({dir}, {db}, {station} substituted)
    setup: Callable[[Path, Env], None] | None = None
    kind: str = "bad"  # bad (expect exit 2, nothing written), control (exit 0), custom
    timeout_s: float = 60.0
    db: str = "sqlite"  # sqlite (migrated copy), none, pg
    marker: bool = False  # the case plants Payload(dir/marker)
    custom: Callable[[Path, Env], dict[str, Any]] | None = None
    secret: str | None = None  # must not appear in the output
    expect_code: int = 2  # what the contract says for this bad input (db status: 1)
    expect_text: str | None = None  # and what the message must say


@dataclass
class Env:
    station: Path  # a valid station file of the running sim lab
    station_doc: dict[str, Any]
    truth_doc: dict[str, Any]
    template_db: Path  # migrated SQLite file with one completed run
    network: Path  # a valid saved network (device synapses, tiny task)
    card: dict[str, Any]  # a valid RRAM card body
    pg_admin: str | None = None
    lab: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


# -- helpers ------------------------------------------------------------------------------


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT_BYTES, MEM_LIMIT_BYTES))
    os.setsid()


def cli(argv: list[str], cwd: Path, timeout_s: float, env: dict[str, str] | None = None) -> dict:
    """Run ``bruno-lab argv``; exit code (None on timeout), stdout, stderr, wall time."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    full_env.pop("BRUNO_LAB_DB", None)
    full_env["XDG_DATA_HOME"] = str(cwd / ".xdg")  # a default database would land here
    full_env.update(env or {})
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-m", "bruno_lab.cli_entry", *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        preexec_fn=_limit,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    return {"code": code, "stdout": out, "stderr": err, "wall_s": time.perf_counter() - t0}


def listing(root: Path) -> dict[str, str]:
    """Relative path -> content hash (dirs: 'dir'); SQLite side files and the db left out."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if rel.endswith(("-wal", "-shm", "-journal")) or rel == "lab.db":
            continue
        if p.is_dir():
            out[rel] = "dir"
        else:
            try:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            except OSError:
                out[rel] = "unreadable"
    return out


def sqlite_counts(path: Path) -> dict[str, int] | None:
    if not path.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = [
                r[0] for r in con.execute("select name from sqlite_master where type='table'")
            ]
            return {t: con.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables}
        finally:
            con.close()
    except sqlite3.Error as exc:
        return {"<error>": str(exc)}  # type: ignore[dict-item]


def pg_counts(url: str) -> dict[str, int]:
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            names = inspect(conn).get_table_names()
            return {
                n: conn.execute(text(f'select count(*) from "{n}"')).scalar_one() for n in names
            }
    finally:
        engine.dispose()


def write_yaml(path: Path, doc: Any) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def quick_plan(name: str = "quick") -> dict[str, Any]:
    return {
        "name": name,
        "dies": [[1, 1]],
        "sites": {"fecap": [0], "rram": [3], "felif": []},
        "protocols": [
            {"protocol": "rram_forming", "params": {"max_v": "3.5 V", "step_v": "100 mV"}},
        ],
    }


def plan_text_with(edit: str) -> str:
    """A plan whose protocol block is PUND with the given raw YAML params lines."""
    return (
        "name: adversarial\n"
        "dies: [[1, 1]]\n"
        "sites: {fecap: [0], rram: [], felif: []}\n"
        "protocols:\n"
        "  - protocol: pund\n"
        "    params:\n" + "".join(f"      {line}\n" for line in edit.splitlines())
    )


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ",".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def deep_list(depth: int = 5000) -> str:
    return "[" * depth + "]" * depth + "\n"


def station_with(env: Env, edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(env.station_doc)
    edit(doc)
    return doc


# -- case builders ------------------------------------------------------------------------


def file_case(
    name: str, category: str, filename: str, content: str | bytes, argv: list[str], **kw: Any
) -> Case:
    def setup(d: Path, env: Env) -> None:
        p = d / filename
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)

    return Case(name, category, argv, setup, **kw)


def plan_case(name: str, category: str, text: str, **kw: Any) -> Case:
    return file_case(
        name,
        category,
        "plan.yaml",
        text,
        ["run", "plan.yaml", "--station", "{station}", "--db", "{db}", "--no-progress"],
        **kw,
    )


def station_case(name: str, edit: Callable[[dict[str, Any]], None] | str | bytes) -> Case:
    def setup(d: Path, env: Env) -> None:
        write_yaml(d / "plan.yaml", quick_plan())
        if isinstance(edit, bytes):
            (d / "bad_station.yaml").write_bytes(edit)
        elif isinstance(edit, str):
            (d / "bad_station.yaml").write_text(edit)
        else:
            write_yaml(d / "bad_station.yaml", station_with(env, edit))

    return Case(
        name,
        "station",
        ["run", "plan.yaml", "--station", "bad_station.yaml", "--db", "{db}", "--no-progress"],
        setup,
    )


def truth_case(name: str, edit: Callable[[dict[str, Any]], None] | str | bytes) -> Case:
    def setup(d: Path, env: Env) -> None:
        if isinstance(edit, bytes):
            (d / "truth.yaml").write_bytes(edit)
        elif isinstance(edit, str):
            (d / "truth.yaml").write_text(edit)
        else:
            doc = copy.deepcopy(env.truth_doc)
            edit(doc)
            write_yaml(d / "truth.yaml", doc)

    return Case(
        name,
        "truth",
        ["sim", "serve", "--station-out", "st.yaml", "--truth", "truth.yaml"],
        setup,
        db="none",
        timeout_s=60,
    )


def card_case(name: str, filename: str, content: str | bytes) -> Case:
    return file_case(
        name,
        "card",
        filename,
        content,
        ["train", "--task", "patterns", "--epochs", "1", "--hidden", "2", "--n-micro", "10",
         "--synapse", "device", "--card", filename, "--max-batches", "1"],
        db="none",
    )  # fmt: skip


def faults_case(name: str, content: str | bytes) -> Case:
    return file_case(
        name,
        "faults",
        "faults.yaml",
        content,
        ["sim", "serve", "--station-out", "st.yaml", "--faults", "faults.yaml"],
        db="none",
        timeout_s=60,
    )


def train_case(name: str, *opts: str, timeout_s: float = 60, category: str = "caps") -> Case:
    base = ["train", "--task", "patterns", "--epochs", "1", "--max-batches", "1", "--hidden", "2",
            "--n-micro", "10"]  # fmt: skip
    # later options override the base ones (typer keeps the last value)
    return Case(name, category, [*base, *opts], db="none", timeout_s=timeout_s)


def device_case(name: str, *opts: str, timeout_s: float = 60, category: str = "caps") -> Case:
    return Case(name, category, ["device", "simulate", *opts], db="none", timeout_s=timeout_s)


def _payload_network(d: Path, env: Env) -> None:
    import torch

    torch.save({"format": "bruno-lab-network", "x": Payload(str(d / "marker"))}, d / "evil.pt")


def _payload_checkpoint(d: Path, env: Env) -> None:
    import torch

    torch.save({"state_dict": Payload(str(d / "marker"))}, d / "ck.pt")


def _payload_braille(d: Path, env: Env) -> None:
    with (d / "braille.pkl").open("wb") as fh:
        pickle.dump([{"taxel_data": Payload(str(d / "marker")), "letter": "A"}], fh)


def _copy_network(d: Path, env: Env) -> None:
    shutil.copy(env.network, d / "net.pt")


def _crafted_header_network(d: Path, env: Env) -> None:
    """A valid, checksummed network file whose config claims 10^10 weights (was allocated)."""
    from bruno_lab.safeio import read_tensor_file, write_tensor_file
    from bruno_lab.train.io import FORMAT, VERSION

    tensors, meta, _ = read_tensor_file(env.network, FORMAT, (VERSION,), "network")
    meta["config"].update(n_in=1_000_000, n_hidden=10_000)
    write_tensor_file(d / "net.pt", FORMAT, VERSION, tensors, meta)


def _braille_bad_record(d: Path, env: Env) -> None:
    with (d / "b.pkl").open("wb") as fh:
        pickle.dump([{"taxel_data": "not numbers", "letter": "A"}] * 3, fh)


def _record_path_is_a_dir(d: Path, env: Env) -> None:
    """deploy writes its record beside the network (``net.deploy-<die>.json``): a path it
    cannot write (here a directory of that name: permissions do not stop root) must be
    refused before any cell is programmed."""
    shutil.copy(env.network, d / "net.pt")
    (d / "net.deploy-1_1.json").mkdir()


# -- custom cases: concurrency, kills, secrets --------------------------------------------


def _measurements(db: Path, plan_name: str = "long") -> tuple[int, int, list[str]]:
    """(measurements, distinct keys, run statuses) of the runs of ``plan_name`` (the template
    database holds a seed run of its own)."""
    con = sqlite3.connect(db)
    try:
        runs = [
            (r[0], r[1])
            for r in con.execute("select id, status from run where json_extract(plan, '$.name') = ?",
                                 (plan_name,))
        ]  # fmt: skip
        ids = [r[0] for r in runs] or [-1]
        marks = ",".join("?" * len(ids))
        n = con.execute(
            f"select count(*) from measurement where run_id in ({marks})", ids
        ).fetchone()[0]
        keys = con.execute(
            f"select count(distinct key) from measurement where run_id in ({marks})", ids
        ).fetchone()[0]
        return n, keys, [r[1] for r in runs]
    finally:
        con.close()


def _measurements_any(url: str, plan_name: str = "long") -> tuple[int, int, list[str]]:
    """:func:`_measurements` through SQLAlchemy, for any backend (PostgreSQL cases)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            runs = [(r[0], str(r[2])) for r in conn.execute(text("select id, plan, status from run"))
                    if (r[1] if isinstance(r[1], dict) else json.loads(r[1])).get("name") == plan_name]  # fmt: skip
            ids = [r[0] for r in runs] or [-1]
            marks = ",".join(str(int(i)) for i in ids)
            n, keys = conn.execute(text(
                f"select count(*), count(distinct key) from measurement where run_id in ({marks})"
            )).one()  # fmt: skip
        return int(n), int(keys), [r[1] for r in runs]
    finally:
        engine.dispose()


def _case_db(d: Path, env: Env) -> tuple[str, Callable[[], tuple[int, int, list[str]]]]:
    """The case's database URL (its PostgreSQL database when it has one) and a counter."""
    pg = env.extra.get("case_pg", {}).get(str(d))
    if pg:
        return pg, lambda: _measurements_any(pg)
    return str(d / "lab.db"), lambda: _measurements(d / "lab.db")


def _spawn(argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [PY, "-m", "bruno_lab.cli_entry", *argv], cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=full_env, preexec_fn=_limit,
    )  # fmt: skip


def _long_plan(d: Path, name: str = "long") -> Path:
    plan = quick_plan(name)
    plan["dies"] = "all"
    plan["protocols"] = [
        {"protocol": "rram_forming", "params": {"max_v": "3.5 V", "step_v": "50 mV"}},
        {"protocol": "pund", "params": {"amplitude_v": "3 V"}},
    ]
    return write_yaml(d / "plan.yaml", plan)


def same_plan_twice(d: Path, env: Env) -> dict[str, Any]:
    """Two `run`s of one plan at once: the second must be refused (exit 2), none lost."""
    _long_plan(d)
    url, count = _case_db(d, env)
    argv = ["run", "plan.yaml", "--station", str(env.station), "--db", url,
            "--no-progress", "--json"]  # fmt: skip
    first = _spawn(argv, d)
    time.sleep(6.0)
    second = cli(argv, d, 300)
    out1, err1 = first.communicate(timeout=600)
    n, distinct, statuses = count()
    doc1 = json.loads(out1) if out1.strip() else {}
    planned = doc1.get("planned")
    ok = (
        second["code"] == 2
        and first.returncode == 0
        and n == planned == distinct
        and len(statuses) == 1
    )
    return {
        "code": second["code"],
        "stderr": second["stderr"] + err1,
        "ok": ok,
        "detail": f"second exit {second['code']}, first exit {first.returncode}, "
        f"{n} stored of {planned} planned, runs {statuses}",
    }


def same_station_twice(d: Path, env: Env) -> dict[str, Any]:
    """Two processes on one bench (different plans): the second refused before any traffic.

    The first runner is stopped (SIGSTOP) while the second runs, so every command the sim
    records meanwhile came from the second."""
    _long_plan(d, "first")
    write_yaml(d / "plan2.yaml", quick_plan("second"))
    first = _spawn(["run", "plan.yaml", "--station", str(env.station), "--db",
                    str(d / "lab.db"), "--no-progress"], d)  # fmt: skip
    time.sleep(6.0)
    shutil.copy(env.template_db, d / "lab2.db")
    os.killpg(first.pid, signal.SIGSTOP)
    time.sleep(0.5)
    env.lab.clear_records()
    second = cli(["run", "plan2.yaml", "--station", str(env.station), "--db",
                  str(d / "lab2.db"), "--no-progress"], d, 120)  # fmt: skip
    seen = [
        f"{r}:{rec.text}" for r in ("smu", "awg", "scope", "prober", "clock")
        for rec in env.lab.records(r)
    ]  # fmt: skip
    traffic = len(seen)
    os.killpg(first.pid, signal.SIGCONT)
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=120)
    ok = second["code"] == 2 and traffic == 0
    return {
        "code": second["code"],
        "stderr": second["stderr"],
        "ok": ok,
        "detail": f"second exit {second['code']}; {traffic} commands reached the sim from it "
        f"{seen[:4]}",
    }


def killed_holder(d: Path, env: Env) -> dict[str, Any]:
    """SIGKILL the runner mid-run; a rerun must take the stale run over and finish it."""
    _long_plan(d)
    url, count = _case_db(d, env)
    argv = ["run", "plan.yaml", "--station", str(env.station), "--db", url,
            "--no-progress", "--json"]  # fmt: skip
    first = _spawn(argv, d)
    time.sleep(8.0)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    rerun = cli(argv, d, 600)
    doc = json.loads(rerun["stdout"]) if rerun["stdout"].strip() else {}
    n, distinct, statuses = count()
    ok = (
        rerun["code"] == 0
        and doc.get("resumed") is True
        and n == distinct == doc.get("planned")
        and len(statuses) == 1
    )
    return {
        "code": rerun["code"],
        "stderr": rerun["stderr"],
        "ok": ok,
        "detail": f"rerun exit {rerun['code']} resumed={doc.get('resumed')}, {n} stored of "
        f"{doc.get('planned')}, runs {statuses}",
    }


# -- the cases ----------------------------------------------------------------------------


def build_cases(env: Env) -> list[Case]:
    C: list[Case] = []
    run = ["run", "plan.yaml", "--station", "{station}", "--db", "{db}", "--no-progress"]

    # code in files
    C += [
        Case("network payload -> evaluate", "code", ["evaluate", "--network", "evil.pt"],
             _payload_network, marker=True, db="none"),
        Case("network payload -> deploy", "code",
             ["deploy", "--network", "evil.pt", "--station", "{station}", "--die", "1,1",
              "--db", "{db}"], _payload_network, marker=True),
        Case("checkpoint payload -> train --resume", "code",
             ["train", "--task", "patterns", "--epochs", "1", "--hidden", "2", "--n-micro", "10",
              "--checkpoint", "ck.pt", "--resume"], _payload_checkpoint, marker=True, db="none"),
        Case("braille payload -> train", "code",
             ["train", "--task", "braille", "--data", "braille.pkl", "--epochs", "1"],
             _payload_braille, marker=True, db="none"),
        file_case("garbage .pt -> evaluate", "code", "net.pt", b"\x00garbage" * 10,
                  ["evaluate", "--network", "net.pt"], db="none"),
        file_case("empty .pt -> evaluate", "code", "net.pt", b"",
                  ["evaluate", "--network", "net.pt"], db="none"),
        file_case("zip not a network -> evaluate", "code", "net.pt",
                  b"PK\x05\x06" + b"\x00" * 18, ["evaluate", "--network", "net.pt"], db="none"),
        file_case("garbage checkpoint -> train --resume", "code", "ck.pt", b"junk" * 50,
                  ["train", "--task", "patterns", "--epochs", "1", "--hidden", "2",
                   "--n-micro", "10", "--checkpoint", "ck.pt", "--resume"], db="none"),
        file_case("garbage braille file", "code", "b.pkl", b"\x80\x04junk",
                  ["train", "--task", "braille", "--data", "b.pkl", "--epochs", "1"], db="none"),
        file_case("braille: a dict, not records", "code", "b.pkl", pickle.dumps({"a": 1}),
                  ["train", "--task", "braille", "--data", "b.pkl", "--epochs", "1"], db="none"),
        Case("braille: taxel_data not numbers", "code",
             ["train", "--task", "braille", "--data", "b.pkl", "--epochs", "1"],
             _braille_bad_record, db="none"),
        Case("network header claims 10^10 weights -> evaluate", "code",
             ["evaluate", "--network", "net.pt"], _crafted_header_network, db="none"),
    ]  # fmt: skip

    # YAML structure: bombs, depth, duplicates, encodings (plans)
    C += [
        plan_case("plan alias bomb", "yaml", "name: bomb\n" + alias_bomb(), timeout_s=90),
        plan_case("plan 5000-deep list", "yaml", "name: deep\ndies: " + deep_list()),
        plan_case("plan 200-deep mapping", "yaml", "name: d\nx: " + "{a: " * 200 + "1" + "}" * 200),
        plan_case("plan duplicate amplitude_v", "yaml",
                  plan_text_with("amplitude_v: 3 V\namplitude_v: 1 V")),
        plan_case("plan duplicate name", "yaml",
                  "name: a\n" + plan_text_with("amplitude_v: 3 V")),
        file_case("plan non-UTF-8", "yaml", "plan.yaml",
                  plan_text_with("amplitude_v: 3 V").replace("adversarial", "adv\udcff")
                  .encode("utf-8", "surrogateescape"), run),
        file_case("plan latin-1 bytes", "yaml", "plan.yaml",
                  plan_text_with("amplitude_v: 3 V").encode() + b"# caf\xe9\n", run),
        file_case("plan UTF-16 with BOM", "yaml", "plan.yaml",
                  plan_text_with("amplitude_v: 3 V").encode("utf-16"), run),
        file_case("plan NUL bytes", "yaml", "plan.yaml", b"name: a\x00\n", run),
        plan_case("plan is a list", "yaml", "- a\n- b\n"),
        plan_case("plan is empty", "yaml", ""),
        plan_case("plan python tag", "yaml", "name: !!python/object/apply:os.system ['true']\n"),
        plan_case("plan 20 MB", "yaml", "name: big\nx: '" + "a" * 20_000_000 + "'\n",
                  timeout_s=90),
        plan_case("plan huge key count", "yaml",
                  "name: k\nwafer_map: {" + ",".join(f"k{i}: {i}" for i in range(200_000)) + "}\n",
                  timeout_s=90),
        Case("plan file is a directory", "yaml", run, lambda d, e: (d / "plan.yaml").mkdir()),
        Case("plan file missing", "yaml", run),
    ]  # fmt: skip

    # quantities in plans
    q = [
        ("amplitude_v: true", "boolean amplitude"),
        ("amplitude_v: false", "boolean false amplitude"),
        ('width_s: "inf s"', "width inf s"),
        ("width_s: .inf", "width .inf"),
        ("width_s: .nan", "width .nan"),
        ('width_s: "nan s"', "width nan s"),
        ("width_s: 1e400", "width 1e400"),
        ('width_s: "1e400 s"', "width '1e400 s'"),
        ("width_s: -1e-6", "negative width"),
        ('amplitude_v: "3 A"', "wrong unit"),
        ('amplitude_v: "3 V V"', "garbage unit"),
        ('amplitude_v: "1e-400 V"', "denormal amplitude (0)"),
        ("amplitude_v: [3, 3]", "list for scalar"),
        ("amplitude_v: {v: 3}", "mapping for scalar"),
        ("amplitude_v: \"__import__('os')\"", "python in a quantity"),
        ("samples_per_rise: 1e9", "samples_per_rise huge float"),
        ("samples_per_rise: 5.5", "samples_per_rise non-integer"),
        ("samples_per_rise: true", "samples_per_rise boolean"),
        ('rise_s: "1 fs"', "rise 1 fs (points explode)"),
        ('delay_s: "1000 s"', "delay 1000 s (points explode)"),
    ]
    C += [plan_case(f"plan {label}", "quantity", plan_text_with(line)) for line, label in q]
    C += [
        plan_case("stop max_duration_s inf", "quantity",
                  plan_text_with("amplitude_v: 3 V") + "stop: {max_duration_s: .inf}\n"),
        plan_case("stop max_failed true", "quantity",
                  plan_text_with("amplitude_v: 3 V") + "stop: {max_failed: true}\n"),
        plan_case("plan name 10k chars", "quantity",
                  plan_text_with("amplitude_v: 3 V").replace("adversarial", "n" * 10_000)),
        plan_case("dies pattern matches none", "quantity",
                  plan_text_with("amplitude_v: 3 V").replace("[[1, 1]]", "{pattern: 'ZZ*'}")),
        plan_case("dies [1e9, 1]", "quantity",
                  plan_text_with("amplitude_v: 3 V").replace("[[1, 1]]", "[[1000000000, 1]]")),
        plan_case("dies [true, 1]", "quantity",
                  plan_text_with("amplitude_v: 3 V").replace("[[1, 1]]", "[[true, 1]]")),
        plan_case("sites [true]", "quantity",
                  plan_text_with("amplitude_v: 3 V").replace("fecap: [0]", "fecap: [true]")),
        plan_case("pv_loop 10^6 frequencies", "quantity",
                  "name: f\ndies: [[1, 1]]\nsites: {fecap: [0], rram: [], felif: []}\n"
                  "protocols:\n  - protocol: pv_loop\n    params:\n      frequencies_hz: ["
                  + ",".join(["1000"] * 1_000_000) + "]\n", timeout_s=90),
    ]  # fmt: skip

    # station files
    def sw(fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
        return lambda doc: fn(doc) and None

    C += [
        station_case("negative TIA gain", sw(lambda s: s["wiring"].update(tia_gain_v_per_a=-1e4))),
        station_case("zero TIA gain", sw(lambda s: s["wiring"].update(tia_gain_v_per_a=0))),
        station_case("TIA gain 'lots'", sw(lambda s: s["wiring"].update(tia_gain_v_per_a="lots"))),
        station_case("TIA gain true", sw(lambda s: s["wiring"].update(tia_gain_v_per_a=True))),
        station_case("TIA gain inf", sw(lambda s: s["wiring"].update(tia_gain_v_per_a=float("inf")))),
        station_case("felif transconductance negative",
                     sw(lambda s: s["wiring"].update(felif_input_transconductance_a_per_v=-1))),
        station_case("unknown wiring key", sw(lambda s: s["wiring"].update(tia_gian_v_per_a=1e4))),
        station_case("awg_to_device bogus", sw(lambda s: s["wiring"].update(awg_to_device="x"))),
        station_case("resource garbage",
                     sw(lambda s: s["instruments"]["smu"].update(resource="GARBAGE"))),
        station_case("resource missing port",
                     sw(lambda s: s["instruments"]["smu"].update(resource="TCPIP::127.0.0.1::SOCKET"))),
        station_case("resource port 99999",
                     sw(lambda s: s["instruments"]["smu"].update(resource="TCPIP::127.0.0.1::99999::SOCKET"))),
        station_case("resource with newline",
                     sw(lambda s: s["instruments"]["smu"].update(resource="TCPIP::1.2.3.4::5025::SOCKET\n*RST"))),
        station_case("resource 2 KB", sw(lambda s: s["instruments"]["smu"].update(resource="A" * 2048))),
        station_case("timeout_s 0", sw(lambda s: s["instruments"]["smu"].update(timeout_s=0))),
        station_case("timeout_s 1e9", sw(lambda s: s["instruments"]["smu"].update(timeout_s=1e9))),
        station_case("timeout_s true", sw(lambda s: s["instruments"]["smu"].update(timeout_s=True))),
        station_case("unknown role", sw(lambda s: s["instruments"].update(laser={"model": "velox"}))),
        station_case("unknown model", sw(lambda s: s["instruments"]["smu"].update(model="k9999"))),
        station_case("instruments a list", sw(lambda s: s.update(instruments=["smu"]))),
        station_case("envelope negative limit",
                     sw(lambda s: s.update(envelope={"max_voltage_v": -1}))),
        station_case("wafer dies garbage", sw(lambda s: s["wafer"].update(dies=[["a", "b"]]))),
        station_case("wafer sites kind bogus",
                     sw(lambda s: s["wafer"]["sites"][0].update(kind="laser"))),
        station_case("station non-UTF-8", b"station: caf\xe9\ninstruments: {}\n"),
        station_case("station alias bomb", "station: x\n" + alias_bomb()),
        station_case("station deep nesting", "station: x\nwiring: " + deep_list()),
        station_case("station duplicate key", "station: a\nstation: b\ninstruments: {}\n"),
        station_case("station empty", ""),
        station_case("station name 1000 chars", sw(lambda s: s.update(station="s" * 1000))),
    ]  # fmt: skip

    # truth files (sim serve)
    def tw(fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
        return lambda doc: fn(doc) and None

    C += [
        truth_case("die_width_um 0.001", tw(lambda t: t["wafer"].update(die_width_um=0.001))),
        truth_case("die_width_um 1 (10^8 dies)", tw(lambda t: t["wafer"].update(die_width_um=1.0, die_height_um=1.0))),
        truth_case("die_width_um 0", tw(lambda t: t["wafer"].update(die_width_um=0))),
        truth_case("die bigger than wafer", tw(lambda t: t["wafer"].update(die_width_um=1e9))),
        truth_case("edge exclusion > radius", tw(lambda t: t["wafer"].update(edge_exclusion_mm=1e6))),
        truth_case("diameter nan", tw(lambda t: t["wafer"].update(diameter_mm=float("nan")))),
        truth_case("mean inf", tw(lambda t: t["populations"]["fecap"]["params"]["ps_c_m2"].update(mean=float("inf")) if "ps_c_m2" in t["populations"]["fecap"]["params"] else next(iter(t["populations"]["fecap"]["params"].values())).update(mean=float("inf")))),
        truth_case("n_domains true", tw(lambda t: t["populations"]["fecap"].update(n_domains=True))),
        truth_case("site area negative", tw(lambda t: t["sites"][0].update(area_m2=-1))),
        truth_case("unknown parameter name", tw(lambda t: t["populations"]["fecap"]["params"].update(bogus_param={"mean": 1.0}))),
        truth_case("10^6 sites", tw(lambda t: t.update(sites=t["sites"][:1] * 1_000_000))),
        truth_case("truth non-UTF-8", b"name: caf\xe9\n"),
        truth_case("truth alias bomb", "name: x\n" + alias_bomb()),
        truth_case("truth deep nesting", "name: x\nsites: " + deep_list()),
        truth_case("truth duplicate key", yaml.safe_dump(env.truth_doc, sort_keys=False) + "name: again\n"),
        Case("truth file missing", "truth",
             ["sim", "serve", "--station-out", "st.yaml", "--truth", "nope.yaml"], db="none",
             timeout_s=60),
    ]  # fmt: skip

    # faults files
    C += [
        faults_case("faults unknown role", "roles: [smu, laser]\n"),
        faults_case("faults rate 2", "rates: {drop: 2}\n"),
        faults_case("faults rate true", "rates: {drop: true}\n"),
        faults_case("faults non-UTF-8", b"seed: 1 # \xff\n"),
        faults_case("faults alias bomb", alias_bomb()),
        faults_case("faults duplicate key", "seed: 1\nseed: 2\n"),
        faults_case("faults slow_delay inf", "slow_delay_s: .inf\n"),
    ]

    # cards
    card_json = json.dumps(env.card)
    C += [
        card_case("card non-UTF-8 json", "card.json", card_json.encode()[:-1] + b"\xff}"),
        card_case("card duplicate key json", "card.json", card_json[:-1] + ', "scope": "lot"}'),
        card_case(
            "card duplicate key yaml",
            "card.yaml",
            yaml.safe_dump(env.card, sort_keys=False) + "scope: lot\n",
        ),
        card_case("card alias bomb yaml", "card.yaml", alias_bomb()),
        card_case("card deep json", "card.json", "[" * 100_000 + "]" * 100_000),
        card_case("card NaN in json", "card.json", card_json.replace("1e-05", "NaN", 1)),
        card_case("card is a list", "card.json", "[]"),
    ]

    # size caps on options
    C += [
        device_case("fecap --domains 10^8", "fecap", "--domains", "100000000"),
        device_case("felif --n-micro 10^8", "felif", "--n-micro", "100000000"),
        device_case("felif --duration 1e6 s", "felif", "--duration", "1e6 s"),
        device_case("felif --dt 1 fs", "felif", "--dt", "1 fs"),
        device_case("felif --duration inf", "felif", "--duration", "inf"),
        device_case("felif --duration nan", "felif", "--duration", "nan"),
        device_case("felif --current inf", "felif", "--current", "inf A"),
        device_case("rram --step 1 pV", "rram", "--step", "1 pV"),
        device_case("rram --cycles 10^7", "rram", "--cycles", "10000000"),
        device_case("rram --rate-v-s 0", "rram", "--rate-v-s", "0"),
        device_case("rram --rate-v-s nan", "rram", "--rate-v-s", "nan"),
        device_case("fecap --frequency 0", "fecap", "--frequency", "0 Hz"),
        device_case("fecap --amplitude 1e9 V", "fecap", "--amplitude", "1e9 V"),
        device_case("--param area_m2=-1", "fecap", "--param", "area_m2=-1"),
        device_case("--param area_m2=inf", "fecap", "--param", "area_m2=inf"),
        device_case("unknown kind", "laser"),
        train_case("train --n-micro 10^8", "--n-micro", "100000000"),
        train_case("train --epochs 10^9", "--epochs", "1000000000", "--max-batches", "1"),
        train_case("train --hidden 10^8", "--hidden", "100000000"),
        train_case("train --batch-size 10^9", "--batch-size", "1000000000"),
        train_case("train --input-scale-a inf", "--input-scale-a", "inf"),
        train_case("train --input-scale-a nan", "--input-scale-a", "nan"),
        train_case("train --input-scale-a -1", "--input-scale-a", "-1"),
        train_case("train --lr nan", "--lr", "nan"),
        train_case("train --lr -1", "--lr", "-1"),
        train_case("train --relax-time-s inf", "--relax-time-s", "inf"),
        train_case("train --threads 10^6", "--threads", "1000000"),
        train_case("train --task bogus", "--task", "bogus"),
        Case("evaluate --passes 10^9", "caps",
             ["evaluate", "--network", "net.pt", "--on-chip", "--station", "{station}", "--die",
              "1,1", "--passes", "1000000000"], _copy_network, db="none"),
        Case("evaluate --wait-s inf", "caps",
             ["evaluate", "--network", "net.pt", "--on-chip", "--station", "{station}", "--die",
              "1,1", "--wait-s", "inf"], _copy_network, db="none"),
        Case("fit --chunk-size 10^12", "caps",
             ["fit", "--wafer", "{wafer}", "--chunk-size", "1000000000000", "--db", "{db}"]),
        Case("fit --n-domains 10^8", "caps",
             ["fit", "--wafer", "{wafer}", "--n-domains", "100000000", "--db", "{db}"]),
    ]  # fmt: skip

    # output paths
    def mkdir(name: str) -> Callable[[Path, Env], None]:
        return lambda d, e: (d / name).mkdir()

    C += [
        Case("train --out DIR", "paths", ["train", "--task", "patterns", "--epochs", "1",
             "--max-batches", "1", "--hidden", "2", "--n-micro", "10", "--out", "outdir"],
             mkdir("outdir"), db="none"),
        Case("train --programming-map DIR", "paths", ["train", "--task", "patterns", "--epochs",
             "1", "--max-batches", "1", "--hidden", "2", "--n-micro", "10", "--programming-map",
             "outdir"], mkdir("outdir"), db="none"),
        Case("train --checkpoint DIR", "paths", ["train", "--task", "patterns", "--epochs", "1",
             "--max-batches", "1", "--hidden", "2", "--n-micro", "10", "--checkpoint", "outdir"],
             mkdir("outdir"), db="none"),
        Case("train --nir DIR", "paths", ["train", "--task", "patterns", "--epochs", "1",
             "--max-batches", "1", "--hidden", "2", "--n-micro", "10", "--nir", "outdir"],
             mkdir("outdir"), db="none"),
        Case("sim serve --station-out DIR", "paths", ["sim", "serve", "--station-out", "outdir"],
             mkdir("outdir"), db="none", timeout_s=60),
        Case("cards export --out DIR", "paths", ["cards", "export", "1", "--out", "outdir",
             "--db", "{db}"], mkdir("outdir")),
        Case("cards export --out card.txt", "paths", ["cards", "export", "1", "--out",
             "card.txt", "--db", "{db}"]),
        Case("db export --out DIR", "paths", ["db", "export", "1", "--out", "outdir", "--db",
             "{db}"], mkdir("outdir")),
        Case("db export --out in missing dir", "paths", ["db", "export", "1", "--out",
             "nodir/x.parquet", "--db", "{db}"]),
        Case("report --out FILE", "paths", ["report", "--wafer", "{wafer}", "--out", "f.txt",
             "--db", "{db}"], lambda d, e: (d / "f.txt").write_text("x")),
        Case("device --plot DIR", "paths", ["device", "simulate", "fecap", "--domains", "2",
             "--plot", "outdir"], mkdir("outdir"), db="none"),
        Case("demo --out FILE", "paths", ["demo", "--out", "f.txt", "--quick"],
             lambda d, e: (d / "f.txt").write_text("x"), db="none"),
    ]  # fmt: skip

    # databases
    def readonly(d: Path, e: Env) -> None:
        write_yaml(d / "plan.yaml", quick_plan())
        os.chmod(d / "lab.db", 0o444)

    def unmigrated(d: Path, e: Env) -> None:
        (d / "lab.db").unlink()
        sqlite3.connect(d / "lab.db").execute("create table t (x)").connection.close()
        write_yaml(d / "plan.yaml", quick_plan())

    def not_sqlite(d: Path, e: Env) -> None:
        (d / "lab.db").write_bytes(b"this is not a database" * 100)
        write_yaml(d / "plan.yaml", quick_plan())

    pw = "s3cr@t:/p#w?d"
    C += [
        Case("run on read-only SQLite", "db", run, readonly),
        Case("fit on read-only SQLite", "db", ["fit", "--wafer", "{wafer}", "--db", "{db}"],
             readonly),
        Case("db upgrade on read-only SQLite", "db", ["db", "upgrade", "--db", "{db}"], readonly),
        Case("run on unmigrated SQLite", "db", run, unmigrated),
        Case("run on a non-database file", "db", run, not_sqlite),
        Case("db status on a non-database file", "db", ["db", "status", "--db", "{db}"],
             not_sqlite),
        Case("db status missing file", "db", ["db", "status", "--db", "missing.db"], db="none",
             expect_code=1, expect_text="does not exist"),
        Case("run missing db file", "db",
             ["run", "plan.yaml", "--station", "{station}", "--db", "missing.db"],
             lambda d, e: write_yaml(d / "plan.yaml", quick_plan()), db="none"),
        Case("db in a missing directory", "db", ["db", "upgrade", "--db", "nodir/lab.db"],
             db="none"),
        Case("db URL garbage", "db", ["db", "status", "--db", "postgresql+psycopg://::::"],
             db="none"),
        Case("db URL unknown dialect", "db", ["db", "status", "--db", "oracle+x://a/b"],
             db="none"),
        Case("unreachable PG, password with @", "db",
             ["db", "status", "--db", f"postgresql://lab:{pw}@127.0.0.1:1/lab"], db="none",
             secret=pw),
        Case("unreachable PG db upgrade", "db",
             ["db", "upgrade", "--db", f"postgresql://lab:{pw}@127.0.0.1:1/lab"], db="none",
             secret=pw),
        Case("run with unreachable PG", "db",
             ["run", "plan.yaml", "--station", "{station}", "--db",
              f"postgresql://lab:{pw}@127.0.0.1:1/lab"],
             lambda d, e: write_yaml(d / "plan.yaml", quick_plan()), db="none", secret=pw),
        Case("unreachable PG, password with plain @s", "db",
             ["db", "status", "--db", "postgresql://lab:pw1@tail2@end3@127.0.0.1:1/lab"],
             db="none", secret="pw1@tail2@end3"),
        Case("deploy, its record path is a directory", "paths",
             ["deploy", "--network", "net.pt", "--station", "{station}", "--die", "1,1",
              "--db", "{db}"], _record_path_is_a_dir, timeout_s=300),
        Case("fit unreachable --scheduler", "db",
             ["fit", "--wafer", "{wafer}", "--kind", "fecap", "--scheduler",
              "tcp://127.0.0.1:1", "--db", "{db}"], timeout_s=90),
        Case("fit --scheduler garbage", "db",
             ["fit", "--wafer", "{wafer}", "--kind", "fecap", "--scheduler", "not a url",
              "--db", "{db}"], timeout_s=90),
        Case("run --operator 1000 chars (SQLite)", "db", [*run, "--operator", "o" * 1000],
             lambda d, e: write_yaml(d / "plan.yaml", quick_plan())),
        Case("run --resume 999", "db", [*run, "--resume", "999"],
             lambda d, e: write_yaml(d / "plan.yaml", quick_plan())),
        Case("run --resume -1", "db", [*run, "--resume", "-1"],
             lambda d, e: write_yaml(d / "plan.yaml", quick_plan())),
        Case("db export run 999", "db", ["db", "export", "999", "--out", "x.parquet", "--db",
             "{db}"]),
        Case("cards show 999", "db", ["cards", "show", "999", "--db", "{db}"]),
        Case("fit unknown wafer", "db", ["fit", "--wafer", "nope", "--db", "{db}"]),
    ]  # fmt: skip
    if env.pg_admin:
        C += [
            Case("PG db upgrade wrong password", "db",
                 ["db", "upgrade", "--db", "{pg_wrong}"], db="pg", secret="wrong-pw@x"),
            Case("PG db status wrong password", "db",
                 ["db", "status", "--db", "{pg_wrong}"], db="pg", secret="wrong-pw@x"),
            Case("PG run --operator 1000 chars", "db",
                 [*run[:4], "--db", "{pg}", "--no-progress", "--operator", "o" * 1000],
                 lambda d, e: write_yaml(d / "plan.yaml", quick_plan()), db="pg"),
            Case("PG run plan name 200 chars", "db",
                 ["run", "plan.yaml", "--station", "{station}", "--db", "{pg}", "--no-progress"],
                 lambda d, e: write_yaml(d / "plan.yaml", {**quick_plan(), "name": "n" * 200}),
                 db="pg"),
        ]  # fmt: skip

    # the smaller items: compliance reasons, secrets in output
    def compliance(d: Path, e: Env) -> dict[str, Any]:
        """Every SMU reading hits compliance: stored measurements must say so in their reason."""
        from instruments.sim.faults import FaultKind

        write_yaml(d / "plan.yaml", {**quick_plan("compliance"), "protocols": [
            {"protocol": "rram_iv", "params": {}}]})  # fmt: skip
        e.lab.faults.force("smu", FaultKind.COMPLIANCE, 10_000)
        try:
            res = cli(["run", "plan.yaml", "--station", str(e.station), "--db",
                       str(d / "lab.db"), "--no-progress"], d, 300)  # fmt: skip
        finally:
            e.lab.faults.clear()
        con = sqlite3.connect(d / "lab.db")
        rows = con.execute(
            "select m.status, m.error, m.scalars from measurement m join run r on r.id = m.run_id "
            "where r.plan like '%compliance%'"
        ).fetchall()
        con.close()
        said = [r for r in rows if r[1] and "compliance" in r[1].lower()]
        return {"code": res["code"], "stderr": res["stderr"], "ok": bool(rows) and len(said) == len(rows),
                "detail": f"{len(rows)} measurements, {len(said)} name compliance as reason"}  # fmt: skip

    C += [
        Case("compliance hits recorded as reason", "smaller", kind="custom", custom=compliance),
        Case(
            "two runs of one plan",
            "concurrency",
            kind="custom",
            custom=same_plan_twice,
            timeout_s=900,
        ),
        Case(
            "two processes on one station",
            "concurrency",
            kind="custom",
            custom=same_station_twice,
            timeout_s=900,
        ),
        Case(
            "killed holder taken over",
            "concurrency",
            kind="custom",
            custom=killed_holder,
            timeout_s=900,
        ),
    ]

    if env.pg_admin:
        C += [
            Case("two runs of one plan (PostgreSQL)", "concurrency", kind="custom",
                 custom=same_plan_twice, timeout_s=900, db="pg"),
            Case("killed holder taken over (PostgreSQL)", "concurrency", kind="custom",
                 custom=killed_holder, timeout_s=900, db="pg"),
        ]  # fmt: skip

    # controls: valid inputs must work (the harness itself is sane)
    C += [
        Case("control: run quick plan", "control", run,
             lambda d, e: write_yaml(d / "plan.yaml", quick_plan("control")), kind="control",
             timeout_s=300),
        Case("control: evaluate network", "control", ["evaluate", "--network", "net.pt"],
             _copy_network, kind="control", db="none"),
        Case("control: device fecap", "control", ["device", "simulate", "fecap", "--domains", "4"],
             kind="control", db="none"),
        Case("control: db status", "control", ["db", "status", "--db", "{db}"], kind="control"),
    ]  # fmt: skip
    return C


# -- running ------------------------------------------------------------------------------


_PG_SETUP = threading.Lock()


def _password_role(admin_url: str, db_url: str, role: str, password: str) -> None:
    """A login role with ``password`` owning ``db_url``'s database, checked by scram-sha-256
    (the throw-away server trusts everyone else, so a wrong password would be accepted)."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    with psycopg.connect(host=admin.host, port=admin.port, user=admin.username,
                         dbname=admin.database, autocommit=True) as conn:  # fmt: skip
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)))  # fmt: skip
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(make_url(db_url).database), sql.Identifier(role)))  # fmt: skip
        row = conn.execute("SHOW hba_file").fetchone()
        assert row is not None
        hba = Path(row[0])
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        conn.execute("SELECT pg_reload_conf()")
    for _ in range(100):  # the reload is asynchronous: wait until a password is needed
        try:
            psycopg.connect(host=admin.host, port=admin.port, user=role, dbname="postgres",
                            connect_timeout=2).close()  # fmt: skip
        except psycopg.OperationalError:
            return
        time.sleep(0.1)
    raise RuntimeError("pg_hba.conf reload did not take effect")


def run_case(case: Case, env: Env, root: Path) -> dict[str, Any]:
    d = Path(tempfile.mkdtemp(prefix="case-", dir=root))
    db_path = d / "lab.db"
    subst: dict[str, str] = {
        "station": str(env.station),
        "dir": str(d),
        "wafer": env.extra["wafer"],
    }
    pg_url = None
    if case.db == "sqlite":
        shutil.copy(env.template_db, db_path)
        subst["db"] = str(db_path)
    elif case.db == "pg":
        from sqlalchemy.engine import make_url

        from bruno_lab.store import open_store
        from bruno_lab.store.pgtemp import create_database

        assert env.pg_admin
        name = "c" + hashlib.md5(case.name.encode()).hexdigest()[:12]
        with _PG_SETUP:  # alembic's context is process-global: one migration at a time
            pg_url = create_database(env.pg_admin, name)
            st = open_store(pg_url, require_head=False)
            st.upgrade()
            st.close()
            if any("{pg_wrong}" in a for a in case.argv or []):
                _password_role(env.pg_admin, pg_url, f"pw_{name}", "r1ght-pw@tail7")
        subst["pg"] = pg_url
        subst["pg_wrong"] = (
            make_url(pg_url).set(username=f"pw_{name}", password="wr0ng-pw@tail9")
            .render_as_string(hide_password=False)
        )  # fmt: skip
    if case.setup is not None:
        case.setup(d, env)
    if case.custom is not None:
        if pg_url is not None:
            env.extra.setdefault("case_pg", {})[str(d)] = pg_url
        t0 = time.perf_counter()
        try:
            res = case.custom(d, env)
        except Exception as exc:  # a harness-level failure is a failed case, not a crash
            res = {"code": None, "stderr": f"{TRACEBACK}\nharness: {exc!r}", "ok": False,
                   "detail": repr(exc)}  # fmt: skip
        res["wall_s"] = time.perf_counter() - t0
        return {"name": case.name, "category": case.category, "kind": case.kind, **res,
                "traceback": TRACEBACK in res.get("stderr", ""), "written": False,
                "clean": bool(res.get("ok")) and TRACEBACK not in res.get("stderr", "")}  # fmt: skip

    before_files = listing(d)
    before_db = sqlite_counts(db_path) if case.db == "sqlite" else None
    before_pg = pg_counts(pg_url) if pg_url else None
    db_hash = hashlib.sha256(db_path.read_bytes()).hexdigest() if db_path.exists() else None
    argv = [
        a.format(**subst) if "{" in a and "}" in a and len(a) < 200 else a for a in case.argv or []
    ]
    res = cli(argv, d, case.timeout_s)
    if db_path.exists():
        os.chmod(db_path, 0o644)
    after_files = listing(d)
    after_db = sqlite_counts(db_path) if case.db == "sqlite" else None
    after_pg = pg_counts(pg_url) if pg_url else None
    changed = sorted(
        k for k in set(before_files) | set(after_files)
        if before_files.get(k) != after_files.get(k) and not k.startswith(".xdg")
    )  # fmt: skip
    if (d / ".xdg").exists() and any((d / ".xdg").rglob("*")):
        changed.append(".xdg (default database created)")
    written = bool(changed) or before_db != after_db or before_pg != after_pg
    if case.name == "run on unmigrated SQLite" and db_path.exists():
        written = written or hashlib.sha256(db_path.read_bytes()).hexdigest() != db_hash
        if hashlib.sha256(db_path.read_bytes()).hexdigest() != db_hash:
            changed.append("lab.db modified (WAL conversion)")
    marker_hit = case.marker and (d / "marker").exists()
    if marker_hit:
        changed.append("PAYLOAD RAN (marker created)")
    tb = TRACEBACK in res["stderr"]
    said_all = res["stderr"] + res["stdout"]
    leaked = bool(case.secret) and any(  # the password, or a piece of it split off at an '@'
        part in said_all for part in [case.secret, *case.secret.split("@")] if len(part) >= 4
    )
    if case.kind == "control":
        clean = res["code"] == 0 and not tb
    else:
        said = case.expect_text is None or case.expect_text in res["stderr"]
        clean = (
            res["code"] == case.expect_code
            and said
            and not tb
            and not written
            and not marker_hit
            and not leaked
        )
    last = [ln for ln in res["stderr"].strip().splitlines() if ln.strip()][-1:] or [""]
    return {
        "name": case.name,
        "category": case.category,
        "kind": case.kind,
        "code": res["code"],
        "traceback": tb,
        "written": written,
        "changed": changed[:6],
        "code_ran": marker_hit,
        "secret_leaked": leaked,
        "clean": clean,
        "expect": case.expect_code,
        "wall_s": round(res["wall_s"], 2),
        "detail": last[0][:300],
    }


def make_env(root: Path, pg: bool) -> tuple[Env, list[Any]]:
    """Start the sim lab, migrate a template database with one small run, save a network."""
    from loop_helpers import loop_truth, rram_card_dict, save_tiny_network

    from bruno_lab.store import open_store
    from instruments.sim.lab import SimLab

    truth = loop_truth(n_rram=16)
    lab = SimLab.start(truth=truth, seed=5)
    station = lab.write_station(root / "station.yaml")
    template = root / "template.db"
    store = open_store(f"sqlite:///{template}", require_head=False)
    store.upgrade()
    store.close()
    write_yaml(root / "seed_plan.yaml", {**quick_plan("seed"), "protocols": [
        {"protocol": "pund", "params": {"amplitude_v": "3 V"}, "kinds": ["fecap"]},
        {"protocol": "rram_forming", "params": {"max_v": "3.5 V", "step_v": "100 mV"}}]})  # fmt: skip
    res = cli(["run", "seed_plan.yaml", "--station", str(station), "--db", str(template),
               "--no-progress"], root, 300)  # fmt: skip
    if res["code"] != 0:
        raise SystemExit(f"could not seed the template database: {res['stderr'][-2000:]}")
    store = open_store(f"sqlite:///{template}")
    store.add_model_card(rram_card_dict(), [], "adversarial-harness")
    store.close()
    con = sqlite3.connect(template)
    con.execute("pragma wal_checkpoint(TRUNCATE)")
    con.close()
    network = save_tiny_network(root / "net.pt")
    cleanup: list[Any] = [lab.stop]
    pg_admin = None
    if pg:
        from bruno_lab.store.pgtemp import find_pg_bin, temporary_postgres

        if find_pg_bin() is not None:
            ctx = temporary_postgres()
            pg_admin = ctx.__enter__()
            cleanup.append(lambda: ctx.__exit__(None, None, None))
    wafer_name = yaml.safe_load(station.read_text())["wafer"]["name"]
    env = Env(
        station=station,
        station_doc=yaml.safe_load(station.read_text()),
        truth_doc=truth,
        template_db=template,
        network=network,
        card=rram_card_dict(),
        pg_admin=pg_admin,
        lab=lab,
        extra={"wafer": wafer_name},
    )
    return env, cleanup


#: The issue's own figures (165 malformed inputs tried by hand before the fixes); "-": not given.
BEFORE = {
    "inputs tried (bad input)": "165",
    "tracebacks": "16",
    "wrong exit code (0, 1, other, hang)": "32",
    "wrote something": "18",
    "ran code from a file": "4",
    "leaked a password": "1",
}


def table(results: list[dict[str, Any]]) -> str:
    bad = [r for r in results if r["kind"] == "bad"]
    rows = [
        ("inputs tried (bad input)", len(bad)),
        ("exit-2 clean", sum(r["clean"] for r in bad)),
        ("tracebacks", sum(r["traceback"] for r in bad)),
        (
            "wrong exit code (0, 1, other, hang)",
            sum(r["code"] != r.get("expect", 2) and not r.get("harness_error") for r in bad),
        ),
        ("wrote something", sum(r["written"] for r in bad)),
        ("ran code from a file", sum(r.get("code_ran", False) for r in bad)),
        ("leaked a password", sum(r.get("secret_leaked", False) for r in bad)),
        ("hung (timeout)", sum(r["code"] is None and not r.get("harness_error") for r in bad)),
        ("harness errors (case not run)", sum(bool(r.get("harness_error")) for r in results)),
    ]
    custom = [r for r in results if r["kind"] == "custom"]
    control = [r for r in results if r["kind"] == "control"]
    rows += [
        (
            "concurrency/kill/other checks passed",
            f"{sum(r['clean'] for r in custom)}/{len(custom)}",
        ),
        ("controls (valid input exits 0)", f"{sum(r['clean'] for r in control)}/{len(control)}"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{'':<{width}}  {'before':>7}  after", f"{'':<{width}}  {'(issue)':>7}  (this run)"]
    lines += [f"{k:<{width}}  {BEFORE.get(k, '-'):>7}  {v}" for k, v in rows]
    cats: dict[str, list[int]] = {}
    for r in bad:
        c = cats.setdefault(r["category"], [0, 0])
        c[0] += 1
        c[1] += r["clean"]
    lines.append(
        "per category (clean/tried): " + ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in cats.items())
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="Write every case's result here.")
    parser.add_argument("--only", default=None, help="Run the cases whose name has this text.")
    parser.add_argument("--category", default=None, help="Run one category (code, yaml, db, ...).")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-pg", action="store_true", help="Skip the PostgreSQL cases.")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bruno-adversarial-"))
    env, cleanup = make_env(root, pg=not args.no_pg)
    try:
        cases = build_cases(env)
        if args.only:
            cases = [c for c in cases if args.only in c.name]
        if args.category:
            cases = [c for c in cases if c.category == args.category]
        serial = [c for c in cases if c.kind == "custom"]
        parallel = [c for c in cases if c.kind != "custom"]
        results: list[dict[str, Any]] = []
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(run_case, c, env, root): c for c in parallel}
            for fut in concurrent.futures.as_completed(futures):
                try:
                    r = fut.result()
                except Exception as exc:  # a harness failure is a failed case, not the end
                    c = futures[fut]
                    r = {"name": c.name, "category": c.category, "kind": c.kind, "code": None,
                         "traceback": False, "written": False, "clean": False, "wall_s": 0.0,
                         "expect": c.expect_code, "harness_error": True,
                         "detail": f"HARNESS ERROR {exc!r}"[:300]}  # fmt: skip
                results.append(r)
                flag = "ok " if r["clean"] else "BAD"
                print(f"{flag} [{r['category']}] {r['name']}: exit {r['code']}"
                      f"{' traceback' if r['traceback'] else ''}"
                      f"{' wrote ' + ','.join(r.get('changed', [])) if r['written'] else ''}"
                      f" ({r['wall_s']} s) {r['detail'][:160]}", file=sys.stderr, flush=True)  # fmt: skip
        for c in serial:
            r = run_case(c, env, root)
            results.append(r)
            print(f"{'ok ' if r['clean'] else 'BAD'} [{r['category']}] {r['name']}: "
                  f"{r.get('detail', '')}", file=sys.stderr, flush=True)  # fmt: skip
        results.sort(key=lambda r: (r["category"], r["name"]))
        print(table(results))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))
    finally:
        for fn in reversed(cleanup):
            fn()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
