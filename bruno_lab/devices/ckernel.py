"""The one builder and cache of bruno-lab's compiled C kernels (gcc + ctypes).

A kernel is a C source file in ``bruno_lab/devices/kernels/`` (with the headers it includes from
there), compiled once per machine with given flags into ``cache_root()/kernels`` and loaded
through ctypes. The cached ``.so`` is keyed by a hash of the source, every header of the kernel
directory, the flags, the defines and the CPU's flags, so a changed kernel or another machine
never loads a stale library. Building writes into a temporary directory and renames atomically:
concurrent builders never see half a file. Compile and link are separate steps: gcc 12 links
``crtfastmath.o`` into a ``-ffast-math`` shared library, and loading that would switch the whole
process to flush-to-zero.

:func:`load` returns ``None`` (after one logged warning per kernel) when no kernel can be built
(no gcc, compile error); every caller then has a torch fallback with the same numbers.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import platformdirs

log = logging.getLogger(__name__)

ENV_CACHE = "BRUNO_LAB_CACHE"
KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
_lock = threading.Lock()
_libs: dict[tuple[str, tuple[str, ...], tuple[str, ...]], ctypes.CDLL | None] = {}


def cache_root() -> Path:
    """bruno-lab's per-user cache: ``$BRUNO_LAB_CACHE``, else the platform's user cache dir
    (``~/.cache/bruno-lab`` on Linux, honouring ``XDG_CACHE_HOME``). Not created here."""
    explicit = os.environ.get(ENV_CACHE)
    if explicit:
        return Path(explicit)
    return Path(platformdirs.user_cache_dir("bruno-lab", appauthor=False))


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return os.uname().machine


def _key(source: str, flags: Sequence[str], defines: Sequence[str]) -> str:
    text = [(KERNEL_DIR / source).read_text()]
    text += [h.read_text() for h in sorted(KERNEL_DIR.glob("*.h"))]
    text += [" ".join(flags), " ".join(defines), _cpu_flags()]
    return hashlib.sha256("\0".join(text).encode()).hexdigest()[:16]


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)


def _build(source: str, flags: Sequence[str], defines: Sequence[str]) -> ctypes.CDLL:
    out_dir = cache_root() / "kernels"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(source).stem + "".join(f"_{d.split('=')[0].lower()}" for d in defines)
    so_path = out_dir / f"{stem}_{_key(source, flags, defines)}.so"
    if not so_path.exists():
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            o_path, tmp_so = Path(tmp) / "k.o", Path(tmp) / "k.so"
            compile_cmd = ["gcc", *flags, *(f"-D{d}" for d in defines), "-fPIC"]
            compile_cmd += ["-I", str(KERNEL_DIR), "-c", str(KERNEL_DIR / source)]
            _run([*compile_cmd, "-o", str(o_path)])
            _run(["gcc", "-shared", str(o_path), "-o", str(tmp_so), "-lm"])
            os.replace(tmp_so, so_path)
        log.info("built C kernel %s", so_path)
    return ctypes.CDLL(str(so_path))


def load(
    source: str,
    flags: Sequence[str],
    defines: Sequence[str] = (),
    signatures: Mapping[str, tuple[Sequence[Any], Any]] | None = None,
) -> ctypes.CDLL | None:
    """The library of ``kernels/<source>`` built with ``flags`` and ``-D`` ``defines`` (cached
    per process and on disk), or ``None`` if it cannot be built (warned once per kernel).
    ``signatures`` maps a function name to its ctypes ``(argtypes, restype)``, set once when
    the library is loaded."""
    key = (source, tuple(flags), tuple(defines))
    with _lock:
        if key not in _libs:
            try:
                lib = _build(source, flags, defines)
                for name, (argtypes, restype) in (signatures or {}).items():
                    fn = getattr(lib, name)
                    fn.argtypes, fn.restype = list(argtypes), restype
                _libs[key] = lib
            except (OSError, subprocess.SubprocessError) as exc:
                detail = getattr(exc, "stderr", "") or str(exc)
                log.warning("C kernel %s unavailable (%s); using the torch loop", source, detail)
                _libs[key] = None
        return _libs[key]
