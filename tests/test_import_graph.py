"""The project's import graph, from the code's own imports (ast over every module, function-level
imports included, ``if TYPE_CHECKING:`` blocks left out: they never run).

Layers (DESIGN.md, "Dependency direction"; an arrow means "may import"):

- foundation: ``bruno_lab.{errors, extras, config, units, strict, safeio, yamlio, cards}``,
  small leaf modules every layer uses (the error tree, the optional-extra guard, the database
  URL, units, the safe file loaders and the model-card schema). They import only each other.
- ``bruno_lab.devices`` and ``bruno_lab.store``: themselves and the foundation, nothing above.
- ``instruments``, ``protocols``, ``calibration`` -> ``bruno_lab``; ``protocols`` ->
  ``instruments``; ``reporting`` (the report and its live view) -> ``bruno_lab``,
  ``calibration``, ``protocols``, ``instruments``; ``bruno_lab`` below its top layer imports
  none of these packages.
- top layer: ``bruno_lab.loop``, ``bruno_lab.cli``, ``bruno_lab.cli_entry``,
  ``bruno_lab.commands``: may import everything; nothing imports them but each other.
- ``instruments.sim``: imported only by itself, the top layer (the CLI/demo starts it) and tests.
- no import circle (a strongly connected component of more than one module).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bruno_lab", "instruments", "protocols", "calibration", "reporting")
FOUNDATION = frozenset(
    f"bruno_lab.{m}"
    for m in ("errors", "extras", "config", "units", "strict", "safeio", "yamlio", "cards")
)
TOP = ("bruno_lab.loop", "bruno_lab.cli", "bruno_lab.cli_entry", "bruno_lab.commands")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, module: str, is_package: bool) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import statement outside TYPE_CHECKING blocks."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((target, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    files: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if "migrations" not in path.parts:
                files[_module_name(path)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        tree = ast.parse(path.read_text(), str(path))
        for target, names in _imports(tree, name, path.name == "__init__.py"):
            # "from a.b import c" imports the module a.b.c if there is one, else a name of a.b
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in files]
            deps.update(subs)
            if len(subs) < len(names) or not names:
                deps.add(target)
        # a module's own parent packages run before it anyway: not an edge of the graph
        parents = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}
        graph[name] = {d for d in deps if d in files and d != name and d not in parents}
    return graph


GRAPH = _graph()


def _in(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(rule: Callable[[str, str], bool]) -> list[str]:
    """Edges ``importer -> imported`` that ``rule`` refuses."""
    return sorted(f"{a} -> {b}" for a, deps in GRAPH.items() for b in deps if not rule(a, b))


def test_the_graph_is_read_from_the_code() -> None:
    assert len(GRAPH) > 150
    assert "bruno_lab.devices.felif_core" in GRAPH["bruno_lab.devices.felif"]
    # function-level imports count: pipeline imports the FeLIF fit inside run_stage
    assert "calibration.felif_fit" in GRAPH["calibration.pipeline"]


def test_foundation_imports_only_the_foundation() -> None:
    bad = _violations(lambda a, b: a not in FOUNDATION or b in FOUNDATION)
    assert not bad, bad


@pytest.mark.parametrize("layer", ["bruno_lab.devices", "bruno_lab.store"])
def test_devices_and_store_import_nothing_above_them(layer: str) -> None:
    bad = _violations(lambda a, b: not _in(a, layer) or _in(b, layer) or b in FOUNDATION)
    assert not bad, bad


def test_dependency_direction() -> None:
    """instruments -> bruno_lab; protocols -> bruno_lab, instruments; calibration -> bruno_lab;
    reporting -> bruno_lab, calibration; bruno_lab (below its top layer) -> none of them."""
    allowed = {
        "instruments": ("bruno_lab", "instruments"),
        "protocols": ("bruno_lab", "instruments", "protocols"),
        "calibration": ("bruno_lab", "calibration"),
        # the report and its live view read runs, plans and leases: they sit above protocols
        "reporting": ("bruno_lab", "calibration", "protocols", "instruments", "reporting"),
        "bruno_lab": ("bruno_lab",),
    }

    def ok(a: str, b: str) -> bool:
        if _in(a, *TOP):
            return True
        if _in(b, *TOP):
            return _in(a, *TOP)
        return _in(b, *allowed[a.split(".")[0]])

    bad = _violations(ok)
    assert not bad, bad


def test_only_the_top_layer_imports_the_simulated_lab() -> None:
    bad = _violations(lambda a, b: not _in(b, "instruments.sim") or _in(a, "instruments.sim", *TOP))
    assert not bad, bad


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    out.append(sorted(comp))
    return out


def test_scc_finds_a_circle() -> None:
    comps = _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert sorted(map(tuple, comps)) == [("a", "b", "c"), ("d",)]


def test_no_import_circle() -> None:
    circles = [c for c in _strongly_connected(GRAPH) if len(c) > 1]
    assert not circles, circles
