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
pulses, so a spike slipping into the next pulse needs a little more charge), hence the loose
``ftol`` and a start chosen on the P_s-t_hzo valley floor (``_initial_values``).

Parameters: P_s and t_hzo are fitted: P_s sets the switched charge per spike
(``2*A*P_s``), t_hzo the membrane's linear capacitance, which weighs more at high input where
the switching is less complete at threshold. They are correlated (a valley in the cost), but
the trials at different amplitudes separate them. E_a acts almost like t_hzo on these spike
trains (correlation -0.99 in the sensitivities) and t_int far less, so both are held at the
design defaults, as are the leakage terms (I0, I_dsc: negligible against nA inputs). Keep the
input charge per pulse small against C*(V_thr - V_reset) (short pulses, tens of nA): at high
amplitude spikes lock to pulses and the on-times become a staircase in the parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from bruno_lab.errors import DataError
from calibration.data import DeviceRecords, load_arrays
from calibration.fitter import BatchedModel, FitOptions, ParamSpec
from calibration.runner import run_tasks, split_tasks
from calibration.stage import KindFit

log = logging.getLogger(__name__)

MODEL_NAME = "felif-spikes"
PROTOCOL = "felif_response"
ARRAYS = ("input_current_a", "spike_times_s", "spike_trial")
FELIF_FIT_SPECS = (
    ParamSpec("ps_c_m2", 0.03, 1.0, log_scale=True),
    ParamSpec("t_hzo_m", 3e-9, 4e-8, log_scale=True),
)
HELD = (
    "e_a_v_m",
    "t_int_m",
    "i0_a_m2",
    "i_dsc_a",
    "eps_hzo",
    "eps_int",
    "tau0_s",
    "alpha",
    "c_par_f",
)
MAX_MICRO_STEP_S = 1e-6
MAX_SPIKES_PER_TRIAL = 200
MIN_SPIKES = 3
BAD_FIT_CHI2_FACTOR = 25.0
# The spike on-times are not everywhere smooth in the parameters: a spike that slips past the
# end of a pulse waits for the next one while the polarization keeps switching (a real jump of
# about a micro-step of on-time, i.e. ~1 sigma). A relative cost change below 1e-3 is noise, and
# the finite-difference step (in the bounded z-space; ~1 % of the parameter) must span several
# such treads or the Jacobian sees only their flat tops (measured: uncertainties 10x too large
# and spreads over-deconvolved with the default 1e-6).
DEFAULT_OPTIONS = FitOptions(max_iter=40, ftol=1e-3, xtol=1e-6, fd_step=1e-2)
RESTARTS = 2
NOTES = (
    "felif-spikes: P_s and t_hzo fitted to each device's felif_response spike trains (pulse "
    "on-times of the spikes after each trial's first, FeLIF equations at <= 1 us micro-steps); "
    "every other FeLIF parameter (E_a, t_int, I0, I_dsc, eps, tau0, alpha, C_par, V_thr, "
    "V_reset) held at the design defaults (their device-to-device spread, if any, shows up in the "
    "fitted pair); spreads are deconvolved from the fits' 1-sigma uncertainties"
)
_PARAM_KEYS = ("pulse_width_s", "pulse_period_s", "trial_s", "samples_per_pulse")


def _protocol_key(params: Mapping[str, Any]) -> tuple:
    try:
        key = tuple(float(params[k]) for k in _PARAM_KEYS)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{PROTOCOL} parameters lack {_PARAM_KEYS}: {params}") from exc
    scope = float(params.get("scope_points", 20_000))
    return (*key, scope)


def _on_pattern(width_s: float, period_s: float, t_s: np.ndarray) -> np.ndarray:
    return (t_s % period_s) < width_s


def train_segments(
    width_s: float, period_s: float, trial_s: float, samples_per_pulse: int, extend_s: float
) -> dict[str, np.ndarray]:
    """Run-length segments (on 0/1, micro-steps) of one trial and of its continuation.

    The AWG plays ``n = round(trial_s*rate)`` samples, the first and last at 0 (the protocol's
    waveform); the model holds each sample interval at its end-point value (the bench's)."""
    rate = samples_per_pulse / width_s
    n = round(trial_s * rate)
    t = np.arange(n) / rate
    on = _on_pattern(width_s, period_s, t)
    on[0] = on[-1] = False
    sub = max(1, int(np.ceil((1.0 / rate) / MAX_MICRO_STEP_S - 1e-9)))
    micro = 1.0 / rate / sub
    n_ext = max(1, round(extend_s * rate))
    t_ext = (n + np.arange(n_ext)) / rate
    on_ext = _on_pattern(width_s, period_s, t_ext)
    out = {"micro_dt_s": np.array([micro]), "trial_end_s": np.array([(n - 1) / rate])}
    for name, seq in (("trial", on[1:]), ("ext", on_ext)):
        change = np.flatnonzero(np.diff(seq.astype(np.int8))) + 1
        starts = np.concatenate([[0], change])
        lengths = np.diff(np.concatenate([starts, [seq.size]]))
        out[f"{name}_on"] = seq[starts].astype(np.float64)
        out[f"{name}_steps"] = (lengths * sub).astype(np.int64)
    return out


def on_time_s(
    t_s: np.ndarray | torch.Tensor, on: np.ndarray, steps: np.ndarray, micro_dt_s: float
) -> np.ndarray | torch.Tensor:
    """Pulse on-time accumulated from the start of the segments up to ``t_s``, s."""
    edges = np.concatenate([[0.0], np.cumsum(steps) * micro_dt_s])
    cum = np.concatenate([[0.0], np.cumsum(on * steps) * micro_dt_s])
    if torch.is_tensor(t_s):
        x = t_s.detach().numpy()
        return torch.as_tensor(np.interp(x, edges, cum), dtype=t_s.dtype)
    return np.interp(t_s, edges, cum)


def build_felif_spikes(inputs: Mapping[str, np.ndarray]) -> BatchedModel:
    """The batched predictor: theta [m, p] of devices ``idx`` -> spike on-times [m, slots].

    Every (device, trial) pair with a first spike is one neuron of one kernel call: reset state
    at the measured first spike (held until the next micro-step boundary), the trial's train,
    then its continuation for the neurons still short of spikes."""
    from bruno_lab.devices.felif import FeLIFParams, felif_run_sequence

    names = [s.name for s in FELIF_FIT_SPECS]
    area = torch.as_tensor(inputs["area_m2"], dtype=torch.float64)
    amps = np.asarray(inputs["amplitude_a"], dtype=np.float64)  # [n, K]
    first = np.asarray(inputs["first_spike_s"], dtype=np.float64)  # [n, K], NaN: none
    n_meas = np.asarray(inputs["n_meas"], dtype=np.int64)  # [n, K] spikes after the first
    slots = [int(x) for x in np.asarray(inputs["slots"]).reshape(-1)]
    micro = float(np.asarray(inputs["micro_dt_s"]).reshape(-1)[0])
    trial_end = float(np.asarray(inputs["trial_end_s"]).reshape(-1)[0])
    seg = {k: np.asarray(inputs[k]) for k in ("trial_on", "trial_steps", "ext_on", "ext_steps")}
    tau_end = float(_on_time_ext(np.array([trial_end]), seg, micro, trial_end)[0])
    tau_max = _ext_end_tau(seg, micro, tau_end)
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
        state = (params.v_reset_v.clone(), -params.ps_c_m2.clone())
        amp = torch.as_tensor(amps[idx_np[dev], trial])
        start_t = t0[dev, trial]
        start_k = np.ceil(start_t / micro - 1e-9).astype(np.int64)
        # on-time between the measured reset and the model's start (a micro-step boundary)
        lag = _on_time_ext(start_k * micro, seg, micro, trial_end) - _on_time_ext(
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
                (res.voltage_v[short], res.polarization_c_m2[short]),
                reset_at_crossing=True, hold_fraction=0.5, max_spikes=kmax,
                stop_after=torch.as_tensor(need[short] - got[short]), t0_s=trial_end,
            )  # fmt: skip
            ext_t = ext.spike_times_s.numpy()
            for j, i in enumerate(short):
                n_in = int(got[i])
                times[i, n_in:] = ext_t[j, : kmax - n_in]
        # on-time of each spike (continuous across the gaps between pulses); spikes never
        # found count at the continuation's end
        tau = np.minimum(_on_time_ext(times, seg, micro, trial_end), tau_max) - lag[:, None]
        for r, (d, k) in enumerate(zip(dev, trial, strict=True)):
            nm = int(n_meas[idx_np[d], k])
            row = tau[r, : slots[k]].copy()
            if nm < slots[k]:  # the extra-spike check: only a spike inside the trial counts
                row[nm] = min(row[nm], tau_end)
            out[d, cols[k] : cols[k] + slots[k]] = torch.as_tensor(row)
        return out

    return model


def _on_time_ext(t_s: np.ndarray, seg: Mapping[str, np.ndarray], micro: float, t_end: float):
    """On-time of times inside the trial or in its continuation (from ``t_end``); NaN -> inf."""
    t_s = np.where(np.isnan(t_s), np.inf, t_s)
    in_trial = on_time_s(np.minimum(t_s, t_end), seg["trial_on"], seg["trial_steps"], micro)
    after = np.clip(t_s - t_end, 0.0, 1e300)
    return in_trial + on_time_s(after, seg["ext_on"], seg["ext_steps"], micro)


def _ext_end_tau(seg: Mapping[str, np.ndarray], micro: float, tau_end: float) -> float:
    return tau_end + float(np.sum(seg["ext_on"] * seg["ext_steps"]) * micro)


INIT_SECOND_REL = (0.85, 0.92, 1.0, 1.08, 1.16)


def _initial_values(
    initial: np.ndarray,
    times: list[list[np.ndarray]],
    amps: np.ndarray,
    area: np.ndarray,
    seg: Mapping[str, np.ndarray],
    micro: float,
    trial_end: float,
    inputs: Mapping[str, np.ndarray],
    y: np.ndarray,
    mask: np.ndarray,
) -> np.ndarray:
    """Start on the valley floor: P_s and the second parameter trade off, so for a few values of
    the second around its default P_s is set from the charge per spike
    (``2*A*P_s + C_lin*(V_thr - V_reset)``) of the lowest-current trial with two or more
    spikes (leakage and incomplete switching neglected); the model is run for every device at
    each candidate and the best candidate per device is the start."""
    from bruno_lab.devices.fecap import linear_capacitance_f
    from bruno_lab.devices.felif import FeLIFParams

    base = FeLIFParams.default(1, dtype=torch.float64)
    swing = float(base.v_thr_v[0] - base.v_reset_v[0])
    charge = np.full(len(times), np.nan)
    for i, per in enumerate(times):
        for k in np.argsort(amps[i]):
            if per[k].size >= 2:
                tau = _on_time_ext(per[k][[0, -1]], seg, micro, trial_end)
                charge[i] = amps[i, k] * (tau[1] - tau[0]) / (per[k].size - 1)
                break
    names = [s.name for s in FELIF_FIT_SPECS]
    lo = np.array([s.lower * 1.01 for s in FELIF_FIT_SPECS])
    hi = np.array([s.upper * 0.99 for s in FELIF_FIT_SPECS])
    model = build_felif_spikes(inputs)
    idx = torch.arange(len(times))
    best, best_cost = initial.copy(), np.full(len(times), np.inf)
    second = names[1]
    default = float(getattr(base, second)[0])

    def try_values(values: np.ndarray) -> None:
        """Candidates (second parameter per device; P_s from the charge per spike)."""
        cand = initial.copy()
        cand[:, 1] = values
        geometry = {"area_m2": torch.as_tensor(area)}
        if second == "t_hzo_m":
            geometry["t_hzo_m"] = torch.as_tensor(values)
        c_lin = linear_capacitance_f(base.replace(**geometry)).numpy()
        ps = (charge - c_lin * swing) / (2.0 * area)
        cand[:, 0] = np.where(np.isfinite(ps), ps, cand[:, 0])
        cand = np.clip(cand, lo, hi)
        pred = model(torch.as_tensor(cand), idx).numpy()
        cost = (np.where(mask, pred - y, 0.0) ** 2).sum(1)
        better = cost < best_cost
        best[better], best_cost[better] = cand[better], cost[better]

    for rel in INIT_SECOND_REL:
        try_values(np.full(len(times), default * rel))
    return best


def fit_felif(
    store: Any,
    devices: list[DeviceRecords],
    *,
    scheduler: Any = None,
    chunk_size: int = 256,
    options: FitOptions | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> KindFit:
    """Fit every usable FeLIF of ``devices``; defective ones are returned flagged, unfitted."""
    out = KindFit(model_name=MODEL_NAME, specs=list(FELIF_FIT_SPECS))
    usable: list[tuple[DeviceRecords, dict[str, Any]]] = []
    for dev in devices:
        rows = dev.ok_rows(PROTOCOL)
        if rows:
            usable.append((dev, rows[-1]))  # the latest measurement wins
        else:
            reason = "; ".join(dev.failures()) or f"no {PROTOCOL} measurement"
            out.add_defective(dev, [f"defective:{reason}"])
    if not usable:
        raise DataError(f"no FeLIF device has a successful {PROTOCOL} measurement")
    keys = [_protocol_key(row["parameters"]) for _, row in usable]
    common = max(set(keys), key=keys.count)
    for (dev, _), key in zip(usable, keys, strict=True):
        if key != common:
            out.add_defective(dev, [f"defective:{PROTOCOL} pulse timing differs from the wafer's"])
    usable = [u for u, key in zip(usable, keys, strict=True) if key == common]
    width_s, period_s, trial_s, spp, scope_points = common
    arrays = load_arrays(store, [row["measurement_id"] for _, row in usable], ARRAYS)
    n_trials = max(len(arrays[row["measurement_id"]]["input_current_a"]) for _, row in usable)

    amps, times, fit_devs = [], [], []
    for dev, row in usable:
        a = arrays[row["measurement_id"]]
        cur = np.asarray(a["input_current_a"], dtype=np.float64).reshape(-1)
        t = np.asarray(a["spike_times_s"], dtype=np.float64).reshape(-1)
        trial = np.asarray(a["spike_trial"]).reshape(-1).astype(np.int64)
        if cur.size != n_trials or trial.size != t.size or not np.all(np.isfinite(t)):
            out.add_defective(dev, [f"defective:incomplete {PROTOCOL} record"])
            continue
        per = [np.sort(t[trial == k]) for k in range(n_trials)]
        if max(p.size for p in per) > MAX_SPIKES_PER_TRIAL:
            out.add_defective(dev, [f"defective:more than {MAX_SPIKES_PER_TRIAL} spikes a trial"])
            continue
        if sum(max(p.size - 1, 0) for p in per) < MIN_SPIKES:
            out.add_defective(dev, [f"defective:fewer than {MIN_SPIKES} spikes after the first"])
            continue
        amps.append(cur)
        times.append(per)
        fit_devs.append((dev, row))
    if not fit_devs:
        raise DataError("no FeLIF device fired enough spikes to fit")
    area = np.array([float(d.geometry.get("area_m2", np.nan)) for d, _ in fit_devs])
    if not np.all(np.isfinite(area)):
        raise DataError("a FeLIF device has no area_m2 in its geometry")

    seg = train_segments(width_s, period_s, trial_s, int(spp), extend_s=trial_s)
    micro = float(seg["micro_dt_s"][0])
    trial_end = float(seg["trial_end_s"][0])
    tau_end = float(_on_time_ext(np.array([trial_end]), seg, micro, trial_end)[0])
    n = len(fit_devs)
    # per trial: the first spike anchors the (known) reset state; the later ones are compared
    first = np.array([[p[0] if p.size else np.nan for p in per] for per in times])
    n_meas = np.array([[max(p.size - 1, 0) for p in per] for per in times], dtype=np.int64)
    slots = n_meas.max(0) + 1
    y = np.zeros((n, int(slots.sum())))
    mask = np.zeros_like(y, dtype=bool)
    col = 0
    for k in range(n_trials):
        for i, per in enumerate(times):
            if per[k].size:
                y[i, col : col + per[k].size - 1] = _on_time_ext(per[k][1:], seg, micro, trial_end)
                y[i, col + per[k].size - 1] = tau_end
                mask[i, col : col + per[k].size] = True
        col += int(slots[k])
    sigma = max(2.0 * trial_s / scope_points, 2e-6)
    shared = {**seg, "slots": slots}
    per_device = {
        "area_m2": area,
        "amplitude_a": np.stack(amps),
        "first_spike_s": first,
        "n_meas": n_meas,
    }
    from bruno_lab.devices.felif import FeLIFParams

    defaults = {k: s.default for k, s in FeLIFParams.specs().items()}
    initial = np.tile([defaults[s.name] for s in FELIF_FIT_SPECS], (n, 1))
    initial = _initial_values(
        initial, times, np.stack(amps), area, seg, micro, trial_end,
        {**shared, **per_device}, y, mask,
    )  # fmt: skip
    result = None
    for _ in range(RESTARTS + 1):
        # LM stalls on the cost's small steps (its damping runs away after rejected steps):
        # restarting from where it stopped, with fresh damping, walks on down the valley
        start = initial if result is None else result.params
        tasks = split_tasks(
            MODEL_NAME,
            shared,
            per_device,
            y,
            start,
            sigma=np.full(y.shape, sigma),
            mask=mask,
            options=options or DEFAULT_OPTIONS,
            chunk_size=chunk_size,
        )
        result = run_tasks(tasks, scheduler=scheduler, on_chunk_done=on_progress)
    chi2_typ = float(np.nanmedian(result.chi2_red))
    for j, (dev, row) in enumerate(fit_devs):
        extra = [] if result.chi2_red[j] <= BAD_FIT_CHI2_FACTOR * chi2_typ else ["bad_fit:chi2"]
        out.add_fitted(dev, [row["measurement_id"]], result, j, extra)
    out.extra = {
        "notes": NOTES,
        "held_at_defaults": list(HELD),
        "spike_time_sigma_s": sigma,
        "input_currents_a": np.median(np.stack(amps), axis=0).tolist(),
    }
    return out
