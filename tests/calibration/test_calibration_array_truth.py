"""Calibration truth recovery from a 1T1R array through the sim: a characterization plan on a
32 x 64 array (2048 cells), then calibrate(kind="rram_array") must give back what the truth
file put there: per-level means within 2 % and spreads within 20 % of the cells' own noiseless
conductances, the stuck fraction, the forming voltage's row and column gradients, and the
access transistors' threshold and gain."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "protocols" / "examples"
DIE, SITE, ROWS = (1, 1), 4, 32


def _plan(path: Path, steps: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({
        "version": 1, "name": path.stem, "dies": [list(DIE)], "sites": {"rram_array": "all"},
        "protocols": steps,
    }))  # fmt: skip
    return path


@pytest.mark.slow
def test_an_array_calibration_recovers_the_truth(sim_lab_factory: Any, tmp_path: Path) -> None:
    from bruno_lab.store import open_store
    from bruno_lab.yamlio import load_yaml_file
    from calibration.pipeline import calibrate
    from protocols.prepare import execute_run, prepare_run

    truth = copy.deepcopy(load_yaml_file(EXAMPLES / "array_truth.yaml", "truth").data)
    truth["sites"][SITE]["array"]["rows"] = ROWS
    lab = sim_lab_factory(truth=truth, seed=31)
    station = lab.write_station(tmp_path / "station.yaml")
    store = open_store(f"sqlite:///{tmp_path / 'lab.db'}", require_head=False)
    store.upgrade()
    rows = {"n_rows": ROWS}
    first = _plan(tmp_path / "program.yaml", [
        {"protocol": "array_forming", "params": rows},
        {"protocol": "array_health", "params": rows},
        {"protocol": "array_program_verify", "params": {**rows, "tolerance_siemens": 4e-6}},
        {"protocol": "array_conductance_map", "params": {**rows, "n_reads": 4}},
    ])  # fmt: skip
    assert execute_run(prepare_run(first, station), store, operator="t").status == "completed"
    xb = lab.wafer.array(*DIE, SITE)
    g_true = xb.isolated_conductance(0.2, 3.3).numpy().reshape(ROWS, 64)  # after the map
    second = _plan(tmp_path / "sample.yaml", [
        {"protocol": "array_read_noise", "params": {"rows": [0, 15, 31], "n_reads": 32}},
        {"protocol": "array_compliance", "params": {"rows": [8, 24]}},
    ])  # fmt: skip
    assert execute_run(prepare_run(second, station), store, operator="t").status == "completed"
    outcome = calibrate(store, lab.wafer.truth.name, "rram_array")
    card = outcome.body
    ladder = card.rram
    assert card.device_kind == "rram" and ladder is not None and ladder.array is not None
    assert len(ladder.levels) == 8 and card.n_devices > 1900

    # levels: the cells that passed, grouped by their target, against their own truth
    from protocols.array_program import DEFAULT_LEVELS_SIEMENS

    level = (np.arange(64)[None, :] + np.arange(ROWS)[:, None]) % 8
    good = (xb.state.stuck.numpy() == 0).reshape(ROWS, 64) & xb.state.formed.numpy().reshape(
        ROWS, 64
    )
    for k, lv in enumerate(ladder.levels):
        cells = good & (level == k)
        print(f"level {k}: card {lv.mean_siemens:.4g} +- {lv.sigma_siemens:.3g} S, truth "
              f"{g_true[cells].mean():.4g} +- {g_true[cells].std():.3g} S")  # fmt: skip
        assert lv.mean_siemens == pytest.approx(g_true[cells].mean(), rel=0.02), k
        assert lv.sigma_siemens == pytest.approx(g_true[cells].std(), rel=0.2), k
        assert abs(lv.mean_siemens - DEFAULT_LEVELS_SIEMENS[k]) < 8e-6
        assert lv.success_rate > 0.97 and lv.mean_attempts > 0
    # defects
    truth_stuck = float(np.mean(xb.state.stuck.numpy() != 0))
    print(f"stuck fraction: card {ladder.stuck_fraction:.4f}, truth {truth_stuck:.4f}")
    assert ladder.stuck_fraction == pytest.approx(truth_stuck, abs=0.004)
    assert ladder.array.defects.unformed_fraction == pytest.approx(
        float(np.mean(xb.state.stuck.numpy() < 0)), abs=0.003
    )
    # spatial: the forming voltage's gradients, against a fit of the drawn v_form_v itself
    trend = ladder.array.spatial[0]
    r, c = np.indices((ROWS, 64))
    design = np.stack([np.ones(ROWS * 64), r.ravel(), c.ravel()], 1)
    coef, *_ = np.linalg.lstsq(design, xb.cell.v_form_v.numpy(), rcond=None)
    print(f"v_form trend per row/col: card {trend.per_row:.3e}/{trend.per_col:.3e} V, drawn "
          f"{coef[1]:.3e}/{coef[2]:.3e} V")  # fmt: skip
    assert trend.quantity == "forming_voltage_v"
    assert trend.per_row == pytest.approx(coef[1], rel=0.25)  # truth: 2.5 V * 8e-4 per row
    assert trend.per_col == pytest.approx(coef[2], rel=0.25)  # truth: -2.5 V * 5e-4 per col
    # the transistors of the sampled rows
    sampled = np.r_[8 * 64 : 9 * 64, 24 * 64 : 25 * 64]
    fet = ladder.array.compliance
    for name, stats in (("vth_v", fet.vth_v), ("beta_a_v2", fet.beta_a_v2)):
        values = getattr(xb.fet, name).numpy()[sampled]
        assert stats.mean == pytest.approx(values.mean(), rel=0.02), name
        assert stats.std == pytest.approx(values.std(), rel=0.2), name
    # read noise, from the sampled rows' repeated reads
    assert ladder.read_noise.slope_rel == pytest.approx(0.005, rel=0.2)
