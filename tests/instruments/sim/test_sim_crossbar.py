"""The virtual wafer's 1T1R crossbars: drawn from the truth (spatial structure, stuck cells,
transistors), programmed row-parallel by the tester's firmware (IGVVA reaches 8 levels), read
through their lines, and the analog matrix-vector product against independent references."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.optimize import root

from bruno_lab.errors import PlanError
from instruments.sim.crossbar import Crossbar, FormSettings, VerifySettings
from instruments.sim.wafer import Truth, Wafer

ARRAY_TRUTH = Path(__file__).resolve().parents[3] / "protocols" / "examples" / "array_truth.yaml"
LEVELS = np.linspace(6e-6, 242e-6, 8)
ARRAY_SITE = 4


def _truth(**array: Any) -> dict[str, Any]:
    from bruno_lab.yamlio import load_yaml_file

    document = copy.deepcopy(load_yaml_file(ARRAY_TRUTH, "truth").data)
    document["sites"][ARRAY_SITE]["array"].update(array)
    return document


def _array(seed: int = 5, **array: Any) -> Crossbar:
    wafer = Wafer(Truth.load(_truth(**array)), seed)
    return wafer.array(*wafer.dies[0], ARRAY_SITE)


def _formed_at_levels(xb: Crossbar, seed: int = 0) -> np.ndarray:
    """Every cell formed with a gap that reads about one of the 8 levels (no programming)."""
    gen = np.random.default_rng(seed)
    levels = gen.integers(0, 8, xb.n_cells)
    p = xb.cell
    g = torch.as_tensor(LEVELS[levels] * 1.2)  # the cell alone, before the channel's R_on
    # invert G = I0 exp(-g/g0) sinh(V/V0)/V at 0.2 V for the gap
    gap = -p.g0_m * torch.log(g * 0.2 / (p.i0_a * torch.sinh(0.2 / p.v0_v)))
    gap = torch.maximum(torch.minimum(gap, p.gap_max_m), p.gap_min_m)
    xb.state = xb.state._replace(gap_m=gap, formed=torch.ones(xb.n_cells, dtype=torch.bool))
    return levels


def test_same_seed_same_array_and_the_truth_spatial_model_is_drawn() -> None:
    first, again, other = _array(5), _array(5), _array(6)
    assert torch.equal(first.cell.v_form_v, again.cell.v_form_v)
    assert torch.equal(first.fet.vth_v, again.fet.vth_v)
    assert not torch.equal(first.cell.v_form_v, other.cell.v_form_v)
    xb = _array(5, die_sigma_rel={})
    rows = np.repeat(np.arange(64), 64) - 31.5
    cols = np.tile(np.arange(64), 64) - 31.5
    design = np.stack([np.ones(4096), rows, cols], 1)
    coef, *_ = np.linalg.lstsq(design, xb.cell.v_form_v.numpy(), rcond=None)
    # truth: v_form_v = 2.5 V * (1 + 0.05 eps) * (1 + 8e-4 r - 5e-4 c)
    assert coef[0] == pytest.approx(2.5, rel=0.01)
    assert coef[1] == pytest.approx(2.5 * 8e-4, rel=0.15)
    assert coef[2] == pytest.approx(-2.5 * 5e-4, rel=0.2)
    stuck = xb.state.stuck.numpy()
    for code, rate in ((1, 0.004), (-1, 0.006)):
        sigma = math.sqrt(rate * (1 - rate) / 4096)
        assert abs(np.mean(stuck == code) - rate) < 4 * sigma
    assert float(xb.fet.vth_v.mean()) == pytest.approx(0.45, rel=0.01)
    assert float(xb.fet.beta_a_v2.std() / xb.fet.beta_a_v2.mean()) == pytest.approx(0.05, rel=0.1)
    assert bool(xb.state.formed[torch.as_tensor(stuck > 0)].all())  # stuck LRS: a filament
    assert not bool(xb.state.formed[torch.as_tensor(stuck <= 0)].any())  # the rest pristine


def test_a_bad_array_truth_names_the_field() -> None:
    with pytest.raises(PlanError, match="neither an RramParams nor a TransistorParams"):
        _array(gradients={"v_form": {"row_rel": 0.01}})
    document = _truth()
    del document["sites"][ARRAY_SITE]["array"]
    with pytest.raises(PlanError, match="array"):
        Truth.load(document)
    document = _truth()
    document["sites"][0]["array"] = document["sites"][ARRAY_SITE]["array"]
    with pytest.raises(PlanError, match="only for them"):
        Truth.load(document)


def _programmed(tolerance: float, rows: int, seed: int = 9) -> tuple[Crossbar, np.ndarray, list]:
    xb = _array(seed, rows=rows)
    now = 0.0
    for r in range(rows):
        _, dt = xb.form_row(r, FormSettings(), now)
        now += dt
    results, targets = [], []
    for r in range(rows):
        t = LEVELS[(np.arange(64) + r) % 8]
        out = xb.write_verify_row(r, t, VerifySettings(tolerance_siemens=tolerance), now)
        now += out.duration_s
        results.append(out)
        targets.append(t)
    return xb, np.concatenate(targets), results


def test_a_row_is_programmed_to_its_per_cell_targets() -> None:
    xb, targets, (result,) = _programmed(4e-6, rows=1)
    ok = xb.state.formed.numpy() & (xb.state.stuck.numpy() == 0)
    assert result.success[ok].mean() >= 62 / 64
    assert result.duration_s > 0 and int(result.attempts.max()) <= 100
    truth = xb.isolated_conductance(0.2, 3.3).numpy()
    inside = result.success & ok
    # the verify read and the cell's own conductance agree within read noise and the lines
    assert np.abs(truth[inside] - targets[inside]).max() < 4e-6 + 4e-6


@pytest.mark.slow
def test_igvva_reaches_8_levels_on_99_percent_of_formed_cells_spread_following_tolerance() -> None:
    spreads = []
    for tolerance in (8e-6, 4e-6, 2e-6):
        xb, targets, results = _programmed(tolerance, rows=8)
        success = np.concatenate([r.success for r in results])
        formed = xb.state.formed.numpy() & (xb.state.stuck.numpy() == 0)
        print(f"IGVVA tolerance {tolerance:.0e} S: {success[formed].mean():.4f} of "
              f"{formed.sum()} formed cells inside their window")  # fmt: skip
        assert success[formed].mean() >= 0.99, tolerance
        truth = xb.isolated_conductance(0.2, 3.3).numpy()
        per_level = []
        for level in LEVELS:
            cells = formed & success & (targets == level)
            assert cells.sum() >= 50
            assert abs(truth[cells].mean() - level) < tolerance + 1e-6
            per_level.append(truth[cells].std())
        spreads.append(float(np.median(per_level)))
    print("IGVVA median level spread (S) at 8, 4, 2 uS:", [f"{x:.3g}" for x in spreads])
    assert spreads[0] > spreads[1] > spreads[2]
    assert spreads[0] / spreads[2] > 1.5


def test_ispva_programs_a_row_too() -> None:
    xb = _array(9, rows=1)
    _, dt = xb.form_row(0, FormSettings(), 0.0)
    t = LEVELS[np.arange(64) % 8]
    out = xb.write_verify_row(0, t, VerifySettings(scheme="ispva", tolerance_siemens=8e-6), dt)
    ok = xb.state.formed.numpy() & (xb.state.stuck.numpy() == 0)
    assert out.success[ok].mean() >= 0.9
    assert np.all(out.gate_v == 2.2) and out.bl_v.max() > 0.8  # the BL ramp, not the gate


def test_mvm_equals_g_transpose_v_within_read_noise() -> None:
    xb = _array(3, bit_line_ohm_per_cell=0.0, source_line_ohm_per_cell=0.0)
    _formed_at_levels(xb)
    g = xb.isolated_conductance(0.2, 3.3).reshape(64, 64)
    gen = torch.Generator().manual_seed(1)
    v = (torch.rand(400, 64, generator=gen, dtype=torch.float64) < 0.3) * 0.2
    ideal = v.double() @ g
    exact = xb.mvm(v.double(), 3.3, 0.0, noisy=False)
    # ideal lines: G^T v to the DC solve's tolerance (rtol 1e-7), no absolute slack
    assert torch.allclose(exact, ideal, rtol=1e-6, atol=0.0)
    noisy = xb.mvm(v.double(), 3.3, 0.0)
    p = xb.cell
    sigma_cell = (p.read_floor_s + p.read_rel * g.reshape(-1)).reshape(64, 64) * 0.2
    predicted = torch.sqrt((v.double() / 0.2) @ sigma_cell**2 + xb.sense_noise_a**2)
    z = (noisy - ideal) / predicted
    assert float(z.mean().abs()) < 0.02
    print(f"MVM - G^T v over its predicted read noise: mean {float(z.mean()):+.4f}, "
          f"SD {float(z.std()):.4f}")  # fmt: skip
    assert float(z.std()) == pytest.approx(1.0, abs=0.03)


def test_mvm_shows_the_ir_drop_the_line_resistance_predicts() -> None:
    errors = []
    for r_line in (0.5, 2.0):
        xb = _array(3, rows=8, cols=8, bit_line_ohm_per_cell=r_line,
                    source_line_ohm_per_cell=r_line)  # fmt: skip
        _formed_at_levels(xb)
        v = torch.tensor([[0.2, 0.2, 0.0, 0.2, 0.2, 0.2, 0.0, 0.2]], dtype=torch.float64)
        got = xb.mvm(v, 3.3, 0.0, noisy=False)[0].numpy()
        # independent reference: Newton on the full network of the array's own cells
        p = xb.cell
        gap, i0, g0, v0 = (
            t.numpy().reshape(8, 8) for t in (xb.state.gap_m, p.i0_a, p.g0_m, p.v0_v)
        )
        from bruno_lab.devices.one_t_one_r import on_resistance_ohm

        r_on = on_resistance_ohm(3.3, xb.fet).numpy().reshape(8, 8)
        scale = i0 * np.exp(-gap / g0)
        vr = v[0].numpy()

        def residual(
            x: np.ndarray, scale=scale, v0=v0, vr=vr, r_line=r_line, r_on=r_on
        ) -> np.ndarray:
            v_x = x.reshape(8, 8)
            i = scale * np.sinh(v_x / v0)
            row_seg = np.cumsum(i[:, ::-1], 1)[:, ::-1]
            col_seg = np.cumsum(i[::-1], 0)[::-1]
            v_row = vr[:, None] - r_line * np.cumsum(row_seg, 1)
            v_col = r_line * np.cumsum(col_seg, 0)
            return (v_row - v_col - i * r_on - v_x).reshape(-1)

        ref = root(residual, np.full(64, 0.1), tol=1e-14)
        assert ref.success
        expected = (scale * np.sinh(ref.x.reshape(8, 8) / v0)).sum(0)
        assert np.allclose(got, expected, rtol=1e-6)
        ideal = vr @ xb.isolated_conductance(0.2, 3.3).numpy().reshape(8, 8)
        errors.append(float(np.mean((ideal - got) / ideal)))
    print("MVM IR-drop error at 0.5 and 2 ohm per cell (8 x 8):", [f"{e:.4f}" for e in errors])
    assert 0 < errors[0] < errors[1]  # the drop lowers the currents, more on lossier lines
    assert errors[1] / errors[0] == pytest.approx(4.0, rel=0.15)  # first order in r


def test_row_parallel_reads_see_the_source_line_drop_cell_reads_do_not() -> None:
    xb = _array(4, bit_line_ohm_per_cell=1.0, source_line_ohm_per_cell=1.0)
    _formed_at_levels(xb)
    truth = xb.isolated_conductance(0.2, 3.3).reshape(64, 64)[10]
    cell = xb.read_row(10, 0.2, 3.3, 0.0, noisy=False, mode="cell")
    row = xb.read_row(10, 0.2, 3.3, 0.0, noisy=False, mode="row")
    assert float(((truth - cell) / truth).abs().max()) < 0.03  # its own line segments only
    far = ((truth - row) / truth)[-8:].mean()
    near = ((truth - row) / truth)[:8].mean()
    assert float(far) > 3 * float(near) > 0  # the shared source line: far cells read low
    assert xb.read_cell(10, 5, 0.2, 3.3, 0.0, noisy=False) == pytest.approx(float(cell[5]))


def test_relaxation_follows_the_time_since_programming_not_the_reads() -> None:
    one, many = _array(7, rows=1), _array(7, rows=1)
    for xb in (one, many):
        xb.form_row(0, FormSettings(), 0.0)
        xb.pulse_cells(xb.row_cells(0), 1.8, 0.0, 1.6, 1e-6, 1.0)
    before = one.state.gap_m.clone()
    for k in range(1, 9):
        many.read_row(0, 0.2, 3.3, 1.0 + 10.0**k / 1e3)
    one.read_row(0, 0.2, 3.3, 1.0 + 1e5)
    many.read_row(0, 0.2, 3.3, 1.0 + 1e5)
    assert torch.allclose(one.state.gap_m, many.state.gap_m, rtol=0, atol=1e-14)
    live = one.state.formed & (one.state.stuck == 0)
    drift = (one.state.gap_m - before)[live]
    # five decades of log time: (mu + sigma eps) * 5 with mu = sigma = 0.01 nm
    assert float(drift.mean()) == pytest.approx(0.05e-9, rel=0.35)
