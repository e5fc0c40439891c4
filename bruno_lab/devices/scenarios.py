"""Bench-free experiments on one device, for ``bruno-lab device simulate``: each returns a plain,
JSON-ready dict (SI units in every key) built only from the public device functions."""

from __future__ import annotations

from typing import Any

import torch

from bruno_lab.devices import fecap, fecap_sim, fecap_waveforms, felif, felif_fast, rram
from bruno_lab.devices.params import DeviceParams
from bruno_lab.errors import BadInputError

KINDS = ("felif", "fecap", "rram")


def params_class(kind: str) -> type[DeviceParams]:
    """The parameter dataclass of a device kind."""
    if kind not in KINDS:
        raise BadInputError(f"device kind {kind!r}: choose one of {', '.join(KINDS)}")
    return {"felif": felif.FeLIFParams, "fecap": fecap.FeCapParams, "rram": rram.RramParams}[kind]


def current_schedule_a(
    segments: list[tuple[float, float]], duration_s: float, dt_s: float
) -> torch.Tensor:
    """Piecewise-constant input per coarse step from (start_s, current_a) segments, [T] float64."""
    n_steps = round(duration_s / dt_s)
    if n_steps < 1:
        raise BadInputError(f"duration {duration_s:g} s is shorter than one step of {dt_s:g} s")
    t = torch.arange(n_steps, dtype=torch.float64) * dt_s
    out = torch.zeros(n_steps, dtype=torch.float64)
    for start_s, current_a in sorted(segments):
        out = torch.where(t >= start_s - 1e-15, torch.tensor(current_a, dtype=torch.float64), out)
    return out


def felif_scenario(
    params: felif.FeLIFParams,
    segments: list[tuple[float, float]],
    duration_s: float,
    dt_s: float = 1e-3,
    n_micro: int = 1000,
) -> dict[str, Any]:
    """Spike times of one FeLIF neuron under a piecewise-constant current (fast path, float64);
    V and P are sampled at the end of every network step (V frozen at threshold on spike steps)."""
    cur = current_schedule_a(segments, duration_s, dt_s)
    state = felif.felif_initial_state(params, (1,))
    spiked = torch.zeros(1, dtype=torch.bool)
    micro = dt_s / n_micro
    spikes: list[float] = []
    v_end, p_end = [], []
    for k in range(cur.numel()):
        state = felif.felif_reset(state, spiked, params)
        state, step = felif_fast.fine_window(cur[k : k + 1], state, params, n_micro, micro)
        spiked = step >= 0
        if bool(spiked[0]):
            spikes.append((k * n_micro + int(step[0]) + 1) * micro)
        v_end.append(float(state.voltage_v[0]))
        p_end.append(float(state.polarization_c_m2[0]))
    return {
        "kind": "felif",
        "duration_s": duration_s,
        "dt_s": dt_s,
        "n_micro": n_micro,
        "spike_times_s": spikes,
        "n_spikes": len(spikes),
        "time_s": [(k + 1) * dt_s for k in range(cur.numel())],
        "current_a": cur.tolist(),
        "voltage_v": v_end,
        "polarization_c_m2": p_end,
        "params": params.to_json(),
    }


def fecap_scenario(
    params: fecap.FeCapParams,
    amplitude_v: float = 3.0,
    frequency_hz: float = 1e3,
    pund_width_s: float = 1e-6,
    pund_rise_s: float = 50e-9,
    n_domains: int = fecap_sim.DEFAULT_DOMAINS,
) -> dict[str, Any]:
    """A P-V loop (2 periods of a triangle) and a PUND sequence on one FeCap."""
    t, v = fecap_waveforms.triangle_waveform(amplitude_v, frequency_hz, 2, 400)
    loop = fecap_sim.fecap_simulate(t, v, params, n_domains=n_domains)
    features = {
        k: float(x[0])
        for k, x in fecap_waveforms.pv_loop_features(v, loop.polarization_c_m2).items()
    }
    tp, vp, windows = fecap_waveforms.pund_waveform(
        amplitude_v, pund_width_s, pund_rise_s, pund_width_s
    )
    pund = fecap_sim.fecap_simulate(tp, vp, params, n_domains=n_domains)
    charge = {}
    for name, (a, b) in windows.items():
        seg = pund.charge_c[0][(tp >= a) & (tp <= b)]
        charge[name] = float(seg[-1] - seg[0])
    area = float(params.area_m2[0])
    return {
        "kind": "fecap",
        "loop": {
            "frequency_hz": frequency_hz,
            "amplitude_v": amplitude_v,
            **features,
            "voltage_v": v.tolist(),
            "polarization_c_m2": loop.polarization_c_m2[0].tolist(),
            "current_a": loop.current_a[0].tolist(),
        },
        "pund": {
            "width_s": pund_width_s,
            "charge_c": charge,
            "switched_polarization_c_m2": (charge["P"] - charge["U"]) / area,
            "time_s": tp.tolist(),
            "voltage_v": vp.tolist(),
            "current_a": pund.current_a[0].tolist(),
        },
        "n_domains": n_domains,
        "params": params.to_json(),
    }


def rram_scenario(
    params: rram.RramParams,
    v_set_max_v: float = 1.5,
    v_reset_max_v: float = -1.5,
    step_v: float = 0.01,
    sweep_rate_v_s: float = 1.0,
    compliance_a: float = 100e-6,
    n_cycles: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Form the cell (ramp under compliance), RESET it once (0 -> -Vmax -> 0), then DC I-V cycles
    0 -> +Vmax -> 0 -> -Vmax -> 0, compliance on the SET half only. SET: first V with I above
    half the compliance; RESET: first V on the way down where the chord conductance |I/V| has
    halved (None if not seen)."""
    if v_set_max_v <= 0 or v_reset_max_v >= 0 or step_v <= 0 or sweep_rate_v_s <= 0:
        raise BadInputError("rram sweep: need v_set_max > 0 > v_reset_max, step and rate > 0")
    gen = torch.Generator().manual_seed(seed)
    state = rram.rram_initial_state(params)
    state, v_form = rram.rram_form(state, params, gen, current_limit_a=compliance_a)
    up = torch.arange(0.0, v_set_max_v + step_v / 2, step_v, dtype=torch.float64)
    down = torch.arange(0.0, -v_reset_max_v + step_v / 2, step_v, dtype=torch.float64)
    sweep = torch.cat([up, up.flip(0), -down, -down.flip(0)])
    limit = torch.where(sweep > 0, compliance_a, 1.0)[None]
    neg_half = torch.cat([-down, -down.flip(0)])[None]  # first RESET after forming
    _, state = rram.rram_apply_voltage(neg_half, step_v / sweep_rate_v_s, state, params, 1.0, gen)
    cycles = []
    for _ in range(n_cycles):
        g_before = float(rram.rram_conductance_siemens(state, params)[0])
        i, state = rram.rram_apply_voltage(
            sweep[None], step_v / sweep_rate_v_s, state, params, limit, gen
        )
        i = i[0]
        n_up = 2 * up.numel()
        above = torch.nonzero(i[: up.numel()] > 0.5 * compliance_a)
        chord = (i[n_up + 1 : n_up + down.numel()] / sweep[n_up + 1 : n_up + down.numel()]).abs()
        fallen = torch.nonzero(chord < 0.5 * chord[0]) if chord.numel() else chord
        cycles.append(
            {
                "v_set_v": float(sweep[int(above[0])]) if above.numel() else None,
                "v_reset_v": float(sweep[n_up + 1 + int(fallen[0])]) if fallen.numel() else None,
                "conductance_before_s": g_before,
                "conductance_after_s": float(rram.rram_conductance_siemens(state, params)[0]),
                "voltage_v": sweep.tolist(),
                "current_a": i.tolist(),
            }
        )
    return {
        "kind": "rram",
        "forming_voltage_v": None if torch.isnan(v_form[0]) else float(v_form[0]),
        "compliance_a": compliance_a,
        "sweep_rate_v_s": sweep_rate_v_s,
        "cycles": cycles,
        "params": params.to_json(),
    }
