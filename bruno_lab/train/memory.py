"""Honest memory figures: bytes held by autograd and the process's peak resident set.

``SavedTensorMeter`` counts, through ``torch.autograd.graph.saved_tensors_hooks``, the distinct
storages the autograd graph saves for the backward pass while it is active (each counted once,
by its full storage size): the graph's memory at its peak, just before ``backward``.
``peak_rss_bytes`` reads ``getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux): a process-wide
high-water mark, so compare methods in separate processes, each minus its own baseline.
"""

from __future__ import annotations

import resource
import sys
from types import TracebackType

import torch
from torch import Tensor


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class SavedTensorMeter:
    """Context manager summing the bytes of distinct storages saved for backward."""

    def __init__(self) -> None:
        self.bytes_saved = 0
        self.n_saved = 0
        self._seen: set[int] = set()
        # the packed tensors are kept until the meter closes: a storage freed mid-forward (a
        # branch of the graph that is dropped) could otherwise hand its address to a later one,
        # which would then go uncounted (the count depended on the allocator's history)
        self._kept: list[Tensor] = []
        self._ctx: torch.autograd.graph.saved_tensors_hooks | None = None

    def _pack(self, t: Tensor) -> Tensor:
        self.n_saved += 1
        self._kept.append(t)
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in self._seen:
            self._seen.add(key)
            self.bytes_saved += storage.nbytes()
        return t

    @staticmethod
    def _unpack(t: Tensor) -> Tensor:
        return t

    def __enter__(self) -> SavedTensorMeter:
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._ctx is not None
        self._ctx.__exit__(exc_type, exc, tb)
        self._seen.clear()
        self._kept.clear()
