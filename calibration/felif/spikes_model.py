"""The batched ``felif-spikes`` predictor: parameters of devices -> their spike on-times.

Each device's own trains, simulated with the FeLIF equations (``felif_run_sequence``: the C
kernel, batched over devices, trials and grid copies) at micro-steps of at most
``max_micro_step_s``, the input held per AWG sample at its end-point value (as the simulated
bench does). Each trial starts at its *first* measured spike from the reset state (V_reset,
-P_s), which is known whatever the device's history; the later spikes are predicted. A spike
resets at its interpolated crossing of V_thr and holds half a micro-step (the loop's reset at
the end of the micro-step, on average), so the later spikes move smoothly with the parameters.

The ``n`` later model spikes of a trial are compared with the ``n`` measured ones (when the
model fires fewer in the trial its train is continued past the trial end to find them), and one
more slot ``min(tau(t_model[n]), tau(T))`` penalises a model that fires an extra spike inside
the trial.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from bruno_lab.devices.felif import FeLIFParams, FeLIFState, felif_run_sequence
from calibration.felif.segments import ext_end_tau, on_time_ext
from calibration.felif.spec import FELIF_FIT_SPECS
from calibration.fitter import BatchedModel


def build_felif_spikes(inputs: Mapping[str, np.ndarray]) -> BatchedModel:
    """The batched predictor: theta [m, p] of devices ``idx`` -> spike on-times [m, slots].

    Every (device, trial) pair with a first spike is one neuron of one kernel call: reset state
    at the measured first spike (held until the next micro-step boundary), the trial's train,
    then its continuation for the neurons still short of spikes."""
    names = [s.name for s in FELIF_FIT_SPECS]
    area = torch.as_tensor(inputs["area_m2"], dtype=torch.float64)
    amps = np.asarray(inputs["amplitude_a"], dtype=np.float64)  # [n, K]
    first = np.asarray(inputs["first_spike_s"], dtype=np.float64)  # [n, K], NaN: none
    n_meas = np.asarray(inputs["n_meas"], dtype=np.int64)  # [n, K] spikes after the first
    slots = [int(x) for x in np.asarray(inputs["slots"]).reshape(-1)]
    micro = float(np.asarray(inputs["micro_dt_s"]).reshape(-1)[0])
    trial_end = float(np.asarray(inputs["trial_end_s"]).reshape(-1)[0])
    seg = {k: np.asarray(inputs[k]) for k in ("trial_on", "trial_steps", "ext_on", "ext_steps")}
    tau_end = float(on_time_ext(np.array([trial_end]), seg, micro, trial_end)[0])
    tau_max = ext_end_tau(seg, micro, tau_end)
    cols = np.concatenate([[0], np.cumsum(slots)])
    kmax = max(slots)

    def model(theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        m = theta.shape[0]
        idx_np = idx.numpy()
        out = torch.zeros(m, int(cols[-1]), dtype=torch.float64)
        t0 = first[idx_np]  # [m, K]
        dev, trial = np.nonzero(np.isfinite(t0))
        if dev.size == 0:
            return out
        fields = {name: theta[dev, k].detach() for k, name in enumerate(names)}
        fields["area_m2"] = area[idx[dev]]
        params = FeLIFParams.default(dev.size, dtype=torch.float64).replace(**fields)
        state = FeLIFState(params.v_reset_v.clone(), -params.ps_c_m2.clone())
        amp = torch.as_tensor(amps[idx_np[dev], trial])
        start_t = t0[dev, trial]
        start_k = np.ceil(start_t / micro - 1e-9).astype(np.int64)
        # on-time between the measured reset and the model's start (a micro-step boundary)
        lag = on_time_ext(start_k * micro, seg, micro, trial_end) - on_time_ext(
            start_t, seg, micro, trial_end
        )
        need = n_meas[idx_np[dev], trial] + 1  # spikes after the first, plus the extra check
        cur = torch.as_tensor(seg["trial_on"]).unsqueeze(1) * amp
        res = felif_run_sequence(
            cur, torch.full_like(cur[:, 0], micro), torch.as_tensor(seg["trial_steps"]),
            params, state, reset_at_crossing=True, hold_fraction=0.5, max_spikes=kmax,
            start_step=torch.as_tensor(start_k),
        )  # fmt: skip
        times = res.spike_times_s.numpy().copy()
        got = res.n_spikes.numpy()
        short = np.flatnonzero(got < need)
        if short.size:  # continue the train past the trial for the missing spikes
            ext_cur = torch.as_tensor(seg["ext_on"]).unsqueeze(1) * amp[short]
            ext = felif_run_sequence(
                ext_cur, torch.full_like(ext_cur[:, 0], micro),
                torch.as_tensor(seg["ext_steps"]), params.select(torch.as_tensor(short)),
                FeLIFState(res.voltage_v[short], res.polarization_c_m2[short]),
                reset_at_crossing=True, hold_fraction=0.5, max_spikes=kmax,
                stop_after=torch.as_tensor(need[short] - got[short]), t0_s=trial_end,
            )  # fmt: skip
            ext_t = ext.spike_times_s.numpy()
            for j, i in enumerate(short):
                n_in = int(got[i])
                times[i, n_in:] = ext_t[j, : kmax - n_in]
        # on-time of each spike (continuous across the gaps between pulses); spikes never
        # found count at the continuation's end
        tau = np.minimum(on_time_ext(times, seg, micro, trial_end), tau_max) - lag[:, None]
        for r, (d, k) in enumerate(zip(dev, trial, strict=True)):
            nm = int(n_meas[idx_np[d], k])
            row = tau[r, : slots[k]].copy()
            if nm < slots[k]:  # the extra-spike check: only a spike inside the trial counts
                row[nm] = min(row[nm], tau_end)
            out[d, cols[k] : cols[k] + slots[k]] = torch.as_tensor(row)
        return out

    return model
