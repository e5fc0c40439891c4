"""Honest classification metrics: ties are not class 0, and a collapsed network says so.

A spike-count readout ties often (all outputs silent is a tie of all classes at 0). ``argmax``
breaks a tie towards the lowest index, so a silent network scores the share of class 0; here a
sample whose true class is among ``k`` tied maxima counts ``1/k`` (the expectation of a random
tie-break), so a silent network scores chance exactly.

Collapse: the outputs carry no information. Detected on a split when at least
``COLLAPSE_TIED_FRACTION`` of its samples have all output counts equal (all silent, or all
saturated alike) or its mean cross-entropy is within ``COLLAPSE_LOSS_REL`` of ``ln C`` (the loss
of equal logits). Silence is absorbing: no spike, no gradient through the count loss.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

log = logging.getLogger(__name__)

COLLAPSE_TIED_FRACTION = 0.9
COLLAPSE_LOSS_REL = 0.01


def tie_aware_hits(counts: Tensor, target: Tensor) -> float:
    """Sum over samples of ``1/k`` where the target is among the ``k`` tied maxima, else 0."""
    top = counts.max(dim=1, keepdim=True).values
    is_max = counts == top
    k = is_max.sum(dim=1).to(torch.float64)
    hit = is_max.gather(1, target.view(-1, 1)).squeeze(1).to(torch.float64)
    return float((hit / k).sum())


def silent_count(counts: Tensor) -> int:
    """Samples whose outputs never spiked (all counts 0)."""
    return int((counts.abs().sum(dim=1) == 0).sum())


def tied_count(counts: Tensor) -> int:
    """Samples whose output counts are all equal (no class preferred)."""
    return int((counts.max(dim=1).values == counts.min(dim=1).values).sum())


@dataclass(frozen=True)
class CollapseCheck:
    """The collapse verdict of one split (see the module docstring)."""

    silent_fraction: float
    tied_fraction: float
    loss: float
    chance_loss: float
    collapsed: bool

    @property
    def reason(self) -> str:
        if not self.collapsed:
            return ""
        if self.silent_fraction >= COLLAPSE_TIED_FRACTION:
            return f"all outputs silent on {self.silent_fraction:.0%} of samples"
        if self.tied_fraction >= COLLAPSE_TIED_FRACTION:
            return f"all outputs tied on {self.tied_fraction:.0%} of samples"
        return f"loss {self.loss:.4f} at ln C = {self.chance_loss:.4f}"


def collapse_check(silent: float, tied: float, loss: float, n_classes: int) -> CollapseCheck:
    """Collapse verdict from a split's silent and tied fractions and mean loss."""
    chance = math.log(n_classes) if n_classes > 1 else 0.0
    at_chance = n_classes > 1 and abs(loss - chance) <= COLLAPSE_LOSS_REL * chance
    collapsed = tied >= COLLAPSE_TIED_FRACTION or at_chance
    return CollapseCheck(silent, tied, loss, chance, collapsed)


def mean_sd(values: Iterable[float]) -> dict[str, float | int]:
    """``{"mean", "sd", "n"}`` (sample SD; 0 for a single value; NaN values are dropped)."""
    vals = [float(v) for v in values if not math.isnan(float(v))]
    if not vals:
        return {"mean": math.nan, "sd": math.nan, "n": 0}
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "sd": sd, "n": len(vals)}


def format_mean_sd(values: Sequence[float], digits: int = 3) -> str:
    """``"0.912 ± 0.021 (n=5)"``."""
    s = mean_sd(values)
    return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f} (n={s['n']})"


def parse_seeds(spec: str) -> list[int]:
    """Seeds from ``"0-9"``, ``"1,3,5"`` or ``"0-2,7"`` (ValueError naming the bad part)."""
    seeds: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise ValueError(f"seeds {spec!r}: {part!r} is not N or N-M") from None
        if b < a or a < 0:
            raise ValueError(f"seeds {spec!r}: {part!r} is not an increasing range of seeds >= 0")
        seeds.extend(range(a, b + 1))
    if not seeds:
        raise ValueError(f"seeds {spec!r}: no seed given")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {spec!r}: a seed is repeated")
    return seeds
