"""The store as calibration sees it: it reads measurements and arrays, and writes fits + a card.

A structural type (``typing.Protocol``): ``bruno_lab.store.Store`` satisfies it, as does any
object with the same members (a read-only replica, a test double over a frame).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from sqlalchemy.engine import Engine

from bruno_lab.cards import ModelCardBody
from bruno_lab.store.models import Fit, ModelCard


class CalibrationStore(Protocol):
    """Reads: the engine (measurement frames through ``bruno_lab.store.queries``), arrays, fits.
    Writes: one calibration (its fits and the card built from them) in one transaction."""

    @property
    def engine(self) -> Engine: ...
    @property
    def masked_url(self) -> str: ...

    def load_arrays_many(
        self, measurement_ids: list[int], names: list[str] | None = None
    ) -> dict[int, dict[str, tuple[np.ndarray, str]]]: ...
    def list_fits(
        self, *, device_ids: Sequence[int] | None = None, model_name: str | None = None
    ) -> list[Fit]: ...
    def add_calibration(
        self,
        fits: Sequence[Mapping[str, Any]],
        body: Mapping[str, Any] | ModelCardBody,
        code_version: str,
        *,
        fit_ids: Sequence[int] = (),
    ) -> tuple[list[int], ModelCard]: ...
