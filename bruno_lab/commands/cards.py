"""``bruno-lab cards``: list, show and export the versioned model cards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bruno_lab.commands.options import CardFormat, DbOption, DeviceKindName, JsonOption

cards_app = typer.Typer(no_args_is_help=True, help="Model cards: list, show, export.")


def register(app: typer.Typer) -> None:
    app.add_typer(cards_app, name="cards")


def _meta(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "device_kind": row.device_kind.value,
        "scope": row.scope.value,
        "scope_id": row.scope_id,
        "version": row.version,
        "code_version": row.code_version,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "n_fits": len(row.fit_ids),
    }


def _document(row: Any) -> dict[str, Any]:
    """The exported card: provenance header plus the validated body."""
    return {
        "card": {**_meta(row), "fit_ids": row.fit_ids},
        "body": row.card().model_dump(mode="json"),
    }


_KIND_HELP = "Device kind (with --wafer and no CARD_ID: that kind's newest card)."
_WAFER_HELP = "Wafer (or lot) the card is for (with --kind and no CARD_ID: its newest card)."


@cards_app.command("list")
def list_cards(
    kind: Annotated[
        DeviceKindName | None, typer.Option("--kind", help="Only cards of this device kind.")
    ] = None,
    wafer: Annotated[str | None, typer.Option("--wafer", help="Only this wafer/lot.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List model cards, oldest version first."""
    from bruno_lab.cli import emit_json
    from bruno_lab.store import open_store_for_cli

    store = open_store_for_cli(db)
    try:
        rows = [_meta(r) for r in store.list_model_cards(kind=kind, scope_id=wafer)]
    finally:
        store.close()
    if as_json:
        emit_json({"cards": rows})
        return
    for r in rows:
        typer.echo(
            f"{r['id']:>5}  {r['device_kind']:<6} {r['scope']}:{r['scope_id']}  v{r['version']}"
            f"  {r['n_fits']} fits  {r['created_at']}  {r['code_version']}",
            err=True,
        )


def _resolve(store: Any, card_id: int | None, kind: str | None, wafer: str | None) -> Any:
    from bruno_lab.errors import BadInputError

    if card_id is not None:
        return store.get_model_card(card_id)
    if kind and wafer:
        return store.latest_model_card(kind, "wafer", wafer)
    raise BadInputError("give a CARD_ID, or --kind and --wafer for the latest card")


@cards_app.command("show")
def show(
    card_id: Annotated[
        int | None, typer.Argument(metavar="CARD_ID", help="Card id (see `cards list`).")
    ] = None,
    kind: Annotated[DeviceKindName | None, typer.Option("--kind", help=_KIND_HELP)] = None,
    wafer: Annotated[str | None, typer.Option("--wafer", help=_WAFER_HELP)] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one card: provenance and population statistics."""
    from bruno_lab.cli import emit_json
    from bruno_lab.store import open_store_for_cli

    store = open_store_for_cli(db)
    try:
        doc = _document(_resolve(store, card_id, kind, wafer))
    finally:
        store.close()
    if as_json:
        emit_json(doc)
        return
    c, b = doc["card"], doc["body"]
    typer.echo(
        f"card {c['id']}: {b['device_kind']} on {b['scope']} {b['scope_id']} v{c['version']} "
        f"({b['model_name']} {b['model_version']}), {b['n_devices']} devices, "
        f"{b['n_defective']} left out",
        err=True,
    )
    for name, s in b["parameters"].items():
        rel = s["std"] / abs(s["mean"]) if s["mean"] else 0.0
        typer.echo(
            f"  {name:<16} {s['mean']:.5g} {s['unit']}  std {s['std']:.3g} ({rel:.1%}) "
            f"{s['family']}, n={s['n_devices']}",
            err=True,
        )
    if b.get("rram"):
        for lv in b["rram"]["levels"]:
            typer.echo(
                f"  level {lv['index']}: {lv['mean_siemens']:.4g} S  sigma "
                f"{lv['sigma_siemens']:.3g} S  n={lv['n_cells']}",
                err=True,
            )


@cards_app.command("export")
def export(
    card_id: Annotated[
        int | None, typer.Argument(metavar="CARD_ID", help="Card id (see `cards list`).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write; .json, .yaml or .yml.")
    ] = None,
    fmt: Annotated[
        CardFormat, typer.Option("--format", help="On stdout (without --out).")
    ] = CardFormat.JSON,
    provenance: Annotated[
        bool,
        typer.Option(
            "--provenance",
            help="Wrap the body with its provenance (id, version, fit ids, code version); "
            "without it the file is the bare body, loadable by bruno_lab.cards.load_card_file.",
        ),
    ] = False,
    kind: Annotated[DeviceKindName | None, typer.Option("--kind", help=_KIND_HELP)] = None,
    wafer: Annotated[str | None, typer.Option("--wafer", help=_WAFER_HELP)] = None,
    db: DbOption = None,
) -> None:
    """Export a card as JSON or YAML (schema: docs/model-cards.md)."""
    import json

    from bruno_lab.errors import BadInputError
    from bruno_lab.store import open_store_for_cli

    if out is not None:
        from bruno_lab.safeio import check_output_path

        check_output_path(out, "--out", suffixes=(".json", ".yaml", ".yml"))
        fmt = CardFormat.YAML if out.suffix.lower() in {".yaml", ".yml"} else CardFormat.JSON
    if fmt not in {"json", "yaml"}:
        raise BadInputError(f"--format: {fmt!r} is not json or yaml")
    store = open_store_for_cli(db)
    try:
        doc = _document(_resolve(store, card_id, kind, wafer))
    finally:
        store.close()
    data = doc if provenance else doc["body"]
    if fmt == "yaml":
        import yaml

        text = yaml.safe_dump(data, sort_keys=False)
    else:
        text = json.dumps(data, indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out)
        typer.echo(f"wrote {out}", err=True)
