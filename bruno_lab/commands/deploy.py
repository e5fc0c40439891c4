"""``bruno-lab deploy``: program a trained network's RRAM cells onto a die.

On a die with a 1T1R crossbar and a station with an array tester (``--target auto``, the
default, or ``crossbar``): the array is surveyed (formed, health-mapped; reused when a survey of
it exists), the programming map is placed on tiles of differential column pairs around the bad
cells, and every row is write-verified on the instrument: one stored measurement per row
(``protocols.array_deployment``). Otherwise (``cells``): each logical cell goes to the die's
next single RRAM site and is formed and programmed through the SMU and AWG, one measurement per
cell (``protocols.deployment``). A deployment record (JSON) is written beside the network. Exit 0
when the run completed (cells that did not reach their target are recorded, not fatal), 1 if it
stopped early, 2 on bad input, 130 when interrupted (rerun to resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bruno_lab.commands.options import DbOption, DeployTargetName, JsonOption, StationOption


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)


def progress_printer(bar: Any, task: Any) -> Any:
    """An orchestrator progress callback that advances a rich bar (cells = measurements)."""

    def on_progress(p: Any) -> None:
        bar.update(
            task,
            completed=p.measurements_done,
            total=p.measurements_total,
            description=f"deploy {p.current} ({p.failed} failed)",
        )

    return on_progress


def deploy(
    network: Annotated[
        Path, typer.Option("--network", help="Trained network (bruno-lab train --out).")
    ],
    station: StationOption,
    die: Annotated[str, typer.Option("--die", help='Die label or "col,row".')],
    target: Annotated[
        DeployTargetName,
        typer.Option(
            "--target",
            help="crossbar: the die's 1T1R array via the array tester; cells: its single RRAM "
            "sites via SMU and AWG; auto: the crossbar when there is one.",
        ),
    ] = DeployTargetName.AUTO,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deploy NETWORK onto DIE: program-verify every cell, record what each reached."""
    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TimeElapsedColumn

    from bruno_lab.errors import BadInputError
    from bruno_lab.loop import deploy as deploy_stage
    from bruno_lab.store import open_store_for_cli

    for path, what in ((network, "--network"), (station, "--station")):
        if not path.is_file():
            raise BadInputError(f"{what} {path}: no such file")
    console = Console(stderr=True)
    store = open_store_for_cli(db)
    try:
        with Progress(
            SpinnerColumn(),
            *Progress.get_default_columns(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=as_json,
        ) as bar:
            task = bar.add_task("deploy", total=None)
            result = deploy_stage(
                network, station, die, store, target=target.value,
                operator="bruno-lab deploy", on_progress=progress_printer(bar, task),
            )  # fmt: skip
    finally:
        store.close()
    summary = result.summary()
    if as_json:
        from bruno_lab.cli import emit_json

        emit_json(summary)
    else:
        where = "crossbar" if result.record.get("target") == "crossbar" else "single sites"
        console.print(
            f"deployed {summary['n_cells']} cells on die {summary['die']} ({where}): "
            f"{summary['n_success']} within tolerance, {summary['mean_attempts']:.1f} pulses per "
            f"cell, rms error {summary['rms_error_siemens'] * 1e6:.1f} uS; run "
            f"{summary['run_id']}; record {summary['record']} ({summary['wall_s']:.0f} s)"
        )
    if result.status == "interrupted":
        raise typer.Exit(code=130)
    if result.status != "completed":
        raise typer.Exit(code=1)
