"""The FeLIF fit's noise model: pooled spike on-time noise and each device's GLS precision.

The residual r_j of spike j (counted from the trial's anchor spike) is e_j - e_0 + sum_{l<=j}
eta_l: e is timing noise (variance a), eta a per-interval jitter that accumulates along the
trial (variance b, e.g. the reset's place in the micro-step). So the residuals of a trial are
correlated, and the cost is generalised least squares under this covariance.
"""

from __future__ import annotations

import numpy as np


def noise_model(
    resid: np.ndarray, n_meas: np.ndarray, cols: np.ndarray, sigma: float
) -> tuple[float, float]:
    """(a, b) pooled over every device and trial from the residuals' differences d_j:
    E[d^2] = 2a + b, E[d_j d_{j+1}] = -a; a is at least a quarter of ``sigma**2``."""
    d2, lag = [], []
    for i in range(resid.shape[0]):
        for k in range(n_meas.shape[1]):
            m = int(n_meas[i, k])
            if m:
                d = np.diff(np.concatenate([[0.0], resid[i, cols[k] : cols[k] + m]]))
                d2.append(d**2)
                lag.append(d[1:] * d[:-1])
    d2c = np.concatenate(d2) if d2 else np.zeros(0)
    lagc = np.concatenate(lag) if lag else np.zeros(0)
    if d2c.size < 4:
        return sigma**2, 0.0
    a = max(-float(np.mean(lagc)) if lagc.size else 0.0, 0.25 * sigma**2)
    b = max(float(np.mean(d2c)) - 2.0 * a, 0.0)
    return a, b


def precision(
    n_meas: np.ndarray, has_check: np.ndarray, slots: np.ndarray, a: float, b: float
) -> np.ndarray:
    """Inverse noise covariance [T, T] of one device's residuals (block per trial; the
    extra-spike check slot of a trial is independent, variance 2a + b)."""
    cols = np.concatenate([[0], np.cumsum(slots)])
    out = np.zeros((int(cols[-1]), int(cols[-1])))
    for k, m in enumerate(n_meas):
        m = int(m)
        if m:
            j = np.arange(1, m + 1, dtype=np.float64)
            cov = a * (1.0 + np.eye(m)) + b * np.minimum.outer(j, j)
            out[cols[k] : cols[k] + m, cols[k] : cols[k] + m] = np.linalg.inv(cov)
        if has_check[k]:
            out[cols[k] + m, cols[k] + m] = 1.0 / (2.0 * a + b)
    return out
