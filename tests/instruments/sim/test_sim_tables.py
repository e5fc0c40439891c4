"""Every table-driven simulated instrument, every setting: after *RST its '?' readback, sent in
the shortest spelling the header pattern allows, answers the table's reset value."""

from __future__ import annotations

import pytest

from instruments.sim import commands_doc
from instruments.sim.scpi_table import NO_RESET, Command


def _shortest_header(command: Command) -> str:
    """Only the required nodes, short forms, suffixes left out (they mean 1)."""
    words = [node.short for node in command.pattern if not node.optional]
    return (":" if not words[0].startswith("*") else "") + ":".join(words)


@pytest.mark.parametrize("title_path", commands_doc.INSTRUMENTS, ids=lambda t: t[1].split(":")[1])
def test_reset_values_read_back_through_the_parser(sim_lab, title_path) -> None:
    cls = commands_doc._server_class(title_path[1])
    server = next(s for s in sim_lab.servers.values() if type(s) is cls)
    server.handle("*RST", None)
    checked = 0
    for command in server.table.commands:
        if command.attr is None or command.reset is NO_RESET or not command.readback:
            continue
        if command.show is not None:
            continue  # an instrument-specific readback: tested with that instrument
        header = _shortest_header(command)
        reply = server.handle(header + "?", None)
        assert reply == command.params[0].format(command.reset), (cls.__name__, header)
        checked += 1
    assert not server.error_queue, list(server.error_queue)
    assert checked >= 1 or not any(c.attr for c in cls.COMMANDS)
