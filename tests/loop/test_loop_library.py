"""The loop as a library (``bruno_lab.loop``): objects from stage to stage, no files between.

The slow test drives the whole loop from Python on the simulated lab and checks what a
library user relies on: the run has a purpose, a refit after a deployment on the same wafer
gives the same card (deployment cells never leak into the characterization), and the network
object deployed is the one evaluated.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_import_bruno_lab_is_light_and_exposes_the_loop() -> None:
    code = (
        "import sys, bruno_lab; heavy = {'torch', 'sqlalchemy', 'pandas'} & set(sys.modules);"
        "assert not heavy, heavy; from bruno_lab import loop;"
        "assert all(hasattr(loop, n) for n in loop.__all__); print(len(loop.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 15


def _plan(dies: list[list[int]], sites: list[int]) -> dict:
    verify = {
        "tolerance_siemens": "5 uS", "set_start_v": "0.7 V", "reset_start_v": "0.6 V",
        "step_v": "50 mV", "max_attempts": 40, "pulse_width_s": "1 us",
    }  # fmt: skip
    return {
        "version": 1,
        "name": "library-characterization",
        "dies": dies,
        "sites": {"rram": sites, "fecap": [], "felif": []},
        "protocols": [
            {"protocol": "rram_forming",
             "params": {"max_v": "3.5 V", "step_v": "100 mV", "compliance_a": "100 uA"}},
            {"protocol": "rram_program_verify",
             "params": {"n_levels": 3, "g_min_siemens": "20 uS", "g_max_siemens": "100 uS",
                        **verify}},
        ],
    }  # fmt: skip


@pytest.mark.slow
def test_the_loop_from_python_and_a_refit_after_deployment_gives_the_same_card(
    sim_lab_factory, loop_truth_factory, loop_db_url, tmp_path
) -> None:
    import torch
    from loop_helpers import TINY_TASK

    from bruno_lab import loop
    from bruno_lab.train.data.patterns import make_patterns

    lab = sim_lab_factory(truth=loop_truth_factory(n_rram=12), seed=7)
    station = lab.write_station(tmp_path / "station.yaml")
    store = loop.open_store(loop_db_url)
    try:
        prepared = loop.prepare(_plan([[0, 1], [1, 1]], [3, 4, 5]), station)
        wafer = prepared.wafer.name
        run = loop.characterize(prepared, None, store)
        assert run.status == "completed" and run.done == 12
        before = loop.fit(store, wafer)
        assert list(before.cards) == ["rram"]
        card_before = before.cards["rram"].model_dump(mode="json")

        torch.manual_seed(0)
        data = make_patterns(**TINY_TASK)
        config = loop.NetworkConfig(
            kind="classify", n_in=data.n_in, n_hidden=1, n_out=data.n_out, neuron="lif",
            synapse="device", n_micro=20, init_scale_in=20.0, init_scale_out=16.0,
        )  # fmt: skip
        network = loop.build_network(config, loop.latest_cards(store, wafer))
        loop.train(network, data, loop.TrainConfig(epochs=1, lr=2e-2, batch_size=16))
        # die 1,1 was characterized on sites 3-5: the deployment programs sites 3-10 of it
        deployment = loop.deploy(network, station, "1,1", store)
        assert deployment.record_path is None  # an object in, an object out: no file written
        assert deployment.record["n_cells"] == 8
        on_chip = loop.evaluate_on_chip(network, deployment, station, data)
        assert on_chip.n_cells == 8 and 0.0 <= on_chip.chip_accuracy <= 1.0

        purposes = {r.run_id: r.purpose for r in store.list_runs()}
        assert purposes == {run.run_id: "characterization", deployment.run_id: "deployment"}
        frame = loop.measurements_frame(store, wafer, protocol="rram_program_verify")
        assert set(frame["purpose"]) == {"characterization", "deployment"}

        after = loop.fit(store, wafer, ["rram"])
        card_after = after.cards["rram"].model_dump(mode="json")
        assert after.outcomes["rram"].card_version == before.outcomes["rram"].card_version + 1
        for doc in (card_before, card_after):
            doc.pop("created_at", None)
            doc.pop("provenance", None)
        assert card_after == card_before
        # the deployment's cells are there: reading every run would give a different card
        every = loop.fit(store, wafer, ["rram"], purpose=None)
        assert every.cards["rram"].n_devices > before.cards["rram"].n_devices
    finally:
        store.close()


def test_every_name_the_loop_exports_resolves_where_it_says() -> None:
    """``bruno_lab.loop`` is lazy (PEP 562): its ``__all__``, its map of where each name lives
    and what each name gives must agree, or a user's ``from bruno_lab.loop import X`` breaks."""
    import importlib

    loop = importlib.import_module("bruno_lab.loop")
    where = loop._WHERE
    assert sorted(loop.__all__) == sorted(where)
    for name in loop.__all__:
        assert getattr(loop, name) is getattr(importlib.import_module(where[name]), name), name
    assert "characterize" in dir(loop)
