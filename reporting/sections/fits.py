"""The fit-quality table: per device its model, RMSE in the residual's unit, R², reduced χ²,
flags and whether the card used it, each row linking to the device's curves."""

from __future__ import annotations

import math
from typing import Any

from reporting.data import ReportData
from reporting.model import Cell, Section
from reporting.units import fmt, quantity

# model -> (goodness key of the RMSE, a stored name whose unit the residual has)
RMSE: dict[str, tuple[str, str]] = {
    "fecap-pv": ("rmse", "residual_c_m2"),
    "felif-spikes": ("rmse", "residual_s"),
    "rram-gap": ("iv_rmse_a", "residual_a"),
}
EXCLUDING = ("defective", "bad_fit", "not_converged", "nonfinite", "at_bound")


def _num(g: dict[str, Any], *keys: str) -> float:
    for k in keys:
        v = g.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    return math.nan


def build(data: ReportData, curves: dict[str, Any]) -> Section | None:
    if not data.fits:
        return None
    labels = {int(r.device_id): r for r in data.devices.itertuples(index=False)}
    card_fits = {fid for card in data.cards.values() for fid in card.fit_ids}
    entries = []
    for dev, fit in data.fits.items():
        r = labels.get(dev)
        if r is None:
            continue
        g = dict(fit.goodness or {})
        key, residual = RMSE.get(fit.model_name, ("rmse", "residual"))
        rmse = _num(g, key, "rmse")
        flags = list(fit.flags or [])
        bad = any(f.split(":")[0] in EXCLUDING for f in flags)
        entries.append((bad, -rmse if math.isfinite(rmse) else 0.0, dev, r, fit, g, residual, rmse))
    entries.sort(key=lambda e: (not e[0], e[1]))
    rows = []
    n_bad = 0
    for bad, _, dev, r, fit, g, residual, rmse in entries:
        n_bad += bad
        flags = list(fit.flags or [])
        q = quantity(residual, [rmse] if math.isfinite(rmse) else None)
        used = fit.id in card_fits
        rows.append(
            [
                Cell(f"{r.die_label}/{r.site}", href=f"#device-{dev}"),
                str(r.kind),
                f"{fit.model_name} v{fit.model_version}",
                Cell(q.format(rmse) if math.isfinite(rmse) else "–", css="num"),
                Cell(fmt(_num(g, "r2", "iv_r2"), 5), css="num"),
                Cell(fmt(_num(g, "chi2_red", "iv_chi2_red")), css="num"),
                Cell("; ".join(flags) or "–", css="bad" if bad else ("warn" if flags else "")),
                Cell("yes" if used and not bad else "no", css="" if used and not bad else "warn"),
                Cell("curves", href=f"#device-{dev}") if str(dev) in curves else Cell(""),
            ]
        )
    s = Section(
        "fits",
        "Fit quality",
        "Every device's latest fit (the one its kind's card was built from): flagged devices "
        "first, then by RMSE. Click a device for its measured and fitted curves.",
    )
    if n_bad:
        s.note(
            f"{n_bad} of {len(rows)} fitted devices are flagged and left out of the cards.", "warn"
        )
    else:
        s.note(f"All {len(rows)} fitted devices are usable.", "good")
    s.table(
        "fit-quality",
        ["device", "kind", "model", "RMSE", "R²", "χ²red", "flags", "in card", ""],
        rows,
    )
    return s
