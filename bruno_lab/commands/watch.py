"""``bruno-lab watch``: a live page of a wafer run, read from its database."""

from __future__ import annotations

from typing import Annotated

import typer

from bruno_lab.commands.options import DbOption


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)


def watch(
    db: DbOption = None,
    run: Annotated[
        int | None,
        typer.Option(
            "--run",
            min=1,
            help="Run id to follow (default: the newest run, and the next).",
            show_default=False,
        ),
    ] = None,
    scalar: Annotated[
        str | None,
        typer.Option(
            "--scalar",
            help="Wafer-map quantity as PROTOCOL:NAME, e.g. "
            "pv_loop:pr_pos_c_m2 (changeable on the page).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0: a free port.")] = 0,
    host: Annotated[
        str, typer.Option("--host", help="Loopback address to listen on.")
    ] = "127.0.0.1",
    poll_s: Annotated[
        float, typer.Option("--poll-s", min=0.05, max=60.0, help="Database poll interval.")
    ] = 0.5,
) -> None:
    """Serve a page on 127.0.0.1 that follows a run as its measurements are committed (also a
    run on another station writing to the same PostgreSQL): progress and ETA, the wafer map
    filling in, the latest curve of each protocol, failures and their reasons, the bench's
    state. Ctrl-C stops it; the run is not affected."""
    from bruno_lab.store import open_store_for_cli
    from reporting.live.server import serve

    store = open_store_for_cli(db)
    if run is not None:
        from bruno_lab.errors import BadInputError, DataError

        try:
            store.get_run(run)
        except DataError:
            store.close()
            raise BadInputError(f"--run {run}: no such run in {store.masked_url}") from None

    def ready(url: str) -> None:
        typer.echo(f"live view of {store.masked_url}: {url}", err=True)

    try:
        serve(store, run_id=run, scalar=scalar, host=host, port=port, poll_s=poll_s, on_ready=ready)
    finally:
        store.close()
