"""Model cards built programmatically with known statistics, for the trainer tests."""

from __future__ import annotations

import pickle

import numpy as np

from bruno_lab.cards import ModelCardBody, parse_card
from bruno_lab.train.data.braille import LETTERS


def rram_card_dict(
    *,
    n_levels: int = 8,
    sigma_siemens: tuple[float, ...] | None = None,
    stuck_fraction: float = 0.0,
    read_floor_siemens: float = 0.0,
    read_slope_rel: float = 0.0,
    drift_rel_per_decade: float = 0.0,
    sigma_siemens_per_decade: float = 0.0,
) -> dict:
    """An RRAM card with levels 6 µS + 22 µS * i (the public 3-bit array's spacing)."""
    sig = sigma_siemens or tuple([3e-6] + [1.5e-6] * (n_levels - 2) + [3e-6])
    return {
        "device_kind": "rram",
        "scope": "wafer",
        "scope_id": "W-test",
        "model_name": "rram-ladder",
        "model_version": "1",
        "n_devices": 1000,
        "n_defective": 0,
        "parameters": {},
        "rram": {
            "read_voltage_v": 0.2,
            "levels": [
                {
                    "index": i,
                    "mean_siemens": (6 + 22 * i) * 1e-6,
                    "sigma_siemens": sig[i],
                    "n_cells": 100,
                }
                for i in range(n_levels)
            ],
            "read_noise": {"floor_siemens": read_floor_siemens, "slope_rel": read_slope_rel},
            "relaxation": {
                "t0_s": 1.0,
                "drift_rel_per_decade": drift_rel_per_decade,
                "sigma_siemens_per_decade": sigma_siemens_per_decade,
            },
            "stuck_fraction": stuck_fraction,
            "stuck_conductance_siemens": 2e-6,
        },
    }


def rram_card(**kw) -> ModelCardBody:
    return parse_card(rram_card_dict(**kw))


def felif_card(means: dict[str, float], sigma_rel: dict[str, float]) -> ModelCardBody:
    params = {
        name: {
            "unit": "",
            "mean": mean,
            "std": abs(mean) * sigma_rel.get(name, 0.0),
            "n_devices": 500,
        }
        for name, mean in means.items()
    }
    return parse_card(
        {
            "device_kind": "felif",
            "scope": "wafer",
            "scope_id": "W-test",
            "model_name": "felif-lumped",
            "model_version": "1",
            "n_devices": 500,
            "n_defective": 0,
            "parameters": params,
        }
    )


def braille_file(path, n_per_letter=4, lengths=(53, 51, 60)):
    """A pickle in the published Braille format; taxel 1 carries a letter-dependent level."""
    rng = np.random.default_rng(0)
    records = []
    for k, letter in enumerate(LETTERS):
        for j in range(n_per_letter):
            t = lengths[(k + j) % len(lengths)]
            data = rng.integers(0, 256, size=(t, 12), dtype=np.uint8)
            data[:, 1] = 200 - k  # a letter-dependent level on a kept taxel
            records.append({"taxel_data": data, "letter": "Space" if letter == " " else letter})
    path.write_bytes(pickle.dumps(records))
    return records
