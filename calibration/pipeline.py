"""Wafer -> fits -> model card: the calibration entry point the CLI calls.

Everything that can fail on bad input (no measurements, corrupt arrays, unknown kind, no usable
device, a card that does not validate) fails before the first write, so bad input writes no fit
and no card. Then every device's fit (fitted or flagged, with the measurements it used) is
stored, and the card is added as a new version with provenance to those fits and the code
version; a refit never overwrites an earlier card.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bruno_lab.cards import ModelCardBody, parse_card
from bruno_lab.errors import DataError
from calibration.data import CHARACTERIZATION, check_kind, load_scope
from calibration.felif.options import FelifFitOptions
from calibration.fitter import FitOptions
from calibration.models import MODEL_VERSION, get_model
from calibration.seams import CalibrationStore
from calibration.stage import KindFit
from calibration.stats import correlations, population_parameters

log = logging.getLogger(__name__)

DEFAULT_FECAP_DOMAINS = 16


def code_version() -> str:
    """bruno-lab's version plus the git commit when run from a checkout."""
    from bruno_lab import __version__

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{__version__}+g{sha}" if sha else __version__
    except (OSError, subprocess.SubprocessError):
        return __version__


@dataclass
class CalibrationOutcome:
    """What one calibration run produced (for the CLI's JSON and for tests)."""

    wafer: str
    kind: str
    card_id: int
    card_version: int
    body: ModelCardBody
    fit_ids: list[int]
    kind_fit: KindFit

    def summary(self) -> dict[str, Any]:
        flagged = [f for f in self.kind_fit.fits if not f.usable]
        return {
            "wafer": self.wafer,
            "kind": self.kind,
            "card_id": self.card_id,
            "card_version": self.card_version,
            "model_name": self.body.model_name,
            "n_devices": self.body.n_devices,
            "n_defective": self.body.n_defective,
            "n_fits": len(self.fit_ids),
            "flagged": {str(f.device_id): f.flags for f in flagged},
            "parameters": {
                k: {"mean": v.mean, "std": v.std, "family": v.family, "unit": v.unit}
                for k, v in self.body.parameters.items()
            },
        }


def run_stage(
    store: CalibrationStore,
    wafer: str,
    kind: str,
    *,
    scheduler: Any = None,
    chunk_size: int = 256,
    options: FitOptions | None = None,
    felif_options: FelifFitOptions | None = None,
    n_domains: int = DEFAULT_FECAP_DOMAINS,
    on_progress: Callable[[int], None] | None = None,
    scope: str = "wafer",
    purpose: Sequence[str] | None = CHARACTERIZATION,
) -> KindFit:
    """Load the measurements of ``kind`` on a wafer (or, ``scope="lot"``, on every wafer of the
    lot named ``wafer``) from runs of ``purpose`` (default: characterization runs only; None:
    every run) and fit them (nothing is written). ``options`` tune the Levenberg-Marquardt
    fitter (FeCap), ``felif_options`` the FeLIF grid fit."""
    check_kind(kind)
    devices = load_scope(store, scope, wafer, kind, purpose)
    kw = {"scheduler": scheduler, "chunk_size": chunk_size, "options": options}
    if kind == "fecap":
        from calibration.fecap_fit import fit_fecap

        return fit_fecap(store, devices, n_domains=n_domains, on_progress=on_progress, **kw)
    if kind == "felif":
        from calibration.felif_fit import fit_felif

        return fit_felif(store, devices, felif_options=felif_options, on_progress=on_progress, **kw)
    if kind == "rram_array":  # 1T1R arrays: an RRAM card from thousands of cells
        from calibration.array_fit import fit_array

        return fit_array(store, devices)
    from calibration.rram_fit import fit_rram

    return fit_rram(store, devices)


def build_card(kind_fit: KindFit, kind: str, scope_id: str, scope: str = "wafer") -> ModelCardBody:
    """Population statistics of the usable devices as a validated card body."""
    good = kind_fit.usable()
    if not good:
        reasons = sorted({fl for f in kind_fit.fits for fl in f.flags})[:8]
        raise DataError(f"{kind} on {scope_id}: no usable device (flags seen: {reasons})")
    card = kind_fit.extra.get("card")
    if card is not None:  # statistics over cells, not per-device fits (rram_array)
        body = {
            "scope": scope, "scope_id": scope_id, "model_name": kind_fit.model_name,
            "model_version": MODEL_VERSION,
            "rram": kind_fit.rram.model_dump() if kind_fit.rram is not None else None,
            "notes": kind_fit.extra.get("notes", ""), **card,
        }  # fmt: skip
        return parse_card(body, where=f"{kind} card for {scope_id}")
    names = [s.name for s in kind_fit.specs]
    values, errs = kind_fit.table(names)
    names = [n for n in names if np.isfinite(values[n]).any()]  # e.g. no rram_iv in the plan
    values = {n: values[n] for n in names}
    units = _units(kind_fit)
    params = population_parameters(values, units, errs, names)
    corr = correlations(values)
    body = {
        "device_kind": kind,
        "scope": scope,
        "scope_id": scope_id,
        "model_name": kind_fit.model_name,
        "model_version": MODEL_VERSION,
        "n_devices": len(good),
        "n_defective": len(kind_fit.fits) - len(good),
        "parameters": {k: v.model_dump() for k, v in params.items()},
        "correlations": corr.model_dump() if corr else None,
        "rram": kind_fit.rram.model_dump() if kind_fit.rram is not None else None,
        "notes": kind_fit.extra.get(
            "notes", "spreads are deconvolved from the fits' 1-sigma uncertainties"
        ),
    }
    return parse_card(body, where=f"{kind} card for {scope_id}")


def _units(kind_fit: KindFit) -> dict[str, str]:
    units = kind_fit.extra.get("units")
    if units:
        return dict(units)
    return dict(get_model(kind_fit.model_name).units)


def calibrate(
    store: CalibrationStore,
    wafer: str,
    kind: str,
    *,
    scheduler: Any = None,
    chunk_size: int = 256,
    options: FitOptions | None = None,
    felif_options: FelifFitOptions | None = None,
    n_domains: int = DEFAULT_FECAP_DOMAINS,
    on_progress: Callable[[int], None] | None = None,
    version: str | None = None,
    scope: str = "wafer",
    purpose: Sequence[str] | None = CHARACTERIZATION,
) -> CalibrationOutcome:
    """Fit ``kind`` on ``wafer`` (or on every wafer of the lot ``wafer`` with ``scope="lot"``),
    store every device's fit and a new model-card version of that scope."""
    kind_fit = run_stage(
        store,
        wafer,
        kind,
        scheduler=scheduler,
        chunk_size=chunk_size,
        options=options,
        felif_options=felif_options,
        n_domains=n_domains,
        on_progress=on_progress,
        scope=scope,
        purpose=purpose,
    )
    body = build_card(kind_fit, kind, wafer, scope)
    fits = [
        {
            "device_id": f.device_id,
            "model_name": kind_fit.model_name,
            "model_version": MODEL_VERSION,
            "parameters": f.parameters,
            "uncertainties": f.uncertainties,
            "goodness": f.goodness,
            "measurement_ids": f.measurement_ids,
            "flags": f.flags,
        }
        for f in kind_fit.fits
    ]
    # one transaction: a crash or a bad reference leaves no fits without their card
    fit_ids, row = store.add_calibration(fits, body, version or code_version())
    log.info("%s card v%d for %s from %d fits", kind, row.version, wafer, len(fit_ids))
    return CalibrationOutcome(wafer, kind, int(row.id), int(row.version), body, fit_ids, kind_fit)
