"""``bruno-lab sim serve``: the simulated lab in the foreground, its station file written."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from bruno_lab.commands.options import JsonOption

sim_app = typer.Typer(help="The simulated lab: SCPI servers on 127.0.0.1 backed by the physics.")


def register(app: typer.Typer) -> None:
    app.add_typer(sim_app, name="sim")


@sim_app.command("serve")
def serve(
    station_out: Annotated[
        Path, typer.Option("--station-out", help="Station file (YAML) to write.")
    ],
    truth: Annotated[
        Path | None,
        typer.Option("--truth", help="Truth file (YAML); default: the one that ships."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Wafer and noise seed.")] = 0,
    faults: Annotated[
        Path | None, typer.Option("--faults", help="Fault injection config (YAML).")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Run the simulated lab until Ctrl-C or SIGTERM; the ports go to stderr."""
    from instruments.sim.lab import SimLab

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    from bruno_lab.safeio import check_output_path

    check_output_path(station_out, "--station-out", suffixes=(".yaml", ".yml"))
    lab = SimLab.start(truth=truth, seed=seed, faults=faults)
    try:
        lab.write_station(station_out)
        for role, port in lab.ports().items():
            typer.echo(f"{role}: TCPIP::127.0.0.1::{port}::SOCKET", err=True)
        typer.echo(f"station file: {station_out}", err=True)
        if json_out:
            from bruno_lab.cli import emit_json

            emit_json(lab.station())
        try:
            while not stop.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
        typer.echo("sim lab stopped", err=True)
    finally:
        lab.stop()
        signal.signal(signal.SIGTERM, previous)
