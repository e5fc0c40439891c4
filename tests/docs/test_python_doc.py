"""docs/python.md runs: every ```python block is executed in order in one namespace (in a
temporary folder), and what it prints is compared with the ```text block that follows it, with
every number masked (values move with seeds and physics; names, columns and structure must not).

To refresh the outputs shown in the document after a change:
``python tests/docs/test_python_doc.py --write`` (runs the blocks and rewrites the text blocks).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "python.md"
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


def run_blocks(workdir: Path) -> list[tuple[str, str, str | None, str]]:
    """Execute every block in ``workdir``; returns (name, code, expected, printed)."""
    namespace: dict[str, object] = {"__name__": "__doc_python_md__"}
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
    for name, _code, expected, printed in run_blocks(tmp_path):
        if expected is None:
            continue
        assert mask(printed) == mask(expected), f"docs/python.md {name} printed:\n{printed}"


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
