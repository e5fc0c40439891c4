"""The FeLIF fit's tuning constants, one frozen object that every fit records.

A fit's numbers depend on these choices (the grids, the retry rule, the empirical stderr
factor), so each stored fit carries them (``goodness["fit_options"]``, see
:meth:`FelifFitOptions.as_record`) and :meth:`FelifFitOptions.from_record` rebuilds the object
that made it. The defaults are the values the recovery figures in docs/model-cards.md were
measured with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, kw_only=True)
class FelifFitOptions:
    """How ``felif-spikes`` is fitted (units in the names; log offsets are natural logs)."""

    # model and data
    max_micro_step_s: float = 1e-6  # Euler micro-step bound of the model's trains
    max_spikes_per_trial: int = 200  # more: the device is flagged defective
    min_spikes: int = 3  # fewer spikes after each trial's first, summed: defective
    spike_time_samples: float = 2.0  # spike-time noise in scope sample intervals ...
    min_spike_time_sigma_s: float = 2e-6  # ... and at least this
    # global start: device-independent table of the mean inter-spike on-time
    table_coarse: tuple[int, int] = (24, 18)  # log grid over the fit bounds (P_s, t_hzo)
    table_fine: tuple[int, int] = (33, 33)  # log grid over the box of the coarse optima
    table_margin_log: float = 0.08  # that box's margin around the coarse optima
    table_phases: int = 2  # reset phases (micro-steps into a pulse) averaged
    table_cap_factor: float = 3.0  # run to at most this x the longest measured on-time (scaled)
    mesh: int = 161  # per axis: the tables' cubic interpolation is searched on this mesh
    # fine stage: the full model on a grid per device in the cost valley's coordinates,
    # s along the valley (log t_hzo, log P_s following at the valley's slope), w across it
    valley_step_s: float = 0.02  # forward-difference steps that measure the valley's slope
    valley_step_w: float = 0.004
    grid_s_half_width: float = 0.04
    grid_s_points: int = 9
    grid_w_half_width: float = 0.006
    grid_w_points: int = 5
    grid_rounds: int = 5  # re-centre devices whose best grid point is on the grid's edge
    retry_cost_factor: float = 2.5  # cost > this x the wafer's median: walk again from it
    # uncertainty and flags
    stderr_scale: float = 2.5  # empirical: the GLS covariance misses the cost's roughness
    bad_fit_chi2_factor: float = 25.0  # chi2_red > this x the wafer's median: bad_fit

    def __post_init__(self) -> None:
        positive = (
            "max_micro_step_s",
            "spike_time_samples",
            "min_spike_time_sigma_s",
            "table_margin_log",
            "table_cap_factor",
            "valley_step_s",
            "valley_step_w",
            "grid_s_half_width",
            "grid_w_half_width",
            "retry_cost_factor",
            "stderr_scale",
            "bad_fit_chi2_factor",
        )
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and np.isfinite(value) and value > 0):
                raise ValueError(f"FelifFitOptions.{name} must be a positive number, got {value}")
        counts = {
            "max_spikes_per_trial": 1,
            "min_spikes": 1,
            "table_phases": 1,
            "mesh": 2,
            "grid_rounds": 1,
            "grid_s_points": 3,  # the optimum needs the 3 x 3 points around the best one
            "grid_w_points": 3,
        }
        for name, least in counts.items():
            value = getattr(self, name)
            if not isinstance(value, int) or value < least:
                raise ValueError(f"FelifFitOptions.{name} must be an integer >= {least}")
        for name in ("table_coarse", "table_fine"):
            value = getattr(self, name)
            if len(value) != 2 or any(not isinstance(v, int) or v < 2 for v in value):
                raise ValueError(f"FelifFitOptions.{name} must be two integers >= 2")

    @property
    def grid_s(self) -> np.ndarray:
        """Grid offsets along the valley (log units)."""
        return np.linspace(-self.grid_s_half_width, self.grid_s_half_width, self.grid_s_points)

    @property
    def grid_w(self) -> np.ndarray:
        """Grid offsets across the valley (log units)."""
        return np.linspace(-self.grid_w_half_width, self.grid_w_half_width, self.grid_w_points)

    def as_record(self) -> dict[str, Any]:
        """Every field, JSON-ready (tuples as lists): what a stored fit keeps."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> FelifFitOptions:
        """The options a stored fit was made with (unknown keys refused, missing: default)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(record) - names)
        if unknown:
            raise ValueError(f"FelifFitOptions: unknown fields {unknown}")
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items()}
        return cls(**kw)
