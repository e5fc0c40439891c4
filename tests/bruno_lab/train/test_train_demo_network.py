"""The demo's network learns: every seed above 0.85 (the demo's seeds, its task, device-mode
synapses on a card like the demo wafer's fitted one), and the demo picks what a die holds."""

from __future__ import annotations

import pytest
import torch
from train_cards import felif_card, rram_card_dict

from bruno_lab.cards import parse_card
from bruno_lab.train import demo_network
from bruno_lab.train.loop import train
from bruno_lab.train.metrics import mean_sd
from bruno_lab.train.network import build_network


def _demo_like_rram_card():
    """4 levels (22/82/141/200 uS, sigma 2-3 uS), read noise 0.24 uS + 0.4 %, 12.5 % of cells
    stuck at 0 S: the card the demo fits from its simulated wafer (seed 1)."""
    doc = rram_card_dict(n_levels=4, stuck_fraction=0.125, read_floor_siemens=2.4e-7,
                         read_slope_rel=0.0039)  # fmt: skip
    for level, (mean, sigma) in zip(
        doc["rram"]["levels"],
        ((22e-6, 1.8e-6), (82e-6, 2.7e-6), (141e-6, 2.6e-6), (200e-6, 3e-6)),
        strict=True,
    ):
        level["mean_siemens"], level["sigma_siemens"] = mean, sigma
    doc["rram"]["stuck_conductance_siemens"] = 0.0
    return parse_card(doc)


def test_demo_network_fits_the_array_and_falls_back_to_what_a_die_holds():
    assert demo_network.DEMO.n_weights <= 2048  # one 64 x 64 array, differential pairs
    assert demo_network.DEMO.n_cells == 1280
    assert demo_network.demo_spec(4096) is demo_network.DEMO
    small = demo_network.demo_spec(64)
    assert small.n_cells <= 64 and small.n_hidden == 5
    with pytest.raises(Exception, match="holds no demo network"):
        demo_network.demo_spec(8)


@pytest.mark.slow
def test_every_seed_of_the_demo_network_learns(record_property):
    spec = demo_network.DEMO
    cards = {
        "rram": _demo_like_rram_card(),
        "felif": felif_card(
            {"ps_c_m2": 0.2207, "t_hzo_m": 9.9e-9}, {"ps_c_m2": 0.013, "t_hzo_m": 0.036}
        ),
    }
    data = spec.data()
    accs, collapsed = [], []
    for seed in range(1, 6):  # the demo's default seed is 1
        torch.manual_seed(seed)
        net = build_network(spec.network_config(seed), cards)
        result = train(net, data, spec.train_config(seed))
        accs.append(result.final.test_accuracy)
        collapsed.append(result.collapsed)
    record_property("test_accuracy", accs)
    print("demo network, seeds 1-5:", accs, mean_sd(accs))
    assert not any(collapsed)
    assert min(accs) > 0.85
    assert mean_sd(accs)["mean"] >= demo_network.LEARNED_ACCURACY
