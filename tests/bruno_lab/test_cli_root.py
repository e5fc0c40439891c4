"""The root CLI maps outcomes to exit codes: 0 ok, 1 job failed, 2 bad input."""

import subprocess
import sys

import typer

from bruno_lab import cli
from bruno_lab.errors import BadInputError, BrunoLabError


def _run_main(monkeypatch, argv, command):
    app = typer.Typer()
    app.command(argv[0])(command)
    app.command("other")(lambda: None)
    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr(sys, "argv", ["bruno-lab", *argv])
    try:
        cli.main()
    except SystemExit as exc:
        return exc.code
    raise AssertionError("main() must always exit with a code")


def _job_failed() -> None:
    raise typer.Exit(code=1)


def _bad_input() -> None:
    raise BadInputError("plan.yaml: field dies: expected a list")


def _failed() -> None:
    raise BrunoLabError("instrument lost")


def test_typer_exit_code_is_kept(monkeypatch):
    assert _run_main(monkeypatch, ["job-failed"], _job_failed) == 1


def test_bad_input_exits_2_with_message(monkeypatch, capsys):
    assert _run_main(monkeypatch, ["bad-input"], _bad_input) == 2
    assert "plan.yaml: field dies" in capsys.readouterr().err


def test_job_error_exits_1(monkeypatch):
    assert _run_main(monkeypatch, ["failed"], _failed) == 1


def test_usage_error_exits_2(monkeypatch):
    assert _run_main(monkeypatch, ["failed", "--no-such-option"], _failed) == 2


def test_console_script_help_and_version():
    out = subprocess.run(
        [sys.executable, "-m", "bruno_lab.cli_entry", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == __import__("bruno_lab").__version__
