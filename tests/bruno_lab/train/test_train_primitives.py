"""SuperSpike, the LIF step, the paper quantizer and the saved-tensor meter."""

from __future__ import annotations

import math

import pytest
import torch

from bruno_lab.train.lif import LIFParams, LIFState, lif_step
from bruno_lab.train.memory import SavedTensorMeter
from bruno_lab.train.quant import levels_per_side, quantize_stochastic
from bruno_lab.train.surrogate import superspike


def test_superspike_is_heaviside_with_superspike_gradient():
    x = torch.tensor([-1.0, -0.1, 0.0, 0.3], requires_grad=True)
    s = superspike(x)
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0]
    s.sum().backward()
    assert torch.allclose(x.grad, 1.0 / (1.0 + 10.0 * x.detach().abs()))


def test_lif_step_matches_hand_computation_and_resets_subtractively():
    p = LIFParams(torch.tensor([0.9, 0.5]), torch.tensor([0.8, 0.5]))
    state = LIFState(torch.tensor([[0.5, 1.8]]), torch.tensor([[1.0, 2.0]]))
    s, new = lif_step(torch.tensor([[2.0, 0.0]]), state, p)
    m = [0.9 * 0.5 + 0.1 * 1.0, 0.5 * 1.8 + 0.5 * 2.0]  # 0.55 (no spike), 1.9 (spike)
    i = [0.8 * 1.0 + 0.2 * 2.0, 0.5 * 2.0 + 0.0]
    assert s.tolist() == [[0.0, 1.0]]
    assert new.membrane[0].tolist() == pytest.approx([m[0], m[1] - 1.0])
    assert new.current[0].tolist() == pytest.approx(i)


def test_lif_decays_are_clamped_to_the_papers_range():
    p = LIFParams(torch.tensor([1.7]), torch.tensor([0.1]))
    _, new = lif_step(torch.tensor([[1.0]]), LIFState(torch.ones(1, 1), torch.zeros(1, 1)), p)
    # a -> 1.0 (membrane kept), b -> 0.5 (half the input)
    assert new.membrane.item() == pytest.approx(1.0 - 1.0)  # it spiked at m = 1 and reset
    assert new.current.item() == pytest.approx(0.5)


@pytest.mark.parametrize(("bits", "levels"), [(3, 7), (4, 15), (8, 255)])
def test_quantizer_uses_symmetric_levels(bits, levels):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(64, 64, generator=gen)
    q = quantize_stochastic(w, bits, gen).detach()
    m = levels_per_side(bits)
    scale = w.abs().max() / m
    k = q / scale
    assert torch.allclose(k, k.round(), atol=1e-4)
    assert k.round().unique().numel() <= levels
    assert k.abs().max().round() == m


def test_stochastic_rounding_is_unbiased_and_straight_through():
    gen = torch.Generator().manual_seed(1)
    w = torch.tensor([0.3, -0.55, 1.0, 0.05], requires_grad=True)
    n = 20000
    draws = torch.stack([quantize_stochastic(w, 3, gen).detach() for _ in range(n)])
    # each draw is one of the two neighbouring levels, so the mean's sd <= spacing/2/sqrt(n)
    spacing = 1.0 / 3
    tol = 5 * spacing / 2 / math.sqrt(n)
    assert torch.allclose(draws.mean(0), w.detach(), atol=tol)
    quantize_stochastic(w, 3, gen).sum().backward()
    assert torch.equal(w.grad, torch.ones(4))


def test_saved_tensor_meter_counts_distinct_storages():
    x = torch.randn(1000, requires_grad=True)
    with SavedTensorMeter() as meter:
        y = x.exp()  # saves its result: 4000 bytes
        z = (y * y).sum()  # saves y (already counted) twice
    assert meter.bytes_saved == 4000
    assert meter.n_saved == 3
    z.backward()
