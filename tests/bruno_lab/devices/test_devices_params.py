"""Parameter sets: units and bounds in metadata, model-card JSON, validation, populations."""

from __future__ import annotations

import json

import pytest
import torch

from bruno_lab.devices.fecap import FeCapParams
from bruno_lab.devices.felif import FeLIFParams
from bruno_lab.devices.params import sample_population
from bruno_lab.devices.rram import RramParams
from bruno_lab.errors import BadInputError, ModelCardError


@pytest.mark.parametrize("cls", [FeLIFParams, FeCapParams, RramParams])
def test_every_field_has_unit_bounds_and_a_default_inside(cls):
    for name, spec in cls.specs().items():
        assert spec.low <= spec.default <= spec.high, name
        assert isinstance(spec.unit, str) and spec.doc
    p = cls.default(3, dtype=torch.float32)
    assert all(
        getattr(p, n).shape == (3,) and getattr(p, n).dtype == torch.float32 for n in cls.specs()
    )


def test_json_round_trip_shared_and_per_device_values():
    p = FeLIFParams.default(3).replace(
        area_m2=torch.tensor([20e-12, 25e-12, 30e-12], dtype=torch.float64)
    )
    doc = json.loads(json.dumps(p.to_json()))
    assert doc["area_m2"] == [20e-12, 25e-12, 30e-12] and doc["ps_c_m2"] == 0.22
    back = FeLIFParams.from_json(doc)
    assert all(torch.equal(getattr(back, n), getattr(p, n)) for n in FeLIFParams.specs())


def test_bad_model_cards_name_the_field():
    with pytest.raises(ModelCardError, match=r"unknown.*e_a_vm"):
        FeLIFParams.from_json({"e_a_vm": 1e9})
    with pytest.raises(ModelCardError, match=r"ps_c_m2 = -0.1 C/m\*\*2 outside"):
        FeLIFParams.from_json({"ps_c_m2": -0.1})
    with pytest.raises(ModelCardError, match="differ in length"):
        FeLIFParams.from_json({"ps_c_m2": [0.2, 0.21], "alpha": [1.3, 1.3, 1.3]})
    assert issubclass(ModelCardError, BadInputError)


def test_population_draws_theta_mu_one_plus_sigma_eps_seeded():
    mean = FeLIFParams.default(1)
    sig = {"area_m2": 0.1, "e_a_v_m": 0.05}
    a = sample_population(mean, sig, 20000, torch.Generator().manual_seed(11))
    b = sample_population(mean, sig, 20000, torch.Generator().manual_seed(11))
    assert torch.equal(a.area_m2, b.area_m2)
    rel = a.area_m2 / 25e-12 - 1
    assert float(rel.mean()) == pytest.approx(0.0, abs=0.003)
    assert float(rel.std()) == pytest.approx(0.1, rel=0.03)
    assert float((a.e_a_v_m / 12.7e8 - 1).std()) == pytest.approx(0.05, rel=0.03)
    assert torch.all(a.ps_c_m2 == 0.22)  # not named: copied
    corr = torch.corrcoef(torch.stack([a.area_m2, a.e_a_v_m]))[0, 1]
    assert abs(float(corr)) < 0.03  # independent draws
    with pytest.raises(ModelCardError):
        sample_population(mean, {"nope": 0.1}, 3, torch.Generator())
