"""``bruno-lab report``: PNG plots of a wafer's measurements against its latest fits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    wafer: Annotated[str, typer.Option("--wafer", help="Wafer name as stored by `run`.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the PNG files.")],
    db: Annotated[
        str | None, typer.Option("--db", help="SQLAlchemy URL or SQLite file.", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Measured against fitted P-V loops and PUND currents, switching maps, RRAM level
    histograms and wafer maps of the fitted parameters, as PNG files in OUT."""
    from bruno_lab.cli import emit_json
    from bruno_lab.store import open_store_for_cli
    from calibration.report import write_report

    store = open_store_for_cli(db)
    try:
        paths = write_report(store, wafer, out)
    finally:
        store.close()
    if as_json:
        emit_json({"wafer": wafer, "out": str(out), "plots": [str(p) for p in paths]})
    else:
        for p in paths:
            typer.echo(str(p), err=True)
