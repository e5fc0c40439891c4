"""docs/sim-commands.md is generated from the command tables: it fails here when it drifts, and
every command of every simulated instrument (SCPI tables, the Velox's SCI table, the 707B's TSP
statements) is in it."""

from __future__ import annotations

import re

import pytest

from instruments.sim import commands_doc, switch_matrix, velox


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


def test_every_prober_and_switch_matrix_command_is_in_the_doc() -> None:
    text = commands_doc.DOC_PATH.read_text()
    for entry in velox.VELOX_COMMANDS:
        assert f"| `{entry.name}` |" in text, entry.name
    for pattern, method in switch_matrix.COMMANDS:
        assert method in commands_doc.SWITCH_MATRIX_DOCS, f"no doc for the 707B's {method}"
        statement = commands_doc.tsp_statement(pattern, switch_matrix._STRING)
        assert f"| `{statement}` |" in text, statement
    assert "docs/array-tester.md" in text


@pytest.mark.parametrize(
    "statement",
    ['channel.close("1A01,1D12")', "channel.open('allslots')", 'print(channel.getclose("slot1"))',
     "print(errorqueue.next())", "reset()", "*IDN?"],
)  # fmt: skip
def test_the_documented_707b_statements_are_what_the_sim_matches(statement) -> None:
    """The doc's rendering of each pattern, with a channel list put in, is a statement the
    pattern matches (the rendering cannot show a statement the sim refuses)."""
    rendered = {
        commands_doc.tsp_statement(p, switch_matrix._STRING): p for p, _ in switch_matrix.COMMANDS
    }
    generic = re.sub(r"""\(\s*["'][^"']*["']\s*\)""", '("<channels>")', statement)
    assert generic in rendered, generic
    assert re.match(rendered[generic], statement, re.IGNORECASE)
