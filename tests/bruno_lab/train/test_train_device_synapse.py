"""Device mode: realised conductances and weights carry the card's statistics."""

from __future__ import annotations

import math

import pytest
import torch
from train_cards import rram_card

from bruno_lab.errors import BadInputError
from bruno_lab.train import rram
from bruno_lab.train.synapse import Synapse

N_PER_LEVEL = 4000


def _levels_each(n_levels: int, n: int = N_PER_LEVEL) -> torch.Tensor:
    """(2, n_levels, n): every level repeated n times, on both polarities."""
    lv = torch.arange(n_levels).view(-1, 1).expand(n_levels, n)
    return torch.stack([lv, lv])


def _check_mean_std(g: torch.Tensor, mean: float, sd: float, n: int) -> None:
    # 5-sigma bands of the sample mean and the sample sd of n normal draws
    assert abs(float(g.mean()) - mean) < 5 * sd / math.sqrt(n) + 1e-15
    assert abs(float(g.std()) - sd) < 5 * sd / math.sqrt(2 * (n - 1)) + 1e-15


def test_programmed_levels_match_card_mean_and_sigma():
    card = rram_card(sigma_siemens=(3e-6, 1e-6, 1.5e-6, 2e-6, 1.2e-6, 1.8e-6, 2.5e-6, 4e-6))
    stats = rram.LadderStats.from_ladder(card.rram, dtype=torch.float64)
    levels = _levels_each(8)
    draws = rram.draw_cells(levels.shape[1:], stats, torch.Generator().manual_seed(3))
    g = rram.programmed_conductance(levels, draws, stats)
    for lv in card.rram.levels:
        _check_mean_std(
            g[:, lv.index].reshape(-1), lv.mean_siemens, lv.sigma_siemens, 2 * N_PER_LEVEL
        )


def test_stuck_cells_at_card_rate_read_stuck_conductance():
    card = rram_card(stuck_fraction=0.05)
    stats = rram.LadderStats.from_ladder(card.rram, dtype=torch.float64)
    levels = _levels_each(8, 2000)
    draws = rram.draw_cells(levels.shape[1:], stats, torch.Generator().manual_seed(4))
    g = rram.programmed_conductance(levels, draws, stats)
    n = g.numel()
    frac = float(draws.stuck.double().mean())
    assert abs(frac - 0.05) < 5 * math.sqrt(0.05 * 0.95 / n)
    assert torch.all(g[draws.stuck] == 2e-6)
    assert not torch.any(g[~draws.stuck] == 2e-6)  # the others are on their ladder levels


def test_relaxation_after_three_decades_follows_the_card():
    card = rram_card(drift_rel_per_decade=-0.02, sigma_siemens_per_decade=1e-6)
    stats = rram.LadderStats.from_ladder(card.rram, dtype=torch.float64)
    levels = _levels_each(8)
    draws = rram.draw_cells(levels.shape[1:], stats, torch.Generator().manual_seed(5))
    g = rram.programmed_conductance(levels, draws, stats, time_s=1000.0)  # t0 = 1 s: d = 3
    for lv in card.rram.levels[1:]:
        mean = lv.mean_siemens * (1 - 0.06)
        sd = math.sqrt((lv.sigma_siemens * (1 - 0.06)) ** 2 + (3e-6) ** 2)
        _check_mean_std(g[:, lv.index].reshape(-1), mean, sd, 2 * N_PER_LEVEL)


def test_read_noise_is_fresh_per_read_with_card_sigma():
    card = rram_card(read_floor_siemens=2e-7, read_slope_rel=0.02)
    stats = rram.LadderStats.from_ladder(card.rram, dtype=torch.float64)
    g = stats.level_mean_siemens.repeat(50)
    reads = rram.read_conductance(g, stats, torch.Generator().manual_seed(6), n_reads=400)
    z = (reads - g) / (2e-7 + 0.02 * g)
    n = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.std()) - 1.0) < 5 / math.sqrt(2 * n)
    assert not torch.equal(reads[0], reads[1])


def test_nearest_pair_mapping_round_trip():
    card = rram_card()
    stats = rram.LadderStats.from_ladder(card.rram, dtype=torch.float64)
    g = stats.level_mean_siemens
    target = torch.linspace(-stats.span_siemens, stats.span_siemens, 1001, dtype=torch.float64)
    levels = rram.nearest_level_pairs(target, g)
    got = g[levels[0]] - g[levels[1]]
    # the achievable differences are multiples of 22 µS: the error is at most half of that
    assert float((got - target).abs().max()) <= 11e-6 + 1e-12
    zero = rram.nearest_level_pairs(torch.zeros(1, dtype=torch.float64), g)
    assert zero.reshape(-1).tolist() == [0, 0]  # lowest-conductance pair for w = 0


def test_device_synapse_weights_carry_card_spread_and_are_seeded():
    sig = (3e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 4e-6)
    card = rram_card(sigma_siemens=sig)
    n_out, n_in = 40, 200

    def make(seed: int) -> Synapse:
        syn = Synapse(
            n_in,
            n_out,
            mode="device",
            init_generator=torch.Generator().manual_seed(0),
            noise_seed=seed,
            ladder=card.rram,
        )
        with torch.no_grad():  # half +1 (pair 7,0), half -1 (pair 0,7)
            syn.weight.copy_(
                torch.where(torch.arange(n_in) % 2 == 0, 1.0, -1.0).expand(n_out, n_in)
            )
        return syn

    syn = make(11)
    syn.prepare()
    w = syn(torch.eye(n_in)).T.detach().double()  # column j of W: the response to input j
    span = (6 + 22 * 7 - 6) * 1e-6
    sd = math.sqrt(sig[0] ** 2 + sig[7] ** 2) / span  # weight per siemens = 1/span
    n = w.numel() // 2
    _check_mean_std(w[:, 0::2].reshape(-1), 1.0, sd, n)
    _check_mean_std(w[:, 1::2].reshape(-1), -1.0, sd, n)
    again = make(11)
    assert torch.equal(again.programmed_conductance(), syn.programmed_conductance())
    assert not torch.equal(make(12).programmed_conductance(), syn.programmed_conductance())


def test_device_gradient_is_straight_through():
    card = rram_card(read_floor_siemens=1e-7, read_slope_rel=0.01)
    syn = Synapse(
        5,
        3,
        mode="device",
        init_generator=torch.Generator().manual_seed(0),
        noise_seed=1,
        ladder=card.rram,
    )
    syn.prepare()
    x = torch.randn(7, 2, 5, generator=torch.Generator().manual_seed(2))
    syn(x).sum().backward()
    assert torch.allclose(syn.weight.grad, x.sum((0, 1)).expand(3, 5), atol=1e-5)


def test_device_mode_without_card_is_bad_input():
    with pytest.raises(BadInputError, match="card"):
        Synapse(2, 2, mode="device", init_generator=torch.Generator(), noise_seed=0)


def test_felif_population_follows_the_felif_card():
    from train_cards import felif_card

    from bruno_lab.train.felif_layer import felif_params_from_cards

    card = felif_card(
        {"area_m2": 30e-12, "e_a_v_m": 1.2e9, "threshold_current_a": 1e-9},
        {"area_m2": 0.1, "e_a_v_m": 0.05},
    )
    n = 4000
    p = felif_params_from_cards(
        n, card.means(), card.sigma_rel(), torch.Generator().manual_seed(8), dtype=torch.float64
    )
    for name, mean, rel in (("area_m2", 30e-12, 0.1), ("e_a_v_m", 1.2e9, 0.05)):
        _check_mean_std(getattr(p, name), mean, rel * mean, n)
    assert torch.all(p.ps_c_m2 == 0.22)  # not on the card: the design's default, no spread
