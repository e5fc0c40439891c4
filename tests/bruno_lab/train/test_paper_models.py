"""The paper's networks (train.paper, train.baselines) and the plateau schedule (train.schedule)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bruno_lab.errors import BadInputError
from bruno_lab.train import paper
from bruno_lab.train.baselines import BaselineConfig, BaselineNetwork
from bruno_lab.train.data import TaskData
from bruno_lab.train.felif_layer import FeLIFLayer
from bruno_lab.train.lif import LIFLayer, RecurrentLIFLayer
from bruno_lab.train.loop import TrainConfig, train
from bruno_lab.train.network import SpikingNetwork
from bruno_lab.train.schedule import plateau_scale


def _shapes(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {n: tuple(p.shape) for n, p in net.named_parameters()}


@pytest.mark.parametrize("neuron", ["felif", "lif", "rlif"])
def test_braille_network_is_the_papers(neuron):
    cfg = paper.network_config("braille", neuron, "3", 0, n_in=4, n_out=27)
    net = paper.build(cfg)
    assert isinstance(net, SpikingNetwork)
    assert net.encoder is not None and net.encoder.gain.shape == (128,)  # 4 channels x 32
    assert net.syn_in.weight.shape == (256, 128) and net.syn_in.bias is None
    assert net.syn_out.weight.shape == (27, 256) and net.syn_out.bias is None
    assert type(net.hidden) is (RecurrentLIFLayer if neuron == "rlif" else LIFLayer)
    out_type = FeLIFLayer if neuron == "felif" else LIFLayer
    assert type(net.output) is out_type
    if neuron == "rlif":
        assert net.syn_rec is not None and net.syn_rec.weight.shape == (256, 256)
    else:
        assert net.syn_rec is None
    assert all(s.mode == "paper3" for s in net.synapses())
    if neuron == "felif":  # the paper's FeLIF has no bias current
        assert net.output.bias is None


@pytest.mark.parametrize("neuron", ["felif", "felif-bptt", "lif", "rlif"])
def test_chorale_spiking_networks_are_the_papers(neuron):
    cfg = paper.network_config("chorales", neuron, "fp32", 0, n_in=54, n_out=54)
    net = paper.build(cfg)
    assert isinstance(net, SpikingNetwork) and net.output is None and net.encoder is None
    assert net.syn_in.weight.shape == (150, 54) and net.syn_in.bias is None
    assert net.syn_out.weight.shape == (54, 150) and net.syn_out.bias is not None
    if neuron.startswith("felif"):
        assert isinstance(net.hidden, FeLIFLayer) and net.syn_rec is None
        assert net.hidden.method == ("bptt-ckpt" if neuron == "felif-bptt" else "bruno")
    assert (net.syn_rec is not None) == (neuron == "rlif")


@pytest.mark.parametrize("cell,gates", [("snu", 1), ("gru", 3), ("lstm", 4)])
def test_chorale_baselines_have_the_papers_shape(cell, gates):
    net = paper.build(paper.network_config("chorales", cell, "4", 1, n_in=54, n_out=54))
    assert isinstance(net, BaselineNetwork)
    assert net.syn_in.weight.shape == (gates * 150, 54)
    assert net.syn_rec.weight.shape == (gates * 150, 150)  # recurrent weights
    assert net.syn_out.weight.shape == (54, 150) and net.syn_out.bias is not None
    assert all(s.mode == "paper4" for s in net.synapses())
    y = net(torch.rand(7, 2, 54).round())
    assert y.shape == (7, 2, 54) and torch.isfinite(y).all()


def _copy_into_torch(net: BaselineNetwork, rnn: nn.RNNBase) -> None:
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(net.syn_in.weight)
        rnn.weight_hh_l0.copy_(net.syn_rec.weight)
        rnn.bias_ih_l0.copy_(net.syn_in.bias)
        rnn.bias_hh_l0.copy_(net.syn_rec.bias)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gru_and_lstm_equal_torchs_modules(cell):
    """Independent reference: torch's cuDNN-style GRU/LSTM with the same weights; also their
    initial weights follow torch's U(-1/sqrt(H), 1/sqrt(H))."""
    net = BaselineNetwork(BaselineConfig(cell, 6, 5, 3, seed=3))
    rnn = (nn.GRU if cell == "gru" else nn.LSTM)(6, 5)
    _copy_into_torch(net, rnn)
    x = torch.randn(11, 4, 6)
    ref, _ = rnn(x)
    assert torch.allclose(net.hidden_states(x), ref, atol=1e-6)
    bound = 1 / math.sqrt(5)
    for s in net.synapses()[:2]:
        assert s.weight.abs().max() <= bound and s.weight.abs().max() > 0.8 * bound
        assert s.bias is not None and s.bias.abs().max() <= bound
    ref.sum().backward()
    net.hidden_states(x).sum().backward()
    assert torch.allclose(net.syn_rec.weight.grad, rnn.weight_hh_l0.grad, atol=1e-5)


def test_snu_follows_its_equations_by_hand():
    net = BaselineNetwork(BaselineConfig("snu", 1, 1, 1, snu_decay=0.5))
    with torch.no_grad():
        net.syn_in.weight.fill_(0.6)
        net.syn_rec.weight.fill_(-0.2)
    x = torch.ones(4, 1, 1)
    y = net.hidden_states(x).flatten().tolist()
    # s1 = 0.6 (no spike), s2 = 0.6 + 0.3 = 0.9, s3 = 0.6 + 0.45 = 1.05 -> spike,
    # s4 = relu(0.6 - 0.2 + 0.5 * 1.05 * 0) = 0.4
    assert y == [0.0, 0.0, 1.0, 0.0]


def test_snu_trains_through_its_surrogate():
    net = BaselineNetwork(BaselineConfig("snu", 3, 8, 2, seed=0))
    x = torch.rand(10, 2, 3) * 3
    net(x).sum().backward()
    assert net.syn_in.weight.grad is not None and net.syn_in.weight.grad.abs().sum() > 0
    assert net.snu_bias is not None and net.snu_bias.grad.abs().sum() > 0


def test_bad_names_are_refused():
    with pytest.raises(BadInputError, match="neuron 'gru' for braille"):
        paper.network_config("braille", "gru", "3", 0, n_in=4, n_out=27)
    with pytest.raises(BadInputError, match="bit width '2'"):
        paper.network_config("chorales", "felif", "2", 0, n_in=54, n_out=54)
    with pytest.raises(BadInputError, match="baseline cell"):
        BaselineNetwork(BaselineConfig("rnn", 2, 2, 2))
    with pytest.raises(BadInputError, match="training budget"):
        paper.train_config("chorales", 0, epoch=3)


def test_paper_training_settings():
    c = paper.train_config("chorales", 2, epochs=3)
    assert (c.epochs, c.batch_size, c.lr, c.skip_steps, c.lr_schedule) == (3, 1, 5e-3, 5, "plateau")
    b = paper.train_config("braille", 0)
    assert (b.epochs, b.batch_size, b.lr_schedule) == (150, 128, "constant")


def test_plateau_scale_matches_torchs_reduce_on_plateau():
    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        values = (1.0 + 0.1 * torch.randn(40, generator=gen)).cumsum(0).neg().add(50)
        values = values.tolist()
        if trial % 2:
            values = [1.0 / (1 + i) if i < 10 else 0.1 + 0.01 * (i % 3) for i in range(40)]
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=3)
        for i, v in enumerate(values):
            sched.step(v)
            ours = plateau_scale(values[: i + 1], factor=0.5, patience=3)
            assert ours == pytest.approx(opt.param_groups[0]["lr"]), (trial, i)


def _tiny_sequences(n: int, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for _ in range(n):
        roll = (torch.rand(13, 6, generator=gen) < 0.3).float()
        xs.append(roll[:-1])
        ys.append(roll[1:])
    return xs, ys


def test_loop_reduces_the_rate_on_a_validation_plateau_and_trains_a_baseline():
    """The loop's plateau schedule on the validation loss, recorded per epoch, with a GRU."""
    tx, ty = _tiny_sequences(4, 0)
    vx, vy = _tiny_sequences(2, 1)
    wx, wy = _tiny_sequences(2, 2)
    data = TaskData("sequence", 6, 6, tx, ty, vx, vy, valid_x=wx, valid_y=wy)
    net = BaselineNetwork(BaselineConfig("gru", 6, 8, 6, seed=0))
    cfg = TrainConfig(epochs=6, lr=0.5, batch_size=1, lr_schedule="plateau", plateau_patience=0)
    result = train(net, data, cfg)  # type: ignore[arg-type]  # duck-typed network
    lrs = [m.lr for m in result.history]
    valid = [m.valid_loss for m in result.history]
    assert all(math.isfinite(v) for v in valid)
    expected = [0.5 * plateau_scale(valid[:i], factor=0.5, patience=0) for i in range(6)]
    assert lrs == pytest.approx(expected) and lrs[-1] < lrs[0]  # it did reduce
    assert result.history[0].test_loss < math.log(2)  # it learned the key rates


def test_chorale_felif_networks_run_forward_and_backward_both_ways():
    """felif (BRUNO) and felif-bptt (checkpointed BPTT through the micro-steps) on the same
    weights: equal forward values (same fine micro-steps), finite gradients in both."""
    x = (torch.rand(6, 1, 54, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    grads = {}
    for neuron in ("felif", "felif-bptt"):
        cfg = paper.network_config("chorales", neuron, "fp32", 0, n_in=54, n_out=54, n_micro=20)
        net = paper.build(cfg)
        assert isinstance(net, SpikingNetwork)
        net.calibrate(x)
        y = net(x)
        y.sum().backward()
        grads[neuron] = (y.detach(), net.syn_in.weight.grad)
    assert torch.allclose(grads["felif"][0], grads["felif-bptt"][0], atol=1e-5)
    for _, g in grads.values():
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
