"""``bruno-lab fit``: refit the compact models of a wafer's devices into a new model card."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from bruno_lab.commands.options import DbOption, DeviceKindName, JsonOption, PurposeName

KINDS = ("fecap", "felif", "rram", "rram_array")  # rram_array: an RRAM card from 1T1R arrays


def register(app: typer.Typer) -> None:
    app.command("fit")(fit)


def _check_scheduler(address: str) -> None:
    """Refuse a scheduler address that is malformed or does not answer, before any work
    (a Dask client would wait 30 s and then fail with a traceback)."""
    import socket
    from urllib.parse import urlsplit

    from bruno_lab.errors import BadInputError

    scheme, host, port = "", None, None
    try:
        parts = urlsplit(address if "://" in address else f"tcp://{address}")
        scheme, host, port = parts.scheme, parts.hostname, parts.port
    except ValueError:
        pass
    if scheme not in ("tcp", "tls") or not host or not port:
        raise BadInputError(f"--scheduler {address!r}: give tcp://host:port (a Dask scheduler)")
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise BadInputError(
            f"--scheduler {address}: no Dask scheduler answers there ({exc.strerror or exc})"
        ) from None


def fit(
    wafer: Annotated[
        str | None, typer.Option("--wafer", help="Wafer name as stored by `run`.")
    ] = None,
    lot: Annotated[
        str | None,
        typer.Option("--lot", help="Instead of --wafer: one card over every wafer of the lot."),
    ] = None,
    kind: Annotated[
        list[DeviceKindName] | None,
        typer.Option(
            "--kind",
            help="Device kind (rram_array: an RRAM card from 1T1R arrays); repeat; default "
            "every kind but rram_array.",
        ),
    ] = None,
    purpose: Annotated[
        list[PurposeName] | None,
        typer.Option(
            "--purpose",
            help="Runs to fit from, by purpose (repeatable); default: characterization "
            "(a deployment's or evaluation's cells never enter a card unless named here).",
        ),
    ] = None,
    db: DbOption = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Dask scheduler address (tcp://host:8786) for the fits."),
    ] = None,
    chunk_size: Annotated[
        int,
        typer.Option(
            "--chunk-size", min=1, max=1_000_000, help="Devices per fit task (per Dask task)."
        ),
    ] = 256,
    n_domains: Annotated[
        int,
        typer.Option(
            "--n-domains",
            min=1,
            max=4096,
            help="FeCap domains in the fitted multi-domain model.",
        ),
    ] = 16,
    as_json: JsonOption = False,
) -> None:
    """Fit every device of each kind on a wafer (or a lot), store the fits and a new card version.

    Only characterization runs are read unless --purpose names others, so a refit after a
    deployment gives the card it gave before. A refit adds a version and never overwrites.
    Bad input (no measurements, a corrupt array, an unknown kind) exits 2 and writes no card.
    """
    from bruno_lab.errors import BadInputError, DataError
    from calibration.data import CHARACTERIZATION

    scope: Literal["wafer", "lot"]
    if wafer is not None and lot is None:
        scope, scope_id = "wafer", wafer
    elif lot is not None and wafer is None:
        scope, scope_id = "lot", lot
    else:
        raise BadInputError("give exactly one of --wafer or --lot")
    kinds: list[str] = [str(k) for k in kind or []]
    purposes = [str(p) for p in purpose] if purpose else list(CHARACTERIZATION)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise BadInputError(f"--kind: unknown {unknown}; choose from {', '.join(KINDS)}")
    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn

    from bruno_lab.cli import emit_json
    from bruno_lab.loop import fit as fit_stage
    from bruno_lab.store import open_store_for_cli
    from calibration.data import load_scope

    if scheduler is not None:
        _check_scheduler(scheduler)
    store = open_store_for_cli(db)
    results = []
    try:
        if not kinds:  # every kind that has measurements on the wafer
            for k in KINDS:
                try:
                    load_scope(store, scope, scope_id, k, purposes)
                    kinds.append(k)
                except DataError as exc:
                    if "no wafer named" in str(exc) or "no wafer of lot" in str(exc):
                        raise
            if not kinds:
                raise DataError(
                    f"no measurements of {', '.join(purposes)} runs on {scope} {scope_id!r}: "
                    "nothing to fit"
                )
        console = Console(stderr=True)
        with Progress(
            SpinnerColumn(),
            *Progress.get_default_columns(),
            MofNCompleteColumn(),
            console=console,
            transient=as_json,
        ) as bar:
            tasks = {k: bar.add_task(f"fit {k}", total=None) for k in kinds}

            def advance(kind: str, n: int) -> None:
                bar.advance(tasks[kind], n)

            def done(kind: str, outcome: Any) -> None:
                bar.update(tasks[kind], completed=1, total=1)
                results.append(outcome.summary())
                if not as_json:
                    s = results[-1]
                    console.print(
                        f"{kind}: card v{s['card_version']} (id {s['card_id']}) from "
                        f"{s['n_devices']} devices, {s['n_defective']} left out"
                    )

            fit_stage(
                store, scope_id, kinds, purpose=purposes, scheduler=scheduler,
                scope=scope, chunk_size=chunk_size, n_domains=n_domains,
                on_progress=advance, on_kind=done,
            )  # fmt: skip
    finally:
        store.close()
    if as_json:
        emit_json({"scope": scope, "scope_id": scope_id, "purpose": purposes, "cards": results})
