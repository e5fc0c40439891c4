"""One device's optimum on its valley grid and its calibrated uncertainty.

The optimum is a quadratic through the 3 x 3 grid points around the best one (a scale larger
than the cost's steps), kept inside them; the covariance is ``(J^T S^-1 J)^-1`` with J the
central differences of the predictions on that grid and S the pooled noise model, mapped to
(log P_s, log t_hzo) and scaled by ``stderr_scale``. The GLS covariance alone is too small:
measured error/stderr RMS 2.9-3.0 on synthetic trains (24 devices, device equations) and 2.3
through the simulated lab (208 devices), error sources the noise model leaves out (the cost's
roughness on the grid's scale, phase effects); the default factor 2.5 corrects for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DeviceOptimum:
    """Fitted (P_s, t_hzo) in SI units, their 1-sigma stderr (NaN: not identifiable), the GLS
    cost at the best grid point and its plain residual sum of squares, s^2."""

    params: np.ndarray
    stderr: np.ndarray
    chi2: float
    rss: float


def device_optimum(
    resid: np.ndarray,
    pred: np.ndarray,
    prec: np.ndarray,
    mask: np.ndarray,
    centre: np.ndarray,
    jac_map: np.ndarray,
    grid_s: np.ndarray,
    grid_w: np.ndarray,
    bounds_log: tuple[np.ndarray, np.ndarray],
    stderr_scale: float,
) -> DeviceOptimum:
    """``resid``/``pred`` [G, T] on the grid ``centre + jac_map @ (s, w)`` (G = S x W, s
    major), ``prec`` [T, T] the device's noise precision, ``mask`` [T] its valid slots."""
    ns, nw = grid_s.size, grid_w.size
    t_len = pred.shape[1]
    lo, hi = bounds_log
    cost = np.einsum("gt,tu,gu->g", resid, prec, resid).reshape(ns, nw)
    ja, jb = (int(v) for v in np.unravel_index(np.argmin(cost), cost.shape))
    a0 = min(max(ja, 1), ns - 2)
    b0 = min(max(jb, 1), nw - 2)
    s3, w3 = np.meshgrid(grid_s[a0 - 1 : a0 + 2], grid_w[b0 - 1 : b0 + 2], indexing="ij")
    s3, w3 = s3.ravel(), w3.ravel()
    x_mat = np.stack([np.ones(9), s3, w3, s3**2, s3 * w3, w3**2], 1)
    coef = np.linalg.lstsq(x_mat, cost[a0 - 1 : a0 + 2, b0 - 1 : b0 + 2].ravel(), rcond=None)[0]
    hess = np.array([[2 * coef[3], coef[4]], [coef[4], 2 * coef[5]]])
    x = np.array([grid_s[ja], grid_w[jb]])
    if np.linalg.eigvalsh(hess).min() > 0:
        x = np.clip(
            -np.linalg.solve(hess, coef[1:3]),
            [grid_s[a0 - 1], grid_w[b0 - 1]],
            [grid_s[a0 + 1], grid_w[b0 + 1]],
        )
    log_u = centre + jac_map @ x
    params = np.exp(np.clip(log_u, lo, hi))
    p3 = pred.reshape(ns, nw, t_len)
    jac = np.stack(
        [
            (p3[a0 + 1, b0] - p3[a0 - 1, b0]) / (grid_s[a0 + 1] - grid_s[a0 - 1]),
            (p3[a0, b0 + 1] - p3[a0, b0 - 1]) / (grid_w[b0 + 1] - grid_w[b0 - 1]),
        ],
        1,
    )
    jac = np.where(mask[:, None], jac, 0.0)
    info = jac.T @ prec @ jac
    stderr = np.full(2, np.nan)
    if np.all(np.isfinite(info)) and np.linalg.eigvalsh(info).min() > 0:
        cov = jac_map @ np.linalg.inv(info) @ jac_map.T
        stderr = stderr_scale * np.sqrt(np.diag(cov)) * params
    rss = float((resid[ja * nw + jb] ** 2).sum())
    return DeviceOptimum(params, stderr, float(cost[ja, jb]), rss)
