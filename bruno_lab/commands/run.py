"""``bruno-lab run PLAN --station FILE``: characterize a wafer, resumable, with progress.

Exit codes: 0 the run completed (failed measurements are recorded, not fatal), 1 the run
stopped early (lost bench, stop condition), 2 bad input (plan, station, envelope, database),
130 interrupted (Ctrl-C / SIGTERM: instruments safe, run marked interrupted, resumable).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import typer

from bruno_lab.commands.options import DbOption, JsonOption, StationOption

EXIT_INTERRUPTED = 130


def _schedule_lines(prepared: Any) -> list[str]:
    lines = []
    for p in prepared.schedule:
        lines.append(f"  {p.key:<40} {p.device.kind:<6} ~{p.estimate_s:7.2f} s")
    return lines


def _format_duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


def _dry_run(prepared: Any, as_json: bool) -> None:
    from bruno_lab.cli import emit_json

    summary = prepared.summary()
    if as_json:
        emit_json(
            {
                **summary,
                "schedule": [
                    {
                        "key": p.key,
                        "die": p.device.die_label,
                        "site": p.device.site,
                        "kind": p.device.kind,
                        "protocol": p.protocol,
                        "index": p.index,
                        "parameters": p.params.as_record(),
                        "estimate_s": p.estimate_s,
                    }
                    for p in prepared.schedule
                ],
            }
        )
        return
    typer.echo(
        f"plan {summary['plan']} on wafer {summary['wafer']}: {summary['n_dies']} dies, "
        f"{summary['n_devices']} devices, {summary['n_measurements']} measurements, "
        f"estimated {_format_duration(summary['estimated_duration_s'])} on a real bench",
        err=True,
    )
    for name, n in summary["per_protocol"].items():
        typer.echo(f"  {name:<22} {n:6d}", err=True)
    typer.echo("schedule:", err=True)
    for line in _schedule_lines(prepared):
        typer.echo(line, err=True)
    typer.echo("dry run: plan and envelope valid; no instrument touched.", err=True)


class _ProgressView:
    """A rich progress display on stderr fed by the orchestrator's callback."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("dies {task.fields[dies]}  devices {task.fields[devices]}"),
            TextColumn("failed {task.fields[failed]}"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
            console=Console(stderr=True),
        )
        self.task: Any = None

    def __enter__(self) -> _ProgressView:
        self.progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)

    def __call__(self, p: Any) -> None:
        fields = {
            "dies": f"{p.dies_done}/{p.dies_total}",
            "devices": f"{p.devices_done}/{p.devices_total}",
            "failed": p.failed,
            "eta": _format_duration(p.eta_s) if p.eta_s is not None else "--:--",
        }
        if self.task is None:
            self.task = self.progress.add_task(
                "measurements", total=p.measurements_total, completed=p.measurements_done, **fields
            )
        self.progress.update(self.task, completed=p.measurements_done, **fields)


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        plan: Annotated[
            Path, typer.Argument(metavar="PLAN", help="Wafer plan, YAML (see docs/plans.md).")
        ],
        station: StationOption,
        db: DbOption = None,
        resume: Annotated[
            int | None,
            typer.Option("--resume", help="Continue run RUN_ID (same plan); skips its done keys."),
        ] = None,
        dry_run: Annotated[
            bool,
            typer.Option("--dry-run", help="Validate plan and envelope, print the schedule."),
        ] = False,
        operator: Annotated[
            str | None, typer.Option("--operator", help="Who runs it (default: login name).")
        ] = None,
        as_json: JsonOption = False,
        no_progress: Annotated[
            bool, typer.Option("--no-progress", help="No progress bar on stderr.")
        ] = False,
    ) -> None:
        """Run a wafer plan: step die by die, run the protocols, commit each measurement.

        Ctrl-C leaves every output at 0 V and the probes up and marks the run interrupted; a
        rerun of the same plan (or --resume RUN_ID) continues where it stopped.
        """
        from bruno_lab.cli import emit_json
        from bruno_lab.loop import characterize, prepare

        prepared = prepare(plan, station)
        if dry_run:
            _dry_run(prepared, as_json)
            return
        from bruno_lab.store import open_store_for_cli

        store = open_store_for_cli(db)
        try:
            if no_progress:
                summary = characterize(prepared, None, store, resume=resume, operator=operator)
            else:
                with _ProgressView() as view:
                    summary = characterize(
                        prepared, None, store, resume=resume, operator=operator, on_progress=view
                    )
        finally:
            store.close()
        doc = summary.as_dict()
        if as_json:
            emit_json(doc)
        else:
            typer.echo(
                f"run {doc['run_id']} {doc['status']}: {doc['done']}/{doc['planned']} done, "
                f"{doc['failed']} failed, {doc['skipped']} skipped (already committed)"
                + (f"; {doc['reason']}" if doc["reason"] else ""),
                err=True,
            )
            for failure in summary.failures[:20]:
                typer.echo(f"  failed {failure['key']}: {failure['error']}", err=True)
        if summary.status == "interrupted":
            raise typer.Exit(EXIT_INTERRUPTED)
        if summary.status != "completed":
            raise typer.Exit(1)
