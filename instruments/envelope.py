"""The safety envelope: declared limits per device kind and probe card, enforced in drivers.

An ``Envelope`` is data (loaded from the station file's ``envelope:`` mapping or a YAML file):
``default`` limits, a patch per device kind (``fecap``, ``rram``, ``felif``) that replaces
fields of the default, and a patch per probe card that can only tighten (the needles' limits
hold whatever the device is). A ``SafetyGuard`` is the runtime side every driver holds: it
knows the envelope, the mounted probe card, the kind of device under the needles (set by the
bench when the prober moves) and how to ask the prober for contact, and it raises
``EnvelopeError`` naming the limit, the value and the instrument before anything is sent.

Pulse energy is the worst case ``sum(v**2) * dt / pulse_load_ohm`` over one pulse (a pulse is a
contiguous run of samples with ``|v| > pulse_threshold_v``): the energy a load as low as
``pulse_load_ohm`` (a shorted device behind the needles' series resistance) would take.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from pydantic import ConfigDict, Field, ValidationError

from bruno_lab.errors import EnvelopeError, PlanError
from bruno_lab.strict import StrictModel

_FIELDS_DOC = {
    "max_voltage_v": "largest |V| any source may apply, V",
    "max_current_a": "largest current compliance / limit, A",
    "max_pulse_width_s": "longest pulse (|v| above pulse_threshold_v), s",
    "max_pulse_energy_j": "largest worst-case energy of one pulse, J",
    "max_ramp_rate_v_per_s": "fastest voltage change (AWG edges, SMU sweep steps), V/s",
    "pulse_load_ohm": "worst-case load the pulse energy assumes, ohm",
    "pulse_threshold_v": "|v| above which a sample belongs to a pulse, V",
    "require_compliance_before_output": "SMU output on only after a compliance was set",
    "require_contact_for_output": "outputs on only while the prober reports contact",
    "max_wordline_v": "array tester: largest |V| on a word line (gate), V (default max_voltage_v)",
    "max_bitline_v": "array tester: largest |V| on a bit line, V (default max_voltage_v)",
    "max_sourceline_v": "array tester: largest |V| on a source line, V (default max_voltage_v)",
    "forbid_hot_switching": "switch matrix: no relay change while a source output is on",
}


class Limits(StrictModel):
    """The effective limits for one device kind on one probe card (SI units)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_voltage_v: float = Field(5.0, gt=0)
    max_current_a: float = Field(1e-2, gt=0)
    max_pulse_width_s: float = Field(1e-2, gt=0)
    max_pulse_energy_j: float = Field(1e-6, gt=0)
    max_ramp_rate_v_per_s: float | None = Field(None, gt=0)
    pulse_load_ohm: float = Field(1e3, gt=0)
    pulse_threshold_v: float = Field(0.05, gt=0)
    require_compliance_before_output: bool = True
    require_contact_for_output: bool = True
    max_wordline_v: float | None = Field(None, gt=0)
    max_bitline_v: float | None = Field(None, gt=0)
    max_sourceline_v: float | None = Field(None, gt=0)
    forbid_hot_switching: bool = True

    def line_limit_v(self, line: str) -> float:
        """The |V| limit of an array line (``wordline``, ``bitline``, ``sourceline``)."""
        value = getattr(self, f"max_{line}_v")
        return self.max_voltage_v if value is None else min(value, self.max_voltage_v)


class LimitsPatch(StrictModel):
    """Some fields of ``Limits``; unset fields leave the base value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_voltage_v: float | None = Field(None, gt=0)
    max_current_a: float | None = Field(None, gt=0)
    max_pulse_width_s: float | None = Field(None, gt=0)
    max_pulse_energy_j: float | None = Field(None, gt=0)
    max_ramp_rate_v_per_s: float | None = Field(None, gt=0)
    pulse_load_ohm: float | None = Field(None, gt=0)
    pulse_threshold_v: float | None = Field(None, gt=0)
    require_compliance_before_output: bool | None = None
    require_contact_for_output: bool | None = None
    max_wordline_v: float | None = Field(None, gt=0)
    max_bitline_v: float | None = Field(None, gt=0)
    max_sourceline_v: float | None = Field(None, gt=0)
    forbid_hot_switching: bool | None = None


def _default_kinds() -> dict[str, LimitsPatch]:
    # FeCap: switching currents of a 25 um^2 cell are ~0.1 mA; RRAM: forming limited to 1 mA.
    return {
        "fecap": LimitsPatch(max_voltage_v=5.0, max_current_a=1e-2, max_ramp_rate_v_per_s=1e10),
        "rram": LimitsPatch(max_voltage_v=5.0, max_current_a=1e-3, max_ramp_rate_v_per_s=1e10),
        "felif": LimitsPatch(max_voltage_v=5.0, max_current_a=1e-3, max_ramp_rate_v_per_s=1e10),
        # a 1T1R array: the gate limits every cell's current; forming pulses are 100 us at 4 V
        "rram_array": LimitsPatch(
            max_voltage_v=5.0,
            max_current_a=2e-3,
            max_pulse_energy_j=5e-6,
            max_wordline_v=3.6,
            max_bitline_v=4.5,
            max_sourceline_v=2.5,
            max_ramp_rate_v_per_s=1e10,
        ),
    }


class Envelope(StrictModel):
    """Declared limits: ``default``, per device kind (replacing), per probe card (tightening)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Limits = Field(default_factory=Limits)
    kinds: dict[str, LimitsPatch] = Field(default_factory=_default_kinds)
    probe_cards: dict[str, LimitsPatch] = Field(default_factory=dict)
    probe_card: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, *, where: str = "envelope") -> Envelope:
        """Validate a mapping (the station file's ``envelope:``); bad input names the field."""
        if not data:
            return cls()
        try:
            env = cls.model_validate(dict(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise PlanError(
                f"{where}.{field}: {first['msg']} (got {first.get('input')!r})"
            ) from exc
        if env.probe_card is not None and env.probe_card not in env.probe_cards:
            raise PlanError(
                f"{where}.probe_card: {env.probe_card!r} is not one of {sorted(env.probe_cards)}"
            )
        return env

    @classmethod
    def from_file(cls, path: str | Path) -> Envelope:
        """Load a YAML file holding an envelope mapping (or a station file with ``envelope:``)."""
        from bruno_lab.yamlio import load_yaml_file

        path = Path(path)
        data = load_yaml_file(path, "envelope").data or {}
        if not isinstance(data, dict):
            raise PlanError(f"{path}: an envelope is a mapping of limits")
        if "instruments" in data:
            data = data.get("envelope") or {}
        return cls.from_mapping(data, where=str(path))

    def limits_for(self, kind: str | None) -> Limits:
        """Effective limits for a device ``kind`` (None: unknown, the default) on the card."""
        values = self.default.model_dump()
        if kind is not None and kind in self.kinds:
            values.update(self.kinds[kind].model_dump(exclude_none=True))
        if self.probe_card is not None:
            for field, card_value in (
                self.probe_cards[self.probe_card].model_dump(exclude_none=True).items()
            ):
                base = values[field]
                if isinstance(card_value, bool):
                    values[field] = bool(base) or card_value
                elif field in ("pulse_load_ohm",):
                    values[field] = card_value if base is None else min(base, card_value)
                else:
                    values[field] = card_value if base is None else min(base, card_value)
        return Limits(**values)


@dataclass(frozen=True)
class PulseStats:
    """What the envelope measured on a waveform: widest pulse, largest energy, steepest edge."""

    max_abs_voltage_v: float
    max_pulse_width_s: float
    max_pulse_energy_j: float
    max_ramp_rate_v_per_s: float


def pulse_stats(samples_v: np.ndarray, sample_rate_hz: float, limits: Limits) -> PulseStats:
    """Measure a waveform (one period, played as held samples) against the pulse limits."""
    v = np.asarray(samples_v, dtype=np.float64)
    dt_s = 1.0 / sample_rate_hz
    above = np.abs(v) > limits.pulse_threshold_v
    widest_s, energy_j = 0.0, 0.0
    if above.any():
        if not above.all() and above[0] and above[-1]:  # a pulse wraps the period end
            shift = int(np.argmin(above))
            v, above = np.roll(v, -shift), np.roll(above, -shift)
        edges = np.diff(np.concatenate(([0], above.astype(np.int8), [0])))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        widths = (stops - starts) * dt_s
        cumulative = np.concatenate(([0.0], np.cumsum(v * v)))
        energies = (cumulative[stops] - cumulative[starts]) * dt_s / limits.pulse_load_ohm
        widest_s, energy_j = float(widths.max()), float(energies.max())
    # edges between samples, including the jump from the last sample back to the first
    ramp = float(np.max(np.abs(np.diff(np.append(v, v[0]))))) * sample_rate_hz
    return PulseStats(float(np.max(np.abs(v))), widest_s, energy_j, ramp)


class SafetyGuard:
    """The runtime envelope every driver of a bench shares.

    ``device_kind`` is what the needles touch (None: unknown, default limits);
    ``contact_probe`` asks the prober whether the chuck is in contact (None: no prober known,
    so outputs are refused while ``require_contact_for_output`` holds).
    """

    def __init__(
        self,
        envelope: Envelope | None = None,
        *,
        device_kind: str | None = None,
        contact_probe: Callable[[], bool] | None = None,
    ) -> None:
        self.envelope = envelope if envelope is not None else Envelope()
        self.device_kind = device_kind
        self.contact_probe = contact_probe
        self.outputs_probe: Callable[[], list[str]] | None = None
        """Names the source outputs that are (or may be) on; the bench sets it."""

    @property
    def limits(self) -> Limits:
        return self.envelope.limits_for(self.device_kind)

    def refuse(self, instrument: str, setting: str, value: Any, limit: str, bound: Any) -> NoReturn:
        where = f"device kind {self.device_kind or 'unknown'}"
        if self.envelope.probe_card:
            where += f", probe card {self.envelope.probe_card}"
        raise EnvelopeError(
            f"{instrument}: {setting}={value!r} refused: beyond the safety envelope limit "
            f"{limit}={bound!r} ({where}); nothing was sent"
        )

    def check_voltage(self, instrument: str, setting: str, voltage_v: float) -> None:
        bound = self.limits.max_voltage_v
        if not math.isfinite(voltage_v) or abs(voltage_v) > bound:
            self.refuse(instrument, setting, voltage_v, "max_voltage_v", bound)

    def check_current(self, instrument: str, setting: str, current_a: float) -> None:
        bound = self.limits.max_current_a
        if not math.isfinite(current_a) or abs(current_a) > bound:
            self.refuse(instrument, setting, current_a, "max_current_a", bound)

    def check_contact(self, instrument: str, setting: str) -> None:
        """Outputs on only while the prober reports contact (if the envelope requires it)."""
        if not self.limits.require_contact_for_output:
            return
        in_contact = self.contact_probe() if self.contact_probe is not None else None
        if not in_contact:
            state = "no prober on this bench" if in_contact is None else "chuck separated"
            self.refuse(instrument, setting, True, "require_contact_for_output", state)

    def check_line(self, instrument: str, line: str, voltage_v: float) -> None:
        """An array line's voltage (``line``: wordline, bitline or sourceline) within its limit."""
        bound = self.limits.line_limit_v(line)
        if not math.isfinite(voltage_v) or abs(voltage_v) > bound:
            self.refuse(instrument, f"{line} voltage", voltage_v, f"max_{line}_v", bound)

    def check_pulse(
        self, instrument: str, setting: str, amplitude_v: float, width_s: float
    ) -> None:
        """One rectangular pulse: its width and its worst-case energy into ``pulse_load_ohm``."""
        limits = self.limits
        if not math.isfinite(width_s) or width_s > limits.max_pulse_width_s:
            self.refuse(instrument, f"{setting} width", width_s, "max_pulse_width_s",
                        limits.max_pulse_width_s)  # fmt: skip
        energy_j = amplitude_v * amplitude_v * width_s / limits.pulse_load_ohm
        if energy_j > limits.max_pulse_energy_j:
            self.refuse(instrument, f"{setting} energy", energy_j, "max_pulse_energy_j",
                        limits.max_pulse_energy_j)  # fmt: skip

    def check_no_hot_switching(self, instrument: str, what: str) -> None:
        """Refuse a relay change while a source output is (or may be) on."""
        if not self.limits.forbid_hot_switching or self.outputs_probe is None:
            return
        live = self.outputs_probe()
        if live:
            self.refuse(instrument, what, f"outputs on: {', '.join(live)}",
                        "forbid_hot_switching", True)  # fmt: skip

    def check_compliance_set(self, instrument: str, compliance_a: float | None) -> None:
        if self.limits.require_compliance_before_output and compliance_a is None:
            self.refuse(
                instrument, "output_enabled", True, "require_compliance_before_output", True
            )
        if compliance_a is not None:
            self.check_current(instrument, "current_limit_a", compliance_a)

    def check_ramp(self, instrument: str, setting: str, rate_v_per_s: float) -> None:
        bound = self.limits.max_ramp_rate_v_per_s
        if bound is not None and not rate_v_per_s <= bound:
            self.refuse(instrument, setting, rate_v_per_s, "max_ramp_rate_v_per_s", bound)

    def check_waveform(
        self, instrument: str, setting: str, samples_v: np.ndarray, sample_rate_hz: float
    ) -> PulseStats:
        """Check |V|, pulse width, pulse energy and edge rate of one waveform period."""
        limits = self.limits
        v = np.asarray(samples_v, dtype=np.float64)
        if v.size == 0 or not np.all(np.isfinite(v)):
            self.refuse(instrument, setting, "non-finite or empty samples", "max_voltage_v", None)
        stats = pulse_stats(v, sample_rate_hz, limits)
        self.check_voltage(instrument, setting, stats.max_abs_voltage_v)
        if stats.max_pulse_width_s > limits.max_pulse_width_s:
            self.refuse(
                instrument, "pulse width", stats.max_pulse_width_s, "max_pulse_width_s",
                limits.max_pulse_width_s,
            )  # fmt: skip
        if stats.max_pulse_energy_j > limits.max_pulse_energy_j:
            self.refuse(
                instrument, "pulse energy", stats.max_pulse_energy_j, "max_pulse_energy_j",
                limits.max_pulse_energy_j,
            )  # fmt: skip
        self.check_ramp(instrument, "edge rate", stats.max_ramp_rate_v_per_s)
        return stats

    def check_sweep(
        self, instrument: str, voltages_v: np.ndarray, delay_s: float, start_v: float = 0.0
    ) -> None:
        """Check a list sweep: every |V|, and each step's rate (step / dwell) from ``start_v``."""
        v = np.asarray(voltages_v, dtype=np.float64)
        if v.size == 0 or not np.all(np.isfinite(v)):
            self.refuse(instrument, "sweep voltages", "non-finite or empty", "max_voltage_v", None)
        self.check_voltage(instrument, "sweep voltage", float(np.max(np.abs(v))))
        steps = np.abs(np.diff(np.concatenate(([start_v], v))))
        largest = float(steps.max())
        if largest > 0:
            rate = math.inf if delay_s <= 0 else largest / delay_s
            self.check_ramp(instrument, "sweep step rate", rate)


def describe_fields() -> dict[str, str]:
    """Field name -> meaning, for docs and error help."""
    return dict(_FIELDS_DOC)
