"""The safety envelope: limits per kind and probe card, pulse measures, and refusals that
never reach the instrument, including requests generated at random (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bruno_lab.errors import PlanError
from instruments.envelope import Envelope, Limits, LimitsPatch, SafetyGuard, pulse_stats
from instruments.errors import EnvelopeError
from instruments.keithley2450 import Keithley2450
from instruments.keysight33500b import Keysight33500B
from instruments.testing import FakeResource

SMU_CONNECT = [("*IDN?", "KEITHLEY INSTRUMENTS,MODEL 2450,1,1"), ("*LANG?", "SCPI"), ("*CLS", None)]
AWG_CONNECT = [("*IDN?", "Agilent Technologies,33522B,MY1,1"), ("*CLS", None)]
MAX_V, MAX_A = 3.0, 1e-3


def strict_guard() -> SafetyGuard:
    limits = Limits(max_voltage_v=MAX_V, max_current_a=MAX_A, max_ramp_rate_v_per_s=1e12)
    return SafetyGuard(Envelope(default=limits, kinds={}), contact_probe=lambda: True)


def test_kind_limits_replace_the_default_and_cards_only_tighten():
    env = Envelope.from_mapping(
        {
            "default": {"max_voltage_v": 5.0, "max_current_a": 1e-2},
            "kinds": {"rram": {"max_current_a": 1e-3}, "fecap": {"max_voltage_v": 8.0}},
            "probe_cards": {"thin": {"max_voltage_v": 6.0, "max_current_a": 5e-2}},
            "probe_card": "thin",
        }
    )
    assert env.limits_for(None).max_voltage_v == 5.0
    assert env.limits_for("rram").max_current_a == 1e-3
    assert env.limits_for("fecap").max_voltage_v == 6.0  # the card's needles hold 6 V
    assert env.limits_for("fecap").max_current_a == 1e-2  # the card cannot loosen a limit


def test_malformed_envelope_names_the_field():
    with pytest.raises(PlanError, match=r"station.yaml.*kinds.rram.max_current_a"):
        Envelope.from_mapping({"kinds": {"rram": {"max_current_a": -1}}}, where="station.yaml")
    with pytest.raises(PlanError, match="probe_card"):
        Envelope.from_mapping({"probe_card": "missing"})
    with pytest.raises(PlanError, match="max_volts"):
        Envelope.from_mapping({"default": {"max_volts": 1}})


def test_envelope_from_a_station_file(tmp_path):
    path = tmp_path / "station.yaml"
    path.write_text("instruments: {}\nenvelope:\n  default: {max_voltage_v: 2.5}\n")
    assert Envelope.from_file(path).limits_for(None).max_voltage_v == 2.5


def test_refusal_names_limit_value_instrument_and_device_kind():
    guard = SafetyGuard(
        Envelope(kinds={"rram": LimitsPatch(max_current_a=1e-3)}), device_kind="rram"
    )
    with pytest.raises(EnvelopeError) as info:
        guard.check_current("smu [K2450]", "current_limit_a", 2e-3)
    text = str(info.value)
    assert "smu [K2450]" in text and "current_limit_a=0.002" in text
    assert "max_current_a=0.001" in text and "rram" in text


def test_pulse_stats_of_a_rectangular_pulse_match_the_analytic_values():
    rate_hz, amplitude_v, n_high = 1e6, 2.0, 250
    v = np.zeros(1000)
    v[100 : 100 + n_high] = amplitude_v
    limits = Limits(pulse_load_ohm=1e3)
    stats = pulse_stats(v, rate_hz, limits)
    width_s = n_high / rate_hz
    assert stats.max_pulse_width_s == pytest.approx(width_s)
    assert stats.max_pulse_energy_j == pytest.approx(amplitude_v**2 * width_s / 1e3)
    assert stats.max_ramp_rate_v_per_s == pytest.approx(amplitude_v * rate_hz)


def test_a_pulse_wrapping_the_period_end_is_one_pulse():
    v = np.zeros(100)
    v[:10] = 1.0
    v[-10:] = 1.0
    assert pulse_stats(v, 1.0, Limits()).max_pulse_width_s == pytest.approx(20.0)


def test_contact_is_required_unless_the_envelope_waives_it():
    no_prober = SafetyGuard(Envelope())
    with pytest.raises(EnvelopeError, match="no prober"):
        no_prober.check_contact("awg", "output_enabled")
    waived = SafetyGuard(Envelope(default=Limits(require_contact_for_output=False), kinds={}))
    waived.check_contact("awg", "output_enabled")


# -- random requests beyond the envelope never reach the instrument --------------------------


def beyond(limit: float) -> st.SearchStrategy[float]:
    magnitude = st.floats(min_value=limit * (1 + 1e-9), max_value=200.0, allow_nan=False)
    return st.builds(lambda m, s: m * s, magnitude, st.sampled_from([1.0, -1.0]))


@settings(max_examples=100, deadline=None)
@given(voltage_v=beyond(MAX_V))
def test_random_smu_voltages_beyond_the_envelope_are_never_sent(voltage_v):
    resource = FakeResource(SMU_CONNECT)
    smu = Keithley2450(resource, guard=strict_guard())
    with pytest.raises(EnvelopeError, match="max_voltage_v"):
        smu.source_voltage_v = voltage_v
    assert resource.sent == ["*IDN?", "*LANG?", "*CLS"]


@settings(max_examples=100, deadline=None)
@given(current_a=st.floats(min_value=MAX_A * 1.0001, max_value=1.05))
def test_random_current_limits_beyond_the_envelope_are_never_sent(current_a):
    resource = FakeResource(SMU_CONNECT)
    smu = Keithley2450(resource, guard=strict_guard())
    with pytest.raises(EnvelopeError, match="max_current_a"):
        smu.configure_voltage_source(20.0, current_a, 1.0)
    with pytest.raises(EnvelopeError, match="max_current_a"):
        smu.current_limit_a = current_a
    assert resource.sent == ["*IDN?", "*LANG?", "*CLS"]


@settings(max_examples=60, deadline=None)
@given(
    inside=arrays(np.float64, st.integers(1, 50), elements=st.floats(-MAX_V, MAX_V)),
    outside=beyond(MAX_V),
    where=st.integers(0, 50),
)
def test_random_sweeps_with_one_point_beyond_are_never_sent(inside, outside, where):
    voltages = np.insert(inside, min(where, inside.size), outside)
    resource = FakeResource(SMU_CONNECT)
    smu = Keithley2450(resource, guard=strict_guard())
    with pytest.raises(EnvelopeError, match="max_voltage_v"):
        smu.sweep_voltage_list(voltages, 1e-4, 1e-3)
    assert resource.sent == ["*IDN?", "*LANG?", "*CLS"]


@settings(max_examples=100, deadline=None)
@given(
    samples=arrays(np.float64, st.integers(8, 400), elements=st.floats(-20.0, 20.0)),
    rate_hz=st.floats(1e3, 250e6),
    max_width_s=st.floats(1e-8, 1e-3),
    max_energy_j=st.floats(1e-12, 1e-6),
)
def test_random_waveforms_are_sent_only_within_every_limit(
    samples, rate_hz, max_width_s, max_energy_j
):
    limits = Limits(
        max_voltage_v=MAX_V, max_pulse_width_s=max_width_s, max_pulse_energy_j=max_energy_j
    )
    guard = SafetyGuard(Envelope(default=limits, kinds={}), contact_probe=lambda: True)
    resource = FakeResource(AWG_CONNECT)
    awg = Keysight33500B(resource, guard=guard)
    # an independent check: the widest run above threshold and its energy, by a plain loop
    dt_s, widest, energy, run, run_energy = 1.0 / rate_hz, 0.0, 0.0, 0, 0.0
    wrapped = np.concatenate((samples, samples))  # a pulse may wrap the period end
    if np.all(np.abs(samples) > limits.pulse_threshold_v):
        wrapped = samples  # one pulse as long as the period
    for x in wrapped:
        if abs(x) > limits.pulse_threshold_v:
            run += 1
            run_energy += x * x * dt_s / limits.pulse_load_ohm
        else:
            run, run_energy = 0, 0.0
        widest = max(widest, run * dt_s)
        energy = max(energy, run_energy)
    allowed = (
        np.max(np.abs(samples)) <= MAX_V
        and widest <= max_width_s * (1 + 1e-9)
        and energy <= max_energy_j * (1 + 1e-9)
    )
    if allowed:
        return  # the scripted resource would need the whole upload: covered elsewhere
    with pytest.raises(EnvelopeError):
        awg.upload_waveform("rnd", samples, rate_hz)
    assert resource.sent == ["*IDN?", "*CLS"]
