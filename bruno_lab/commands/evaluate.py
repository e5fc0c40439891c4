"""``bruno-lab evaluate --on-chip``: accuracy of a deployed network on the chip (on a crossbar:
its synapses as the array's analog matrix-vector products; on single sites: conductances read
back through the SMU), against its accuracy in software."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bruno_lab.commands.options import JsonOption, OptionalStationOption
from bruno_lab.limits import finite


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


def evaluate(
    network: Annotated[
        Path, typer.Option("--network", help="Trained network (bruno-lab train --out).")
    ],
    on_chip: Annotated[
        bool, typer.Option("--on-chip", help="Read the deployed cells back from the chip.")
    ] = False,
    station: OptionalStationOption = None,
    die: Annotated[
        str | None, typer.Option("--die", help='Die it was deployed on: label or "col,row".')
    ] = None,
    passes: Annotated[
        int,
        typer.Option("--passes", min=1, max=10_000, help="Independent reads of the whole array."),
    ] = 1,
    wait_s: Annotated[
        float,
        typer.Option(
            "--wait-s",
            help="Wait this long on the bench clock before reading.",
            callback=finite(0, 1e12),
        ),
    ] = 0.0,
    data: Annotated[Path | None, typer.Option("--data", help="Braille pickle.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Test accuracy in software and, with --on-chip, with the conductances read from DIE."""
    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn

    from bruno_lab.errors import BadInputError

    if not network.is_file():
        raise BadInputError(f"--network {network}: no such file")
    console = Console(stderr=True)
    if not on_chip:
        from bruno_lab.train.io import load_network
        from protocols.deployment_eval import accuracy_with, task_for_network

        acc = accuracy_with(load_network(network), task_for_network(network, data), None, {})
        summary: dict = {"software_accuracy": acc}
    else:
        if station is None or die is None:
            raise BadInputError("--on-chip needs --station FILE and --die D")
        if not station.is_file():
            raise BadInputError(f"--station {station}: no such file")
        from bruno_lab.loop import evaluate_on_chip
        from protocols.deployment_eval import task_for_network

        with Progress(
            SpinnerColumn(),
            *Progress.get_default_columns(),
            MofNCompleteColumn(),
            console=console,
            transient=as_json,
        ) as bar:
            task = bar.add_task("read cells", total=None)
            result = evaluate_on_chip(
                network,
                None,
                station,
                task_for_network(network, data),
                die=die,
                n_passes=passes,
                wait_s=wait_s,
                on_cell=lambda n: bar.update(task, completed=n),
            )
        summary = result.summary()
    if as_json:
        from bruno_lab.cli import emit_json

        emit_json(summary)
        return
    if on_chip:
        how = "analog MVM passes" if "readback_accuracy" in summary else "read passes"
        readback = (
            f", read back {summary['readback_accuracy']:.3f}"
            if "readback_accuracy" in summary
            else ""
        )
        rms = summary.get("read_rms_error_siemens")
        console.print(
            f"die {summary['die']}: accuracy on chip {summary['chip_accuracy']:.3f} "
            f"({summary['n_passes']} {how}){readback}, in software "
            f"{summary['software_accuracy']:.3f}, ideal map {summary['ideal_accuracy']:.3f}"
            + ("" if rms is None else f"; read rms error {rms * 1e6:.1f} uS")
        )
    else:
        console.print(f"accuracy in software {summary['software_accuracy']:.3f}")
