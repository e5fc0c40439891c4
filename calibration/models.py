"""Fit models: the ``bruno_lab.devices`` physics wrapped as batched prediction functions.

A fit model is registered by name and built from plain numpy inputs (``inputs``), so a fit task
is a picklable bundle of arrays plus a name: the same task runs in this process or on a Dask
worker. The physics is called, never restated.

``fecap-pv``: the multi-domain FeCap (``fecap_simulate``) driven by the measured P-V loop
waveforms of each device (every frequency it was measured at), predicting the loop-centred
polarization over the last period of each trace (charge/area minus its mean over that period),
C/m², as the protocol centres the measured loop. Earlier periods are simulated (they set the
device's state) but not compared: the device's history before the measurement is unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from calibration.fitter import BatchedModel, ParamSpec

MODEL_VERSION = "1"


@dataclass(frozen=True)
class FitModel:
    """A registered model: its fitted parameters and how to build the batched predictor."""

    name: str
    device_kind: str
    specs: tuple[ParamSpec, ...]
    build: Callable[[Mapping[str, np.ndarray]], BatchedModel]
    units: Mapping[str, str]


def _segments(inputs: Mapping[str, np.ndarray]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(time_s [T_k], voltage_v [n, T_k]) for each waveform segment k (one per frequency)."""
    out = []
    k = 0
    while f"time_s_{k}" in inputs:
        out.append(
            (
                torch.as_tensor(inputs[f"time_s_{k}"], dtype=torch.float64),
                torch.as_tensor(inputs[f"voltage_v_{k}"], dtype=torch.float64),
            )
        )
        k += 1
    return out


FECAP_FIT_SPECS = (
    ParamSpec("ps_c_m2", 0.02, 1.0, log_scale=True),
    ParamSpec("e_a_v_m", 1e8, 1e10, log_scale=True),
    ParamSpec("t_hzo_m", 2e-9, 5e-8, log_scale=True),
    ParamSpec("t_int_m", 1e-11, 1e-8, log_scale=True),
    ParamSpec("e_a_spread_rel", 1e-3, 1.0, log_scale=True),
    ParamSpec("imprint_v", -2.0, 2.0),
)


def _build_fecap_pv(inputs: Mapping[str, np.ndarray]) -> BatchedModel:
    from bruno_lab.devices.fecap import FeCapParams, fecap_simulate

    segments = _segments(inputs)
    area = torch.as_tensor(inputs["area_m2"], dtype=torch.float64)
    n_domains = int(np.asarray(inputs["n_domains"]).reshape(-1)[0])
    names = [s.name for s in FECAP_FIT_SPECS]

    def model(theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        m = theta.shape[0]
        base = FeCapParams.default(m, dtype=theta.dtype)
        fields = {name: theta[:, k] for k, name in enumerate(names)}
        fields["area_m2"] = area[idx]
        params = base.replace(**fields)
        preds = []
        for k, (time_s, voltage_v) in enumerate(segments):
            start = int(np.asarray(inputs[f"last_start_{k}"]).reshape(-1)[0])
            trace = fecap_simulate(time_s, voltage_v[idx], params, n_domains=n_domains)
            pol = trace.charge_c[:, start:] / params.area_m2.unsqueeze(1)
            preds.append(pol - pol.mean(dim=1, keepdim=True))
        return torch.cat(preds, dim=1)

    return model


def _fecap_units() -> dict[str, str]:
    from bruno_lab.devices.fecap import FeCapParams

    return {name: spec.unit for name, spec in FeCapParams.specs().items()}


_REGISTRY: dict[str, Callable[[], FitModel]] = {
    "fecap-pv": lambda: FitModel(
        name="fecap-pv",
        device_kind="fecap",
        specs=FECAP_FIT_SPECS,
        build=_build_fecap_pv,
        units=_fecap_units(),
    ),
}


def register_model(name: str, factory: Callable[[], FitModel]) -> None:
    """Add a fit model (used by tests and benchmarks for their own models)."""
    _REGISTRY[name] = factory


def get_model(name: str) -> FitModel:
    """The registered fit model ``name``; unknown names raise ``KeyError`` listing the valid."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown fit model {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]()
