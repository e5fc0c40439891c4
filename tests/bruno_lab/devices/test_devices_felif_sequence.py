"""``felif_run_sequence``: piecewise-constant input with threshold + reset, against the plain
``felif_euler_step`` + ``felif_reset`` loop (float64: same spike steps, same trace to rounding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bruno_lab.devices import felif, felif_sequence


def _population(n: int) -> felif.FeLIFParams:
    from bruno_lab.devices.params import sample_population

    base = felif.FeLIFParams.default(1, dtype=torch.float64)
    spread = {"ps_c_m2": 0.05, "e_a_v_m": 0.05, "t_hzo_m": 0.03, "i0_a_m2": 0.3}
    return sample_population(base, spread, n, torch.Generator().manual_seed(3))


def _segments(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A pulse train with uneven steps (1, 7, 0 and 2 us) and per-neuron amplitudes."""
    amp = torch.linspace(1e-8, 3e-8, n, dtype=torch.float64)
    on = torch.tensor([1.0, 1.0, 0.0, 0.0] * 400, dtype=torch.float64)
    dt = torch.tensor([1e-6, 7e-6, 0.0, 2e-6] * 400, dtype=torch.float64)
    steps = torch.tensor([1, 2, 3, 4] * 400, dtype=torch.int64)
    return on.unsqueeze(1) * amp, dt, steps


def _loop(cur, dt, steps, params, n):
    state = felif.felif_initial_state(params, (n,), torch.float64)
    trace, spikes, k = [], [[] for _ in range(n)], 0
    for s in range(cur.shape[0]):
        for _ in range(int(steps[s]) if float(dt[s]) > 0 else 0):
            state = felif.felif_euler_step(cur[s], state, params, float(dt[s]))
            hit = state.voltage_v >= params.v_thr_v
            for i in torch.nonzero(hit).flatten().tolist():
                spikes[i].append(k)
            state = felif.felif_reset(state, hit, params)
            k += 1
        trace.append(state.voltage_v.clone())
    return torch.stack(trace), spikes


@pytest.mark.parametrize("kernel", [True, False], ids=["c-kernel", "torch-fallback"])
def test_sequence_matches_the_euler_reset_loop(kernel: bool, monkeypatch) -> None:
    n = 6
    params = _population(n)
    cur, dt, steps = _segments(n)
    if not kernel:
        monkeypatch.setattr(felif_sequence, "_kernel", lambda: None)
    out = felif.felif_run_sequence(cur, dt, steps, params, record=True, max_spikes=256)
    ref_trace, ref_spikes = _loop(cur, dt, steps, params, n)
    # rounding differences (libm pow vs torch) grow a little in the stiff switching
    assert torch.allclose(out.trace_voltage_v, ref_trace, atol=2e-3, rtol=0)
    assert all(len(s) >= 2 for s in ref_spikes)
    for i in range(n):
        got = out.spike_steps[i, : int(out.n_spikes[i])].tolist()
        assert got == ref_spikes[i]
    # interpolated times lie inside their micro-step
    k_end = torch.cumsum(torch.where(dt > 0, steps, 0), 0)
    t_end = torch.cumsum(dt * torch.where(dt > 0, steps, 0), 0)
    for i in range(n):
        for k, t in zip(ref_spikes[i], out.spike_times_s[i].tolist(), strict=False):
            s = int(torch.searchsorted(k_end, k, right=True))
            h = float(dt[s])
            start = float(t_end[s]) - (int(k_end[s]) - k) * h
            assert start - 1e-15 <= t <= start + h + 1e-15


def test_reset_at_crossing_is_smooth_and_close_to_the_loop() -> None:
    """Later spike times move continuously with a parameter (no micro-step jumps) under a
    constant input."""
    n = 41
    ps = torch.linspace(0.2, 0.2004, n, dtype=torch.float64)
    params = felif.FeLIFParams.default(n, dtype=torch.float64).replace(ps_c_m2=ps)
    on = torch.full((1,), 5e-9, dtype=torch.float64)
    dt = torch.full((1,), 1e-6, dtype=torch.float64)
    steps = torch.full((1,), 10_000, dtype=torch.int64)
    smooth = felif.felif_run_sequence(on, dt, steps, params, reset_at_crossing=True)
    plain = felif.felif_run_sequence(on, dt, steps, params)
    assert int(smooth.n_spikes.min()) >= 3
    t3 = smooth.spike_times_s[:, 2].numpy()
    d2 = np.diff(t3, 2)
    assert np.abs(d2).max() < 1e-7  # smooth in P_s: no 1 us steps
    jumps = np.diff(plain.spike_times_s[:, 2].numpy(), 2)
    assert np.abs(jumps).max() > 5e-7  # the plain loop resets at the micro-step's end
    assert np.abs(t3 - plain.spike_times_s[:, 2].numpy()).max() < 5e-6


def test_stop_after_and_padding() -> None:
    params = felif.FeLIFParams.default(2, dtype=torch.float64)
    cur = torch.tensor([[1e-8, 1e-8]], dtype=torch.float64)
    out = felif.felif_run_sequence(
        cur, torch.tensor([1e-6]), torch.tensor([40_000]), params, stop_after=torch.tensor([1, 0]),
        max_spikes=3, record=True,
    )  # fmt: skip
    assert out.n_spikes.tolist()[0] == 1 and out.n_spikes.tolist()[1] > 3
    assert torch.isnan(out.spike_times_s[0, 1:]).all() and out.spike_steps[0, 1] == -1
    assert torch.isfinite(out.spike_times_s[1]).all()


def test_hold_and_start_step_agree_between_kernel_and_fallback(monkeypatch) -> None:
    """The fit's options (reset at the crossing, half a micro-step held, per-neuron start)."""
    n = 5
    params = _population(n)
    cur, dt, steps = _segments(n)
    kw = {
        "reset_at_crossing": True,
        "hold_fraction": 0.5,
        "max_spikes": 256,
        "start_step": torch.tensor([0, 3, 50, 51, 400]),
    }
    state = (params.v_reset_v.clone(), -params.ps_c_m2.clone())
    fast = felif.felif_run_sequence(cur, dt, steps, params, state, **kw)
    monkeypatch.setattr(felif_sequence, "_kernel", lambda: None)
    ref = felif.felif_run_sequence(cur, dt, steps, params, state, **kw)
    assert fast.n_spikes.tolist() == ref.n_spikes.tolist() and int(fast.n_spikes.min()) >= 2
    k = int(fast.n_spikes.min())
    assert torch.allclose(fast.spike_times_s[:, :k], ref.spike_times_s[:, :k], atol=2e-8, rtol=0)
    monkeypatch.undo()
    # the held half step is the loop's reset on average: no drift against it (1 us steps; a
    # spike moves by less than a micro-step of input, the difference does not accumulate)
    one = {"dt": torch.tensor([1e-6]), "steps": torch.tensor([40_000])}
    cur1 = torch.tensor([[1e-8] * n], dtype=torch.float64)
    held = felif.felif_run_sequence(cur1, one["dt"], one["steps"], params, state, **kw)
    kw.pop("reset_at_crossing"), kw.pop("hold_fraction")
    plain = felif.felif_run_sequence(cur1, one["dt"], one["steps"], params, state, **kw)
    k = int(plain.n_spikes.min())
    assert k >= 10
    drift = (held.spike_times_s[:, :k] - plain.spike_times_s[:, :k]).abs().max()
    assert float(drift) < 2e-5  # against ~1 ms between spikes
