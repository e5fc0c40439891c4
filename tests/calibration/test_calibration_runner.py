"""Chunked local runs and Dask LocalCluster runs give the same fits."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
import torch

from calibration.fitter import ParamSpec
from calibration.models import FitModel, register_model
from calibration.runner import run_tasks, split_tasks

SPECS = (ParamSpec("amp", 0.1, 10.0), ParamSpec("width", 0.01, 3.0, log_scale=True))


def _build(inputs: Mapping[str, np.ndarray]):
    x = torch.as_tensor(inputs["x"])
    shift = torch.as_tensor(inputs["shift"])  # per device, known

    def model(theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return theta[:, :1] * torch.tanh((x - shift[idx, None]) / theta[:, 1:2])

    return model


register_model(
    "test-tanh",
    lambda: FitModel("test-tanh", "fecap", SPECS, _build, {"amp": "", "width": ""}),
)


def _data(n: int) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    x = np.linspace(-3, 3, 80)
    shift = rng.normal(0, 0.3, n)
    amp, width = rng.normal(2, 0.2, n), rng.lognormal(np.log(0.4), 0.1, n)
    y = amp[:, None] * np.tanh((x - shift[:, None]) / width[:, None])
    y += rng.normal(0, 0.01, y.shape)
    return {"x": x}, {"shift": shift}, y, np.stack([amp, width], 1)


def test_local_chunking_recovers_truth() -> None:
    shared, per, y, truth = _data(50)
    tasks = split_tasks(
        "test-tanh", shared, per, y, np.tile([1.0, 1.0], (50, 1)), sigma=0.01, chunk_size=16
    )
    assert [t.y.shape[0] for t in tasks] == [16, 16, 16, 2]
    res = run_tasks(tasks)
    assert np.max(np.abs(res.params - truth) / truth) < 0.02


@pytest.mark.slow
def test_dask_local_cluster_equals_local_run() -> None:
    from distributed import LocalCluster

    shared, per, y, _ = _data(40)
    tasks = split_tasks(
        "test-tanh", shared, per, y, np.tile([1.0, 1.0], (40, 1)), sigma=0.01, chunk_size=10
    )
    local = run_tasks(tasks)
    done = []
    with LocalCluster(
        processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None
    ) as cluster:  # by address, as `bruno-lab fit --scheduler tcp://...` does
        remote = run_tasks(tasks, scheduler=cluster.scheduler_address, on_chunk_done=done.append)
    assert sum(done) == 40
    # Same chunks, same algorithm: equal up to float reduction order in the worker threads
    # (~1e-10 relative, seven orders below the fits' own uncertainties).
    np.testing.assert_allclose(remote.params, local.params, rtol=1e-8)
    np.testing.assert_allclose(remote.stderr, local.stderr, rtol=1e-6)
    np.testing.assert_array_equal(remote.converged, local.converged)
    assert remote.flags == local.flags
