"""RRAM compact-model fits against records simulated straight from ``bruno_lab.devices.rram``.

The reference is independent of the calibration code: a population with spread in ``v0_v`` and
``v_form_v`` (and in I0, g0 and the gaps, which the fits must not need) is driven through the
forming staircase and the DC SET/RESET sweeps by the device model, read as an SMU reads (source
delay, then the NPLC aperture; compliance; the cell's read noise and the instrument's), and the
fits must find each cell's parameters. Then the stage on a store: a full plan, a plan with only
forming and program-and-verify (the card degrades: no read-noise or relaxation model), bad input.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import func, select

from bruno_lab.devices import rram
from bruno_lab.errors import BadInputError
from bruno_lab.store import open_store
from bruno_lab.store.models import Fit, ModelCard
from calibration.pipeline import calibrate
from calibration.rram_model import fit_forming, fit_iv, forming_record, iv_record
from calibration.stats import parameter_stats

SMU_FLOOR_A, SMU_REL = 2e-12, 2e-5
LINE_HZ = 50.0
FORMING = {"max_v": 4.0, "step_v": 0.05, "compliance_a": 1e-4, "delay_s": 1e-3, "nplc": 0.1}
IV = {
    "set_max_v": 1.5,
    "reset_max_v": 1.8,
    "step_v": 0.05,
    "set_compliance_a": 1e-4,
    "reset_compliance_a": 1e-3,
    "delay_s": 1e-3,
    "nplc": 0.1,
    "read_v": 0.2,
}
SPREAD = {"v0_v": 0.03, "v_form_v": 0.05, "i0_a": 0.1, "g0_m": 0.03, "gap_min_m": 0.05}
TARGETS = np.linspace(6e-6, 242e-6, 8)


# ----- the reference: the device model read like an SMU ------------------------------------------


def _reading(v, limit, state, params, gen, rng):
    """One SMU reading per cell at ``v`` [n]: held ``delay_s``, then the aperture in 4 samples;
    the cell's read noise (a conductance noise times V) and the instrument's noise on top."""
    n = v.shape[0]
    aperture = FORMING["nplc"] / LINE_HZ
    _, state = rram.rram_apply_voltage(v[:, None], FORMING["delay_s"], state, params, limit, gen)
    cur, state = rram.rram_apply_voltage(
        v[:, None].expand(n, 4).contiguous(), aperture / 4, state, params, limit, gen
    )
    safe_v = torch.where(v == 0, 1.0, v)
    g = rram.cell_current_a(safe_v, state.gap_m, params) / safe_v
    eps = torch.randn(n, generator=gen, dtype=torch.float64)
    read = (params.read_floor_s + params.read_rel * g) * eps * v
    i = (cur.mean(1) + torch.where(state.formed & (v != 0), read, 0.0)).clamp(-limit, limit)
    i = i.numpy()
    return i + (SMU_FLOOR_A + SMU_REL * np.abs(i)) * rng.standard_normal(n), state


def _triangle(peak_v: float, step_v: float) -> np.ndarray:
    k = max(math.floor(abs(peak_v) / step_v + 1e-9), 1)
    up = np.arange(1, k + 1) * (abs(peak_v) / k) * math.copysign(1.0, peak_v)
    return np.concatenate([up, up[-2::-1], [0.0]])


def simulate(n: int, seed: int, n_cycles: int = 3) -> dict[str, np.ndarray]:
    """Forming staircase (each cell ramped until it forms, as ``rram_form`` does) and
    ``n_cycles`` DC SET/RESET cycles of ``n`` cells drawn with spread; arrays [n, T] + truth."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    params, state = rram.sample_rram_population(rram.RramParams.default(1), SPREAD, n, gen)
    up = np.arange(1, round(FORMING["max_v"] / FORMING["step_v"]) + 1) * FORMING["step_v"]
    f_v, f_i = [], []
    seen = np.zeros(n, dtype=bool)
    for v in up:
        vt = torch.where(torch.as_tensor(~seen), torch.tensor(float(v), dtype=torch.float64), 0.0)
        i, state = _reading(vt, FORMING["compliance_a"], state, params, gen, rng)
        f_v.append(np.full(n, v))
        f_i.append(np.where(seen, FORMING["compliance_a"], i))
        seen |= np.abs(f_i[-1]) >= 0.5 * FORMING["compliance_a"]
        if seen.all():
            break
    iv_v, iv_i = [], []
    sweeps = (
        (_triangle(IV["set_max_v"], IV["step_v"]), IV["set_compliance_a"]),
        (_triangle(-IV["reset_max_v"], IV["step_v"]), IV["reset_compliance_a"]),
    )
    for _ in range(n_cycles):
        for sweep, limit in sweeps:
            for v in sweep:
                vt = torch.full((n,), float(v), dtype=torch.float64)
                i, state = _reading(vt, limit, state, params, gen, rng)
                iv_v.append(np.full(n, v))
                iv_i.append(i)
    return {
        "forming_v": np.stack(f_v, 1),
        "forming_i": np.stack(f_i, 1),
        "iv_v": np.stack(iv_v, 1),
        "iv_i": np.stack(iv_i, 1),
        "v0_v": params.v0_v.numpy(),
        "v_form_v": params.v_form_v.numpy(),
    }


@pytest.fixture(scope="module")
def cells200() -> dict[str, np.ndarray]:
    torch.set_num_threads(1)
    return simulate(200, seed=11)


def _check_recovery(name, est, stderr, truth, max_cell_err_of_spread):
    stats = parameter_stats(est, "V", stderr=stderr)
    spread = float(np.std(truth, ddof=1))
    assert stats.mean == pytest.approx(float(np.mean(truth)), rel=0.05), name
    assert stats.std == pytest.approx(spread, rel=0.2), name
    err = est - truth
    assert np.sqrt(np.mean(err**2)) < max_cell_err_of_spread * spread, name
    z = np.sqrt(np.mean((err / stderr) ** 2))  # the uncertainties are the real errors
    assert 0.7 < z < 1.4, (name, z)


def test_fits_recover_each_cells_v0_and_v_form(cells200) -> None:
    d = cells200
    n = d["v0_v"].size
    t0 = time.perf_counter()
    ff = fit_forming(
        [forming_record(d["forming_v"][k], d["forming_i"][k], FORMING) for k in range(n)]
    )
    fi = fit_iv([iv_record(d["iv_v"][k], d["iv_i"][k], IV) for k in range(n)])
    elapsed = time.perf_counter() - t0
    assert not any(ff.flags) and not any(fi.flags)
    # v0: 96 frozen-state samples per cell in 7 state segments; the per-cell error is a
    # fraction of the population spread (3 %)
    _check_recovery("v0_v", fi.v0_v, fi.stderr_v, d["v0_v"], 0.25)
    # v_form: one breakdown per cell, itself random by ~1.3 slopes (65 mV) against a 125 mV
    # population spread; the card's spread is deconvolved from it
    _check_recovery("v_form_v", ff.v_form_v, ff.stderr_v, d["v_form_v"], 0.65)
    assert fi.noise_rel == pytest.approx(0.005, rel=0.4)
    assert fi.noise_floor_siemens == pytest.approx(0.2e-6, rel=0.4)
    assert elapsed < 20.0


def test_iv_segments_are_the_frozen_states() -> None:
    v = np.concatenate([_triangle(1.5, 0.05), _triangle(-1.8, 0.05)] * 2)
    i = 1e-4 * np.sinh(v / 0.25)
    rec = iv_record(v, np.clip(i, -1e-3, 1e-4), IV)
    # head of cycle 0, then per cycle the LRS (SET tail + RESET head) and the HRS (RESET tail +
    # the next SET head; the last cycle's RESET tail alone)
    assert rec.n_segments == 5
    assert np.all(np.abs(rec.voltage_v) <= 0.4) and np.all(rec.voltage_v != 0)
    assert np.all(np.abs(rec.current_a) < 0.8e-4 * np.where(rec.voltage_v > 0, 1, 10))


# ----- the stage on a store ----------------------------------------------------------------------


def _add(store, run_id, dev, protocol, arrays, scalars, params, status="ok", error=None):
    now = datetime.now(UTC)
    return store.add_measurement(
        run_id=run_id,
        device_id=dev,
        protocol=protocol,
        parameters=params,
        instruments={},
        started_at=now,
        finished_at=now,
        status=status,
        error=error,
        scalars=scalars,
        arrays=arrays,
    )


def _fill(url: str, sim: dict[str, np.ndarray], protocols: set[str], stuck=frozenset()) -> None:
    rng = np.random.default_rng(3)
    store = open_store(url, require_head=False)
    store.upgrade()
    wid = store.ensure_wafer("W1", lot="L1")
    run_id = store.create_run({"plan": "synthetic"}, "test", {}, "0")
    for cell in range(sim["v0_v"].size):
        die = store.ensure_die(wid, cell % 8, cell // 8, f"D{cell}")
        dev = store.ensure_device(die, "0", "rram", {"area_m2": 1e-14})
        if "rram_forming" in protocols:
            v, i = sim["forming_v"][cell], sim["forming_i"][cell]
            hit = np.flatnonzero(np.abs(i) >= 0.5 * FORMING["compliance_a"])
            _add(
                store,
                run_id,
                dev,
                "rram_forming",
                {"voltage_v": (v, "V"), "current_a": (i, "A")},
                {"forming_voltage_v": float(v[hit[0]]), "formed": 1.0},
                {**FORMING, "detect_frac": 0.5},
            )
        if "rram_iv" in protocols:
            _add(
                store,
                run_id,
                dev,
                "rram_iv",
                {"voltage_v": (sim["iv_v"][cell], "V"), "current_a": (sim["iv_i"][cell], "A")},
                {
                    "set_voltage_v": 0.8,
                    "reset_voltage_v": -0.7,
                    "g_lrs_siemens": 1e-4,
                    "g_hrs_siemens": 5e-6,
                },
                IV,
            )
        pv = {"read_v": 0.2, "n_levels": 8}
        if cell in stuck:
            _add(
                store,
                run_id,
                dev,
                "rram_program_verify",
                {},
                {},
                pv,
                "failed",
                "no switching: conductance stayed at 3e-06 S for every target",
            )
            continue
        if "rram_program_verify" in protocols:
            reached = TARGETS + rng.normal(0, 1.5e-6, 8)
            _add(
                store,
                run_id,
                dev,
                "rram_program_verify",
                {
                    "target_level": (np.arange(8), ""),
                    "target_conductance_siemens": (TARGETS, "S"),
                    "reached_conductance_siemens": (reached, "S"),
                    "attempts": (np.full(8, 3), ""),
                    "success": (np.ones(8, dtype=np.int64), ""),
                },
                {},
                pv,
            )
        if "rram_read_noise" in protocols:
            lv = np.repeat(np.arange(3), 10)
            g = TARGETS[[1, 4, 7]][lv] * (1 + rng.normal(0, 0.01, lv.size))
            _add(
                store,
                run_id,
                dev,
                "rram_read_noise",
                {"level": (lv, ""), "conductance_siemens": (g, "S")},
                {},
                pv,
            )
        if "rram_retention" in protocols:
            t = np.tile(np.geomspace(1, 1e4, 5), 2)
            lvl = np.repeat([0, 1], 5)
            gt = np.array([50e-6, 150e-6])[lvl] * (1 - 0.01 * np.log10(t))
            _add(
                store,
                run_id,
                dev,
                "rram_retention",
                {"time_s": (t, "s"), "level": (lvl, ""), "conductance_siemens": (gt, "S")},
                {},
                pv,
            )
    store.close()


@pytest.fixture(scope="module")
def cells40() -> dict[str, np.ndarray]:
    torch.set_num_threads(1)
    return simulate(40, seed=5, n_cycles=2)


ALL = {"rram_forming", "rram_iv", "rram_program_verify", "rram_read_noise", "rram_retention"}


def test_full_plan_card_holds_model_parameters_and_features(tmp_path: Path, cells40) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    _fill(url, cells40, ALL, stuck={7})
    store = open_store(url)
    out = calibrate(store, "W1", "rram", version="test")
    store.close()
    body = out.body
    assert body.model_name == "rram-gap" and body.n_defective == 1
    for name in ("v0_v", "v_form_v"):
        truth = cells40[name][np.arange(40) != 7]
        assert body.parameters[name].mean == pytest.approx(truth.mean(), rel=0.02)
        assert body.parameters[name].unit == "V"
    for name in ("forming_voltage_v", "set_voltage_v", "g_lrs_siemens", "g_hrs_siemens"):
        assert name in body.parameters
    assert body.rram.read_noise is not None and body.rram.relaxation is not None
    assert "i0_a, g0_m and the gaps" in body.notes and "null" not in body.notes
    fit = next(f for f in out.kind_fit.fits if f.usable)
    assert {"v0_v", "v_form_v", "g_read_seg0_siemens"} <= set(fit.parameters)
    assert fit.goodness["iv_chi2_red"] < 3 and fit.uncertainties["v0_v"] > 0


def test_forming_and_verify_only_plan_degrades_to_a_card(tmp_path: Path, cells40) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    _fill(url, cells40, {"rram_forming", "rram_program_verify"}, stuck={3, 17})
    store = open_store(url)
    out = calibrate(store, "W1", "rram", version="test")
    store.close()
    body, ladder = out.body, out.body.rram
    assert [lv.index for lv in ladder.levels] == list(range(8))
    for lv, target in zip(ladder.levels, TARGETS, strict=True):
        assert lv.mean_siemens == pytest.approx(target, abs=1e-6) and lv.sigma_siemens > 0
    assert ladder.stuck_fraction == pytest.approx(2 / 40)
    assert ladder.read_noise is None and ladder.relaxation is None
    assert "No read-noise model" in body.notes and "No relaxation model" in body.notes
    assert "No rram_iv records" in body.notes
    assert set(body.parameters) == {"v_form_v", "forming_voltage_v"}
    # the trainer reads such a card: noise-free reads, and no relaxation time > 0
    from bruno_lab.train import rram as train_rram
    from bruno_lab.train.synapse import Synapse

    stats = train_rram.LadderStats.from_ladder(ladder)
    assert (stats.read_floor_siemens, stats.read_slope_rel) == (0.0, 0.0)
    assert stats.decades_after(1e6) == 0.0
    kw = {"mode": "device", "init_generator": torch.Generator().manual_seed(0), "noise_seed": 1}
    syn = Synapse(4, 3, ladder=ladder, **kw)
    g = syn.programmed_conductance()
    assert torch.equal(train_rram.read_conductance(g, stats, torch.Generator()), g)
    with pytest.raises(BadInputError, match="no relaxation model"):
        Synapse(4, 3, ladder=ladder, relaxation_time_s=3600.0, **kw)


def _count(url: str, model) -> int:
    store = open_store(url)
    with store.session() as s:
        n = s.scalar(select(func.count()).select_from(model))
    store.close()
    return int(n)


def test_bad_input_exits_2_without_a_card(tmp_path: Path, cells40, monkeypatch, capsys) -> None:
    import sys

    from bruno_lab.cli import main

    url = f"sqlite:///{tmp_path / 'lab.db'}"
    _fill(url, cells40, {"rram_forming", "rram_iv"})  # no program-and-verify: no ladder
    monkeypatch.setattr(
        sys, "argv", ["bruno-lab", "fit", "--wafer", "W1", "--kind", "rram", "--db", url]
    )
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert "rram_program_verify" in capsys.readouterr().err
    assert _count(url, ModelCard) == 0 and _count(url, Fit) == 0
