"""Files that cannot carry code: tensors as safetensors, metadata as JSON, each checksummed.

Why: ``torch.load(weights_only=False)`` and ``pickle.load`` run whatever a crafted file asks
for before any check can look at it. A bruno-lab tensor file is a safetensors file (a JSON
header, then raw little-endian tensor bytes: nothing is ever executed to read it) whose header
metadata holds ``format`` (what the file is), ``version``, ``meta`` (the JSON document of the
file's non-tensor content) and ``sha256`` over the meta and every tensor's name, dtype, shape
and bytes, so a truncated or edited file is refused rather than half-loaded. A JSON document
(a programming map) carries the same ``format``/``version`` fields and a ``sha256`` of its
canonical JSON without that field.

Files written by older bruno-lab versions (``torch.save`` pickles) are recognised by their
first bytes and refused with a message that says so, never unpickled.

Output paths are checked before work starts (:func:`check_output_path`) and written through a
temporary sibling renamed into place, removed again if the write fails.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bruno_lab.errors import BadInputError, DataError

#: Refuse bigger tensor files unread (a network or checkpoint of this lab is a few MiB).
MAX_TENSOR_FILE_BYTES = 2 * 2**30
#: Refuse bigger JSON documents unread.
MAX_JSON_BYTES = 256 * 2**20
MAX_JSON_DEPTH = 64

_PICKLE_MAGIC = (b"\x80",)  # pickle protocol 2+ opcode PROTO
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save since 1.6: a zip of pickles


class FileFormatError(DataError):
    """A file is not of the expected bruno-lab format, is corrupt, or is an unsafe old file."""


# -- output paths -------------------------------------------------------------------------


def check_output_path(
    path: str | Path, option: str, *, suffixes: Iterable[str] | None = None
) -> Path:
    """Refuse an output path that cannot be written, before any work starts.

    An existing directory, a parent that is a file, or (with ``suffixes``) a suffix outside
    the allowed ones is ``BadInputError`` naming ``option``. The parent directory need not
    exist yet (writers create it).
    """
    path = Path(path)
    if str(path) in ("", "."):
        raise BadInputError(f"{option}: empty path")
    if path.is_dir():
        raise BadInputError(f"{option} {path}: is a directory; give a file path")
    if suffixes is not None:
        allowed = tuple(s.lower() for s in suffixes)
        if path.suffix.lower() not in allowed:
            raise BadInputError(f"{option} {path}: the file name must end in {', '.join(allowed)}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise BadInputError(f"{option} {path}: {parent} is not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise BadInputError(f"{option} {path}: directory {parent} is not writable")
            break
    return path


def check_output_dir(path: str | Path, option: str) -> Path:
    """Refuse an output directory that is an existing file or lies under one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadInputError(f"{option} {path}: exists and is not a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise BadInputError(f"{option} {path}: {parent} is not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise BadInputError(f"{option} {path}: directory {parent} is not writable")
            break
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` through ``PATH.tmp`` and rename; the temporary is removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# -- JSON ---------------------------------------------------------------------------------


def canonical_json(doc: Any) -> bytes:
    """The bytes a checksum is taken over: sorted keys, no spaces, NaN allowed (as NaN)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def _no_duplicates(where: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise BadInputError(f"{where}: duplicate key {key!r}")
            out[key] = value
        return out

    return hook


def _depth_ok(text: str, max_depth: int) -> bool:
    """True if brackets outside strings nest at most ``max_depth`` deep (no recursion)."""
    depth, in_str, escape = 0, False, False
    for ch in text:
        if in_str:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def parse_json(
    text: str, where: str, *, allow_nan: bool = False, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """Parse JSON strictly: duplicate keys, NaN/Infinity (unless allowed) and nesting deeper
    than ``max_depth`` are ``BadInputError`` naming ``where``."""
    if not _depth_ok(text, max_depth):
        raise BadInputError(f"{where}: nested deeper than {max_depth} levels")

    def bad_constant(name: str) -> Any:
        if allow_nan:
            return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]
        raise BadInputError(f"{where}: {name} is not allowed (numbers must be finite)")

    try:
        return json.loads(
            text, object_pairs_hook=_no_duplicates(where), parse_constant=bad_constant
        )
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{where}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise BadInputError(f"{where}: nested too deeply") from None


def read_text(path: str | Path, what: str, *, max_bytes: int) -> str:
    """A user file as text: at most ``max_bytes``, strict UTF-8 (a BOM is allowed), no NUL."""
    path = Path(path)
    try:
        if path.is_dir():
            raise BadInputError(f"{path}: is a directory, not a {what}")
        size = path.stat().st_size
        if size > max_bytes:
            raise BadInputError(
                f"{path}: {size} bytes; a {what} is at most {max_bytes} bytes (refused unread)"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise BadInputError(f"{path}: {what} is UTF-16; save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadInputError(
            f"{path}:{line}: {what} is not UTF-8 (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise BadInputError(f"{path}:{line}: {what} contains a NUL byte (not a text file?)")
    return text


def write_json_doc(path: str | Path, doc: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``doc`` (which names its ``format`` and ``version``) with its ``sha256``."""
    body = {k: v for k, v in doc.items() if k != "sha256"}
    out = {**body, "sha256": hashlib.sha256(canonical_json(body)).hexdigest()}
    atomic_write_text(path, json.dumps(out, indent=1, allow_nan=True))
    return out


def read_json_doc(path: str | Path, fmt: str, versions: Iterable[int], what: str) -> dict[str, Any]:
    """A JSON document written by :func:`write_json_doc`, checked: format, version, checksum."""
    path = Path(path)
    text = read_text(path, what, max_bytes=MAX_JSON_BYTES)
    doc = parse_json(text, str(path), allow_nan=True)
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise FileFormatError(f"{path}: not a {what} (format {fmt!r} expected)")
    _check_version(path, doc.get("version"), versions, what)
    stored = doc.get("sha256")
    body = {k: v for k, v in doc.items() if k != "sha256"}
    if stored != hashlib.sha256(canonical_json(body)).hexdigest():
        raise FileFormatError(f"{path}: {what} checksum does not match (corrupt or edited)")
    return body


def _check_version(path: Path, version: Any, versions: Iterable[int], what: str) -> int:
    allowed = tuple(versions)
    if isinstance(version, bool) or not isinstance(version, int) or version not in allowed:
        raise FileFormatError(
            f"{path}: {what} version {version!r}; this bruno-lab reads version "
            f"{', '.join(map(str, allowed))} (a newer bruno-lab wrote it?)"
        )
    return version


# -- tensor files -------------------------------------------------------------------------


def _tensor_digest(meta_json: str, tensors: Mapping[str, Any]) -> str:
    import torch

    h = hashlib.sha256(meta_json.encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"\n{name}\n{t.dtype}\n{tuple(t.shape)}\n".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def write_tensor_file(
    path: str | Path,
    fmt: str,
    version: int,
    tensors: Mapping[str, Any],
    meta: Mapping[str, Any],
) -> None:
    """Write ``tensors`` (name -> torch tensor) and the JSON-able ``meta`` as one safetensors
    file with format, version and checksum (atomic rename)."""
    import torch
    from safetensors.torch import save

    plain = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    for name, t in plain.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: not a tensor")
    meta_json = json.dumps(dict(meta), sort_keys=True, allow_nan=True)
    header = {
        "format": fmt,
        "version": str(int(version)),
        "meta": meta_json,
        "sha256": _tensor_digest(meta_json, plain),
    }
    atomic_write_bytes(path, save(plain, metadata=header))


def _refuse_unsafe_or_foreign(path: Path, head: bytes, fmt: str, what: str) -> None:
    if head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_MAGIC):
        raise FileFormatError(
            f"{path}: an old-format {what} (a torch pickle, as bruno-lab wrote before format "
            f"version 2): not loaded, because unpickling a file can run code; write it again "
            f"with this bruno-lab (e.g. train again with --out)"
        )
    raise FileFormatError(f"{path}: not a {what} (expected a {fmt} safetensors file)")


def read_tensor_file(
    path: str | Path, fmt: str, versions: Iterable[int], what: str, *, tensors: bool = True
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """``(tensors, meta, version)`` of a file written by :func:`write_tensor_file`.

    Refused with ``FileFormatError`` (exit 2): a missing or unreadable file, an old pickle,
    anything not a safetensors file of format ``fmt``, an unknown version, a checksum that
    does not match. ``tensors=False`` reads the header only (tensors dict empty, unchecked).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        if path.is_dir():
            raise FileFormatError(f"{path}: is a directory, not a {what}")
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if size > MAX_TENSOR_FILE_BYTES:
        raise FileFormatError(f"{path}: {size} bytes, more than a {what} can be (refused unread)")
    if len(head) < 8:
        raise FileFormatError(f"{path}: not a {what} (empty or truncated)")
    header_len = int.from_bytes(head[:8], "little")
    if header_len <= 0 or header_len > size - 8 or head[8:9] != b"{":
        _refuse_unsafe_or_foreign(path, head, fmt, what)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            if header.get("format") != fmt:
                raise FileFormatError(f"{path}: not a {what} (format {header.get('format')!r})")
            try:
                version = int(header.get("version", ""))
            except ValueError:
                version = -1
            _check_version(path, version, versions, what)
            names = list(f.keys()) if tensors else []  # header only: no tensor is read
            loaded = {name: f.get_tensor(name) for name in names}
    except SafetensorError as exc:
        raise FileFormatError(f"{path}: not a readable {what} ({exc})") from None
    meta_json = header.get("meta", "")
    try:
        meta = parse_json(meta_json, f"{path}: metadata", allow_nan=True)
    except BadInputError as exc:
        raise FileFormatError(str(exc)) from None
    if not isinstance(meta, dict):
        raise FileFormatError(f"{path}: {what} metadata is not a JSON object")
    if tensors and header.get("sha256") != _tensor_digest(meta_json, loaded):
        raise FileFormatError(f"{path}: {what} checksum does not match (corrupt or edited)")
    return loaded, meta, version


# -- the one pickle we read ---------------------------------------------------------------

#: What a pickled list of numpy-array records needs, and nothing that can call code.
NUMPY_RECORD_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("builtins", "bytearray"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }
)


def restricted_unpickle(fh: Any, where: str, allowed: frozenset[tuple[str, str]]) -> Any:
    """Unpickle ``fh`` allowing only the ``(module, name)`` globals in ``allowed``: anything
    else (``os.system``, ``builtins.eval``, ...) is refused before it is called."""
    import pickle

    class _Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) not in allowed:
                raise FileFormatError(
                    f"{where}: refers to {module}.{name}, which a data file has no business "
                    "loading (refused: a pickle can run code)"
                )
            return super().find_class(module, name)

    try:
        return _Restricted(fh).load()
    except FileFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, OverflowError) as exc:  # fmt: skip
        raise FileFormatError(
            f"{where}: not a readable pickle ({type(exc).__name__}: {exc})"
        ) from None
