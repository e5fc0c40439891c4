"""The device package's structure, from its own source: no import circles, no imports inside
functions or after the first definition, nothing of ours above it; one definition per FeCap
parameter; one C Euler step; one kernel builder and cache root."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import bruno_lab.devices as devices_pkg
from bruno_lab.devices import ckernel
from bruno_lab.devices.fecap import FeCapParams
from bruno_lab.devices.felif_core import NEURON_FECAP_FIELDS, FeLIFParams

PKG = Path(devices_pkg.__file__).parent
ALLOWED_OURS = {"bruno_lab.errors"}  # leaves of bruno_lab the device models may use


def _modules() -> dict[str, ast.Module]:
    return {
        f"bruno_lab.devices.{p.stem}" if p.stem != "__init__" else "bruno_lab.devices": ast.parse(
            p.read_text(), str(p)
        )
        for p in sorted(PKG.glob("*.py"))
    }


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if base == "bruno_lab.devices":  # `from bruno_lab.devices import fecap`: submodules
        return [f"{base}.{a.name}" for a in node.names]
    return [base]


def test_no_function_level_or_bottom_imports_and_nothing_above():
    for name, tree in _modules().items():
        first_def = min(
            (n.lineno for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)),
            default=10**9,
        )
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            targets = _imported(node)
            ours = [t for t in targets if t.startswith("bruno_lab")]
            assert node in tree.body, f"{name}:{node.lineno} imports inside a function: {targets}"
            assert node.lineno < first_def, f"{name}:{node.lineno} imports after a definition"
            for t in ours:
                assert t.startswith("bruno_lab.devices") or t in ALLOWED_OURS, (name, t)


def test_the_device_import_graph_has_no_cycle():
    graph = {
        name: {
            t
            for node in tree.body
            if isinstance(node, ast.Import | ast.ImportFrom)
            for t in _imported(node)
            if t.startswith("bruno_lab.devices.")
        }
        for name, tree in _modules().items()
    }
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, f"import circle: {' -> '.join([*path, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    # the neuron's leaf imports only the FeCap physics and the parameter machinery
    assert graph["bruno_lab.devices.felif_core"] <= {
        "bruno_lab.devices.fecap",
        "bruno_lab.devices.params",
    }
    assert graph["bruno_lab.devices.fecap"] <= {"bruno_lab.devices.params"}


def test_felif_params_compose_the_fecap_parameters_with_one_definition_each():
    fecap_specs, felif_specs = FeCapParams.specs(), FeLIFParams.specs()
    for name in NEURON_FECAP_FIELDS:
        assert felif_specs[name] is fecap_specs[name]  # the same declaration, not a copy
    assert set(felif_specs) == {*NEURON_FECAP_FIELDS, "v_thr_v", "v_reset_v"}
    p = FeLIFParams.default(2).replace(area_m2=30e-12)
    assert isinstance(p.fecap, FeCapParams) and float(p.fecap.area_m2[1]) == 30e-12
    assert float(p.fecap.imprint_v[0]) == 0.0  # the lumped neuron: no imprint
    whole = FeLIFParams(fecap=p.fecap, v_thr_v=p.v_thr_v, v_reset_v=p.v_reset_v)
    assert whole.to_json() == p.to_json()
    with pytest.raises(TypeError, match="unknown"):
        FeLIFParams(**p._flat(), imprint_v=p.v_thr_v)


def test_one_c_euler_step_and_one_builder():
    sources = {p.name: p.read_text() for p in (PKG / "kernels").iterdir()}
    defining = [n for n, s in sources.items() if re.search(r"void\s+felif_euler\s*\(", s)]
    assert defining == ["felif_step.h"]
    kernels = [n for n in sources if n.endswith(".c")]
    assert kernels and all('#include "felif_step.h"' in sources[n] for n in kernels)
    for n in kernels:  # nobody restates the step's switching law
        assert "X_MAX" not in sources[n] and "pow(" not in sources[n], n
    python = {p.name: p.read_text() for p in PKG.glob("*.py")}
    builders = [n for n, s in python.items() if '"gcc"' in s or "ctypes.CDLL(" in s]
    assert builders == ["ckernel.py"]


def test_cache_root_from_the_environment_or_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(ckernel.ENV_CACHE, str(tmp_path / "c"))
    assert ckernel.cache_root() == tmp_path / "c"
    monkeypatch.delenv(ckernel.ENV_CACHE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ckernel.cache_root() == tmp_path / "xdg" / "bruno-lab"
