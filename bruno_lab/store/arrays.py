"""Array bytes for the database: little-endian C-order raw bytes, chunked, with a sha256.

Why raw bytes and not ``np.save``/pickle: any language can read them back from the stored
dtype and shape, and the checksum covers exactly what was written. Chunks keep single rows
bounded (``DEFAULT_CHUNK_BYTES``), which both SQLite and PostgreSQL handle well.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from bruno_lab.errors import DataError

DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
_KINDS = "biufc"  # bool, signed, unsigned, float, complex: fixed-size numeric dtypes only


@dataclass(frozen=True)
class EncodedArray:
    """An array ready to insert: metadata columns plus its byte chunks (memoryviews, no copy)."""

    dtype: str
    shape: list[int]
    n_bytes: int
    sha256: str
    chunks: list[memoryview]


def encode_array(
    values: np.ndarray, *, name: str, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> EncodedArray:
    """Convert ``values`` to little-endian C-order bytes, checksum and split into chunks."""
    arr = np.asarray(values)
    if arr.dtype.kind not in _KINDS or arr.dtype.hasobject:
        raise DataError(
            f"array {name!r}: dtype {arr.dtype} cannot be stored; use a numeric dtype "
            "(bool, int, uint, float, complex)"
        )
    le = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    arr = np.ascontiguousarray(arr, dtype=le)
    buf = arr.reshape(-1).view(np.uint8).data
    digest = hashlib.sha256(buf).hexdigest()
    step = max(int(chunk_bytes), 1)
    chunks = [buf[i : i + step] for i in range(0, len(buf), step)] or [buf]
    return EncodedArray(
        dtype=arr.dtype.str, shape=list(arr.shape), n_bytes=len(buf), sha256=digest, chunks=chunks
    )


def decode_array(
    *,
    where: str,
    dtype: str,
    shape: list[int],
    n_bytes: int,
    sha256: str,
    n_chunks: int,
    chunks: list[tuple[int, bytes]],
) -> np.ndarray:
    """Reassemble an array from ``(seq, data)`` chunks; any inconsistency raises ``DataError``."""
    seqs = [seq for seq, _ in chunks]
    if seqs != list(range(n_chunks)):
        raise DataError(f"{where}: expected chunks 0..{n_chunks - 1}, found {seqs}")
    data = bytearray()  # one copy in total, and the returned array is writable
    for _, chunk in chunks:
        data += chunk
    if len(data) != n_bytes:
        raise DataError(f"{where}: {len(data)} bytes stored, {n_bytes} expected")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise DataError(f"{where}: checksum mismatch, the stored bytes are corrupt")
    dt = np.dtype(dtype)
    if int(np.prod(shape, dtype=np.int64)) * dt.itemsize != n_bytes:
        raise DataError(f"{where}: shape {shape} of {dtype} does not match {n_bytes} bytes")
    return np.frombuffer(data, dtype=dt).reshape(shape)
