"""FeLIF calibration: measured spike trains of every device -> one batched fit of ``felif-spikes``.

Data (protocol ``felif_response``): per trial ``k`` a train of current pulses of amplitude
``input_current_a[k]`` (``pulse_width_s`` every ``pulse_period_s`` for ``trial_s``, the AWG
sampled at ``samples_per_pulse/pulse_width_s``), and the detected spike times. The trials run
one after the other on the same device, so the membrane state carries from one to the next.

Model (``felif-spikes``): each device's own trains, simulated with the FeLIF equations
(``felif_run_sequence``: the C kernel, batched over devices, trials and the finite-difference
copies) at micro-steps of at most 1 us, the input held per AWG sample at its end-point value (as
the simulated bench does). Each trial starts at its *first* measured spike from the reset state
(V_reset, -P_s), which is known whatever the device's history; the later spikes are predicted.
A spike resets at its interpolated crossing of V_thr and holds half a micro-step (the loop's
reset at the end of the micro-step, on average), so the later spikes move smoothly with the
parameters.

Residual: spike *on-times*. A spike time ``t`` is mapped to the pulse on-time accumulated in its
trial up to ``t`` (``tau(t)``: the input charge over the amplitude). ``tau`` is continuous where
``t`` jumps: a spike that slips past the end of one pulse fires at the start of the next, a jump
in ``t`` of the pulse gap but little in ``tau``. The ``n`` later model spikes of a trial are
compared with the ``n`` measured ones (when the model fires fewer in the trial its train is
continued past the trial end to find them), and one more residual
``min(tau(t_model[n]), tau(T)) - tau(T)`` penalises a model that fires an extra spike inside
the trial. Noise: the spike-time resolution (twice the scope's sample interval, at least 2 us).
The cost is still not smooth everywhere (polarization keeps switching in the gaps between
pulses, so a spike slipping into the next pulse needs a little more charge): a long, narrow,
rough valley where P_s and t_hzo trade off (d log P_s / d log t_hzo ~ 0.6 along it; the charge
per spike is pinned tightly across it), on which Levenberg-Marquardt stopped near its start.

Fit (``calibration.felif.grid.fit_grid``), no population guess: (1) global start per device from
a device-independent table of the mean inter-spike on-time at each amplitude over a log grid of
(P_s, t_hzo), coarse over the bounds then fine over the box of the coarse optima (one kernel
call each, ~2 s); (2) the full model on a 9 x 5 grid per device in the valley's coordinates (+-4
% along, +-0.6 % across; re-centred where the best point is on the edge; a device fitting 2.5x
worse than the wafer's median is walked again from the wafer's median fit); (3) the cost is
generalised least squares under a pooled noise model of the residuals (timing noise plus a
per-interval jitter that accumulates along a trial, estimated from the residuals' differences),
the optimum a quadratic through the 3 x 3 grid points around the best one, the covariance ``(J^T
S^-1 J)^-1`` from the grid's central differences, scaled by the empirical
``FelifFitOptions.stderr_scale``.

Parameters: P_s and t_hzo are fitted: P_s sets the switched charge per spike
(``2*A*P_s``), t_hzo the membrane's linear capacitance, which weighs more at high input where
the switching is less complete at threshold. They are correlated (a valley in the cost), but
the trials at different amplitudes separate them. E_a acts almost like t_hzo on these spike
trains (correlation -0.99 in the sensitivities) and t_int far less, so both are held at the
design defaults, as are the leakage terms (I0, I_dsc: negligible against nA inputs). Keep the
input charge per pulse small against C*(V_thr - V_reset) (short pulses, tens of nA): at high
amplitude spikes lock to pulses and the on-times become a staircase in the parameters.

The fit's parts live in ``calibration.felif`` (one module per job); every tuning constant is a
field of :class:`FelifFitOptions`, and each stored fit records them in ``goodness["fit_options"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from calibration.data import DeviceRecords
from calibration.felif.grid import fit_grid
from calibration.felif.options import FelifFitOptions
from calibration.felif.records import FelifData, prepare_felif
from calibration.felif.segments import on_time_s, train_segments
from calibration.felif.spec import ARRAYS, FELIF_FIT_SPECS, HELD, MODEL_NAME, NOTES, PROTOCOL
from calibration.felif.spikes_model import build_felif_spikes
from calibration.fitter import FitOptions
from calibration.seams import CalibrationStore
from calibration.stage import KindFit

__all__ = [
    "ARRAYS",
    "FELIF_FIT_SPECS",
    "HELD",
    "MODEL_NAME",
    "NOTES",
    "PROTOCOL",
    "FelifData",
    "FelifFitOptions",
    "build_felif_spikes",
    "fit_felif",
    "on_time_s",
    "prepare_felif",
    "train_segments",
]

log = logging.getLogger(__name__)


def fit_felif(
    store: CalibrationStore,
    devices: list[DeviceRecords],
    *,
    scheduler: Any = None,
    chunk_size: int = 256,
    options: FitOptions | None = None,
    felif_options: FelifFitOptions | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> KindFit:
    """Fit every usable FeLIF of ``devices``; defective ones are returned flagged, unfitted.

    ``felif_options`` tune the fit (default: :class:`FelifFitOptions`); every device's entry
    records them in ``goodness["fit_options"]``. ``scheduler``, ``chunk_size`` and ``options``
    (the Levenberg-Marquardt fitter's) are accepted for the stage's common signature and unused:
    the grid fit runs locally."""
    opts = felif_options or FelifFitOptions()
    out = KindFit(model_name=MODEL_NAME, specs=list(FELIF_FIT_SPECS))
    data = prepare_felif(store, devices, out, opts)
    fit_devs, amps, sigma = data.fit_devs, data.amps, data.sigma
    if scheduler is not None or options is not None:
        log.info("felif-spikes: grid fit runs locally (scheduler, chunk_size, options unused)")
    result = fit_grid(data, opts)
    if on_progress:
        on_progress(len(fit_devs))
    chi2_typ = float(np.nanmedian(result.chi2_red))
    for j, (dev, row) in enumerate(fit_devs):
        bad = result.chi2_red[j] > opts.bad_fit_chi2_factor * chi2_typ
        out.add_fitted(dev, [row["measurement_id"]], result, j, ["bad_fit:chi2"] if bad else [])
    record = opts.as_record()
    for fit in out.fits:  # fitted and flagged alike: the flags depend on the options too
        fit.goodness["fit_options"] = dict(record)
    out.extra = {
        "notes": NOTES,
        "held_at_defaults": list(HELD),
        "spike_time_sigma_s": sigma,
        "input_currents_a": np.median(amps, axis=0).tolist(),
        "fit_options": record,
    }
    return out
