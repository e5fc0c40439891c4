"""What the FeLIF fit fits: the model's name, its measured protocol, fitted and held parameters."""

from __future__ import annotations

from calibration.fitter import ParamSpec

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
NOTES = (
    "felif-spikes: P_s and t_hzo fitted to each device's felif_response spike trains (pulse "
    "on-times of the spikes after each trial's first, FeLIF equations at <= 1 us micro-steps); "
    "every other FeLIF parameter (E_a, t_int, I0, I_dsc, eps, tau0, alpha, C_par, V_thr, "
    "V_reset) held at the design defaults (their device-to-device spread, if any, shows up in the "
    "fitted pair); spreads are deconvolved from the fits' 1-sigma uncertainties"
)
