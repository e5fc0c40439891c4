"""Initialisation in physical units: input scale and bias currents from the FeLIF card, weights
calibrated on data so every layer starts active; LIF decays projected; per-group rates."""

from __future__ import annotations

import pytest
import torch
from train_cards import felif_card, rram_card

from bruno_lab.devices.felif import FeLIFParams
from bruno_lab.devices.felif_figures import charge_to_spike_c, rheobase_a
from bruno_lab.train.data.patterns import make_patterns
from bruno_lab.train.felif_layer import FeLIFLayer
from bruno_lab.train.init import felif_scales
from bruno_lab.train.loop import TrainConfig, param_groups, train
from bruno_lab.train.network import NetworkConfig, SpikingNetwork, build_network

CARD = felif_card({"area_m2": 25e-12, "ps_c_m2": 0.22, "t_hzo_m": 10e-9},
                  {"area_m2": 0.1, "ps_c_m2": 0.1})  # fmt: skip


def _config(**kw) -> NetworkConfig:
    base = dict(kind="classify", n_in=20, n_hidden=32, n_out=4, n_micro=100, seed=3)
    return NetworkConfig(**(base | kw))


def test_felif_scales_from_the_card_in_physical_units():
    net = build_network(_config(), {"felif": CARD})
    layer = net.output
    assert isinstance(layer, FeLIFLayer)
    p = layer.params().to(dtype=torch.float64)
    q = charge_to_spike_c(p)
    assert float(q.std() / q.mean()) > 0.05  # the card's spread reached the devices
    # one network unit = the mean neuron's charge to spike in one 1 ms step (~12 nA)
    assert layer.input_scale_a == pytest.approx(float(q.mean()) / 1e-3, rel=1e-6)
    # each neuron's bias current is its own rheobase for a spike within 1/0.2 = 5 steps
    bias_a = layer.bias_current_a()
    assert bias_a is not None
    assert torch.allclose(bias_a.double(), rheobase_a(p, 5e-3, rel_tol=1e-2), rtol=1e-5)


def test_bias_currents_alone_fire_every_neuron_once_within_five_steps():
    params = FeLIFParams.default(6, dtype=torch.float32)
    scales = felif_scales(params, 1e-3, bias_rate=0.2, rel_tol=1e-3)
    zeros = torch.zeros(5, 2, 6)
    for factor, fires in ((1.01, True), (0.97, False)):
        layer = FeLIFLayer(params, input_scale_a=scales.input_scale_a,
                           bias_init=scales.bias_units * factor)  # fmt: skip
        counts = layer(zeros).sum(0)
        assert bool((counts >= 1).all()) == fires and bool((counts <= 1).all())


@pytest.mark.parametrize("synapse", ["fp32", "paper3", "device"])
def test_calibration_puts_every_layer_in_its_active_range(synapse):
    data = make_patterns(seed=1)
    net = build_network(_config(synapse=synapse), {"rram": rram_card(), "felif": CARD})
    assert net.needs_calibration()
    report = net.calibrate(data.train_x[:32])
    assert not net.needs_calibration()
    assert report["hidden_rate"] == pytest.approx(0.1, abs=0.03)
    assert report["hidden_silent_fraction"] <= 0.25
    assert report["output_silent_fraction"] == 0.0
    assert 0.05 < report["output_rate"] < 0.6
    if synapse == "fp32":  # each output neuron's synaptic drive spreads by 0.5 units
        with torch.no_grad():
            net.eval()
            for s in net.synapses():
                s.prepare()
            drive = net.syn_out(net.hidden(net.syn_in(data.train_x[:32].transpose(0, 1))))
        assert torch.allclose(drive.reshape(-1, 4).std(0), torch.full((4,), 0.5), rtol=1e-3)


def test_training_calibrates_once_and_the_flag_is_saved():
    data = make_patterns(n_train=32, n_test=16, seed=0)
    net = build_network(_config())
    first = train(net, data, TrainConfig(epochs=1, fidelity_samples=0))
    assert first.init and "hidden_rate" in first.init
    assert bool(net.state_dict()["calibrated"])
    again = train(net, data, TrainConfig(epochs=1, fidelity_samples=0))
    assert again.init == {}  # a trained network is not re-initialised


def test_legacy_configs_load_as_they_were_saved():
    old = _config().to_json()
    for key in ("init", "felif_bias_rate", "felif_reset", "felif_redraw", "felif_redraw_sigma"):
        old.pop(key)
    cfg = NetworkConfig.from_json(old)
    assert cfg.init == "legacy" and cfg.felif_bias_rate == 0.0
    net = SpikingNetwork(cfg)
    assert not net.needs_calibration() and net.output.bias is None
    assert "calibrated" not in net.state_dict()
    assert net.output.input_scale_a == 1e-8


def test_lif_decays_are_projected_into_range_and_keep_their_gradient():
    data = make_patterns(n_train=32, n_test=8, seed=0)
    net = build_network(_config(neuron="lif"))
    train(net, data, TrainConfig(epochs=2, lr=2e-2, lr_decay=0.5, fidelity_samples=0))
    for p in (net.hidden.decay_membrane, net.hidden.decay_current):
        assert float(p.detach().min()) >= 0.5 and float(p.detach().max()) <= 1.0
    with torch.no_grad():
        net.hidden.decay_membrane.fill_(1.0)  # on the boundary the gradient still flows
    net.zero_grad()
    counts = net(data.train_x[:8].transpose(0, 1))
    torch.nn.functional.cross_entropy(counts, data.train_y[:8]).backward()
    assert float(net.hidden.decay_membrane.grad.abs().sum()) > 0


def test_param_groups_have_their_own_learning_rates():
    data = make_patterns(seed=0)
    net = build_network(_config())
    net.calibrate(data.train_x[:32])
    groups = {g["name"]: g for g in param_groups(net, TrainConfig(lr=0.02))}
    rms = float(net.syn_in.weight.detach().pow(2).mean().sqrt())
    assert groups["syn_in.weight"]["lr"] == pytest.approx(0.02 * rms)  # relative to its scale
    assert groups["bias"]["lr"] == 0.02 and groups["decay"]["lr"] == pytest.approx(0.002)
    absolute = {g["name"]: g["lr"] for g in param_groups(net, TrainConfig(lr=0.02,
                lr_relative=False, lr_bias=0.1, lr_decay=0.0))}  # fmt: skip
    assert absolute == {"syn_in.weight": 0.02, "syn_out.weight": 0.02, "bias": 0.1, "decay": 0.0}
