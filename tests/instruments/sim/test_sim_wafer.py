"""The virtual wafer: seeded, order-independent, drawn from the truth's distributions."""

from __future__ import annotations

import numpy as np
import pytest

from bruno_lab.errors import PlanError
from instruments.sim.wafer import Truth, Wafer


def _truth(**overrides) -> dict:
    document = {
        "name": "t",
        "wafer": {"diameter_mm": 50.0, "die_width_um": 5000.0, "die_height_um": 5000.0},
        "sites": [{"kind": "fecap", "area_m2": 1e-10}, {"kind": "rram", "area_m2": 1e-14}],
        "populations": {
            "fecap": {"params": {"ps_c_m2": {"mean": 0.2, "sigma_rel": 0.1}}},
            "rram": {"params": {"v_form_v": {"mean": 2.5, "sigma_rel": 0.05}}},
        },
        "defects": {"short_rate": 0.05, "open_rate": 0.05, "stuck_rate": 0.1},
    }
    document.update(overrides)
    return document


def test_same_seed_same_wafer_whatever_the_visiting_order() -> None:
    truth = Truth.load(_truth())
    first, second = Wafer(truth, 11), Wafer(truth, 11)
    keys = [(c, r, s) for c, r in first.dies for s in range(2)]
    forward = [first.device(*k).truth for k in keys]
    backward = [second.device(*k).truth for k in reversed(keys)][::-1]
    assert forward == backward
    other = Wafer(truth, 12)
    assert [other.device(*k).truth for k in keys] != forward


def test_parameters_follow_the_truth_distribution() -> None:
    truth = Truth.load(_truth())
    wafer = Wafer(truth, 3)
    draws = np.array([wafer.device(c, r, 0).truth.params["ps_c_m2"] for c, r in wafer.dies])
    assert len(draws) > 50
    assert draws.mean() == pytest.approx(0.2, rel=0.04)
    assert draws.std(ddof=1) / 0.2 == pytest.approx(0.1, rel=0.3)
    assert wafer.device(*wafer.dies[0], 0).truth.area_m2 == 1e-10  # geometry from the site


def test_defect_rates_and_kinds() -> None:
    truth = Truth.load(_truth())
    wafer = Wafer(truth, 5)
    fecap = [wafer.device(c, r, 0).truth.defect for c, r in wafer.dies]
    rram = [wafer.device(c, r, 1).truth.defect for c, r in wafer.dies]
    assert {d for d in fecap} <= {None, "short", "open"}  # a FeCap cannot be a stuck cell
    assert {"stuck_lrs", "stuck_hrs"} & set(rram)
    n = len(wafer.dies)
    assert 0 < sum(d == "short" for d in fecap + rram) < 0.2 * 2 * n


def test_die_map_fits_the_usable_disc() -> None:
    truth = Truth.load(_truth())
    wafer = Wafer(truth, 0)
    radius_um = 25_000.0
    for col, row in wafer.dies:
        x_um, y_um = wafer.die_position_um(col, row)
        assert np.hypot(x_um, y_um) < radius_um
    assert len(set(wafer.dies)) == len(wafer.dies)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"sites": []}, "sites"),
        ({"wafer": {"diameter_mm": -1, "die_width_um": 1, "die_height_um": 1}}, "diameter_mm"),
        ({"populations": {"fecap": {}}}, "rram"),
        ({"defects": {"short_rate": 2.0}}, "short_rate"),
    ],
)
def test_bad_truth_names_the_field(overrides, field) -> None:
    with pytest.raises(PlanError, match=field):
        Truth.load(_truth(**overrides))


def test_default_truth_ships_and_builds_every_kind() -> None:
    from instruments.sim.physics import params_for

    truth = Truth.load(None)
    wafer = Wafer(truth, 0)
    kinds = set()
    for site in range(wafer.n_sites):
        device = wafer.device(*wafer.dies[0], site)
        params = params_for(device)  # every drawn value inside the model's bounds
        params.check_bounds()
        kinds.add(device.truth.kind)
    assert kinds == {"fecap", "rram", "felif"}
