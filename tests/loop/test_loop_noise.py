"""On-chip accuracy responds to the chip's RRAM noise.

The same trained network (seeded) is deployed on two simulated chips whose truth differs only
in the RRAM cells' noise after programming: the spread of their relaxation per decade of time
(``relax_sigma_m``) and their read noise (``read_rel``, ``read_floor_s``). Both are read back
after the same 10^4 s of virtual time, several passes each. The noisy chip's cells wander far
from their targets, so its accuracy on chip falls towards chance while the quiet chip keeps
the accuracy of the ideal map. Everything is seeded (wafer, training, reads): deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

QUIET = {
    "relax_sigma_m": {"mean": 0.0},
    "relax_mu_m": {"mean": 0.0},
    "read_rel": {"mean": 0.0},
    "read_floor_s": {"mean": 0.0},
}
NOISY = {
    "relax_sigma_m": {"mean": 0.25e-9},
    "relax_mu_m": {"mean": 0.0},
    "read_rel": {"mean": 0.3},
    "read_floor_s": {"mean": 20e-6},
}
TASK = {
    "n_classes": 2,
    "n_channels": 4,
    "n_steps": 12,
    "n_train": 128,
    "n_test": 128,
    "rate": 0.3,
    "seed": 0,
}


def _trained_network(path: Path) -> Path:
    """The demo's network shape: 4 inputs, 3 hidden LIF, 2 FeLIF outputs, device synapses."""
    import torch
    from loop_helpers import rram_card_dict

    from bruno_lab.cards import parse_card
    from bruno_lab.train.data.patterns import make_patterns
    from bruno_lab.train.io import save_network
    from bruno_lab.train.loop import TrainConfig, train
    from bruno_lab.train.network import NetworkConfig, SpikingNetwork

    torch.set_num_threads(1)
    data = make_patterns(**TASK)
    cfg = NetworkConfig(
        kind="classify", n_in=4, n_hidden=3, n_out=2, neuron="felif", synapse="device",
        seed=1, n_micro=100, init_scale_in=20.0, init_scale_out=4.0,
    )  # fmt: skip
    net = SpikingNetwork(cfg, rram_card=parse_card(rram_card_dict(n_levels=4)))
    train(net, data, TrainConfig(epochs=12, lr=1e-2, batch_size=32, seed=1))
    save_network(path, net, {"task": "patterns", "task_kwargs": TASK, "seed": 1})
    return path


@pytest.mark.slow
def test_noisier_chip_gives_lower_on_chip_accuracy(
    sim_lab_factory, loop_truth_factory, loop_db_url, tmp_path
) -> None:
    from bruno_lab.store import open_store
    from protocols.deployment import DeploySettings, deploy_network
    from protocols.deployment_eval import evaluate_on_chip
    from protocols.rram_forming import RramFormingParams
    from protocols.rram_program_verify import RramProgramVerifyParams

    settings = DeploySettings(
        forming=RramFormingParams(max_v=3.5, step_v=0.25),
        verify=RramProgramVerifyParams(
            tolerance_siemens=5e-6, set_start_v=0.7, reset_start_v=0.6, step_v=0.05,
            max_attempts=40, pulse_width_s=1e-6,
        ),
    )  # fmt: skip
    import shutil

    trained = _trained_network(tmp_path / "net.pt")
    results = {}
    for name, noise in (("quiet", QUIET), ("noisy", NOISY)):
        folder = tmp_path / name
        folder.mkdir()
        net = Path(shutil.copy(trained, folder / "net.pt"))  # one deployment record per chip
        lab = sim_lab_factory(truth=loop_truth_factory(n_rram=40, rram_params=noise), seed=7)
        station = lab.write_station(folder / "station.yaml")
        store = open_store(loop_db_url)
        try:
            deployed = deploy_network(net, station, "1,1", store, settings=settings)
        finally:
            store.close()
        assert deployed.record["n_cells"] == 36
        results[name] = evaluate_on_chip(net, station, "1,1", n_passes=4, wait_s=1e4)
        lab.stop()
    quiet, noisy = results["quiet"], results["noisy"]
    # the same network: same software and ideal-map accuracy on both chips
    assert quiet.software_accuracy == noisy.software_accuracy
    assert quiet.ideal_accuracy == noisy.ideal_accuracy
    assert quiet.ideal_accuracy >= 0.65  # the network learned the task (chance 0.5)
    err_q = np.abs(quiet.conductance_siemens - quiet.target_siemens).mean()
    err_n = np.abs(noisy.conductance_siemens - noisy.target_siemens).mean()
    assert err_n > 3 * err_q  # the noisy chip's cells are far from their targets
    numbers = {
        k: (r.chip_accuracy, r.ideal_accuracy, r.software_accuracy) for k, r in results.items()
    }
    assert noisy.chip_accuracy <= quiet.chip_accuracy - 0.08, numbers
