"""Fits and versioned model cards: provenance kept, versions never overwritten."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from store_helpers import measurement_kwargs

from bruno_lab.cards import ModelCardBody
from bruno_lab.errors import DataError, ModelCardError
from bruno_lab.store import Store

BODY = {
    "device_kind": "fecap",
    "scope": "wafer",
    "scope_id": "W01",
    "model_name": "fecap-lumped",
    "model_version": "1",
    "n_devices": 2,
    "n_defective": 0,
    "parameters": {
        "ps_c_m2": {"unit": "C/m**2", "mean": 0.22, "std": 0.01, "n_devices": 2},
        "ea_v_m": {"unit": "V/m", "mean": 1.27e9, "std": 5e7, "n_devices": 2},
    },
}


def _fit(store: Store, device_id: int, mids: list[int]) -> int:
    return store.add_fit(
        device_id=device_id,
        model_name="fecap-lumped",
        model_version="1",
        parameters={"ps_c_m2": 0.22, "ea_v_m": 1.3e9},
        uncertainties={"ps_c_m2": 0.002, "ea_v_m": float("inf")},
        goodness={"rmse_a": 1e-7, "r2": 0.99},
        measurement_ids=mids,
        flags=["ok"],
    )


def test_fit_keeps_its_measurements(store: Store, run_id: int, device_id: int) -> None:
    mids = [
        store.add_measurement(
            **measurement_kwargs(run_id, device_id, arrays={"i_a": (np.ones(4), "A")})
        )
        for _ in range(3)
    ]
    fid = _fit(store, device_id, [mids[2], mids[0]])
    fit = store.get_fit(fid)
    assert fit.measurement_ids == sorted([mids[0], mids[2]])
    assert fit.uncertainties == {"ps_c_m2": 0.002, "ea_v_m": None}  # inf -> null
    assert [f.id for f in store.list_fits(device_ids=[device_id])] == [fid]
    assert store.list_fits(model_name="rram-levels") == []
    with pytest.raises(DataError):
        _fit(store, device_id, [99999])


def test_card_versions_increase_and_never_overwrite(store: Store, device_id: int) -> None:
    fid = _fit(store, device_id, [])
    first = store.add_model_card(BODY, [fid], code_version="abc123")
    body2 = copy.deepcopy(BODY)
    body2["parameters"]["ps_c_m2"]["mean"] = 0.23
    second = store.add_model_card(ModelCardBody.model_validate(body2), [fid], code_version="def456")
    assert (first.version, second.version) == (1, 2)
    assert first.id != second.id and second.fit_ids == [fid]
    latest = store.latest_model_card("fecap", "wafer", "W01")
    assert latest.id == second.id and latest.card().parameters["ps_c_m2"].mean == 0.23
    old = store.get_model_card(first.id)
    assert old.version == 1 and old.card().parameters["ps_c_m2"].mean == 0.22
    assert old.code_version == "abc123"
    other = dict(BODY, scope="lot", scope_id="L7")
    assert store.add_model_card(other, [fid], code_version="x").version == 1
    assert [c.version for c in store.list_model_cards(kind="fecap", scope="wafer")] == [1, 2]
    assert len(store.list_model_cards()) == 3


def test_invalid_or_missing_cards_raise_model_card_error(store: Store, device_id: int) -> None:
    bad = copy.deepcopy(BODY)
    bad["parameters"]["ps_c_m2"]["std"] = -1.0
    with pytest.raises(ModelCardError, match="std"):
        store.add_model_card(bad, [], code_version="x")
    with pytest.raises(ModelCardError, match="no model card"):
        store.latest_model_card("rram", "wafer", "W01")
    with pytest.raises(ModelCardError, match="scope"):
        store.list_model_cards(scope="die")
    with pytest.raises(ModelCardError):
        store.get_model_card(777)
    with pytest.raises(DataError, match="unknown fits"):
        store.add_model_card(BODY, [4242], code_version="x")
    assert store.list_model_cards() == []


def test_concurrent_card_writers_get_distinct_versions(db_url: str) -> None:
    import threading

    from store_helpers import migrated_store

    stores = [migrated_store(db_url), migrated_store(db_url)]
    errors: list[BaseException] = []

    def write(store: Store) -> None:
        try:
            for _ in range(6):
                store.add_model_card(BODY, [], code_version="race")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    versions = [c.version for c in stores[0].list_model_cards(scope_id="W01")]
    assert versions == list(range(1, 13))
    for s in stores:
        s.close()


def _fit_kwargs(device_id: int, mids: list[int]) -> dict:
    return {
        "device_id": device_id,
        "model_name": "fecap-lumped",
        "model_version": "1",
        "parameters": {"ps_c_m2": 0.22},
        "uncertainties": {"ps_c_m2": 0.002},
        "goodness": {"r2": 0.99},
        "measurement_ids": mids,
        "flags": [],
    }


def test_calibration_stores_fits_and_card_together_or_nothing(
    store: Store, run_id: int, device_id: int
) -> None:
    mid = store.add_measurement(**measurement_kwargs(run_id, device_id))
    fids, card = store.add_calibration(
        [_fit_kwargs(device_id, [mid]), _fit_kwargs(device_id, [])], BODY, "abc"
    )
    assert len(fids) == 2 and card.version == 1
    assert sorted(card.fit_ids) == sorted(fids)
    assert store.get_fit(fids[0]).measurement_ids == [mid]
    # the second fit references a measurement that does not exist: no fit and no card stored
    with pytest.raises(DataError, match="W01"):
        store.add_calibration(
            [_fit_kwargs(device_id, [mid]), _fit_kwargs(device_id, [987654])], BODY, "abc"
        )
    assert [f.id for f in store.list_fits()] == fids
    assert [c.version for c in store.list_model_cards()] == [1]
