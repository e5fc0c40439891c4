"""The FeLIF layer's fine forward in one kernel call (``felif_fine_windows``, the speed path of
benchmarks/train_speed.py) against a step-by-step BRUNO loop.

The one-call path starts every fine window from the previous window's fine state (after the
reset), as the method defines. The step-by-step loop used before started it from the merged
value ``coarse + stopgrad(fine - coarse)``, which equals the fine value only to float32 rounding
(~1e-7 V), and the stiff switching can amplify that: on the data below the two trajectories part
by 34 mV after 14 steps. So the reference here carries the fine state itself, window by window
(one ``felif_fine_window`` call per step); spikes and gradients must then agree exactly."""

from __future__ import annotations

import torch

from bruno_lab.devices.felif import (
    FeLIFParams,
    felif_fine_window,
    felif_initial_state,
    felif_reset,
)
from bruno_lab.devices.params import sample_population
from bruno_lab.train.felif_layer import FeLIFLayer, bruno_step, coarse_params


def _step_by_step(layer: FeLIFLayer, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """BRUNO step by step: one fine window per step from the previous fine state."""
    p = layer.params()
    p_coarse = coarse_params(p, layer.coarse_gradient)
    state = felif_initial_state(p, x.shape[1:], dtype=x.dtype)
    fine_state = state
    spike = torch.zeros_like(state.voltage_v)
    out, gaps = [], []
    for t in range(x.shape[0]):
        state = felif_reset(state, spike, p)
        fine_state = felif_reset(fine_state, spike, p)
        current_a = x[t] * layer.input_scale_a
        fine_state, _ = felif_fine_window(
            current_a.detach(), fine_state, p, layer.n_micro, layer.step_s / layer.n_micro
        )
        spike, state = bruno_step(
            current_a, state, p, layer.step_s, layer.n_micro, p_coarse, layer.coarse_clip,
            fine=fine_state,
        )  # fmt: skip
        gaps.append((state.voltage_v.detach() - fine_state.voltage_v).abs().max())
        out.append(spike)
    return torch.stack(out), gaps


def test_one_call_fine_forward_equals_the_step_by_step_loop():
    params = sample_population(
        FeLIFParams.default(1),
        {"area_m2": 0.1, "e_a_v_m": 0.1},
        7,
        torch.Generator().manual_seed(1),
    ).to(torch.float32)
    layer = FeLIFLayer(params, n_micro=400, input_scale_a=1e-8)
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(15, 4, 7, generator=gen) * 3.0).requires_grad_(True)
    w = torch.randn(15, 4, 7, generator=gen)
    new = layer(x)
    (g_new,) = torch.autograd.grad((new * w).sum(), x)
    old, gaps = _step_by_step(layer, x)
    (g_old,) = torch.autograd.grad((old * w).sum(), x)
    assert 0.05 < float(new.detach().mean()) < 0.95  # some steps spike, some do not
    assert torch.equal(new, old)
    # x scaled once or per step: the same graph to float rounding
    assert torch.allclose(g_new, g_old, rtol=1e-5, atol=1e-6) and bool(g_new.abs().gt(0).any())
    assert max(float(g) for g in gaps) < 1e-5  # the merged value is the fine one, rounded
