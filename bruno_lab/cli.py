"""The one ``bruno-lab`` command. Thin: every sub-command lives in ``bruno_lab.commands.*``.

Conventions for every command: ``--json`` prints one JSON document on stdout; human output and
progress go to stderr; exit 0 on success, 1 when the job failed, 2 on bad input (the message
names the file, field and allowed values). Library code raises ``BrunoLabError``; this module
is the only place that maps errors to exit codes.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import typer

from bruno_lab import __version__
from bruno_lab.errors import BrunoLabError


def _posix_usage() -> None:
    """Usage lines in the POSIX/click convention (``run [OPTIONS] PLAN``): typer 0.29 writes a
    required argument as ``{PLAN}``, which reads as a literal brace or a set of choices."""
    from typer.core import TyperArgument

    braced = TyperArgument._usage_display_name

    def usage_name(self: TyperArgument) -> str:
        if not self.required:
            return braced(self)
        return self.display_name_raw + ("..." if self.nargs != 1 else "")

    TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]


_posix_usage()

app = typer.Typer(
    name="bruno-lab",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow; single newlines do not break
    help="From a wafer of FeCap and RRAM devices to a trained spiking network and back.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG to stderr."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )


def emit_json(document: Any) -> None:
    """Print the one machine-readable document of a ``--json`` run on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _register() -> None:
    # Each sub-command module exposes `register(app)`; one line per module.
    from bruno_lab.commands import registry

    for register in registry.all_registrars():
        register(app)


_register()


def main() -> None:
    """Console entry point: run the app, mapping bruno-lab errors to exit codes."""
    try:
        # standalone_mode=False returns (not raises) the code of `raise typer.Exit(code=N)`.
        code = app(standalone_mode=False)
    except BrunoLabError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        # Usage errors from typer's (vendored) click: duck-typed, as typer no longer re-exports
        # the upstream click classes. Usage errors exit 2, others with their own code.
        show, exit_code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            sys.exit(exit_code)
        if type(exc).__module__.startswith("sqlalchemy"):
            # a database failure mid-job (the user's errors are mapped to exit 2 by the store)
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""]
            typer.echo(f"error: database: {type(exc).__name__}: {reason[0]}", err=True)
            sys.exit(1)
        raise
    sys.exit(code if isinstance(code, int) else 0)
