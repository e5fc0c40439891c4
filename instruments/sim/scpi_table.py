"""Declarative command tables: the simulated counterpart of the drivers' declared settings.

A simulated instrument lists its commands once, as the manual writes them::

    COMMANDS = (
        setting("[:SOURce[1]]:VOLTage[:LEVel][:IMMediate][:AMPLitude]",
                Number(-210, 210, default=0, unit="V", fmt=keithley_real),
                "source_v", reset=0.0, check="_check_source_v", then="_source_changed"),
        action(":INITiate[:IMMediate]", "_init"),
        query(":READ", "_read", String(optional=True)),
    )

Header patterns follow the manuals' notation: upper case is the short form, the whole word the
long form; ``[...]`` is an optional node; a numeric suffix is ``[1]`` or ``[1|2]`` (optional,
the first value is the default) or ``<n>`` (a range named in the table's ``suffix_ranges``,
default 1). A ``setting`` is a value stored on the instrument's state object (or on one unit of
it, a channel, when ``per_unit``) with its ``?`` readback (which also answers ``MIN``/``MAX``/
``DEF``) and its ``*RST`` value; ``action`` is a command that does something; ``query`` a
question with its own reply. The parser, readback, ``*RST`` and every error number come from
these entries (see :mod:`instruments.sim.scpi_server`), and ``docs/sim-commands.md`` is generated
from them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from instruments.sim.scpi_message import CommandError
from instruments.sim.scpi_params import Number, Param, mnemonic_forms

__all__ = ["NO_RESET", "Command", "CommandTable", "action", "query", "setting"]

NO_RESET: Any = object()  # a setting that *RST leaves alone (a cache, a name)
_NODE = re.compile(r"(\*?[A-Za-z][A-Za-z0-9_]*)(?:\[(\d+(?:\|\d+)*)\]|<(\w+)>)?")
_NODE_AT = re.compile(r"\*?[A-Za-z][A-Za-z0-9_]*(?:\[\d+(?:\|\d+)*\]|<\w+>)?")


@dataclass(frozen=True)
class Command:
    """One entry of a command table (see the module docstring).

    ``run``/``ask``/``check``/``then`` name methods of the server: ``run(call, *values)`` does
    an action; ``ask(call, *values) -> str | bytes`` answers a query; ``check(call, value) ->
    value`` validates (or adjusts, as the instrument does) a setting before it is stored;
    ``then(call)`` tells the bench a setting changed (the physics it touches); ``show(call, data)
    -> str`` replaces the plain readback where the reply depends on more than the stored value
    (``data``: the query's elements, e.g. ``MIN``).
    """

    header: str
    params: tuple[Param, ...] = ()
    attr: str | None = None
    reset: Any = NO_RESET
    is_query: bool = False
    run: str | None = None
    ask: str | None = None
    check: str | None = None
    then: str | None = None
    per_unit: bool = False
    readback: bool = True
    show: str | None = None
    doc: str = ""
    pattern: tuple[Node, ...] = field(default=(), compare=False, repr=False)

    @property
    def kind(self) -> str:
        if self.attr is not None:
            return "setting"
        return "query" if self.is_query else "action"


@dataclass(frozen=True)
class Node:
    """One mnemonic of a header pattern."""

    short: str
    long: str
    optional: bool
    suffixes: tuple[int, ...] | None  # allowed numeric suffixes; None: the node takes none

    def suffix_of(self, token: str) -> int | None:
        """The token's suffix if it spells this node (0 if it carries none), else None."""
        for form in (self.long, self.short):
            if token.startswith(form):
                rest = token[len(form) :]
                if not rest:
                    return 0
                if self.suffixes is not None and rest.isdigit():
                    return int(rest)
        return None


def setting(
    header: str,
    param: Param,
    attr: str,
    *,
    reset: Any = None,
    check: str | None = None,
    then: str | None = None,
    per_unit: bool = False,
    readback: bool = True,
    show: str | None = None,
    doc: str = "",
) -> Command:
    """A stored value with its readback; ``reset=None`` takes the parameter's default."""
    if reset is None:
        reset = getattr(param, "default", None)
        if reset is None:
            reset = NO_RESET
    return Command(
        header, (param,), attr=attr, reset=reset, check=check, then=then,
        per_unit=per_unit, readback=readback, show=show, doc=doc,
    )  # fmt: skip


def action(header: str, run: str, *params: Param, per_unit: bool = False, doc: str = "") -> Command:
    """A command that does something (no stored value, no ``?`` form)."""
    return Command(header, tuple(params), run=run, per_unit=per_unit, doc=doc)


def query(header: str, ask: str, *params: Param, per_unit: bool = False, doc: str = "") -> Command:
    """A query with its own reply (``header`` without the ``?``)."""
    return Command(header.rstrip("?"), tuple(params), ask=ask, is_query=True, per_unit=per_unit,
                   doc=doc)  # fmt: skip


def compile_header(pattern: str, ranges: Mapping[str, Sequence[int]]) -> tuple[Node, ...]:
    """Turn ``[SOURce[1|2]:]VOLTage[:LEVel]`` into nodes (raises ValueError if malformed)."""
    nodes: list[Node] = []
    i = 0
    body = pattern.rstrip("?")
    while i < len(body):
        c = body[i]
        if c == ":":
            i += 1
            continue
        if c == "[":
            depth, j = 0, i
            while j < len(body):
                depth += {"[": 1, "]": -1}.get(body[j], 0)
                if depth == 0:
                    break
                j += 1
            nodes.append(_node(body[i + 1 : j].strip(":"), True, ranges, pattern))
            i = j + 1
            continue
        found = _NODE_AT.match(body, i)
        if found is None:
            raise ValueError(f"bad header pattern {pattern!r} at {i}")
        nodes.append(_node(found.group(), False, ranges, pattern))
        i = found.end()
    return tuple(nodes)


def _node(text: str, optional: bool, ranges: Mapping[str, Sequence[int]], pattern: str) -> Node:
    found = _NODE.fullmatch(text)
    if found is None:
        raise ValueError(f"bad node {text!r} in header pattern {pattern!r}")
    short, long = mnemonic_forms(found.group(1))
    if found.group(2):
        suffixes: tuple[int, ...] | None = tuple(int(v) for v in found.group(2).split("|"))
    elif found.group(3):
        suffixes = tuple(ranges[found.group(3)])
    else:
        suffixes = None
    return Node(short, long, optional, suffixes)


class CommandTable:
    """The compiled table of one instrument: resolves headers (with the SCPI path rule applied
    by the caller) to a command and its numeric suffixes, caching what it has seen."""

    CACHE_SIZE = 4096

    def __init__(
        self, commands: Sequence[Command], suffix_ranges: Mapping[str, Sequence[int]] | None = None
    ) -> None:
        ranges = dict(suffix_ranges or {})
        compiled = []
        for command in commands:
            nodes = compile_header(command.header, ranges)
            compiled.append(dataclasses.replace(command, pattern=nodes))
        self.commands: tuple[Command, ...] = tuple(compiled)
        self._cache: dict[tuple[tuple[str, ...], bool], tuple[Command, tuple[int, ...]]] = {}

    def resolve(self, tokens: tuple[str, ...], is_query: bool) -> tuple[Command, tuple[int, ...]]:
        """The command ``tokens`` (upper-case mnemonics from the root) name; -113 or -114."""
        key = (tokens, is_query)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        bad_suffix = False
        for command in self.commands:
            if command.attr is not None:
                if is_query and not command.readback:
                    continue
            elif command.is_query != is_query:
                continue
            suffixes = _match(command.pattern, tokens)
            if suffixes is None:
                continue
            if not _suffixes_allowed(command.pattern, suffixes):
                bad_suffix = True
                continue
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = (command, suffixes)
            return command, suffixes
        if bad_suffix:
            raise CommandError(-114, "Header suffix out of range")
        raise CommandError(-113, "Undefined header")


def _match(nodes: tuple[Node, ...], tokens: tuple[str, ...]) -> tuple[int, ...] | None:
    """Match mnemonics to nodes, optional nodes may be left out; the suffix of every node that
    takes one (its default when left out or given bare)."""

    def walk(i: int, j: int) -> list[int] | None:
        if i == len(nodes):
            return [] if j == len(tokens) else None
        node = nodes[i]
        if j < len(tokens):
            suffix = node.suffix_of(tokens[j])
            if suffix is not None:
                rest = walk(i + 1, j + 1)
                if rest is not None:
                    if node.suffixes is None:
                        return rest
                    return [suffix or _default(node), *rest]
        if node.optional:
            rest = walk(i + 1, j)
            if rest is not None:
                return rest if node.suffixes is None else [_default(node), *rest]
        return None

    found = walk(0, 0)
    return None if found is None else tuple(found)


def _default(node: Node) -> int:
    assert node.suffixes is not None
    return 1 if 1 in node.suffixes or not node.suffixes else node.suffixes[0]


def _suffixes_allowed(nodes: tuple[Node, ...], suffixes: tuple[int, ...]) -> bool:
    allowed = [node.suffixes for node in nodes if node.suffixes is not None]
    return all(value in ok for value, ok in zip(suffixes, allowed, strict=True))


def describe_params(command: Command) -> str:
    """The parameters as the docs table shows them."""
    return ", ".join((f"[{p.describe()}]" if p.optional else p.describe()) for p in command.params)


def numeric_param(command: Command) -> Number | None:
    """The setting's parameter if it is a number (for MIN/MAX/DEF readback)."""
    param = command.params[0] if command.params else None
    return param if isinstance(param, Number) else None
