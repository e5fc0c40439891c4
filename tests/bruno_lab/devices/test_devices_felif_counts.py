"""``felif_counts.step_counts``: the device's reset at each crossing, spikes counted per window,
against the plain ``felif_euler_step`` + ``felif_reset`` loop and ``felif_run_sequence``."""

from __future__ import annotations

import pytest
import torch

from bruno_lab.devices import felif, felif_counts
from bruno_lab.devices.params import sample_population

F64 = torch.float64


def _population(n: int) -> felif.FeLIFParams:
    spread = dict.fromkeys(("area_m2", "ps_c_m2", "t_hzo_m", "i0_a_m2"), 0.1)
    return sample_population(
        felif.FeLIFParams.default(1), spread, n, torch.Generator().manual_seed(2)
    )


def _loop_counts(current, params, n_windows, n_micro):
    state = felif.felif_initial_state(params, current.shape)
    counts = []
    for _ in range(n_windows):
        c = torch.zeros(current.shape, dtype=torch.int64)
        for _ in range(n_micro):
            state = felif.felif_euler_step(current, state, params, 1e-6)
            hit = state.voltage_v >= params.v_thr_v
            c += hit.to(torch.int64)
            state = felif.felif_reset(state, hit, params)
        counts.append(c)
    return torch.stack(counts), state


@pytest.mark.parametrize("kernel", [True, False], ids=["c-kernel", "torch-fallback"])
def test_counts_match_the_euler_reset_loop(kernel, monkeypatch):
    params = _population(5)
    current = torch.tensor([[0.0, 3e-9, 12e-9, 25e-9, 60e-9]] * 2, dtype=F64)  # batch of 2
    if not kernel:
        monkeypatch.setattr(felif_counts, "_kernel", lambda kind: None)
    ref, ref_state = _loop_counts(current, params, 4, 300)
    state = felif.felif_initial_state(params, current.shape)
    got = []
    for _ in range(4):
        c, state = felif_counts.step_counts(current, state, params, 300, 1e-6)
        got.append(c)
    assert torch.equal(torch.stack(got), ref)
    assert int(ref[:, :, 4].sum()) >= 8  # the strong input fires more than once per window
    assert torch.allclose(state.voltage_v, ref_state.voltage_v, atol=1e-9, rtol=0)


def test_float32_counts_agree_with_the_lab_sequence():
    """Ten 1 ms windows in float32 (the training path) against ``felif_run_sequence`` in
    float64 (the simulated lab): the same total count per neuron within one spike."""
    params = _population(8)
    current = torch.linspace(0.0, 4e-8, 8, dtype=F64)
    lab = felif.felif_run_sequence(
        current.unsqueeze(0).expand(10, 8),
        torch.full((10,), 1e-6, dtype=F64),
        torch.full((10,), 1000),
        params,
        max_spikes=128,
    )
    p32 = params.to(dtype=torch.float32)
    state = felif.felif_initial_state(p32, (8,), dtype=torch.float32)
    total = torch.zeros(8, dtype=torch.int64)
    for _ in range(10):
        c, state = felif_counts.step_counts(current.float(), state, p32)
        total += c
    assert int(lab.n_spikes.sum()) > 50
    assert int((total - lab.n_spikes).abs().max()) <= 1
