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
    spikes = detect_spikes(time_s, voltage_v, drop_v=2.0, window_s=3e-6)
    assert spikes == pytest.approx(resets, abs=3e-6)


def test_no_input_no_spike_and_noise_is_not_a_spike() -> None:
    rng = np.random.default_rng(5)
    time_s = np.arange(2000) * 1e-6
    voltage_v = 0.5 + 0.05 * rng.standard_normal(2000)
    assert detect_spikes(time_s, voltage_v, drop_v=2.0, window_s=3e-6).size == 0


def test_pulse_train_waveform_and_validation() -> None:
    params = FelifResponseParams(pulse_width_s=1e-5, pulse_period_s=4e-5, trial_s=1e-3)
    samples = params.waveform(4e-9, transconductance_a_per_v=1e-8)
    assert samples.max() == pytest.approx(0.4) and samples[0] == 0.0
    assert samples[-1] == 0.0
    assert np.mean(samples > 0) == pytest.approx(0.25, abs=0.01)
    with pytest.raises(ValueError, match="shorter than pulse_period_s"):
        FelifResponseParams(pulse_width_s=1e-5, pulse_period_s=1e-5)


def test_felif_response_on_the_sim_finds_the_true_resets(
    sim_lab_factory, truth_factory, tmp_path
) -> None:
    """Through AWG, transconductance stage and scope: the detected spike times are the sim's
    own membrane resets (within 10 us), and more input current fires faster."""
    from instruments.station import open_bench
    from protocols.base import DeviceUnderTest
    from protocols.felif_response import run

    lab = sim_lab_factory(truth=truth_factory(), seed=51)
    params = FelifResponseParams(input_currents_a=[5e-9, 2e-8], trial_s=8e-3)
    with open_bench(lab.write_station(tmp_path / "station.yaml")) as bench:
        bench.prober.step_to(1, 1, 3)
        bench.prober.contact()
        truth = lab.truth_for((1, 1), 3)
        device = DeviceUnderTest(1, 1, "1,1", 3, "felif", {"area_m2": truth.area_m2})
        result = run(bench, device, params)
        burst = lab.last_burst()
    membrane = burst.extra["membrane_v"]
    true_resets = burst.time_s[1:][np.diff(membrane) < -2.0]
    spikes, _ = result.arrays["spike_times_s"]
    trial, _ = result.arrays["spike_trial"]
    last = spikes[trial == 1]
    assert len(last) == len(true_resets) >= 2
    assert last == pytest.approx(true_resets - burst.time_s[0], abs=1e-5)
    rates, _ = result.arrays["trial_firing_rate_hz"]
    assert rates[1] > rates[0]
    assert result.scalars["first_spike_s"] == pytest.approx(last[0])
