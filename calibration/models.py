"""Fit models: the ``bruno_lab.devices`` physics wrapped as batched prediction functions.

A fit model is registered by name and built from plain numpy inputs (``inputs``), so a fit task
is a picklable bundle of arrays plus a name: the same task runs in this process or on a Dask
worker. The physics is called, never restated.

``fecap-pv``: the multi-domain FeCap (``fecap_simulate``) driven by the measured P-V loop
waveforms of each device (every frequency it was measured at), predicting the loop-centred
polarization over the last period of each trace (charge/area minus its mean over that period),
C/m², as the protocol centres the measured loop. Earlier periods are simulated (they set the
device's state) but not compared: the device's history before the measurement is unknown.

Speed: the fit runs on block-averaged samples (``decimate``: ~50 mV per sample instead of the
scope's ~6 mV). ``fecap_simulate`` holds each sample interval's voltage at the interval's *end*
value; to keep the coarse grid second-order accurate the model feeds it the interval-midpoint
voltage instead (so switching sees the mean field of the interval) and adds back the linear
charge ``C_lin*(V - V_mid)`` (``fecap.linear_capacitance_f``) so the comparison is at the
measured voltage.
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
    jacobian: str = "forward"  # preferred: "forward" (autograd) or "fd" (see fecap-pv)


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
    from bruno_lab.devices.fecap import FeCapParams, linear_capacitance_f
    from bruno_lab.devices.fecap_sim import fecap_simulate

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
        c_lin = linear_capacitance_f(params).unsqueeze(1)
        preds = []
        for k, (time_s, voltage_v) in enumerate(segments):
            start = int(np.asarray(inputs[f"last_start_{k}"]).reshape(-1)[0])
            v = voltage_v[idx]
            v_mid = torch.cat([v[:, :1], 0.5 * (v[:, 1:] + v[:, :-1])], dim=1)
            trace = fecap_simulate(time_s, v_mid, params, n_domains=n_domains, max_dv_substep_v=1e3)
            charge = trace.charge_c + c_lin * (v - v_mid)
            pol = charge[:, start:] / params.area_m2.unsqueeze(1)
            preds.append(pol - pol.mean(dim=1, keepdim=True))
        return torch.cat(preds, dim=1)

    return model


def decimate(x: np.ndarray, factor: int) -> np.ndarray:
    """Block means of ``factor`` consecutive samples along the last axis (tail dropped)."""
    if factor <= 1:
        return np.asarray(x, dtype=np.float64)
    n = x.shape[-1] // factor
    return (
        np.asarray(x[..., : n * factor], dtype=np.float64)
        .reshape(*x.shape[:-1], n, factor)
        .mean(-1)
    )


def decimation_factor(voltage_v: np.ndarray, target_dv_v: float = 0.05) -> int:
    """Samples per block so a block spans about ``target_dv_v`` of the waveform's steepest slope."""
    dv = float(np.median(np.abs(np.diff(voltage_v))))
    return max(1, int(target_dv_v / dv)) if dv > 0 else 1


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
        # forward-mode autograd of the switching exponent's tensor pow falls back to Python
        # decompositions in torch 2.13 (measured ~20x slower than the plain ops), so the
        # Jacobian is forward differences in the bounded z-space, p points stacked in one call.
        jacobian="fd",
    ),
    "felif-spikes": lambda: _felif_spikes_model(),
}


def _felif_spikes_model() -> FitModel:
    """FeLIF spike trains (``calibration.felif``): the C kernel has no autograd, so "fd"."""
    from bruno_lab.devices.felif import FeLIFParams
    from calibration.felif.spec import FELIF_FIT_SPECS
    from calibration.felif.spikes_model import build_felif_spikes

    units = {name: spec.unit for name, spec in FeLIFParams.specs().items()}
    return FitModel("felif-spikes", "felif", FELIF_FIT_SPECS, build_felif_spikes, units, "fd")


def register_model(name: str, factory: Callable[[], FitModel]) -> None:
    """Add a fit model (used by tests and benchmarks for their own models)."""
    _REGISTRY[name] = factory


def get_model(name: str) -> FitModel:
    """The registered fit model ``name``; unknown names raise ``KeyError`` listing the valid."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown fit model {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]()
