"""Property-based fuzzing of every file loader and every command's options (hypothesis).

Loaders get generated documents (random bytes, and YAML/JSON built from the schema's own keys
with hostile values: booleans, inf/nan, huge and negative numbers, long strings, aliases, deep
nesting, duplicate keys): each either loads or raises ``BadInputError``, never anything else,
within a time and memory bound. Commands get argument lists with at least one bad value: each
exits 2 with a one-line ``error:``/usage message, no traceback, and writes nothing (the folder
listing and the database's row counts are unchanged). In-process (``bruno_lab.cli.main``) with
a bounded number of examples, so the whole module runs in a couple of minutes.
"""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bruno_lab.errors import BadInputError

MAX_S = 10.0  # per example
MAX_BYTES = 256 * 2**20  # Python allocations per example (tracemalloc peak)
FUZZ = settings(
    max_examples=int(os.environ.get("BRUNO_LAB_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

# -- generated documents ------------------------------------------------------------------

HOSTILE = st.one_of(
    st.booleans(),
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, -1e308, 0, -1, 1e-320]),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["inf s", "nan V", "1e400 V", "3 A", "-1 s", "", "lots", "1 fs", "\x00"]),
    st.text(max_size=40),
    st.just("x" * 5000),
    st.none(),
)

PLAN_KEYS = ["version", "name", "wafer", "dies", "sites", "protocols", "stop", "wafer_map",
             "protocol", "params", "kinds", "amplitude_v", "width_s", "rise_s", "delay_s",
             "max_v", "step_v", "samples_per_rise", "frequencies_hz", "max_failed",
             "max_duration_s", "pattern", "fecap", "rram", "felif"]  # fmt: skip
STATION_KEYS = ["station", "instruments", "wiring", "envelope", "wafer", "smu", "awg",
                "prober", "clock", "scope", "model", "resource", "timeout_s",
                "tia_gain_v_per_a", "felif_input_transconductance_a_per_v", "dies", "sites",
                "kind", "area_m2", "max_voltage_v", "default", "kinds"]  # fmt: skip
TRUTH_KEYS = ["name", "wafer", "sites", "populations", "defects", "diameter_mm",
              "edge_exclusion_mm", "die_width_um", "die_height_um", "kind", "area_m2",
              "params", "n_domains", "mean", "sigma_rel", "family", "short_rate", "fecap",
              "rram", "felif"]  # fmt: skip
FAULT_KEYS = ["seed", "slow_delay_s", "rates", "roles", "drop", "slow", "compliance", "short"]
CARD_KEYS = ["device_kind", "scope", "scope_id", "model_name", "model_version", "n_devices",
             "parameters", "rram", "levels", "mean", "std", "unit", "family"]  # fmt: skip


def documents(keys: list[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        HOSTILE,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.sampled_from(keys), inner, max_size=6),
        ),
        max_leaves=25,
    )


def yaml_texts(keys: list[str]) -> st.SearchStrategy[str]:
    """YAML of a generated document, sometimes with YAML-only hazards spliced in."""
    hazards = st.sampled_from([
        "", "a: &x [1, 2]\nb: *x\n", "name: a\nname: b\n", "[" * 300 + "]" * 300 + "\n",
        "x: !!python/object/apply:os.system ['true']\n",
        "".join(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9 if i else ["x"] * 9) + "]\n"
                for i in range(9)),
        "\t- bad indent\n", "key: 'unterminated\n",
    ])  # fmt: skip

    def dump(doc: Any) -> str:
        try:
            return yaml.safe_dump(doc, allow_unicode=True)
        except (yaml.YAMLError, ValueError):
            return "{}\n"

    return st.tuples(documents(keys).map(dump), hazards).map(lambda t: t[1] + t[0])


FILE_BYTES = st.one_of(st.binary(max_size=512), st.text(max_size=200).map(str.encode))


@contextlib.contextmanager
def bounded() -> Any:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        elapsed = time.perf_counter() - t0
    assert elapsed < MAX_S, f"took {elapsed:.1f} s"
    assert peak < MAX_BYTES, f"allocated {peak / 2**20:.0f} MiB"


def _expect_loaded_or_bad_input(load: Any, path: Path) -> None:
    with bounded():
        try:
            load(path)
        except BadInputError as exc:
            assert str(exc).strip(), "an empty error message"


def _loaders() -> dict[str, tuple[Any, list[str], str]]:
    from bruno_lab.cards import load_card_file
    from instruments.envelope import Envelope
    from instruments.sim.faults import FaultConfig
    from instruments.sim.wafer import Truth
    from instruments.station import load_station
    from protocols.plan import load_plan

    return {
        "plan": (load_plan, PLAN_KEYS, "plan.yaml"),
        "station-file": (load_station, STATION_KEYS, "station.yaml"),
        "truth": (Truth.load, TRUTH_KEYS, "truth.yaml"),
        "faults": (FaultConfig.from_file, FAULT_KEYS, "faults.yaml"),
        "card": (load_card_file, CARD_KEYS, "card.yaml"),
        "envelope": (Envelope.from_file, STATION_KEYS, "envelope.yaml"),
    }


@pytest.fixture(scope="module", autouse=True)
def _warm_imports() -> None:
    """Import what the commands import before measuring (first imports under tracemalloc take
    seconds; that is start-up, not the input's cost)."""
    import torch  # noqa: F401

    import bruno_lab.devices.scenarios
    import bruno_lab.train.io
    import bruno_lab.train.tasks  # noqa: F401
    import instruments.sim.lab
    import instruments.sim.wafer  # noqa: F401
    import protocols.prepare  # noqa: F401
    import reporting.build  # noqa: F401
    from bruno_lab.units import parse_quantity
    from instruments.station import load_driver_modules

    parse_quantity("1 V", "V")
    load_driver_modules()


# ("station-file", not "station": that keyword marks the tests that need a real bench)
@pytest.mark.parametrize("kind", ["plan", "station-file", "truth", "faults", "card", "envelope"])
@FUZZ
@given(data=st.data())
def test_yaml_loaders_load_or_refuse(kind: str, data: st.DataObject, tmp_path: Path) -> None:
    load, keys, name = _loaders()[kind]
    path = tmp_path / name
    if data.draw(st.booleans()):
        path.write_text(data.draw(yaml_texts(keys)), encoding="utf-8")
    else:
        path.write_bytes(data.draw(FILE_BYTES))
    _expect_loaded_or_bad_input(load, path)


@FUZZ
@given(doc=documents(CARD_KEYS), raw=st.booleans())
def test_json_card_loader(doc: Any, raw: bool, tmp_path: Path) -> None:
    import json

    from bruno_lab.cards import load_card_file

    path = tmp_path / "card.json"
    text = json.dumps(doc) if not raw else json.dumps(doc)[:-1] + ', "scope": 1}'
    path.write_text(text)
    _expect_loaded_or_bad_input(load_card_file, path)


@pytest.mark.parametrize("kind", ["network", "checkpoint", "map", "braille"])
@FUZZ
@given(blob=FILE_BYTES, prefix=st.sampled_from([b"", b"PK\x03\x04", b"\x80\x04", b"\x10\x00" * 4]))
def test_binary_loaders_refuse_garbage(kind: str, blob: bytes, prefix: bytes, tmp_path) -> None:
    from bruno_lab.train.data.braille import load_braille
    from bruno_lab.train.io import load_checkpoint, load_network, read_programming_map

    load = {"network": load_network, "checkpoint": load_checkpoint,
            "map": read_programming_map, "braille": load_braille}[kind]  # fmt: skip
    path = tmp_path / "file.bin"
    path.write_bytes(prefix + blob)
    with bounded(), pytest.raises(BadInputError):
        load(path)


# -- command options ----------------------------------------------------------------------

# option -> values that are always wrong for it
BAD: dict[str, list[str]] = {
    "--epochs": ["-1", "1000000000", "x", "1.5"],
    "--hidden": ["0", "100000000", "-3", "nan"],
    "--lr": ["nan", "inf", "-1", "0", "x"],
    "--batch-size": ["0", "1000000000"],
    "--n-micro": ["0", "100000000", "1e3"],
    "--input-scale-a": ["inf", "nan", "-1", "0"],
    "--relax-time-s": ["inf", "-1", "nan"],
    "--threads": ["0", "1000000"],
    "--task": ["bogus", ""],
    "--neuron": ["izhikevich"],
    "--domains": ["0", "100000000"],
    "--duration": ["inf", "nan s", "1e6 s", "-1 s", "3 V", ""],
    "--dt": ["1 fs", "0", "x"],
    "--step": ["1 pV", "0 V", "-1 V"],
    "--cycles": ["0", "10000000"],
    "--rate-v-s": ["nan", "0", "inf"],
    "--amplitude": ["1e9 V", "inf V", "0 V", "3 A"],
    "--frequency": ["0 Hz", "-1 Hz", "nan"],
    "--passes": ["0", "1000000000"],
    "--wait-s": ["inf", "-1", "nan"],
    "--chunk-size": ["0", "1000000000000"],
    "--n-domains": ["0", "100000000"],
    "--resume": ["-1", "999", "x"],
    "--operator": ["o" * 1000],
    "--db": ["postgresql+psycopg://::::", "oracle+x://a/b", "outdir", ""],
    "--out": ["outdir", "f.txt"],
    "--format": ["xml"],
    "--kind": ["laser"],
}
GOOD: dict[str, list[str]] = {
    "--epochs": ["1"], "--hidden": ["2"], "--lr": ["0.01"], "--batch-size": ["8"],
    "--n-micro": ["10"], "--input-scale-a": ["1e-8"], "--threads": ["1"], "--seed": ["3"],
    "--domains": ["2"], "--duration": ["2 ms"], "--dt": ["1 ms"], "--cycles": ["1"],
    "--amplitude": ["3 V"], "--passes": ["1"], "--wait-s": ["0"], "--chunk-size": ["16"],
}  # fmt: skip
COMMANDS: dict[str, tuple[list[str], list[str]]] = {
    # command -> (fixed arguments, options it takes)
    "train": (["train", "--task", "patterns", "--max-batches", "1"],
              ["--epochs", "--hidden", "--lr", "--batch-size", "--n-micro", "--input-scale-a",
               "--relax-time-s", "--threads", "--task", "--neuron", "--seed"]),
    "device felif": (["device", "simulate", "felif"], ["--n-micro", "--duration", "--dt"]),
    "device fecap": (["device", "simulate", "fecap"], ["--domains", "--amplitude", "--frequency"]),
    "device rram": (["device", "simulate", "rram"], ["--step", "--cycles", "--rate-v-s"]),
    "evaluate": (["evaluate", "--network", "net.pt"], ["--passes", "--wait-s"]),
    "fit": (["fit", "--wafer", "W1"], ["--chunk-size", "--n-domains", "--kind", "--db"]),
    "run": (["run", "plan.yaml", "--station", "station.yaml"], ["--resume", "--operator", "--db"]),
    "cards export": (["cards", "export", "1"], ["--out", "--format", "--db"]),
    "cards list": (["cards", "list"], ["--kind", "--db"]),
    "db status": (["db", "status"], ["--db"]),
    "db export": (["db", "export", "1"], ["--out", "--db"]),
    "db upgrade": (["db", "upgrade"], ["--db"]),
    "cards show": (["cards", "show"], ["--kind", "--db"]),
    "deploy": (["deploy", "--network", "net.pt", "--station", "station.yaml"],
               ["--die", "--target", "--db"]),
    "report": (["report", "--wafer", "W1"], ["--out", "--run", "--purpose", "--training",
                                             "--deployment", "--evaluation", "--db"]),
    "sim serve": (["sim", "serve", "--station-out", "st.yaml"],
                  ["--station-out", "--truth", "--faults"]),
    "demo": (["demo", "--quick"], ["--out", "--threads"]),
    "watch": (["watch"], ["--port", "--poll-s", "--host"]),
}  # fmt: skip
COMMANDS_NEED_DB = {"fit", "run", "cards export", "cards list", "cards show", "db status",
                    "db export", "deploy", "report", "watch"}  # fmt: skip
# values that are wrong for one command only (``outdir`` is a fine --out for the demo)
BAD_FOR: dict[str, dict[str, list[str]]] = {
    "demo": {"--out": ["f.txt"], "--threads": ["0", "1000000"]},
    "report": {"--out": ["f.txt", "d.html"], "--run": ["x", "1.5"], "--purpose": ["bogus"],
               "--training": ["missing.json", "outdir"], "--deployment": ["missing.json"],
               "--evaluation": ["missing.json"]},
    "sim serve": {"--station-out": ["outdir", "f.txt", "st.json"],
                  "--truth": ["missing.yaml", "outdir", "f.txt"],
                  "--faults": ["missing.yaml", "outdir"]},
    "deploy": {"--die": ["", "x" * 300], "--target": ["bogus"]},
    "watch": {"--port": ["-1", "70000"], "--poll-s": ["0", "nan", "1000"],
              "--host": ["0.0.0.0", "example.com"]},
}  # fmt: skip


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bruno_lab.store import open_store

    path = tmp_path_factory.mktemp("db") / "lab.db"
    store = open_store(f"sqlite:///{path}", require_head=False)
    store.upgrade()
    store.close()
    return path


def _listing(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if rel.endswith(("-wal", "-shm")) or rel == "lab.db":
            continue
        out[rel] = None if p.is_dir() else p.read_bytes()
    return out


def _counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        return {n: con.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}
    finally:
        con.close()


def _invoke(argv: list[str]) -> tuple[int, str]:
    """``bruno-lab argv`` in this process: (exit code, stderr); any other exception fails."""
    from bruno_lab import cli

    err = io.StringIO()
    old_argv = sys.argv
    sys.argv = ["bruno-lab", *argv]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                cli.main()
            except SystemExit as exc:
                return int(exc.code or 0), err.getvalue()
    finally:
        sys.argv = old_argv
    return 0, err.getvalue()


@st.composite
def bad_invocations(draw: st.DrawFn) -> tuple[str, list[str]]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    fixed, options = COMMANDS[name]
    bad = {**BAD, **BAD_FOR.get(name, {})}
    bad_options = [o for o in options if o in bad]
    chosen_bad = draw(st.sampled_from(bad_options))
    argv = [*fixed, chosen_bad, draw(st.sampled_from(bad[chosen_bad]))]
    for opt in draw(st.lists(st.sampled_from(options), max_size=3, unique=True)):
        if opt == chosen_bad:
            continue
        pool = GOOD.get(opt, []) + bad.get(opt, [])
        if pool:
            argv += [opt, draw(st.sampled_from(pool))]
    return name, argv


@FUZZ
@given(case=bad_invocations())
def test_bad_options_exit_2_and_write_nothing(case, tmp_path: Path, template_db, monkeypatch):
    import shutil

    import yaml as _yaml

    name, argv = case
    work = tmp_path / f"w{time.perf_counter_ns()}"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_DATA_HOME", str(work / "xdg"))
    monkeypatch.delenv("BRUNO_LAB_DB", raising=False)
    (work / "outdir").mkdir()
    (work / "d.html").mkdir()
    (work / "f.txt").write_text("x")
    (work / "plan.yaml").write_text("name: p\nprotocols: []\n")
    (work / "station.yaml").write_text(_yaml.safe_dump({"instruments": {}}))
    db = work / "lab.db"
    shutil.copy(template_db, db)
    if name in COMMANDS_NEED_DB and "--db" not in argv:
        argv = [*argv, "--db", str(db)]
    before, counts = _listing(work), _counts(db)
    with bounded():
        code, err = _invoke(argv)
    assert code == 2, (argv, code, err[-500:])
    assert "Traceback" not in err
    assert err.strip(), "no message"
    assert _listing(work) == before, argv
    assert _counts(db) == counts
