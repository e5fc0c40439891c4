"""BRUNO against full BPTT on the same network: gradient agreement, for tests and benchmarks."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from bruno_lab.train.loop import batch_loss
from bruno_lab.train.network import NetworkConfig, SpikingNetwork


def layer_gradients(
    config: NetworkConfig,
    x: Tensor,
    y: Tensor,
    method: str,
    *,
    coarse_gradient: str | None = None,
    coarse_clip: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Tensor]:
    """Gradients of every trainable tensor (name -> grad) for one batch with ``method``.

    The network is rebuilt from ``config`` (same seed: identical weights and devices; a
    physically initialised one is calibrated on this batch, as training does on its first) and
    run in ``dtype`` (float64 takes float32 round-off over thousands of micro-steps out of a
    BPTT reference)."""
    changes: dict[str, Any] = {"method": method}
    if coarse_gradient is not None:
        changes["coarse_gradient"] = coarse_gradient
    if coarse_clip is not None:
        changes["coarse_clip"] = coarse_clip
    net = SpikingNetwork(dataclasses.replace(config, **changes)).to(dtype)
    if net.needs_calibration():
        net.calibrate(x.to(dtype))
    loss, _, _ = batch_loss(net, x.to(dtype), y, config.kind, skip_steps=0)
    loss.backward()
    return {
        name: p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        for name, p in net.named_parameters()
    }


def cosine_by_layer(a: dict[str, Tensor], b: dict[str, Tensor]) -> dict[str, float]:
    """Cosine similarity of two gradient sets, per parameter tensor (nan if one is all zero)."""
    out = {}
    for name, ga in a.items():
        gb = b[name]
        denom = float(ga.norm() * gb.norm())
        out[name] = float((ga * gb).sum()) / denom if denom > 0 else float("nan")
    return out
