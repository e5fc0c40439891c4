"""Saved networks, the programming map, inference on measured conductances, NIR export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from train_cards import felif_card, rram_card

from bruno_lab.errors import BadInputError
from bruno_lab.train.io import (
    infer_with_conductances,
    load_network,
    programming_map,
    save_network,
    write_programming_map,
)
from bruno_lab.train.network import NetworkConfig, SpikingNetwork
from bruno_lab.train.nir_export import deployed_weight, write_nir


def _cfg(**kw) -> NetworkConfig:
    base = dict(
        kind="classify",
        n_in=5,
        n_hidden=7,
        n_out=3,
        neuron="felif",
        n_micro=50,
        init_scale_in=20.0,
        init_scale_out=4.0,
        seed=4,
    )
    base.update(kw)
    return NetworkConfig(**base)


def _x(t: int = 6, b: int = 4, n: int = 5) -> torch.Tensor:
    return (torch.rand(t, b, n, generator=torch.Generator().manual_seed(9)) < 0.4).float()


def test_saved_network_round_trips_with_its_cards(tmp_path):
    card = felif_card({"area_m2": 30e-12, "e_a_v_m": 12e8}, {"area_m2": 0.05})
    net = SpikingNetwork(_cfg(), felif_card=card)
    save_network(tmp_path / "net.pt", net, {"note": "x"})
    again = load_network(tmp_path / "net.pt")
    assert again.felif_card == card
    p, q = net.output.params(), again.output.params()
    assert torch.equal(p.area_m2, q.area_m2)
    assert float(p.area_m2.std() / p.area_m2.mean()) > 0.01  # the card's spread was drawn
    with torch.no_grad():
        assert torch.equal(net(_x()), again(_x()))


def test_programming_map_lists_every_cell_in_order(tmp_path):
    card = rram_card()
    net = SpikingNetwork(_cfg(synapse="device", neuron="rlif"), rram_card=card)
    doc = write_programming_map(net, tmp_path / "map.json")
    assert json.loads((tmp_path / "map.json").read_text()) == doc
    sizes = [(7, 5), (7, 7), (3, 7)]  # input, recurrent, output
    assert doc["n_cells"] == sum(2 * r * c for r, c in sizes) == len(doc["cells"])
    assert [(la["rows"], la["cols"]) for la in doc["layers"]] == sizes
    first = doc["cells"][:4]
    assert [(c["layer"], c["row"], c["col"], c["polarity"]) for c in first] == [
        (0, 0, 0, "+"),
        (0, 0, 0, "-"),
        (0, 0, 1, "+"),
        (0, 0, 1, "-"),
    ]
    means = [lv.mean_siemens for lv in card.rram.levels]
    for c in doc["cells"]:
        assert c["target_conductance_siemens"] == pytest.approx(means[c["level_index"]])
    # G+ - G- times the layer scale gives back the weight to within half a level step
    lay = doc["layers"][0]
    w = net.syn_in.weight.detach()
    cells = doc["cells"][: lay["n_cells"]]
    g = torch.tensor([c["target_conductance_siemens"] for c in cells]).reshape(7, 5, 2)
    w_map = lay["weight_per_siemens"] * (g[..., 0] - g[..., 1])
    assert torch.allclose(w_map, w, atol=lay["weight_per_siemens"] * 11e-6 + 1e-6)


def test_inference_on_measured_conductances_uses_them():
    card = rram_card(read_floor_siemens=1e-7, read_slope_rel=0.02, stuck_fraction=0.02)
    net = SpikingNetwork(_cfg(synapse="device"), rram_card=card)
    pmap = programming_map(net)
    g = torch.tensor([c["target_conductance_siemens"] for c in pmap["cells"]])
    out = infer_with_conductances(net, g, _x(), pmap)
    # the same network in fp32 with the nominal pair weights gives the same output
    ref = SpikingNetwork(_cfg(synapse="fp32"))
    ref.load_state_dict(net.state_dict(), strict=False)
    with torch.no_grad():
        for s_ref, s_dev in zip(ref.synapses(), net.synapses(), strict=True):
            s_ref.weight.copy_(deployed_weight(s_dev))
        assert torch.equal(out, ref(_x()))
    with pytest.raises(BadInputError, match="conductances"):
        infer_with_conductances(net, g[:-1], _x(), pmap)
    # afterwards the network is back on its simulated cells
    assert net.syn_in.measured_conductance_siemens is None


def test_device_network_reloads_with_the_same_cells(tmp_path):
    net = SpikingNetwork(_cfg(synapse="device"), rram_card=rram_card(stuck_fraction=0.1))
    save_network(tmp_path / "d.pt", net)
    again = load_network(tmp_path / "d.pt")
    assert torch.equal(again.syn_in.programmed_conductance(), net.syn_in.programmed_conductance())
    assert again.rram_card == net.rram_card


def test_programming_map_needs_device_mode():
    with pytest.raises(BadInputError, match="device"):
        programming_map(SpikingNetwork(_cfg()))


@pytest.mark.parametrize("neuron", ["felif", "lif", "rlif"])
def test_nir_export_reads_back_with_deployed_weights(tmp_path, neuron):
    import nir

    net = SpikingNetwork(_cfg(neuron=neuron, synapse="paper3", encoder_tiles=2, n_in=3))
    write_nir(net, tmp_path / "net.nir")
    g = nir.read(str(tmp_path / "net.nir"))
    w = g.nodes["syn_in"].weight
    assert np.allclose(w, deployed_weight(net.syn_in).numpy())
    scale = np.abs(w).max() / 3
    assert np.allclose(w / scale, np.round(w / scale), atol=1e-5)  # 7 levels
    hidden = g.nodes["hidden"]
    a = net.hidden.decay_membrane.detach().numpy()
    assert np.allclose(hidden.tau_mem, 1e-3 / (1 - a), rtol=1e-5)
    assert (("hidden", "syn_rec") in g.edges) == (neuron == "rlif")
    out = g.nodes["output_neurons"]
    assert type(out).__name__ == ("IF" if neuron == "felif" else "CubaLIF")
