"""FeLIF response analysis: spike detection against the device physics' own resets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protocols.felif_response import FelifResponseParams, detect_spikes


def _membrane_trace(current_a: float, duration_s: float, dt_s: float) -> tuple[np.ndarray, ...]:
    """Membrane voltage of one FeLIF neuron (design defaults) under a constant current, with
    the time of every reset the physics made: the reference for spike detection."""
    from bruno_lab.devices import felif

    params = felif.FeLIFParams.default(1, dtype=torch.float64)
    state = felif.felif_initial_state(params, (1,))
    n = round(duration_s / dt_s)
    time_s = np.arange(n) * dt_s
    voltage_v = np.empty(n)
    resets = []
    current = torch.tensor([current_a], dtype=state.voltage_v.dtype)
    for i in range(n):
        state = felif.felif_euler_step(current, state, params, dt_s)
        spiked = state.voltage_v >= params.v_thr_v
        if bool(spiked.any()):
            resets.append(time_s[i])
        state = felif.felif_reset(state, spiked, params)
        # the scope sees the peak on the sample where the threshold was crossed
        voltage_v[i] = float(params.v_thr_v[0]) if bool(spiked.any()) else float(state.voltage_v[0])
    return time_s, voltage_v, np.array(resets)


def test_detected_spikes_are_the_physics_resets() -> None:
    time_s, voltage_v, resets = _membrane_trace(5e-9, 8e-3, 1e-6)
    assert len(resets) >= 2
    spikes = detect_spikes(time_s, voltage_v, drop_v=2.0, span=3)
    assert spikes == pytest.approx(resets, abs=3e-6)


def test_no_input_no_spike_and_noise_is_not_a_spike() -> None:
    rng = np.random.default_rng(5)
    time_s = np.arange(2000) * 1e-6
    voltage_v = 0.5 + 0.05 * rng.standard_normal(2000)
    assert detect_spikes(time_s, voltage_v, drop_v=2.0, span=3).size == 0


def test_pulse_train_waveform_and_validation() -> None:
    params = FelifResponseParams(pulse_width_s=1e-5, pulse_period_s=4e-5, trial_s=1e-3)
    samples = params.waveform(4e-9, transconductance_a_per_v=1e-8)
    assert samples.max() == pytest.approx(0.4) and samples[0] == pytest.approx(0.4)
    assert samples[-1] == 0.0
    assert np.mean(samples > 0) == pytest.approx(0.25, abs=0.01)
    with pytest.raises(ValueError, match="shorter than pulse_period_s"):
        FelifResponseParams(pulse_width_s=1e-5, pulse_period_s=1e-5)
