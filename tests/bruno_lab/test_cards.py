import json

import pytest

from bruno_lab.cards import ModelCardBody, load_card_file, parse_card
from bruno_lab.errors import ModelCardError


def _rram_card() -> dict:
    return {
        "device_kind": "rram",
        "scope": "wafer",
        "scope_id": "W01",
        "model_name": "rram-gap",
        "model_version": "1",
        "n_devices": 200,
        "n_defective": 3,
        "parameters": {"g0_siemens": {"unit": "S", "mean": 1e-4, "std": 1e-5, "n_devices": 200}},
        "rram": {
            "read_voltage_v": 0.2,
            "levels": [
                {
                    "index": i,
                    "mean_siemens": (6 + 33.7 * i) * 1e-6,
                    "sigma_siemens": 1.5e-6,
                    "n_cells": 50,
                }
                for i in range(8)
            ],
            "read_noise": {"floor_siemens": 1e-7, "slope_rel": 0.01},
            "relaxation": {
                "t0_s": 1.0,
                "drift_rel_per_decade": -0.01,
                "sigma_siemens_per_decade": 5e-7,
            },
            "stuck_fraction": 0.01,
            "stuck_conductance_siemens": 2e-6,
        },
    }


def test_valid_card_round_trips_through_json(tmp_path):
    card = parse_card(_rram_card())
    path = tmp_path / "card.json"
    path.write_text(card.model_dump_json())
    again = load_card_file(path)
    assert again == card
    assert again.parameters["g0_siemens"].sigma_rel == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c.pop("rram"), r"\(top level\)"),
        (lambda c: c["rram"]["levels"].reverse(), "rram"),
        (lambda c: c["parameters"]["g0_siemens"].update(std=-1.0), "parameters.g0_siemens.std"),
        (lambda c: c.update(device_kind="pcm"), "device_kind"),
    ],
)
def test_invalid_card_names_the_field(mutate, field):
    doc = _rram_card()
    mutate(doc)
    with pytest.raises(ModelCardError, match=rf"cards/x\.json: field {field}"):
        parse_card(doc, where="cards/x.json")


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ModelCardError, match=r"broken\.json"):
        load_card_file(path)


def test_felif_card_needs_no_ladder():
    doc = _rram_card()
    doc.update(device_kind="felif")
    doc.pop("rram")
    assert ModelCardBody.model_validate(json.loads(json.dumps(doc))).rram is None
