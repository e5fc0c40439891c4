"""The one loader for YAML (and JSON) files a user hands to bruno-lab: plans, stations, truths,
cards, fault configs.

PyYAML's ``safe_load`` constructs no Python objects, but it still accepts what a lab file never
needs and what makes a run misbehave: a duplicated key silently takes the last value; aliases
expand a few hundred bytes into gigabytes ("billion laughs"); a deeply nested document blows the
recursion limit; any byte sequence is decoded somehow. Here every file is read as strict UTF-8
(:func:`bruno_lab.safeio.read_text`, size-capped), and composed by a loader that refuses
duplicate keys (naming both lines), more than ``max_aliases`` aliases, nesting deeper than
``max_depth`` and documents whose expanded size (aliases counted at their full size) exceeds
``max_nodes``. Errors are ``BadInputError`` subclasses naming the file and line.

    doc = load_yaml_file("plan.yaml", "plan")   # -> YamlDoc(data, root node, source)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from bruno_lab.errors import BadInputError, PlanError
from bruno_lab.safeio import parse_json, read_text

MAX_FILE_BYTES = 16 * 2**20
MAX_DEPTH = 64
MAX_ALIASES = 256
MAX_NODES = 500_000


@dataclass(frozen=True)
class Limits:
    """What one document may hold (defaults: generous for any lab file, small for a bomb)."""

    max_bytes: int = MAX_FILE_BYTES
    max_depth: int = MAX_DEPTH
    max_aliases: int = MAX_ALIASES
    max_nodes: int = MAX_NODES


@dataclass
class YamlDoc:
    """A parsed document: the data, its node tree (for line numbers) and where it came from."""

    data: Any
    root: Node | None
    source: str


class _Refused(Exception):
    """Raised inside the loader; turned into the caller's error class with file and line."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


class _StrictComposer(Composer):
    limits: Limits

    def __init__(self, limits: Limits) -> None:
        Composer.__init__(self)
        self.limits = limits
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):  # type: ignore[attr-defined]
            self._aliases += 1
            if self._aliases > self.limits.max_aliases:
                mark = self.peek_event().start_mark  # type: ignore[attr-defined]
                raise _Refused(
                    f"more than {self.limits.max_aliases} aliases (*name): refused", mark.line + 1
                )
            return Composer.compose_node(self, parent, index)
        self._depth += 1
        try:
            if self._depth > self.limits.max_depth:
                mark = self.peek_event().start_mark  # type: ignore[attr-defined]
                raise _Refused(f"nested deeper than {self.limits.max_depth} levels", mark.line + 1)
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1


class _Loader(Reader, Scanner, Parser, _StrictComposer, SafeConstructor, Resolver):
    """SafeLoader with the strict composer and a mapping constructor that refuses duplicates."""

    def __init__(self, stream: str, limits: Limits) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _StrictComposer.__init__(self, limits)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


if yaml.__with_libyaml__:  # libyaml scans and parses ~4x faster; composing stays ours
    from yaml.cyaml import CParser  # type: ignore[attr-defined]

    class _CLoader(CParser, _StrictComposer, SafeConstructor, Resolver):
        """:class:`_Loader` with libyaml's scanner and parser under the same strict composer
        (CParser would compose in C, past our limits: the composing methods are Python's)."""

        def __init__(self, stream: str, limits: Limits) -> None:
            CParser.__init__(self, stream)
            _StrictComposer.__init__(self, limits)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

        get_single_node = Composer.get_single_node
        compose_document = Composer.compose_document
        check_node = Composer.check_node
        get_node = Composer.get_node

    _LOADER: type[_Loader] | type[_CLoader] = _CLoader
else:  # pragma: no cover - PyYAML built without libyaml
    _LOADER = _Loader


def _check_duplicates(node: MappingNode) -> None:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, ScalarNode):
            continue
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = (key_node.tag, key_node.value)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise _Refused(
                f"duplicate key {key_node.value!r} (first on line {seen[key]}); "
                "each key may appear once",
                line,
            )
        seen[key] = line


def _expanded_size(root: Node, limit: int) -> int:
    """Nodes in the document with every alias expanded, computed without expanding (memo by
    node identity, iterative); stops counting once past ``limit``."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, ScalarNode):
            sizes[id(node)] = 1
            continue
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            _check_duplicates(node)
            for k, v in node.value:
                children += [k, v]
        if done:
            total = 1 + sum(sizes[id(c)] for c in children)
            sizes[id(node)] = min(total, limit + 1)
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def parse_yaml(
    text: str,
    source: str,
    *,
    error: type[BadInputError] = PlanError,
    limits: Limits | None = None,
) -> YamlDoc:
    """Compose and construct one YAML document under ``limits``; errors name ``source:line``."""
    limits = limits or Limits()
    # pure-Python YAML composes ~30k values/s: refuse a file that cannot be within the node
    # limit before spending a minute composing it (every value needs a comma, newline or colon)
    separators = text.count(",") + text.count("\n") + text.count(":")
    if separators > limits.max_nodes:
        raise error(
            f"{source}: about {separators} values, more than the {limits.max_nodes} a lab file "
            "may hold: refused unparsed"
        )
    loader: Any = None
    try:
        loader = _LOADER(text, limits)  # the reader checks the characters already here
        root = loader.get_single_node()
        if root is not None:
            size = _expanded_size(root, limits.max_nodes)
            if size > limits.max_nodes:
                raise _Refused(
                    f"expands to more than {limits.max_nodes} values (aliases of aliases?): "
                    "refused",
                    root.start_mark.line + 1,
                )
            data = loader.construct_document(root)
        else:
            data = None
    except _Refused as exc:
        where = f"{source}:{exc.line}" if exc.line else source
        raise error(f"{where}: {exc}") from None
    except ReaderError as exc:  # a character YAML does not allow
        line = text[: max(exc.position, 0)].count("\n") + 1
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1])
        raise error(
            f"{source}:{line}: character #x{char:04x} is not allowed in YAML ({exc.reason})"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{where}: malformed YAML: {problem}") from None
    except RecursionError:
        raise error(f"{source}: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDoc(data, root, source)


def load_yaml_file(
    path: str | Path,
    what: str,
    *,
    error: type[BadInputError] = PlanError,
    limits: Limits | None = None,
) -> YamlDoc:
    """Read ``path`` (strict UTF-8, size-capped) and parse it as YAML; see :func:`parse_yaml`."""
    limits = limits or Limits()
    path = Path(path)
    try:
        text = read_text(path, what, max_bytes=limits.max_bytes)
    except BadInputError as exc:
        raise error(str(exc)) from None
    return parse_yaml(text, str(path), error=error, limits=limits)


def load_data_file(
    path: str | Path,
    what: str,
    *,
    error: type[BadInputError] = PlanError,
    limits: Limits | None = None,
) -> Any:
    """A ``.json`` file (strict JSON: no duplicate keys, no NaN) or else YAML, as data."""
    limits = limits or Limits()
    path = Path(path)
    if path.suffix.lower() == ".json":
        try:
            text = read_text(path, what, max_bytes=limits.max_bytes)
            return parse_json(text, str(path), max_depth=limits.max_depth)
        except BadInputError as exc:
            raise error(str(exc)) from None
    return load_yaml_file(path, what, error=error, limits=limits).data
