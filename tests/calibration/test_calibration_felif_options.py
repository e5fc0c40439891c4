"""The FeLIF fit's options object: validation, the stored record, and what a field changes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calibration.felif.optimum import device_optimum
from calibration.felif.options import FelifFitOptions


def test_options_record_round_trips_through_json() -> None:
    opts = FelifFitOptions(grid_s_points=11, table_fine=(21, 17), stderr_scale=3.0)
    record = json.loads(json.dumps(opts.as_record()))
    assert FelifFitOptions.from_record(record) == opts
    assert record["table_fine"] == [21, 17] and record["stderr_scale"] == 3.0
    assert set(record) == set(FelifFitOptions().as_record())


def test_options_defaults_are_the_measured_fit() -> None:
    opts = FelifFitOptions()
    np.testing.assert_array_equal(opts.grid_s, np.linspace(-0.04, 0.04, 9))
    np.testing.assert_array_equal(opts.grid_w, np.linspace(-0.006, 0.006, 5))
    assert (opts.stderr_scale, opts.retry_cost_factor, opts.table_coarse) == (2.5, 2.5, (24, 18))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("stderr_scale", 0.0, "stderr_scale must be a positive"),
        ("max_micro_step_s", float("nan"), "max_micro_step_s must be a positive"),
        ("grid_w_points", 2, r"grid_w_points must be an integer >= 3"),
        ("min_spikes", 1.5, r"min_spikes must be an integer"),
        ("table_coarse", (24,), "table_coarse must be two integers"),
    ],
)
def test_bad_options_are_refused_by_name(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FelifFitOptions(**{field: value})


def test_unknown_recorded_field_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fields"):
        FelifFitOptions.from_record({"stderr_scale": 2.5, "grid_size": 3})


def test_stderr_scale_scales_only_the_uncertainty() -> None:
    """On a known quadratic cost: the optimum is the quadratic's minimum, the covariance the
    inverse information, the stderr proportional to ``stderr_scale``."""
    opts = FelifFitOptions()
    gs, gw = np.meshgrid(opts.grid_s, opts.grid_w, indexing="ij")
    # predictions linear in (s, w): residual r = J (x - x0), x0 inside the grid
    jac_true = np.array([[1.0, 0.2], [0.3, 2.0], [0.5, -1.0]])
    x0 = np.array([0.011, -0.001])
    x = np.stack([gs.ravel(), gw.ravel()], 1)
    pred = (x - x0) @ jac_true.T
    prec = np.eye(3) / 0.01**2
    jac_map = np.array([[0.6, 1.0], [1.0, 0.0]])
    centre = np.log([0.25, 9.5e-9])
    bounds = (np.log([0.03, 3e-9]), np.log([1.0, 4e-8]))
    mask = np.ones(3, dtype=bool)
    one = device_optimum(pred, pred, prec, mask, centre, jac_map, opts.grid_s, opts.grid_w,
                         bounds, 1.0)  # fmt: skip
    two = device_optimum(pred, pred, prec, mask, centre, jac_map, opts.grid_s, opts.grid_w,
                         bounds, 2.0)  # fmt: skip
    np.testing.assert_allclose(one.params, np.exp(centre + jac_map @ x0), rtol=1e-12)
    np.testing.assert_array_equal(one.params, two.params)
    cov = jac_map @ np.linalg.inv(jac_true.T @ prec @ jac_true) @ jac_map.T
    np.testing.assert_allclose(one.stderr, np.sqrt(np.diag(cov)) * one.params, rtol=1e-9)
    np.testing.assert_allclose(two.stderr, 2.0 * one.stderr, rtol=1e-15)
