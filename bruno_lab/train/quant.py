"""The paper's quantized synapse: per-layer symmetric uniform levels, stochastic rounding.

For ``b`` bits there are ``m = 2**(b-1) - 1`` integer levels each side of zero (3 bits: -3..3,
7 levels), scale ``max|W|/m`` per layer. Rounding is unbiased and stochastic (round up with a
probability equal to the fractional part), redrawn on every call; the gradient is straight-through
to the float shadow weights: ``W_eff = W + stopgrad(Q(W) - W)``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def levels_per_side(bits: int) -> int:
    """Integer levels on each side of zero for a ``bits``-bit symmetric quantizer."""
    if bits < 2:
        raise ValueError(f"bits must be >= 2, got {bits}")
    return 2 ** (bits - 1) - 1


def quantize_stochastic(weight: Tensor, bits: int, generator: torch.Generator) -> Tensor:
    """Quantized copy of ``weight`` with a straight-through gradient (same shape and dtype)."""
    m = levels_per_side(bits)
    w = weight.detach()
    max_abs = w.abs().max()
    if float(max_abs) == 0.0:
        return weight
    scale = max_abs / m
    x = w / scale
    low = torch.floor(x)
    up = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) < (x - low)
    q = (low + up.to(x.dtype)).clamp(-m, m) * scale
    return weight + (q - weight).detach()
