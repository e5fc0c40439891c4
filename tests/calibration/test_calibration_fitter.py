"""The batched fitter against scipy's per-device least squares and against known truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from calibration.fitter import FitOptions, FitResult, ParamSpec, fit_batched

X = torch.linspace(-3.0, 3.0, 120, dtype=torch.float64)
SPECS = [
    ParamSpec("amp", 0.1, 10.0),
    ParamSpec("shift", -2.0, 2.0),
    ParamSpec("width", 0.01, 3.0, log_scale=True),
]


def _model(theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return theta[:, :1] * torch.tanh((X - theta[:, 1:2]) / theta[:, 2:3])


def _population(n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.stack(
        [rng.normal(2.0, 0.2, n), rng.normal(0.5, 0.1, n), rng.lognormal(np.log(0.3), 0.1, n)], 1
    )
    y = _model(torch.tensor(truth), torch.arange(n)).numpy() + rng.normal(0, noise, (n, X.numel()))
    return truth, y


def _fit(y: np.ndarray, noise: float, **kw: object) -> FitResult:
    start = np.tile([1.0, 0.0, 1.0], (y.shape[0], 1))
    return fit_batched(_model, SPECS, y, start, sigma=noise, options=FitOptions(**kw))


def test_recovers_truth_and_uncertainties_are_calibrated() -> None:
    truth, y = _population(400, 0.02)
    res = _fit(y, 0.02)
    assert res.converged.all()
    z = (res.params - truth) / res.stderr
    # Gauss-Newton standard errors: normalized errors have unit spread (within sampling error).
    assert np.all(np.abs(np.std(z, axis=0) - 1.0) < 0.15)
    assert abs(float(np.mean(res.chi2_red)) - 1.0) < 0.05
    assert np.all(res.r2 > 0.99)
    assert not any(res.flags)


def test_matches_scipy_least_squares_per_device() -> None:
    _, y = _population(20, 0.05, seed=3)
    res = _fit(y, 0.05)
    xs = X.numpy()
    for i in range(y.shape[0]):
        ref = least_squares(
            lambda th, i=i: th[0] * np.tanh((xs - th[1]) / th[2]) - y[i],
            x0=[1.0, 0.0, 1.0],
            bounds=([0.1, -2.0, 0.01], [10.0, 2.0, 3.0]),
            xtol=1e-12,
            ftol=1e-12,
        )
        np.testing.assert_allclose(res.params[i], ref.x, rtol=1e-5, atol=1e-7)


def test_chunked_fit_equals_whole_fit() -> None:
    _, y = _population(60, 0.02, seed=5)
    whole = _fit(y, 0.02)
    parts = FitResult.concatenate([_fit(y[:25], 0.02), _fit(y[25:], 0.02)])
    np.testing.assert_allclose(parts.params, whole.params, rtol=1e-10)
    np.testing.assert_allclose(parts.stderr, whole.stderr, rtol=1e-8)


def test_finite_difference_jacobian_agrees_with_autograd() -> None:
    _, y = _population(30, 0.02, seed=7)
    np.testing.assert_allclose(_fit(y, 0.02, jacobian="fd").params, _fit(y, 0.02).params, rtol=1e-6)


def test_flags_a_device_that_fits_badly_and_one_at_a_bound() -> None:
    _, y = _population(5, 0.02, seed=9)
    rng = np.random.default_rng(1)
    y[1] = rng.normal(0.0, 1.0, y.shape[1])  # a dead device: noise only
    y[2] = 12.0 * np.tanh((X.numpy() - 0.5) / 0.3)  # amplitude beyond the upper bound 10
    res = _fit(y, 0.02)
    assert "bad_fit" in res.flags[1]
    assert any(f.startswith("at_bound:") and "amp" in f for f in res.flags[2])
    assert res.flags[0] == [] and res.flags[3] == []


def test_masked_samples_are_ignored() -> None:
    truth, y = _population(10, 0.02, seed=11)
    mask = np.ones_like(y, dtype=bool)
    mask[:, 60:] = False
    y_bad = y.copy()
    y_bad[:, 60:] = 1e6  # garbage where masked
    res = fit_batched(
        _model, SPECS, y_bad, np.tile([1.0, 0.0, 1.0], (10, 1)), sigma=0.02, mask=mask
    )
    assert np.all(np.abs(res.params[:, 0] - truth[:, 0]) < 0.1)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="lower bound"):
        ParamSpec("x", 1.0, 0.5)
    with pytest.raises(ValueError, match="positive"):
        ParamSpec("x", 0.0, 1.0, log_scale=True)
