"""The issue's show case: a plan over a simulated wafer of 21 dies with FeCap and RRAM sites
runs end to end through `bruno-lab run`; the database holds every planned measurement once,
with the arrays and scalars the calibration contract names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bruno_lab.store import open_store
from bruno_lab.store.models import Measurement

CONTRACT = {
    "pund": (
        {"time_s", "voltage_v", "current_a"},
        {"switched_charge_pos_c", "switched_charge_neg_c", "switched_polarization_c_m2"},
    ),
    "rram_forming": ({"voltage_v", "current_a"}, {"forming_voltage_v", "formed"}),
    "rram_pulsed": ({"amplitude_v", "width_s", "conductance_siemens", "polarity"}, {"n_pulses"}),
}  # fmt: skip


@pytest.mark.slow
def test_wafer_of_21_dies_end_to_end(
    sim_lab_factory, truth_factory, write_plan, db_url, tmp_path
) -> None:
    lab = sim_lab_factory(truth=truth_factory(diameter_mm=80.0, die_um=12000.0), seed=7)
    assert len(lab.wafer.dies) >= 20
    station = lab.write_station(tmp_path / "station.yaml")
    plan = write_plan(
        {
            "name": "wafer-21",
            "dies": "all",
            "sites": {"fecap": [0], "rram": "all", "felif": []},
            "protocols": [
                {"protocol": "pund", "params": {"amplitude_v": "3 V"}},
                {"protocol": "rram_forming", "params": {"max_v": "3.5 V", "step_v": "100 mV"}},
                {
                    "protocol": "rram_pulsed",
                    "params": {"set_amplitudes_v": ["1.8 V"], "reset_amplitudes_v": ["1.6 V"]},
                },
            ],
        }
    )
    bruno_lab = str(Path(sys.executable).with_name("bruno-lab"))
    result = subprocess.run(
        [bruno_lab, "run", str(plan), "--station", str(station), "--db", db_url, "--json"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)
    n_dies = len(lab.wafer.dies)
    assert doc["status"] == "completed" and doc["planned"] == doc["done"] == 3 * n_dies
    assert "dies" in result.stderr  # the progress bar went to stderr
    store = open_store(db_url)
    with store.session() as s:
        rows = s.execute(select(Measurement.id, Measurement.key, Measurement.protocol,
                                Measurement.status, Measurement.error)).all()  # fmt: skip
    assert len(rows) == len({r.key for r in rows}) == 3 * n_dies
    ok = [r for r in rows if r.status.value == "ok"]
    assert len(ok) >= 0.9 * len(rows), [r.error for r in rows if r.status.value != "ok"][:5]
    for row in ok:
        arrays_wanted, scalars_wanted = CONTRACT[row.protocol]
        m = store.get_measurement(row.id)
        assert scalars_wanted <= m.scalars.keys(), row.key
        assert arrays_wanted <= store.array_names(row.id).keys(), row.key
    store.close()


def test_a_wafer_map_without_a_field_names_the_missing_field() -> None:
    from bruno_lab.errors import PlanError
    from protocols.wafer import wafer_map_from_dict

    with pytest.raises(PlanError, match=r"plan.yaml: wafer_map: .*missing field 'dies'"):
        wafer_map_from_dict({"sites": []}, "plan.yaml: wafer_map")
    with pytest.raises(PlanError, match="missing field 'kind'"):
        wafer_map_from_dict({"dies": [[0, 0]], "sites": [{"site": 0}]}, "plan.yaml: wafer_map")
