"""docs/python.md runs: every ```python block is executed in order in one namespace (in a
temporary folder), and what it prints is compared with the ```text block that follows it: the
text with every number masked must be the same (names, columns, structure), and each number
must be within 0.1 + 20 % of the one shown (the run is seeded; a change of the physics or the
fits that moves a shown figure further than that must refresh the document, so a number on the
page cannot drift away from what the code gives).

To refresh the outputs shown in the document after a change:
``python tests/docs/test_python_doc.py --write`` (runs the blocks and rewrites the text blocks).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "python.md"
EXAMPLE = ROOT / "examples" / "explore_lab.py"
_BLOCK = re.compile(r"```(python|text)\n(.*?)```", re.S)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def blocks(text: str) -> list[tuple[str, str, str | None]]:
    """(code, expected output or None) pairs in document order, with the code's span key."""
    found = _BLOCK.findall(text)
    out: list[tuple[str, str, str | None]] = []
    for i, (kind, body) in enumerate(found):
        if kind != "python":
            continue
        expected = found[i + 1][1] if i + 1 < len(found) and found[i + 1][0] == "text" else None
        out.append((f"block {len(out) + 1}", body, expected))
    return out


def mask(text: str) -> list[str]:
    """Lines with numbers replaced and runs of spaces collapsed (frames re-align with width)."""
    lines = [_NUMBER.sub("<n>", line) for line in text.strip().splitlines()]
    return [re.sub(r"\s+", " ", line).strip() for line in lines]


def numbers(text: str) -> list[float]:
    return [float(n) for n in _NUMBER.findall(text)]


def close(printed: float, shown: float) -> bool:
    return abs(printed - shown) <= 0.1 + 0.2 * abs(shown)


def differences(printed: str, expected: str) -> list[str]:
    """What differs between a block's output and the document's: structure, or numbers out of
    tolerance (empty: they agree)."""
    if mask(printed) != mask(expected):
        return ["text (numbers masked) differs"]
    return [
        f"{got:g} printed, {shown:g} shown"
        for got, shown in zip(numbers(printed), numbers(expected), strict=True)
        if not close(got, shown)
    ]


def run_blocks(
    workdir: Path, namespace: dict[str, object] | None = None
) -> list[tuple[str, str, str | None, str]]:
    """Execute every block in ``workdir`` (in ``namespace``, kept for inspection); returns
    (name, code, expected, printed)."""
    namespace = {} if namespace is None else namespace
    namespace["__name__"] = "__doc_python_md__"
    results = []
    cwd = Path.cwd()
    os.chdir(workdir)
    # the document's relative paths (protocols/examples/...) are the repository's
    (workdir / "protocols").symlink_to(ROOT / "protocols")
    try:
        for name, code, expected in blocks(DOC.read_text()):
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                exec(compile(code, f"docs/python.md ({name})", "exec"), namespace)
            results.append((name, code, expected, buffer.getvalue()))
    finally:
        os.chdir(cwd)
        stop = getattr(namespace.get("lab"), "stop", None)
        if callable(stop):
            stop()
    return results


@pytest.mark.slow
def test_docs_python_md_runs_and_prints_what_it_shows(tmp_path: Path) -> None:
    import torch

    torch.set_num_threads(1)
    namespace: dict[str, object] = {}
    for name, _code, expected, printed in run_blocks(tmp_path, namespace):
        if expected is None:
            continue
        diff = differences(printed, expected)
        assert not diff, f"docs/python.md {name}: {diff}; printed:\n{printed}"
    # what the page claims, checked on the objects themselves
    data: Any = namespace["data"]
    final: Any = namespace["final"]
    assert final.test_accuracy >= data.meta["chance"] + 0.15, "the page's network does not learn"
    on_chip: Any = namespace["on_chip"]
    assert on_chip.chip_accuracy >= data.meta["chance"] + 0.1, "nor on chip"

    # the notebook-style example reads the database the page wrote
    env = {**os.environ, "BRUNO_LAB_DB": str(tmp_path / "lab.db"), "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert re.search(r"^demo-wafer: \d+ dies, \d+ devices, \d+ measurements$", out, re.M), out
    assert "RRAM levels [" in out, out
    runs = re.findall(r"^\s*(\d+)\s+(characterization|deployment)\s+completed", out, re.M)
    purposes = [p for _, p in runs]  # the page's characterizations, then its deployment's runs
    assert purposes == sorted(purposes) and set(purposes) == {"characterization", "deployment"}
    by_purpose = out[out.rindex("purpose") :]
    assert "characterization" in by_purpose and "deployment" in by_purpose, out


def test_the_example_is_notebook_cells() -> None:
    source = EXAMPLE.read_text()
    compile(source, str(EXAMPLE), "exec")
    assert source.count("# %%") >= 6 and "loop.open_store()" in source


def test_numbers_are_compared_within_tolerance() -> None:
    shown = "test accuracy 0.82 after 6 epochs (chance 0.50)\n48 cells, 46 within tolerance"
    assert differences(shown.replace("46", "44"), shown) == []
    assert differences(shown.replace("0.82", "0.47"), shown) == ["0.47 printed, 0.82 shown"]
    assert differences(shown.replace("cells", "rows"), shown) != []


def test_every_python_block_is_followed_by_its_output() -> None:
    found = blocks(DOC.read_text())
    assert len(found) >= 6
    assert all(expected is not None for _, _, expected in found)


def _write() -> None:
    import tempfile

    text = DOC.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        results = run_blocks(Path(tmp))
    for _name, code, expected, printed in results:
        if expected is None:
            continue
        old = f"```python\n{code}```\n\n```text\n{expected}```"
        new = f"```python\n{code}```\n\n```text\n{printed}```"
        text = text.replace(old, new, 1)
    DOC.write_text(text)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        _write()
    else:
        sys.exit("usage: python tests/docs/test_python_doc.py --write")
