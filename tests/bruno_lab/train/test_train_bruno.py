"""BRUNO: forward equals the fine reference; gradients against full fine-step BPTT."""

from __future__ import annotations

import torch

from bruno_lab.devices.felif import (
    FeLIFParams,
    felif_initial_state,
    felif_reference_window,
    felif_reset,
)
from bruno_lab.train.compare import layer_gradients
from bruno_lab.train.data.patterns import make_patterns
from bruno_lab.train.felif_layer import FeLIFLayer, bruno_step
from bruno_lab.train.memory import SavedTensorMeter
from bruno_lab.train.network import NetworkConfig


def _currents(t: int, b: int, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(t, b, n, generator=gen, dtype=torch.float64) * 3e-8 - 0.5e-8


def test_bruno_forward_equals_fine_reference_loop():
    n, n_micro = 6, 1000
    params = FeLIFParams.default(n, dtype=torch.float64)
    currents = _currents(8, 3, n, 0)
    # reference: the plain window loop, reset at the step after a spike
    state = felif_initial_state(params, (3, n), dtype=torch.float64)
    spiked = torch.zeros(3, n, dtype=torch.bool)
    ref_spikes, ref_v = [], []
    for i in currents:
        state = felif_reset(state, spiked, params)
        state, spiked = felif_reference_window(i, state, params, n_micro, 1e-6)
        ref_spikes.append(spiked.double())
        ref_v.append(state.voltage_v)
    # BRUNO with a graph
    i_grad = currents.clone().requires_grad_()
    state = felif_initial_state(params, (3, n), dtype=torch.float64)
    spike = torch.zeros(3, n, dtype=torch.float64)
    for t in range(len(currents)):
        state = felif_reset(state, spike, params)
        spike, state = bruno_step(i_grad[t], state, params, 1e-3, n_micro)
        assert torch.equal(spike.detach(), ref_spikes[t])
        assert torch.allclose(state.voltage_v.detach(), ref_v[t], rtol=0, atol=1e-9)
    assert float(torch.stack(ref_spikes).sum()) > 0  # the test drives real spikes
    spike.sum().backward()
    assert i_grad.grad is not None and torch.isfinite(i_grad.grad).all()
    # the layer gives the same spike trains (input in network units times input_scale_a)
    layer = FeLIFLayer(params, method="bruno", n_micro=n_micro, input_scale_a=1e-8)
    assert torch.equal(layer(currents / 1e-8), torch.stack(ref_spikes))


def test_bptt_and_checkpointed_bptt_have_identical_gradients():
    data = make_patterns(n_steps=4, n_train=8, n_test=1, seed=2)
    cfg = NetworkConfig(
        kind="classify",
        n_in=20,
        n_hidden=16,
        n_out=4,
        neuron="felif",
        n_micro=40,
        seed=3,
    )
    a = layer_gradients(cfg, data.train_x, data.train_y, "bptt")
    b = layer_gradients(cfg, data.train_x, data.train_y, "bptt-ckpt")
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-5, atol=1e-7), name
    assert float(a["syn_out.weight"].abs().sum()) > 0


def _saved_bytes(method: str, n_micro: int) -> int:
    params = FeLIFParams.default(8, dtype=torch.float32)
    layer = FeLIFLayer(params, method=method, n_micro=n_micro)
    x = (torch.rand(3, 4, 8, generator=torch.Generator().manual_seed(0)) * 2).requires_grad_()
    with SavedTensorMeter() as meter:
        out = layer(x)
    out.sum().backward()
    return meter.bytes_saved


def test_bruno_graph_does_not_grow_with_micro_steps_but_bptt_does():
    assert _saved_bytes("bruno", 50) == _saved_bytes("bruno", 200)
    small, large = _saved_bytes("bptt", 50), _saved_bytes("bptt", 200)
    assert large > 3.5 * small
    assert _saved_bytes("bptt-ckpt", 200) < small


# Agreement of BRUNO's gradients with full BPTT: test_train_gradients.py
