"""Database URL resolution, schema refusal, password masking and the `bruno-lab db` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from store_helpers import measurement_kwargs, migrated_store
from typer.testing import CliRunner

from bruno_lab.cli import app
from bruno_lab.config import ENV_VAR, default_db_path, mask_url, resolve_db_url
from bruno_lab.errors import BadInputError, SchemaError
from bruno_lab.store import open_store, open_store_for_cli
from bruno_lab.store.pgtemp import free_port

BRUNO = str(Path(sys.executable).with_name("bruno-lab"))


def test_url_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_db_url(None) == f"sqlite:///{tmp_path}/xdg/bruno-lab/lab.db"
    assert (tmp_path / "xdg" / "bruno-lab").is_dir()
    monkeypatch.setenv(ENV_VAR, "postgresql+psycopg://u@h/db")
    assert resolve_db_url(None) == "postgresql+psycopg://u@h/db"
    assert resolve_db_url("sqlite:////x/y.db") == "sqlite:////x/y.db"
    assert resolve_db_url(str(tmp_path / "a.db")) == f"sqlite:///{tmp_path}/a.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_db_path() == Path.home() / ".local/share/bruno-lab/lab.db"


def test_mask_url_hides_passwords() -> None:
    assert mask_url("postgresql+psycopg://bob:s3cret@db:5432/lab") == (
        "postgresql+psycopg://bob:***@db:5432/lab"
    )
    assert "s3cret" not in mask_url("garbage://bob:s3cret@@@")


def test_unmigrated_database_is_refused_with_the_command_to_run(db_url: str) -> None:
    with pytest.raises(SchemaError, match="bruno-lab db upgrade --db"):
        open_store(db_url)
    with pytest.raises(SchemaError):
        open_store_for_cli(db_url)
    migrated_store(db_url).close()
    open_store_for_cli(db_url).close()


@pytest.mark.postgres
def test_password_never_in_schema_error(postgres_url: str) -> None:
    # the test server trusts every login, so any password connects and reaches the check
    with_pw = postgres_url.replace("postgres@", "postgres:Sup3rSecret@")
    with pytest.raises(SchemaError) as err:
        open_store(with_pw)
    assert "Sup3rSecret" not in str(err.value) and "***" in str(err.value)


def test_unreachable_database_names_it_without_password() -> None:
    url = f"postgresql+psycopg://bob:Sup3rSecret@127.0.0.1:{free_port()}/lab"
    with pytest.raises(BadInputError, match="cannot open database") as err:
        open_store(url)
    assert "Sup3rSecret" not in str(err.value)


def test_cli_upgrade_and_status_json(db_url: str) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["db", "upgrade", "--db", db_url, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["from"] is None and doc["to"] == doc["head"] and doc["at_head"]
    res = runner.invoke(app, ["db", "status", "--db", db_url, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["at_head"] is True


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    """Run the console entry point in-process; return (exit code, stdout, stderr)."""
    from bruno_lab.cli import main

    monkeypatch.setattr(sys, "argv", ["bruno-lab", *args])
    with pytest.raises(SystemExit) as exited:
        main()
        raise SystemExit(0)
    out = capsys.readouterr()
    return exited.value.code, out.out, out.err


def test_cli_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    monkeypatch.setenv(ENV_VAR, url)
    code, out, _ = _main(monkeypatch, capsys, "db", "status", "--json")
    assert code == 1 and json.loads(out)["at_head"] is False
    parquet = str(tmp_path / "r.parquet")
    code, _, err = _main(monkeypatch, capsys, "db", "export", "1", "--out", parquet)
    assert code == 2 and "bruno-lab db upgrade" in err
    assert _main(monkeypatch, capsys, "db", "upgrade")[0] == 0
    code, _, err = _main(monkeypatch, capsys, "db", "export", "1", "--out", parquet, "--db", url)
    assert code == 2 and "run 1 does not exist" in err
    code, _, err = _main(monkeypatch, capsys, "db", "status", "--db", "nonsense://x:Zq9secret@@")
    assert code == 2 and "Zq9secret" not in err


def test_console_script_status(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    res = subprocess.run(
        [BRUNO, "db", "status", "--json", "--db", url], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 1, res.stderr
    assert json.loads(res.stdout)["current"] is None


def test_cli_export_writes_parquet(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    store = migrated_store(url)
    dev = store.ensure_device(store.ensure_die(store.ensure_wafer("W"), 0, 0, "D"), "s", "rram", {})
    run = store.create_run({}, "ada", {}, "0.1.0")
    store.add_measurement(**measurement_kwargs(run, dev, arrays={"g_siemens": (np.ones(3), "S")}))
    store.close()
    out = tmp_path / "run.parquet"
    res = CliRunner().invoke(
        app, ["db", "export", str(run), "--out", str(out), "--db", url, "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"run_id": run, "path": str(out), "n_measurements": 1}


def test_database_from_a_newer_bruno_lab_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    store = migrated_store(url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'fffffffff999'")
    store.close()
    with pytest.raises(SchemaError, match="newer bruno-lab"):
        open_store(url)
    with pytest.raises(SchemaError, match="upgrade bruno-lab, not the database"):
        open_store(url, require_head=False).upgrade()


def test_status_and_commands_on_a_missing_sqlite_file_create_nothing(tmp_path):
    path = tmp_path / "typo.db"
    with pytest.raises(SchemaError, match="does not exist"):
        open_store(str(path))
    result = subprocess.run(
        [sys.executable, "-m", "bruno_lab.cli_entry", "db", "status", "--db", str(path), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)["exists"] is False
    assert not path.exists()
