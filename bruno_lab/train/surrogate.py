"""Spike functions with surrogate gradients.

A spike is the Heaviside step of a membrane distance to threshold ``x`` (``x = V - V_thr`` in
volts for FeLIF, dimensionless for LIF). Its derivative is replaced in the backward pass by the
SuperSpike form used by BRUNO: ``ds/dx = 1/(1 + beta*|x|)`` (Zenke & Ganguli, Neural Comput. 2018,
eq. 6, as written in the BRUNO paper: not squared), ``beta = 10`` per unit of ``x``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

SUPERSPIKE_BETA = 10.0


class SuperSpike(torch.autograd.Function):
    """Heaviside forward (spike when ``x >= 0``); SuperSpike ``1/(1 + beta|x|)`` backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, beta: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.beta = beta
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad_output / (1.0 + ctx.beta * x.abs()), None


def superspike(x: Tensor, beta: float = SUPERSPIKE_BETA) -> Tensor:
    """Spikes (0/1, same dtype as ``x``) of ``x >= 0`` with the SuperSpike surrogate gradient."""
    return SuperSpike.apply(x, beta)
