"""Every table-driven simulated instrument, every setting and every header spelling:

- after *RST each setting's '?' readback, sent in the shortest spelling the header pattern
  allows, answers the table's reset value;
- each setting, set to a value other than its reset value in the longest spelling (every
  optional node, long forms, lower case, channel 2 where it has channels), reads back that value
  in the instrument's format, and channel 1 keeps its own (no aliasing of channels);
- every header resolves, in every abbreviation (long or short, optional nodes in or out, numeric
  suffix given or left out), to its own table entry and not to another one.
"""

from __future__ import annotations

import itertools
import math

import pytest

from instruments.sim import commands_doc
from instruments.sim.scpi_params import Boolean, Choice, Number, String
from instruments.sim.scpi_table import NO_RESET, Command, Node

_IDS = {"title_path": lambda t: t[1].split(":")[1]}


def _shortest_header(command: Command) -> str:
    """Only the required nodes, short forms, suffixes left out (they mean 1)."""
    words = [node.short for node in command.pattern if not node.optional]
    return (":" if not words[0].startswith("*") else "") + ":".join(words)


def _longest_header(command: Command, suffix: int | None) -> str:
    """Every node in its long form, lower case; ``suffix`` on the first node that takes one."""
    words: list[str] = []
    for node in command.pattern:
        word = node.long.lower()
        if suffix is not None and node.suffixes is not None:
            word, suffix = f"{word}{suffix}", None
        words.append(word)
    return ":" + ":".join(words)


def _server(lab, title_path):
    cls = commands_doc._server_class(title_path[1])
    return next(s for s in lab.servers.values() if type(s) is cls)


@pytest.mark.parametrize("title_path", commands_doc.INSTRUMENTS, ids=_IDS["title_path"])
def test_reset_values_read_back_through_the_parser(sim_lab, title_path) -> None:
    server = _server(sim_lab, title_path)
    server.handle("*RST", None)
    checked = 0
    for command in server.table.commands:
        if command.attr is None or command.reset is NO_RESET or not command.readback:
            continue
        if command.show is not None:
            continue  # an instrument-specific readback: tested with that instrument
        header = _shortest_header(command)
        reply = server.handle(header + "?", None)
        assert reply == command.params[0].format(command.reset), (type(server).__name__, header)
        checked += 1
    assert not server.error_queue, list(server.error_queue)
    assert checked >= 1 or not any(c.attr for c in type(server).COMMANDS)


# Settings whose value the instrument adjusts or restricts, as the real one does: the text sent
# instead of the generic pick and the reply expected (None: the parameter's format of the sent
# value), with any message that must come first (the arb the selection names).
_SPECIAL: dict[tuple[str, str], tuple[str, str | None, str]] = {
    # the sim sources voltage only (CURRent is refused with -221): the long form of VOLT
    ("smu", ":SOURce[1]:FUNCtion[:MODE]"): ("VOLTage", "VOLT", ""),
    # ranges are the instrument's: a value picks the smallest range that holds it
    ("smu", ":SOURce[1]:VOLTage:RANGe"): ("15", "2.000000E+01", ""),
    ("smu", "[:SENSe[1]]:CURRent[:DC]:RANGe[:UPPer]"): ("2e-3", "1.000000E-02", ""),
    # only CW frequencies are simulated; FIXed is its synonym
    ("awg", "[SOURce[1|2]:]FREQuency:MODE"): ("FIXed", "FIX", ""),
    # the amplitude is read back in the channel's unit (Vpp after *RST)
    ("awg", "[SOURce[1|2]:]VOLTage[:LEVel][:IMMediate][:AMPLitude]"): (
        "1.5", "+1.500000000000000E+00", "",
    ),
    # the pulse width must stay below the period (1 ms after *RST)
    ("awg", "[SOURce[1|2]:]FUNCtion:PULSe:WIDTh"): ("2.5e-4", None, ""),
    # an arb is selected from the channel's own memory: upload one first
    ("awg", "[SOURce[1|2]:]FUNCtion:ARBitrary"): (
        "ramp8", '"ramp8"', ":source2:data:arbitrary ramp8, 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1",
    ),
}  # fmt: skip


def _generic_pick(command: Command) -> tuple[str, object] | None:
    """A value other than the reset value, in the longest spelling the parameter allows."""
    param, reset = command.params[0], command.reset
    if isinstance(param, Boolean):
        return ("OFF", False) if reset is True else ("ON", True)
    if isinstance(param, Choice):
        for option in reversed(param.options):  # the manual's word, spelled out in full
            spelled = option.replace("[", "").replace("]", "").upper()
            value = param.parse(spelled)
            if value != reset:
                return (f'"{spelled}"' if param.quoted else spelled), value
        return None
    if isinstance(param, Number):
        if math.isinf(param.low) or math.isinf(param.high):
            return None
        value = float(f"{param.low + 0.3 * (param.high - param.low):.3g}")
        if param.integer:
            value = float(round(value))
        return (None if value == reset else (repr(value), value)) or (repr(param.low), param.low)
    if isinstance(param, String):
        return "'it''s'", "it's"
    return None


@pytest.mark.parametrize("title_path", commands_doc.INSTRUMENTS, ids=_IDS["title_path"])
def test_every_setting_reads_back_what_was_set_in_its_longest_spelling(sim_lab, title_path) -> None:
    server = _server(sim_lab, title_path)
    role = server.role
    checked = 0
    for command in server.table.commands:
        if command.attr is None or not command.readback:
            continue
        special = _SPECIAL.get((role, command.header))
        if special is not None:
            text, expected, setup = special
        else:
            pick = _generic_pick(command)
            if pick is None:  # a parameter with no second value (a one-word choice)
                continue
            text, value = pick
            expected, setup = command.params[0].format(value), ""
        channel = 2 if command.per_unit else None
        header = _longest_header(command, channel)
        server.handle("*RST", None)
        if setup:
            server.handle(setup, None)
        before_1 = server.handle(_shortest_header(command) + "?", None) if channel else None
        assert server.handle(f"{header} {text}", None) is None
        reply = server.handle(header + "?", None)
        if expected is None:
            expected = command.params[0].format(command.params[0].parse(text))
        assert reply == expected, (role, header, text)
        assert not server.error_queue, (role, header, list(server.error_queue))
        if channel:  # channel 1 (the suffix left out) was not touched
            assert server.handle(_shortest_header(command) + "?", None) == before_1, header
        checked += 1
    assert checked >= 1 or not any(c.attr for c in type(server).COMMANDS)
    server.handle("*RST", None)


def _spellings(command: Command) -> set[tuple[str, ...]]:
    """Every combination of long/short forms, with and without the optional nodes, with and
    without explicit numeric suffixes (at most a few hundred per header)."""
    out: set[tuple[str, ...]] = set()

    def forms(node: Node) -> list[str | None]:
        words = list(dict.fromkeys((node.long, node.short)))
        if node.suffixes is not None:
            words += [f"{w}{node.suffixes[-1]}" for w in words]
        return [*words, None] if node.optional else words

    choices = [forms(node) for node in command.pattern]
    for combination in itertools.islice(itertools.product(*choices), 512):
        out.add(tuple(word for word in combination if word is not None))
    return out


@pytest.mark.parametrize("title_path", commands_doc.INSTRUMENTS, ids=_IDS["title_path"])
def test_every_abbreviation_of_every_header_is_that_command(title_path) -> None:
    cls = commands_doc._server_class(title_path[1])
    table = cls.command_table()
    resolved = 0
    for command in table.commands:
        forms = [command.is_query] if command.attr is None else [False]
        if command.attr is not None and command.readback:
            forms.append(True)
        for tokens in _spellings(command):
            for is_query in forms:
                found, _ = table.resolve(tokens, is_query)
                assert found is command, (cls.__name__, ":".join(tokens), found.header)
                resolved += 1
    assert resolved > len(table.commands)
