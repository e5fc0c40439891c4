"""Device-faithful RRAM synapse physics: weights as differential pairs on a card's level ladder.

Mapping (documented in docs/programming-map.md). A layer's weight ``w`` is realised as
``w = weight_per_siemens * (G+ - G-)`` with ``weight_per_siemens = max|W| / (G_max - G_min)``
(per layer, G = the ladder's level means). Each weight gets the level pair ``(i+, i-)`` whose
mean difference ``G[i+] - G[i-]`` is nearest to ``w / weight_per_siemens``; among equally near
pairs the one with the smallest ``G[i+] + G[i-]`` (least read current and read noise) wins, so
``w = 0`` is the pair (0, 0).

Once per network instance (seeded) every cell draws its programming error after verify
(``N(0, sigma_level^2)`` with the card's sigma of the level it is programmed to), whether it is
stuck (card's stuck fraction; a stuck cell reads the card's stuck conductance whatever it is
programmed to) and its relaxation deviate. Relaxation at ``t`` seconds after programming follows
the card: ``G*(1 + drift*d) + N(0, (sigma_per_decade*d)^2)``, ``d = log10(t/t0)`` (0 when
``t <= t0``). Read noise ``N(0, (floor + slope*G)^2)`` is fresh on every read.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from bruno_lab.cards import RramLadder

log = logging.getLogger(__name__)

PLUS = 0
MINUS = 1


@dataclass(frozen=True)
class LadderStats:
    """A card's RRAM ladder as tensors (siemens, seconds), ready for batched draws."""

    level_mean_siemens: Tensor
    level_sigma_siemens: Tensor
    read_floor_siemens: float
    read_slope_rel: float
    relax_t0_s: float
    relax_drift_rel_per_decade: float
    relax_sigma_siemens_per_decade: float
    stuck_fraction: float
    stuck_conductance_siemens: float

    @classmethod
    def from_ladder(cls, ladder: RramLadder, dtype: torch.dtype = torch.float32) -> LadderStats:
        """The ladder as tensors. A card without a read-noise model (not measured) reads
        noise-free (logged); one without a relaxation model never relaxes (``relax_t0_s`` is
        infinite; the synapse refuses a relaxation time > 0 with such a card)."""
        noise, relax = ladder.read_noise, ladder.relaxation
        if noise is None:
            log.warning("RRAM card has no read-noise model (not measured): reads are noise-free")
        return cls(
            level_mean_siemens=torch.tensor([lv.mean_siemens for lv in ladder.levels], dtype=dtype),
            level_sigma_siemens=torch.tensor(
                [lv.sigma_siemens for lv in ladder.levels], dtype=dtype
            ),
            read_floor_siemens=noise.floor_siemens if noise is not None else 0.0,
            read_slope_rel=noise.slope_rel if noise is not None else 0.0,
            relax_t0_s=relax.t0_s if relax is not None else math.inf,
            relax_drift_rel_per_decade=relax.drift_rel_per_decade if relax is not None else 0.0,
            relax_sigma_siemens_per_decade=(
                relax.sigma_siemens_per_decade if relax is not None else 0.0
            ),
            stuck_fraction=ladder.stuck_fraction,
            stuck_conductance_siemens=ladder.stuck_conductance_siemens,
        )

    @property
    def span_siemens(self) -> float:
        """Largest difference a pair can hold: G_max - G_min."""
        return float(self.level_mean_siemens[-1] - self.level_mean_siemens[0])

    def decades_after(self, time_s: float) -> float:
        """Decades of relaxation ``log10(t/t0)`` at ``time_s`` after programming (>= 0)."""
        return math.log10(time_s / self.relax_t0_s) if time_s > self.relax_t0_s else 0.0


def _pair_table(level_mean_siemens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """All (i+, i-) pairs ordered by G+ + G- ascending: (difference, i+, i-)."""
    n = level_mean_siemens.numel()
    ip, im = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    ip, im = ip.reshape(-1), im.reshape(-1)
    order = torch.argsort(level_mean_siemens[ip] + level_mean_siemens[im], stable=True)
    ip, im = ip[order], im[order]
    return level_mean_siemens[ip] - level_mean_siemens[im], ip, im


def nearest_level_pairs(target_diff_siemens: Tensor, level_mean_siemens: Tensor) -> Tensor:
    """Level indices (2, *shape) [plus, minus] whose mean difference is nearest the target."""
    diff, ip, im = _pair_table(level_mean_siemens.to(target_diff_siemens.dtype))
    flat = target_diff_siemens.detach().reshape(-1, 1)
    best = torch.argmin((flat - diff.reshape(1, -1)).abs(), dim=1)  # first = lowest G sum
    shape = target_diff_siemens.shape
    return torch.stack([ip[best].reshape(shape), im[best].reshape(shape)])


def weight_per_siemens(weight: Tensor, stats: LadderStats) -> float:
    """The layer's scale: max|W| maps to the ladder's full span (1.0 if W is all zero)."""
    max_abs = float(weight.detach().abs().max())
    return (max_abs if max_abs > 0 else 1.0) / stats.span_siemens


class CellDraws(NamedTuple):
    """What each cell of a deployment draws once: standard normals and the stuck flag.

    Shape (2, rows, cols): index 0 the G+ cell, 1 the G- cell.
    """

    program_eps: Tensor
    relax_eps: Tensor
    stuck: Tensor


def draw_cells(shape: tuple[int, int], stats: LadderStats, generator: torch.Generator) -> CellDraws:
    """Draw a deployment's per-cell deviates (seeded through ``generator``)."""
    full = (2, *shape)
    dtype = stats.level_mean_siemens.dtype
    program = torch.randn(full, generator=generator, dtype=dtype)
    relax = torch.randn(full, generator=generator, dtype=dtype)
    stuck = torch.rand(full, generator=generator, dtype=dtype) < stats.stuck_fraction
    return CellDraws(program, relax, stuck)


def programmed_conductance(
    levels: Tensor, draws: CellDraws, stats: LadderStats, time_s: float = 0.0
) -> Tensor:
    """Conductance (S) each cell holds ``time_s`` after programming to ``levels`` (2, r, c)."""
    g = stats.level_mean_siemens[levels] + stats.level_sigma_siemens[levels] * draws.program_eps
    d = stats.decades_after(time_s)
    if d > 0.0:
        g = g * (1.0 + stats.relax_drift_rel_per_decade * d)
        g = g + stats.relax_sigma_siemens_per_decade * d * draws.relax_eps
    g = torch.where(draws.stuck, torch.full_like(g, stats.stuck_conductance_siemens), g)
    return g.clamp(min=0.0)


def read_conductance(
    conductance_siemens: Tensor,
    stats: LadderStats,
    generator: torch.Generator,
    n_reads: int | None = None,
) -> Tensor:
    """One fresh noisy read of every cell; ``n_reads`` stacks that many independent reads."""
    g = (
        conductance_siemens
        if n_reads is None
        else conductance_siemens.expand(n_reads, *conductance_siemens.shape)
    )
    sigma = stats.read_floor_siemens + stats.read_slope_rel * g
    noise = torch.randn(g.shape, generator=generator, dtype=g.dtype, device=g.device)
    return (g + sigma * noise).clamp(min=0.0)


def pair_to_weight(conductance_siemens: Tensor, scale_weight_per_siemens: float) -> Tensor:
    """Weights from cell conductances (..., 2, rows, cols): ``scale * (G+ - G-)``."""
    return scale_weight_per_siemens * (
        conductance_siemens.select(-3, PLUS) - conductance_siemens.select(-3, MINUS)
    )
