"""What a per-kind calibration stage returns: one entry per device, fitted or flagged.

A device is *usable* for the population statistics when it was fitted and carries no flag that
makes its parameters unreliable (defective, bad fit, not converged, parameter at a bound).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibration.data import DeviceRecords
from calibration.fitter import FitResult, ParamSpec

EXCLUDING_FLAGS = ("defective", "bad_fit", "not_converged", "nonfinite", "at_bound")


@dataclass
class DeviceFit:
    """One device's outcome: parameters and 1-sigma uncertainties (SI), goodness, flags."""

    device_id: int
    die_label: str
    die_x: int
    die_y: int
    site: str
    measurement_ids: list[int]
    parameters: dict[str, float] = field(default_factory=dict)
    uncertainties: dict[str, float] = field(default_factory=dict)
    goodness: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        if not self.parameters:
            return False
        return not any(f.split(":")[0] in EXCLUDING_FLAGS for f in self.flags)


@dataclass
class KindFit:
    """All devices of one kind on a wafer after fitting (plus kind-specific extras)."""

    model_name: str
    specs: list[ParamSpec]
    fits: list[DeviceFit] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    rram: Any = None  # a bruno_lab.cards.RramLadder for rram stages

    @staticmethod
    def _base(dev: DeviceRecords, mids: list[int]) -> DeviceFit:
        return DeviceFit(dev.device_id, dev.die_label, dev.die_x, dev.die_y, dev.site, mids)

    def add_defective(self, dev: DeviceRecords, flags: list[str]) -> None:
        mids = sorted(r["measurement_id"] for rows in dev.rows.values() for r in rows)
        fit = self._base(dev, mids)
        fit.flags = list(flags)
        self.fits.append(fit)

    def add_fitted(
        self,
        dev: DeviceRecords,
        mids: list[int],
        result: FitResult,
        j: int,
        flags: Sequence[str] = (),
    ) -> None:
        fit = self._base(dev, sorted(mids))
        fit.parameters = result.param_dict(j)
        fit.uncertainties = result.stderr_dict(j)
        fit.goodness = result.goodness_dict(j)
        fit.flags = list(result.flags[j]) + list(flags)
        self.fits.append(fit)

    def add_values(
        self,
        dev: DeviceRecords,
        mids: list[int],
        parameters: dict[str, float],
        uncertainties: dict[str, float],
        goodness: dict[str, Any],
        flags: list[str],
    ) -> None:
        """A device whose parameters come straight from features (no model optimisation)."""
        fit = self._base(dev, sorted(mids))
        fit.parameters, fit.uncertainties = dict(parameters), dict(uncertainties)
        fit.goodness, fit.flags = dict(goodness), list(flags)
        self.fits.append(fit)

    def usable(self) -> list[DeviceFit]:
        return [f for f in self.fits if f.usable]

    def table(self, names: list[str] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        """name -> values and name -> stderr over the usable devices."""
        good = self.usable()
        names = names or [s.name for s in self.specs]
        vals = {n: np.array([f.parameters.get(n, np.nan) for f in good]) for n in names}
        errs = {n: np.array([f.uncertainties.get(n, np.nan) for f in good]) for n in names}
        return vals, errs
