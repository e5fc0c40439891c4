"""FeCap: the K = 1 lumped limit, charge consistency with the FeLIF membrane, P-V loops, PUND,
switching versus pulse width and amplitude, sub-step convergence, stability and gradients."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from bruno_lab.devices.fecap import FeCapParams
from bruno_lab.devices.fecap_sim import domain_activation_fields, fecap_simulate
from bruno_lab.devices.fecap_waveforms import (
    pulse_waveform,
    pund_waveform,
    pv_loop_features,
    triangle_waveform,
)
from bruno_lab.devices.felif import FeLIFParams, felif_euler_step, felif_initial_state

PS = 0.22


def test_one_domain_is_the_lumped_model():
    p = FeCapParams.default(2).replace(e_a_spread_rel=0.3)
    assert torch.equal(domain_activation_fields(p, 1)[:, 0], p.e_a_v_m)
    t, v = triangle_waveform(2.5, 1e3, 1, 200)
    trace = fecap_simulate(t, v, p.select(slice(0, 1)), n_domains=1)
    # independent: explicit Euler of the lumped equations, in plain floats (typed again from the
    # design), with 2000 tiny steps per sample interval
    eps0 = 8.8541878128e-12
    d = p.select(slice(0, 1)).to_json()
    den = d["t_hzo_m"] * d["eps_int"] + d["t_int_m"] * d["eps_hzo"]
    k_c, k_d = d["eps_int"] / den, d["t_int_m"] / (eps0 * den)
    pol, ref = -PS, [-PS]
    tt, vv = t.tolist(), v.tolist()
    for j in range(len(tt) - 1):
        h = (tt[j + 1] - tt[j]) / 2000
        for k in range(2000):
            volt = vv[j] + (vv[j + 1] - vv[j]) * (k + 1) / 2000
            e = volt * k_c - pol * k_d
            x = min((d["e_a_v_m"] / (abs(e) + d["soft_e_v_m"])) ** d["alpha"], 80.0)
            pol += h * (math.copysign(PS, e) - pol) * math.exp(-x) / d["tau0_s"]
        ref.append(pol)
    ref = torch.tensor(ref, dtype=torch.float64)
    assert (trace.polarization_c_m2[0] - ref).abs().max() < 2e-3
    assert float(ref.max()) > 0.2  # the loop did switch


def test_current_is_the_felif_membrane_current():
    """Drive the FeLIF membrane with 5 nA, record V(t), replay V(t) on the K = 1 FeCap with the
    same parameters: the charge the capacitor draws must be the charge that was injected."""
    fp = FeLIFParams.default(1)
    s = felif_initial_state(fp, (1,))
    i_a, dt, every = 2e-8, 1e-7, 20
    times, volts = [0.0], [0.0]
    for k in range(1, 6501):
        s = felif_euler_step(torch.tensor([i_a], dtype=torch.float64), s, fp, dt)
        if k % every == 0:
            times.append(k * dt)
            volts.append(float(s.voltage_v[0]))
    assert 2.0 < max(volts) < 5.0 and float(s.polarization_c_m2[0]) > 0.2  # switched, no clip
    cp = FeCapParams.from_json({k: v for k, v in fp.to_json().items() if k in FeCapParams.specs()})
    tr = fecap_simulate(torch.tensor(times), torch.tensor(volts), cp, n_domains=1)
    injected = i_a * times[-1]
    assert float(tr.charge_c[0, -1]) == pytest.approx(injected, rel=0.01)
    assert float(tr.polarization_c_m2[0, -1]) == pytest.approx(
        float(s.polarization_c_m2[0]), abs=5e-3
    )


def _loop(p: FeCapParams, freq_hz: float, amp_v: float = 3.0, k: int = 16, **kw):
    t, v = triangle_waveform(amp_v, freq_hz, 2, 400)
    tr = fecap_simulate(t, v, p, n_domains=k, **kw)
    return v, tr, pv_loop_features(v, tr.polarization_c_m2)


def test_pv_loop_saturates_is_symmetric_and_slows_with_frequency():
    p = FeCapParams.default(1)
    _, tr, slow = _loop(p, 1e2)
    assert float(tr.polarization_c_m2.abs().max()) <= PS + 1e-12
    assert float(slow["pr_pos_c_m2"][0]) == pytest.approx(PS, rel=0.02)
    assert float(slow["pr_neg_c_m2"][0]) == pytest.approx(-PS, rel=0.02)
    assert abs(float(slow["imprint_v"][0])) < 5e-3  # unbiased loop: no imprint
    assert 0.5 < float(slow["vc_pos_v"][0]) < 2.5
    _, _, fast = _loop(p, 1e5)
    assert float(fast["vc_pos_v"][0]) > float(slow["vc_pos_v"][0]) + 0.1  # Merz law


def test_imprint_shifts_the_loop():
    p = FeCapParams.default(1).replace(imprint_v=0.3)
    _, _, f = _loop(p, 1e3)
    assert float(f["imprint_v"][0]) == pytest.approx(0.3, abs=0.02)


def test_pv_loop_features_on_an_analytic_loop():
    t = torch.linspace(0, 2, 4001, dtype=torch.float64)
    v = 3 * torch.sin(2 * math.pi * t)
    rising = torch.cos(2 * math.pi * t) > 0
    vc_p, vc_n, w = 1.2, -0.8, 0.3
    pol = torch.where(rising, PS * torch.tanh((v - vc_p) / w), PS * torch.tanh((v - vc_n) / w))
    f = pv_loop_features(v, pol)
    assert float(f["vc_pos_v"]) == pytest.approx(vc_p, abs=2e-3)
    assert float(f["vc_neg_v"]) == pytest.approx(vc_n, abs=2e-3)
    assert float(f["imprint_v"]) == pytest.approx(0.2, abs=2e-3)
    assert float(f["pr_pos_c_m2"]) == pytest.approx(PS * math.tanh(0.8 / w), rel=1e-3)
    assert float(f["pr_neg_c_m2"]) == pytest.approx(PS * math.tanh(-1.2 / w), rel=1e-3)


def test_pund_switching_charge_only_in_p_and_n():
    p = FeCapParams.default(1)
    t, v, windows = pund_waveform(3.0, 1e-6, 50e-9, 1e-6)
    tr = fecap_simulate(t, v, p)
    q = {}
    for name, (a, b) in windows.items():
        m = (t >= a) & (t <= b)
        seg = tr.charge_c[0][m]
        q[name] = float(seg[-1] - seg[0])
    two_ps_a = 2 * PS * 25e-12
    assert q["P"] == pytest.approx(two_ps_a, rel=0.05)
    assert q["N"] == pytest.approx(-two_ps_a, rel=0.05)
    assert abs(q["U"]) < 0.02 * two_ps_a and abs(q["D"]) < 0.02 * two_ps_a
    peak = {
        n: float(tr.current_a[0][(t >= a) & (t <= b)].abs().max()) for n, (a, b) in windows.items()
    }
    assert peak["P"] > 3 * peak["U"]  # switching current on top of the linear one


def _switched(p: FeCapParams, amp: float, width: float, **kw) -> float:
    t, v = pulse_waveform(amp, width, rise_s=5e-9)
    tr = fecap_simulate(t, v, p, **kw)
    return float(tr.polarization_c_m2[0, -1] - tr.polarization_c_m2[0, 0])


@pytest.mark.slow
def test_switched_polarization_grows_with_width_and_amplitude():
    p = FeCapParams.default(1)
    widths = [30e-9, 1e-6, 1e-4, 1e-3]
    amps = [0.5, 1.5, 3.0]
    grid = [[_switched(p, a, w) for w in widths] for a in amps]
    for row in grid:
        # longer is more (up to the slow back-switching at 0 V after a saturating pulse)
        assert all(b >= a - 0.01 for a, b in itertools.pairwise(row))
    for j in range(len(widths)):
        assert grid[0][j] < grid[1][j] < grid[2][j] + 1e-4
    assert grid[0][0] < 0.05 * 2 * PS  # 0.5 V for 30 ns hardly switches
    assert grid[2][1] > 0.95 * 2 * PS  # 3 V for 1 µs switches fully


def test_substep_convergence_and_fast_edges_are_stable():
    p = FeCapParams.default(1)
    base = _switched(p, 2.0, 1e-6)
    fine = _switched(p, 2.0, 1e-6, max_dv_substep_v=0.005, min_substep_s=5e-11)
    assert fine == pytest.approx(base, rel=0.02)
    _, _, f1 = _loop(p, 1e3)
    _, _, f2 = _loop(p, 1e3, max_dv_substep_v=0.005)
    assert float(f2["vc_pos_v"][0]) == pytest.approx(float(f1["vc_pos_v"][0]), rel=0.01)
    t = torch.tensor([0.0, 1e-6, 1e-6 + 1e-12, 2e-6])  # a 1 ps edge to 3 V
    v = torch.tensor([0.0, 0.0, 3.0, 3.0])
    tr = fecap_simulate(t, v, p)
    assert torch.isfinite(tr.current_a).all() and torch.isfinite(tr.charge_c).all()
    assert float(tr.polarization_c_m2[0, -1]) == pytest.approx(PS, rel=0.05)


def test_batch_equals_single_devices_and_gradcheck():
    p = FeCapParams.default(3).replace(
        e_a_v_m=torch.tensor([11e8, 12.7e8, 14e8], dtype=torch.float64),
        imprint_v=torch.tensor([0.0, 0.1, -0.2], dtype=torch.float64),
    )
    t, v = triangle_waveform(2.5, 1e4, 1, 60)
    batch = fecap_simulate(t, v, p, n_domains=4)
    for i in range(3):
        one = fecap_simulate(t, v, p.select(slice(i, i + 1)), n_domains=4)
        assert torch.allclose(one.current_a[0], batch.current_a[i], rtol=1e-12, atol=1e-20)

    def run(e_a_1e8, ps, spread):
        q = p.select(slice(0, 1)).replace(e_a_v_m=e_a_1e8 * 1e8, ps_c_m2=ps, e_a_spread_rel=spread)
        tr = fecap_simulate(t[:12], v[:12], q, n_domains=3)
        return tr.polarization_c_m2, tr.current_a * 1e6

    args = tuple(
        torch.tensor([x], dtype=torch.float64, requires_grad=True) for x in (12.0, 0.22, 0.15)
    )
    assert torch.autograd.gradcheck(run, args, fast_mode=True)


def test_pv_loop_features_gradcheck():
    t = torch.linspace(0, 1, 201, dtype=torch.float64)
    v = 3 * torch.sin(2 * math.pi * t)
    rising = torch.cos(2 * math.pi * t) > 0

    def feats(vc_p, w):
        pol = torch.where(rising, PS * torch.tanh((v - vc_p) / w), PS * torch.tanh((v + 1.0) / w))
        f = pv_loop_features(v, pol)
        return f["vc_pos_v"], f["pr_pos_c_m2"], f["imprint_v"]

    args = (
        torch.tensor(1.1, dtype=torch.float64, requires_grad=True),
        torch.tensor(0.4, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(feats, args)


def test_awkward_time_grids_keep_every_sample():
    """Sample times whose differences do not add up exactly in binary floating point."""
    p = FeCapParams.default(2)
    t = torch.tensor([0.1, 0.3, 0.7, 1.3, 1.9000000000000001, 2.3], dtype=torch.float64) * 1e-6
    v = torch.tensor([0.0, 0.7, 2.9, 3.0, -0.2, -3.0], dtype=torch.float64)
    tr = fecap_simulate(t, v, p, n_domains=3)
    assert tr.current_a.shape == (2, 6) and tr.polarization_c_m2.shape == (2, 6)
    assert torch.isfinite(tr.current_a).all()
    # per-domain initial state: all domains at +P_s is the same as a scalar +P_s
    a = fecap_simulate(
        t, v, p, n_domains=3, initial_polarization_c_m2=torch.full((2, 3), PS, dtype=torch.float64)
    )
    b = fecap_simulate(t, v, p, n_domains=3, initial_polarization_c_m2=PS)
    assert torch.allclose(a.polarization_c_m2, b.polarization_c_m2, rtol=1e-12, atol=1e-15)
