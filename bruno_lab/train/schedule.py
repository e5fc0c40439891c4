"""Learning-rate schedules as pure functions of a run's history (so a resumed run continues
exactly: the multiplier is recomputed from the epochs already in its checkpoint).

``plateau``: the rule of ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (mode ``min``, relative
threshold, no cooldown, no minimum): after more than ``patience`` epochs in a row without a
relative improvement of ``threshold`` over the best value so far, the rate is multiplied by
``factor`` and the count restarts. The BRUNO paper trains the chorales with "reduce on plateau";
its factor and patience are not published, ours are the defaults of ``TrainConfig``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

SCHEDULES: tuple[str, ...] = ("constant", "plateau")
PLATEAU_THRESHOLD = 1e-4
"""Relative improvement that counts as one (torch's default)."""


def plateau_scale(
    values: Iterable[float], *, factor: float, patience: int, threshold: float = PLATEAU_THRESHOLD
) -> float:
    """The learning-rate multiplier after the monitored ``values`` of the epochs so far (lower is
    better; a NaN epoch counts as no improvement)."""
    if not 0 < factor < 1:
        raise ValueError(f"plateau factor must be in (0, 1), got {factor}")
    if patience < 0:
        raise ValueError(f"plateau patience must be >= 0, got {patience}")
    best, bad, scale = math.inf, 0, 1.0
    for v in values:
        if v < best * (1.0 - threshold):  # torch's rule (a NaN compares False)
            best, bad = v, 0
        else:
            bad += 1
        if bad > patience:
            scale *= factor
            bad = 0
    return scale
