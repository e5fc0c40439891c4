"""The FeLIF layer's options: the device's reset at each crossing (training and evaluation),
device spread redrawn in training, bias currents; and the fidelity report."""

from __future__ import annotations

import pytest
import torch

from bruno_lab.devices import fecap, felif
from bruno_lab.devices.felif import FeLIFParams
from bruno_lab.devices.params import sample_population
from bruno_lab.train.data.patterns import make_patterns
from bruno_lab.train.felif_layer import FeLIFLayer
from bruno_lab.train.fidelity import device_neurons
from bruno_lab.train.loop import evaluate_fidelity
from bruno_lab.train.network import PAPER_SPREAD_PARAMS, NetworkConfig, build_network

F64 = torch.float64


def _population(n: int, dtype: torch.dtype = F64) -> FeLIFParams:
    spread = dict.fromkeys(("area_m2", "ps_c_m2", "t_hzo_m"), 0.1)
    pop = sample_population(FeLIFParams.default(1), spread, n, torch.Generator().manual_seed(5))
    return pop.to(dtype=dtype)


def _currents(t: int, b: int, n: int, high: float, dtype=F64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return (torch.rand(t, b, n, generator=gen, dtype=F64) * high).to(dtype)


def test_at_crossing_counts_are_the_labs_device_counts():
    """Training with ``reset="at-crossing"`` sees per step exactly the spikes that
    ``felif_run_sequence`` (the simulated lab's device) gives over the whole sequence."""
    params = _population(5)
    x = _currents(8, 3, 5, 3.0)  # up to 3 units of 10 nA: several spikes per step
    layer = FeLIFLayer(params, input_scale_a=1e-8, reset="at-crossing")
    counts = layer(x)
    lab = layer.device_forward(x)
    assert torch.equal(counts, lab)
    assert float(counts.max()) >= 2  # more than BRUNO's one spike per step
    # an independent bookkeeping of the lab run: total spikes per (sample, neuron)
    for b in range(3):
        seq = felif.felif_run_sequence(
            x[:, b] * 1e-8, torch.full((8,), 1e-6, dtype=F64), torch.full((8,), 1000), params
        )
        assert torch.equal(counts[:, b].sum(0).to(torch.int64), seq.n_spikes)


def test_next_step_reset_caps_a_neuron_at_one_spike_per_step_the_device_does_not():
    params = FeLIFParams.default(1, dtype=torch.float32)
    x = torch.full((20, 1, 1), 2.0)  # 20 nA
    bruno = FeLIFLayer(params, input_scale_a=1e-8)
    with torch.no_grad():
        capped = bruno(x).sum()
        bruno.device_faithful = True
        device = bruno(x).sum()
    assert float(capped) == 20  # one spike in every step: the cap (the reset waits a step)
    assert float(device) > float(capped) * 1.3


def test_at_crossing_gradient_is_brunos_surrogate_through_the_coarse_step():
    params = _population(4, torch.float32)
    x = _currents(6, 2, 4, 2.0, torch.float32).requires_grad_()
    layer = FeLIFLayer(params, input_scale_a=1e-8, reset="at-crossing")
    out = layer(x)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert float(x.grad.abs().sum()) > 0
    # a step that spiked gets SuperSpike at V_thr (1) times dV_coarse/dI: dt/C_tot * 1e-8 A/unit
    c_tot = float(fecap.linear_capacitance_f(params).mean())
    spiked_grad = x.grad[out.detach() > 0]
    assert float(spiked_grad.max()) == pytest.approx(1e-3 / c_tot * 1e-8, rel=0.2)


def test_devices_are_redrawn_every_training_forward_and_fixed_in_evaluation():
    cfg = NetworkConfig(kind="classify", n_in=6, n_hidden=8, n_out=200, n_micro=10,
                        felif_redraw="paper", felif_bias_rate=0.0)  # fmt: skip
    net = build_network(cfg)
    layer = net.output
    net.train()
    a, b = layer.forward_params(), layer.forward_params()
    assert not torch.equal(a.area_m2, b.area_m2)
    for name in PAPER_SPREAD_PARAMS:  # theta = mu*(1 + 0.1*eps) on the paper's six
        rel = getattr(a, name) / getattr(layer.spread_mean, name) - 1
        assert float(rel.std()) == pytest.approx(0.1, rel=0.25), name
    assert torch.equal(a.eps_hzo, layer.params().eps_hzo)  # the others are the card's
    net.eval()
    assert torch.equal(layer.forward_params().area_m2, layer.params().area_m2)
    again = build_network(cfg).output
    again.train()
    assert torch.equal(again.forward_params().area_m2, a.area_m2)  # seeded


def test_redraw_needs_means_and_the_bias_is_a_trained_current():
    params = FeLIFParams.default(3, dtype=torch.float32)
    with pytest.raises(Exception, match="means"):
        FeLIFLayer(params, spread_sigma_rel={"area_m2": 0.1})
    layer = FeLIFLayer(params, input_scale_a=1e-8, bias_init=torch.full((3,), 0.5))
    assert torch.allclose(layer.bias_current_a(), torch.full((3,), 5e-9))
    layer(torch.zeros(4, 2, 3)).sum().backward()
    assert layer.bias.grad is not None and float(layer.bias.grad.abs().sum()) > 0


def test_fidelity_report_runs_the_test_split_on_the_devices_neurons():
    data = make_patterns(n_classes=4, n_steps=8, n_train=16, n_test=24, seed=0)
    net = build_network(NetworkConfig(kind="classify", n_in=20, n_hidden=16, n_out=4,
                                      n_micro=200))  # fmt: skip
    net.calibrate(data.train_x[:16])
    with torch.no_grad():
        net.output.bias.add_(1.0)  # strongly driven outputs: the device fires more often
    report = evaluate_fidelity(net, data, max_samples=16)
    assert report is not None and report.n_samples == 16
    assert report.felif_rate_device > 1.2 * report.felif_rate_trained
    assert report.gap == pytest.approx(report.accuracy_trained - report.accuracy_device)
    assert set(report.to_json()) >= {"accuracy_trained", "accuracy_device", "gap"}
    assert not net.output.device_faithful  # the context restores the layer
    with device_neurons(net):
        assert net.output.device_faithful
    lif = build_network(NetworkConfig(kind="classify", n_in=20, n_hidden=8, n_out=4,
                                      neuron="lif"))  # fmt: skip
    assert evaluate_fidelity(lif, data) is None
