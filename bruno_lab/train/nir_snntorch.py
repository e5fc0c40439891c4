"""Run a NIR graph in snnTorch: the NIR consumer our export is checked against (docs/nir.md).

The graph is wired by ``nirtorch.nir_to_torch`` (NIR's own torch executor, the path snnTorch's
``import_from_nir`` takes), its synapses are snnTorch's own ``Linear``/``Affine`` mapping and
its neurons are snnTorch's ``Leaky`` and ``Synaptic``, run step by step at the graph's ``dt``.
snnTorch 1.0's ``import_from_nir`` itself cannot run our graphs: it maps ``IF`` to a *leaky*
neuron (``Leaky(beta=0.9)``, snnTorch issue #416; fixed upstream by PR #452, not released),
takes ``CubaLIF`` only at a hard-coded dt of 1e-4 s with ``r = tau_mem/dt`` (any other ``r`` is
refused: "r not supported in CubaLIF") and one threshold per layer. So the neurons' parameters
are mapped here from NIR's definitions, discretised as our export states (forward Euler at
``dt``), onto snnTorch's update equations:

* ``IF`` (``dv/dt = r*I``; ``v -> v_reset`` on ``v > v_threshold``): ``Leaky(beta=1,
  reset_mechanism="zero")`` on ``u = (v - v_reset)/(r*dt)``, so the input needs no gain and the
  reset is snnTorch's reset-to-zero; the membrane starts at ``v = 0`` (``u = -v_reset/(r*dt)``).
* ``CubaLIF`` (``tau_syn dI/dt = -I + w_in*S``, ``tau_mem dv/dt = -v + r*I``): ``Synaptic(alpha
  = 1 - dt/tau_syn, beta = 1 - dt/tau_mem)`` on ``v/((1 - beta)*r)``, fed ``(1 - alpha)*w_in*S``
  one step late: snnTorch's membrane takes this step's synaptic current, forward Euler the
  previous step's.

``metadata=True`` also honours what our nodes' metadata says beyond NIR 1.0: an ``IF``'s
``v_min`` (the FeLIF's -5 V clip: ``v`` held at ``v_min`` from below) and a ``CubaLIF`` whose
``reset`` is ``subtractive`` (the threshold subtracted here after snnTorch's spike test:
snnTorch's own ``subtract`` with ``reset_delay=False`` tests the next step against two
thresholds while the membrane stays above one after a reset); ``False`` is a plain NIR
consumer (no floor, reset to ``v_reset``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

F64 = torch.float64


def _t(a: Any) -> Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=F64)


class SnnTorchIF(nn.Module):
    """A NIR ``IF`` node as snnTorch's ``Leaky`` at ``dt`` (module docstring); stateful in
    nirtorch's sense: ``forward(x, state) -> (spikes, membrane)``."""

    gain: Tensor
    u_start: Tensor
    u_min: Tensor | None

    def __init__(self, node: Any, dt_s: float, metadata: bool) -> None:
        import snntorch as snn

        super().__init__()
        gain = _t(node.r) * dt_s  # v per unit of input per step
        v_reset = _t(node.v_reset)
        self.register_buffer("gain", gain)
        self.register_buffer("u_start", -v_reset / gain)
        v_min = (node.metadata or {}).get("v_min") if metadata else None
        u_min = None if v_min is None else (_t(v_min) - v_reset) / gain
        self.register_buffer("u_min", u_min)
        threshold = (_t(node.v_threshold) - v_reset) / gain
        self.neuron: Any = snn.Leaky(
            beta=1.0, threshold=threshold, reset_mechanism="zero", reset_delay=False
        )

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mem = self.u_start.expand_as(x).clone() if state is None else state
        spk, mem = self.neuron(x, mem)
        if self.u_min is not None:
            mem = torch.maximum(mem, self.u_min)
        return spk.to(mem.dtype), mem


class SnnTorchCubaLIF(nn.Module):
    """A NIR ``CubaLIF`` node as snnTorch's ``Synaptic`` at ``dt`` (module docstring);
    ``forward(x, state) -> (spikes, (syn, mem, x_previous))``."""

    w_syn: Tensor

    def __init__(self, node: Any, dt_s: float, metadata: bool) -> None:
        import snntorch as snn

        super().__init__()
        if not np.allclose(node.v_leak, 0.0):
            raise ValueError("CubaLIF with v_leak != 0 is not mapped")
        alpha = 1.0 - dt_s / _t(node.tau_syn)
        beta = 1.0 - dt_s / _t(node.tau_mem)
        mem_scale = (1.0 - beta) * _t(node.r)  # v per unit of snnTorch's membrane
        self.register_buffer("w_syn", (1.0 - alpha) * _t(node.w_in))
        subtractive = metadata and (node.metadata or {}).get("reset") == "subtractive"
        if not subtractive and not np.allclose(node.v_reset, 0.0):
            raise ValueError("CubaLIF with v_reset != 0 is not mapped (snnTorch resets to 0)")
        self.subtractive = subtractive
        self.neuron: Any = snn.Synaptic(
            alpha=alpha,
            beta=beta,
            threshold=_t(node.v_threshold) / mem_scale,
            reset_mechanism="none" if subtractive else "zero",
            reset_delay=False,
        )

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        if state is None:
            zero = torch.zeros_like(x)
            state = (zero, zero.clone(), zero.clone())
        syn, mem, x_prev = state
        spk, syn, mem = self.neuron(x_prev * self.w_syn, syn, mem)
        if self.subtractive:
            mem = mem - spk * self.neuron.threshold
        return spk.to(mem.dtype), (syn, mem, x)


def node_map(dt_s: float, *, metadata: bool = True) -> dict[type, Callable[[Any], nn.Module]]:
    """nirtorch's node map for our graphs: snnTorch's synapses, the neurons above at ``dt_s``."""
    import nir
    from snntorch.import_nir import _nir_to_snntorch_module

    def synapse(node: Any) -> nn.Module:
        module = _nir_to_snntorch_module(node)
        return module.to(F64)

    return {
        nir.Affine: synapse,
        nir.Linear: synapse,
        nir.IF: lambda node: SnnTorchIF(node, dt_s, metadata),
        nir.CubaLIF: lambda node: SnnTorchCubaLIF(node, dt_s, metadata),
    }


def load(graph: Any, dt_s: float | None = None, *, metadata: bool = True) -> nn.Module:
    """The graph (``nir.NIRGraph`` or a path) as a torch module of snnTorch neurons:
    ``module(x_t, state) -> (output_t, state)``, one call per step. ``dt_s`` defaults to the
    graph's metadata ``dt_s`` (our export writes it)."""
    import nir
    import nirtorch

    if not isinstance(graph, nir.NIRGraph):
        graph = nir.read(str(graph))
    if dt_s is None:
        dt_s = (graph.metadata or {}).get("dt_s")
        if dt_s is None:
            raise ValueError("the graph has no metadata dt_s: pass dt_s")
    return nirtorch.nir_to_torch(graph, node_map(float(dt_s), metadata=metadata), dtype=F64)


@torch.no_grad()
def run(module: nn.Module, x: Tensor) -> Tensor:
    """Outputs ``(T, B, n_out)`` of ``module`` (from :func:`load`) for inputs ``(T, B, n_in)``,
    every sequence from rest."""
    state = None
    out = []
    for x_t in x.to(F64).unbind(0):
        y, state = module(x_t, state)
        out.append(y)
    return torch.stack(out)
