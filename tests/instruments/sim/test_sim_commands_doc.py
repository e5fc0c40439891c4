"""docs/sim-commands.md is generated from the command tables: it fails here when it drifts."""

from __future__ import annotations

from instruments.sim import commands_doc


def test_the_commands_doc_is_what_the_tables_generate() -> None:
    expected = commands_doc.render()
    actual = commands_doc.DOC_PATH.read_text()
    assert actual == expected, (
        "docs/sim-commands.md is stale: run `python -m instruments.sim.commands_doc --write`"
    )


def test_every_table_command_is_in_the_doc() -> None:
    text = commands_doc.DOC_PATH.read_text()
    for _, path in commands_doc.INSTRUMENTS:
        cls = commands_doc._server_class(path)
        for command in cls.COMMANDS:
            assert f"`{command.header}" in text, (cls.__name__, command.header)
