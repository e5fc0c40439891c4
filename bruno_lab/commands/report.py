"""``bruno-lab report``: one self-contained HTML report of a wafer's characterization."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bruno_lab.commands.options import DbOption, JsonOption, PurposeName


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    wafer: Annotated[str, typer.Option("--wafer", help="Wafer name as stored by `run`.")],
    out: Annotated[
        Path,
        typer.Option("--out", help="The HTML file to write, or a directory (gets report.html)."),
    ],
    db: DbOption = None,
    purpose: Annotated[
        list[PurposeName] | None,
        typer.Option(
            "--purpose",
            help="Runs to include by purpose (repeatable); default: characterization.",
            show_default=False,
        ),
    ] = None,
    run: Annotated[
        list[int] | None,
        typer.Option(
            "--run",
            help="Include exactly these run ids (repeatable; overrides --purpose).",
            show_default=False,
        ),
    ] = None,
    training: Annotated[
        Path | None,
        typer.Option(
            "--training",
            help="Training history JSON ({'history': [...]}, optional "
            "n_classes, n_test, confusion).",
            show_default=False,
        ),
    ] = None,
    deployment: Annotated[
        Path | None,
        typer.Option(
            "--deployment",
            help="Deployment record JSON (`bruno-lab deploy` writes it).",
            show_default=False,
        ),
    ] = None,
    evaluation: Annotated[
        Path | None,
        typer.Option("--evaluation", help="On-chip evaluation summary JSON.", show_default=False),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Wafer maps, per-kind sections (FeCap, FeLIF, RRAM), fit quality, cards and provenance;
    training and deployment when their records are given. Characterization runs only unless
    --purpose or --run say otherwise. Plots are interactive; the file needs no network."""
    import time

    from bruno_lab.cli import emit_json
    from bruno_lab.errors import BadInputError
    from bruno_lab.store import open_store_for_cli
    from reporting.build import build_report, render_html
    from reporting.data import CHARACTERIZATION
    from reporting.records import DeploymentRecord, TrainingRecord

    if evaluation is not None and deployment is None:
        raise BadInputError("--evaluation needs --deployment (the record of the cells it read)")
    train_rec = TrainingRecord.from_file(training) if training else None
    dep_rec = DeploymentRecord.from_files(deployment, evaluation) if deployment else None
    path = out if out.suffix.lower() in (".html", ".htm") else out / "report.html"
    from bruno_lab.safeio import check_output_path

    check_output_path(path, "--out")  # a directory, or under a file: refused before any work
    t0 = time.perf_counter()
    store = open_store_for_cli(db)
    try:
        doc = build_report(
            store,
            wafer,
            purposes=tuple(purpose or (CHARACTERIZATION,)),
            run_ids=run or None,
            training=train_rec,
            deployment=dep_rec,
        )
        html = render_html(doc, build_s=time.perf_counter() - t0)
    finally:
        store.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    if as_json:
        emit_json(
            {
                "wafer": wafer,
                "report": str(path),
                "sections": [s.id for s in doc.sections],
                "bytes": len(html.encode()),
                "build_s": round(time.perf_counter() - t0, 3),
            }
        )
    else:
        typer.echo(str(path), err=True)
