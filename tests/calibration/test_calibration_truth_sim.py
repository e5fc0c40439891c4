"""Recovery of known truth through the whole chain, at population scale (issue: >= 200 devices
per kind): a simulated wafer whose truth differs from the default, characterized through the
real drivers and protocols over sockets (`bruno-lab run`), fitted (`bruno-lab fit`), and the
card compared with the truth the sim drew.

The references are the sim's own: the population the truth file declares (mean and spread of
every parameter) and, device by device, the values it drew; for RRAM levels, the noiseless
conductance of each cell at the read that ended its verify, logged inside the sim (the card
only ever sees noisy reads through the SMU).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from bruno_lab.store import open_store

pytestmark = pytest.mark.slow

# Four test structures of one kind per die: few prober moves per device.
SITE_OFFSETS_UM = ((-300.0, 300.0), (300.0, 300.0), (-300.0, -300.0), (300.0, -300.0))


def _truth(name: str, kind: str, params: dict[str, tuple[float, float]], **extra: Any) -> dict:
    """The default truth with a 50 mm wafer of 5 mm dies (60 dies), four ``kind`` sites each and
    ``params`` -> (mean, sigma_rel) replacing the default population."""
    from instruments.sim.wafer import DEFAULT_TRUTH_PATH

    truth = copy.deepcopy(yaml.safe_load(DEFAULT_TRUTH_PATH.read_text()))
    truth["name"] = name
    truth["wafer"] = {
        "diameter_mm": 50.0,
        "edge_exclusion_mm": 0.0,
        "die_width_um": 5000.0,
        "die_height_um": 5000.0,
    }
    truth["sites"] = [
        {"kind": kind, "area_m2": 2.5e-11 if kind == "fecap" else 1e-14, "x_um": x, "y_um": y}
        for x, y in SITE_OFFSETS_UM
    ]
    pop = truth["populations"][kind]
    for key, (mean, sigma_rel) in params.items():
        pop["params"][key] = {"mean": mean, "sigma_rel": sigma_rel}
    truth["defects"] = {"short_rate": 0.0, "open_rate": 0.0, "stuck_rate": 0.0}
    truth.update(extra)
    return truth


def _run(tmp_path: Path, station: Path, plan: dict, db: str) -> dict:
    from bruno_lab.cli import app

    path = tmp_path / f"{plan['name']}.yaml"
    path.write_text(yaml.safe_dump(plan))
    res = CliRunner().invoke(
        app, ["run", str(path), "--station", str(station), "--db", db, "--json"]
    )
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _fit(db: str, wafer: str, kind: str, *extra: str) -> dict:
    from bruno_lab.cli import app

    res = CliRunner().invoke(
        app, ["fit", "--wafer", wafer, "--kind", kind, *extra, "--db", db, "--json"]
    )
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["cards"][0]


def _new_db(tmp_path: Path) -> str:
    db = f"sqlite:///{tmp_path / 'lab.db'}"
    store = open_store(db, require_head=False)
    store.upgrade()
    store.close()
    return db


def _device_truth(lab: Any, db: str, wafer: str, kind: str, model: str) -> list[tuple[dict, dict]]:
    """(fitted parameters, drawn truth) of every fitted device."""
    from calibration.data import load_devices

    store = open_store(db)
    where = {d.device_id: d for d in load_devices(store, wafer, kind)}
    fits = store.list_fits(model_name=model)
    store.close()
    out = []
    for fit in fits:
        d = where[fit.device_id]
        out.append((fit.parameters, lab.truth_for((d.die_x, d.die_y), int(d.site)).params))
    return out


def _assert_population(card: dict, truth: dict[str, tuple[float, float]], names: tuple) -> dict:
    """Card means within 5 % and spreads within 20 % of the truth file's population."""
    report = {}
    for name in names:
        mean, sigma_rel = truth[name]
        stats = card["parameters"][name]
        report[name] = (stats["mean"] / mean - 1.0, stats["std"] / (mean * sigma_rel) - 1.0)
    print(f"{card['model_name']}: (mean ratio - 1, spread ratio - 1) {report}")
    assert all(abs(m) < 0.05 for m, _ in report.values()), report
    assert all(abs(s) < 0.20 for _, s in report.values()), report
    return report


# ----- FeCap ------------------------------------------------------------------------------------

FECAP_TRUTH = {  # differs from truth_default.yaml in every mean
    "ps_c_m2": (0.25, 0.05),
    "e_a_v_m": (13.5e8, 0.05),
    "t_hzo_m": (9.0e-9, 0.03),
    "t_int_m": (1.2e-9, 0.05),
    "e_a_spread_rel": (0.15, 0.1),
    "imprint_v": (0.1, 0.1),
}
FECAP_RECOVERED = ("ps_c_m2", "e_a_v_m", "t_hzo_m")


def test_fecap_population_recovered_through_the_sim(sim_lab_factory, tmp_path: Path) -> None:
    truth = _truth("W-fecap-pop", "fecap", FECAP_TRUTH)
    truth["populations"]["fecap"]["n_domains"] = 4
    lab = sim_lab_factory(truth=truth, seed=2026)
    station = lab.write_station(tmp_path / "station.yaml")
    db = _new_db(tmp_path)
    plan = {
        "version": 1,
        "name": "fecap-pop",
        "wafer": "W-fecap-pop",
        "dies": "all",
        "sites": {"fecap": [0, 1, 2, 3]},
        "protocols": [
            {
                "protocol": "pv_loop",
                "params": {
                    "amplitude_v": "3 V",
                    "frequencies_hz": ["10 kHz", "100 kHz"],
                    "n_cycles": 2,
                    "samples_per_period": 200,
                },
            }
        ],
    }
    summary = _run(tmp_path, station, plan, db)
    assert summary["failed"] == 0 and summary["done"] >= 200
    card = _fit(db, "W-fecap-pop", "fecap", "--n-domains", "4")
    assert card["n_devices"] >= 200
    _assert_population(card, FECAP_TRUTH, FECAP_RECOVERED)
    pairs = _device_truth(lab, db, "W-fecap-pop", "fecap", "fecap-pv")
    for name in FECAP_RECOVERED:  # device by device: errors well inside the population spread
        errors = [abs(fit[name] / true[name] - 1.0) for fit, true in pairs]
        assert np.median(errors) < 0.25 * FECAP_TRUTH[name][1], name


# ----- RRAM -------------------------------------------------------------------------------------

RRAM_TRUTH = {  # v0_v and v_form_v differ from the default; read noise doubled
    "v0_v": (0.28, 0.04),
    "v_form_v": (2.2, 0.06),
    "read_rel": (0.01, 0.0),
}
RRAM_RECOVERED = ("v0_v", "v_form_v")
PROGRAM = {
    "tolerance_siemens": "5 uS",
    "set_start_v": "0.7 V",
    "reset_start_v": "0.6 V",
    "step_v": "50 mV",
    "max_attempts": 40,
    "pulse_width_s": "1 us",
}


class _ReadLog:
    """Wraps the sim's SMU physics: every read's returned (noisy) conductance and the cell's
    noiseless conductance after it, per device."""

    def __init__(self) -> None:
        from instruments.sim import physics

        self.physics = physics
        self.inner = physics.dc_current_a
        self.reads: dict[tuple[int, int, int], list[tuple[float, float]]] = {}

    def __call__(self, device: Any, voltage_v: float, *args: Any, **kwargs: Any) -> float:
        from bruno_lab.devices.rram import rram_conductance_siemens

        current_a = self.inner(device, voltage_v, *args, **kwargs)
        if device.truth.kind == "rram" and voltage_v > 0 and device.state is not None:
            params = self.physics.params_for(device)
            g = float(rram_conductance_siemens(device.state, params, voltage_v).reshape(-1)[0])
            key = (device.truth.col, device.truth.row, device.truth.site)
            self.reads.setdefault(key, []).append((current_a / voltage_v, g))
        return current_a

    def noiseless(self, key: tuple[int, int, int], read_siemens: float) -> float:
        """The noiseless conductance at the logged read closest to ``read_siemens``."""
        reads = np.array(self.reads[key])
        return float(reads[np.argmin(np.abs(reads[:, 0] - read_siemens)), 1])


def test_rram_population_recovered_through_the_sim(
    sim_lab_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from instruments.sim import physics

    log = _ReadLog()
    monkeypatch.setattr(physics, "dc_current_a", log)
    truth = _truth("W-rram-pop", "rram", RRAM_TRUTH)
    truth["defects"]["stuck_rate"] = 0.03
    lab = sim_lab_factory(truth=truth, seed=2027)
    station = lab.write_station(tmp_path / "station.yaml")
    db = _new_db(tmp_path)
    dies = [list(d) for d in lab.wafer.dies[:52]]  # 52 dies x 4 cells = 208 cells
    plan = {
        "version": 1,
        "name": "rram-pop",
        "wafer": "W-rram-pop",
        "dies": dies,
        "sites": {"rram": [0, 1, 2, 3]},
        "protocols": [
            {
                "protocol": "rram_forming",
                "params": {"max_v": "3.5 V", "step_v": "50 mV", "compliance_a": "100 uA"},
            },
            {"protocol": "rram_iv", "params": {"n_cycles": 1, "step_v": "100 mV"}},
            {
                "protocol": "rram_program_verify",
                "params": {
                    "n_levels": 4,
                    "g_min_siemens": "20 uS",
                    "g_max_siemens": "200 uS",
                    **PROGRAM,
                },
            },
        ],
        "stop": {"max_consecutive_failed": 50},
    }
    _run(tmp_path, station, plan, db)
    # repeated reads at two levels on a quarter of the cells: the read-noise model
    noise_plan = {
        **plan,
        "name": "rram-read-noise",
        "sites": {"rram": [0]},
        "protocols": [
            {
                "protocol": "rram_read_noise",
                "params": {"targets_siemens": [3e-5, 1.8e-4], "n_reads": 10, **PROGRAM},
            }
        ],
    }
    _run(tmp_path, station, noise_plan, db)
    card = _fit(db, "W-rram-pop", "rram")
    assert card["n_devices"] >= 190
    store = open_store(db)
    card["rram"] = store.get_model_card(card["card_id"]).body["rram"]
    store.close()

    _assert_population(card, RRAM_TRUTH, RRAM_RECOVERED)

    # every level's mean against the cells' noiseless conductance at the read ending verify
    from calibration.data import load_arrays, load_devices

    store = open_store(db)
    devices = load_devices(store, "W-rram-pop", "rram")
    rows = [
        (d, r)
        for d in devices
        for r in d.rows.get("rram_program_verify", [])
        if r["status"] == "ok"
    ]
    arrays = load_arrays(
        store,
        [r["measurement_id"] for _, r in rows],
        ("target_level", "reached_conductance_siemens", "success"),
    )
    store.close()
    true_by_level: dict[int, list[float]] = {}
    for d, r in rows:
        a = arrays[r["measurement_id"]]
        key = (int(d.die_x), int(d.die_y), int(d.site))
        for level, reached, ok in zip(
            a["target_level"], a["reached_conductance_siemens"], a["success"], strict=True
        ):
            if ok:
                true_by_level.setdefault(int(level), []).append(log.noiseless(key, float(reached)))
    levels = card["rram"]["levels"]
    assert len(levels) == 4
    for level in levels:
        truth_mean = float(np.mean(true_by_level[level["index"]]))
        assert level["mean_siemens"] == pytest.approx(truth_mean, rel=0.02), level
        assert level["n_cells"] >= 150

    # read noise: sigma = floor + slope*G against the truth's read_floor_s and read_rel
    noise = card["rram"]["read_noise"]
    assert noise["slope_rel"] == pytest.approx(RRAM_TRUTH["read_rel"][0], rel=0.2)

    # stuck cells: the card's rate against the cells the sim made stuck
    cells = [(tuple(d), s) for d in dies for s in range(4)]
    stuck = sum(lab.truth_for(d, s).defect in ("stuck_lrs", "stuck_hrs") for d, s in cells)
    assert card["rram"]["stuck_fraction"] * len(cells) == pytest.approx(stuck, abs=2)

    # device by device: v0_v and v_form_v well inside the population spread
    pairs = _device_truth(lab, db, "W-rram-pop", "rram", card["model_name"])
    for name in RRAM_RECOVERED:
        errors = [abs(fit[name] / true[name] - 1.0) for fit, true in pairs if name in fit]
        assert len(errors) >= 190 and np.median(errors) < 0.5 * RRAM_TRUTH[name][1], name
