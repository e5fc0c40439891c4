"""``bruno-lab db``: migrate, inspect and export the measurement database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bruno_lab.commands.options import DbOption, JsonOption

db_app = typer.Typer(
    no_args_is_help=True, help="The measurement database: upgrade, status, export."
)


@db_app.command("upgrade")
def upgrade(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Migrate the database to the schema this bruno-lab needs (creates it if empty)."""
    from bruno_lab.cli import emit_json
    from bruno_lab.errors import BadInputError
    from bruno_lab.store import open_store
    from bruno_lab.store.engine import engine_is_read_only

    store = open_store(db, require_head=False)
    try:
        if engine_is_read_only(store.engine):
            raise BadInputError(
                f"database {store.masked_url} is read-only (file or directory permissions): "
                "cannot upgrade it"
            )
        before = store.schema_status()
        after = store.upgrade()
    finally:
        store.close()
    doc = {
        "url": after["url"],
        "from": before["current"],
        "to": after["current"],
        "head": after["head"],
        "at_head": after["at_head"],
    }
    if as_json:
        emit_json(doc)
    else:
        typer.echo(f"{doc['url']}: schema {doc['from'] or 'empty'} -> {doc['to']} (head)", err=True)


@db_app.command("status")
def status(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show the schema revision and whether it is at head. Exit 1 when an upgrade is needed."""
    from bruno_lab.cli import emit_json
    from bruno_lab.config import mask_url, resolve_db_url
    from bruno_lab.store import open_store
    from bruno_lab.store.engine import missing_sqlite_file

    resolved = resolve_db_url(db)
    if missing_sqlite_file(resolved) is not None:  # report it; never create an empty file
        doc: dict[str, object] = {
            "current": None, "head": _head_revision(), "at_head": False, "known": True,
            "url": mask_url(resolved), "exists": False,
        }  # fmt: skip
    else:
        store = open_store(db, require_head=False)
        try:
            doc = {**_status_or_error(store), "exists": True}
        finally:
            store.close()
    if as_json:
        emit_json(doc)
    elif not doc["exists"]:
        typer.echo(f"{doc['url']}: does not exist", err=True)
    else:
        state = "at head" if doc["at_head"] else "NOT at head: run `bruno-lab db upgrade`"
        typer.echo(
            f"{doc['url']}: schema {doc['current'] or 'empty'} (head {doc['head']}), {state}",
            err=True,
        )
    if not doc["exists"]:
        from bruno_lab.errors import BrunoLabError

        # exit 1 like "not at head" (the job "be at head" failed), but say what is wrong
        raise BrunoLabError(
            f"database {doc['url']} does not exist: create it with "
            f"`bruno-lab db upgrade --db '{doc['url']}'`"
        )
    if not doc["at_head"]:
        from bruno_lab.errors import BrunoLabError

        # exit 1 (the job "be at head" failed); a BrunoLabError, since cli.main maps it
        raise BrunoLabError(f"schema not at head: run `bruno-lab db upgrade --db '{doc['url']}'`")


def _status_or_error(store: object) -> dict[str, object]:
    from sqlalchemy.exc import SQLAlchemyError

    from bruno_lab.errors import BadInputError

    try:
        return store.schema_status()  # type: ignore[attr-defined]
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise BadInputError(f"cannot open database {store.masked_url}: {reason}") from None  # type: ignore[attr-defined]


@db_app.command("export")
def export(
    run_id: Annotated[int, typer.Argument(metavar="RUN_ID", help="Id of the run to export.")],
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export one run (measurements, scalars and arrays, with units) to a Parquet file."""
    from bruno_lab.cli import emit_json
    from bruno_lab.safeio import check_output_path
    from bruno_lab.store import open_store_for_cli
    from bruno_lab.store.queries import export_run_parquet

    check_output_path(out, "--out", suffixes=(".parquet", ".pq"))
    store = open_store_for_cli(db)
    try:
        path = export_run_parquet(store, run_id, out)
    finally:
        store.close()
    import pyarrow.parquet as pq

    n_rows = pq.ParquetFile(path).metadata.num_rows
    if as_json:
        emit_json({"run_id": run_id, "path": str(path), "n_measurements": n_rows})
    else:
        typer.echo(f"run {run_id}: {n_rows} measurements -> {path}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


def _head_revision() -> str | None:
    from bruno_lab.store.schema import head_revision

    return head_revision()
