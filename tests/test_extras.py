"""The lean install: optional parts behind pip extras, each missing extra named where it is used.

Each feature runs with its optional module hidden (``sys.modules[name] = None`` makes any import
of it fail as if it were not installed) and must say which extra to install.
"""

from __future__ import annotations

import re
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from bruno_lab.errors import MissingExtraError
from bruno_lab.extras import EXTRAS, install_hint

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _dist(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower()


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` (and their submodules) unimportable for the rest of the test."""
    for name in list(sys.modules):
        if any(name == m or name.startswith(m + ".") for m in modules):
            monkeypatch.delitem(sys.modules, name)
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)


def test_pyproject_extras_are_the_code_extras() -> None:
    extras = PYPROJECT["optional-dependencies"]
    assert set(extras) - {"dev", "all"} == set(EXTRAS)
    all_names = re.search(r"\[(.*)\]", extras["all"][0]).group(1).split(",")
    assert _dist(extras["all"][0]) == "bruno-lab" and set(all_names) == set(EXTRAS)


def test_base_dependencies_leave_the_optional_parts_out() -> None:
    base = {_dist(r) for r in PYPROJECT["dependencies"]}
    optional = {_dist(r) for name in EXTRAS for r in PYPROJECT["optional-dependencies"][name]}
    assert not base & optional
    assert "numba" not in base | optional  # only a benchmark path uses it, and says so
    assert {"torch", "sqlalchemy", "pyvisa", "typer"} <= base


def _expect(extra: str) -> str:
    return re.escape(install_hint(extra))


def _store_with_a_run(tmp_path: Path):
    from bruno_lab.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'lab.db'}", require_head=False)
    store.upgrade()
    wid = store.ensure_wafer("W-x")
    dev = store.ensure_device(store.ensure_die(wid, 0, 0, "0,0"), "0", "fecap", {"area_m2": 1e-10})
    run_id = store.create_run({"plan": "x"}, "test", {}, "0")
    now = datetime.now(UTC)
    store.add_measurement(
        run_id=run_id, device_id=dev, protocol="pund", parameters={}, instruments={},
        started_at=now, finished_at=now, status="ok", error=None, scalars={},
        arrays={"current_a": (np.zeros(4), "A")},
    )  # fmt: skip
    return store, run_id


def test_parquet_export_names_its_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bruno_lab.store.queries import export_run_parquet

    store, run_id = _store_with_a_run(tmp_path)
    hide(monkeypatch, "pyarrow")
    with pytest.raises(MissingExtraError, match=_expect("parquet")) as exc:
        export_run_parquet(store, run_id, tmp_path / "run.parquet")
    store.close()
    assert "Parquet export needs pyarrow" in str(exc.value)
    assert isinstance(exc.value, ImportError) and not (tmp_path / "run.parquet").exists()


def test_cli_reports_the_missing_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bruno_lab.cli import main

    store, run_id = _store_with_a_run(tmp_path)
    store.close()
    hide(monkeypatch, "pyarrow")
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    argv = ["bruno-lab", "db", "export", str(run_id), "--out", str(tmp_path / "r.pq"), "--db", url]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 1
    assert install_hint("parquet") in capsys.readouterr().err


def test_postgres_url_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from bruno_lab.store.engine import make_engine

    hide(monkeypatch, "psycopg")
    with pytest.raises(MissingExtraError, match=_expect("postgres")) as exc:
        make_engine("postgresql://lab:secret@127.0.0.1:5432/lab")
    assert "secret" not in str(exc.value)  # the URL is named masked


def test_dask_scheduler_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from calibration.runner import FitTask, run_tasks

    z = np.zeros((1, 2))
    task = FitTask("fecap-pv", {}, {}, z, np.zeros((1, 1)), np.ones_like(z), z > -1)
    hide(monkeypatch, "distributed", "dask")
    with pytest.raises(MissingExtraError, match=_expect("dask")):
        run_tasks([task], scheduler="tcp://127.0.0.1:8786")


def test_chorales_name_their_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from bruno_lab.train.data.chorales import corpus_paths

    hide(monkeypatch, "music21")
    with pytest.raises(MissingExtraError, match=_expect("music")):
        corpus_paths()


def test_nir_export_names_its_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bruno_lab.train.network import NetworkConfig, SpikingNetwork
    from bruno_lab.train.nir_export import write_nir

    net = SpikingNetwork(NetworkConfig(kind="classify", n_in=3, n_hidden=4, n_out=2, seed=1))
    hide(monkeypatch, "nir")
    with pytest.raises(MissingExtraError, match=_expect("nir")):
        write_nir(net, tmp_path / "net.nir")
    assert not (tmp_path / "net.nir").exists()


def test_device_plot_names_its_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from bruno_lab.cli import app

    hide(monkeypatch, "matplotlib")
    args = ["device", "simulate", "felif", "--duration", "2 ms", "--n-micro", "10"]
    res = CliRunner().invoke(app, [*args, "--plot", str(tmp_path / "f.png")])
    assert isinstance(res.exception, MissingExtraError), res.output
    assert install_hint("plot") in str(res.exception)


def test_an_installed_extra_imports_quietly() -> None:
    from bruno_lab.extras import require_extra

    for name in EXTRAS:
        require_extra(name)  # the test environment has [all]


def test_demo_names_its_extra_before_any_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the report extra the demo stops at once (it used to run every stage first)."""
    from typer.testing import CliRunner

    from bruno_lab.cli import app

    hide(monkeypatch, "jinja2")
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert isinstance(res.exception, MissingExtraError), res.output
    assert install_hint("report") in str(res.exception)
    assert not (out / "lab.db").exists()
