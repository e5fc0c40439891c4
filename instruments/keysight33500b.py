"""Keysight (Agilent) 33500B-series waveform generator, channel 1, SCPI (33500 Series Operating
and Service Guide, "SCPI Programming Reference").

An arbitrary waveform is uploaded as IEEE 488.2 binary block of float32 in [-1, 1]
(``FORM:BORD SWAP``: little-endian) or as ASCII, then amplitude (Vpp) and offset are set so
that the device sees exactly ``samples_v``: ``v = offset + sample * Vpp / 2`` into a high-Z
load (``OUTP1:LOAD INF``). Bursts are bus-triggered (``*TRG``).

Safety: every upload is checked against the envelope (|V|, pulse width, pulse energy, edge
rate) before a byte is sent; the output is switched off first (an upload never changes what a
live output plays) and can be switched on only with a waveform this driver uploaded and the
prober in contact.

    awg.upload_waveform("pund", samples_v, sample_rate_hz=100e6)
    awg.configure_burst(1)
    awg.output_enabled = True
    awg.trigger()
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from instruments.errors import SettingRangeError
from instruments.roles import WaveformGenerator, register_model
from instruments.scpi import ScpiInstrument, ScpiProperty, scpi_control, scpi_setting
from instruments.validators import as_bool, format_on_off, in_range, integer_in_range, parse_bool

MIN_POINTS, MAX_POINTS = 8, 1_000_000  # standard arb memory per channel
MIN_VPP_HIGH_Z = 2e-3  # 1 mVpp into 50 ohm is 2 mVpp into a high-Z load
MAX_LEVEL_HIGH_Z_V = 10.0  # |offset| + Vpp/2 into a high-Z load
_ARB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,11}$")


def _format_int(value: int) -> str:
    return str(int(value))


@register_model("keysight33500b", role="awg")
class Keysight33500B(ScpiInstrument, WaveformGenerator):
    """Keysight 33500B AWG (e.g. 33522B), channel 1."""

    IDENTITY_PATTERN = r"(Agilent|Keysight) Technologies,335\d\d[AB],"
    ERROR_QUERY = "SYST:ERR?"

    amplitude_vpp = scpi_setting(
        "SOUR1:VOLT {}", unit="Vpp", validator=in_range(MIN_VPP_HIGH_Z, 2 * MAX_LEVEL_HIGH_Z_V),
        envelope_key="level", doc="Set the peak-to-peak amplitude into a high-Z load.",
    )  # fmt: skip
    offset_v = scpi_setting(
        "SOUR1:VOLT:OFFS {}", unit="V", validator=in_range(-MAX_LEVEL_HIGH_Z_V, MAX_LEVEL_HIGH_Z_V),
        envelope_key="level", doc="Set the DC offset into a high-Z load.",
    )  # fmt: skip
    sample_rate_hz = scpi_setting(
        "SOUR1:FUNC:ARB:SRAT {}", unit="Sa/s", validator=in_range(1e-6, 250e6),
        envelope_key="level", doc="Set the arbitrary waveform sample rate.",
    )  # fmt: skip
    burst_cycles = scpi_setting(
        "SOUR1:BURS:NCYC {}", unit="cycles", validator=integer_in_range(1, 100_000_000),
        formatter=_format_int, doc="Set the number of periods played per trigger.",
    )  # fmt: skip
    output_enabled = scpi_control(
        "OUTP1?", "OUTP1 {}", parse_bool, formatter=format_on_off, validator=as_bool,
        envelope_key="output", doc="Control whether channel 1's output is on.",
    )  # fmt: skip

    def __init__(self, resource: Any, **kwargs: Any) -> None:
        self._forget()
        super().__init__(resource, **kwargs)

    def _forget(self) -> None:
        self._normalized: np.ndarray | None = None  # the uploaded samples in [-1, 1]
        self._levels: dict[str, float | None] = {
            "amplitude_vpp": None, "offset_v": None, "sample_rate_hz": None,
        }  # fmt: skip
        self._output_on: bool | None = None

    def _after_reset(self) -> None:
        self._forget()
        self._output_on = False

    def _after_set(self, name: str, value: Any) -> None:
        if name in self._levels:
            self._levels[name] = float(value)
        elif name == "output_enabled":
            self._output_on = bool(value)

    def played_waveform_v(self, **override: float) -> tuple[np.ndarray, float] | None:
        """What the device sees over one period, ``(samples_v, sample_rate_hz)``, if known."""
        levels = {**self._levels, **override}
        offset, vpp, rate = (levels.get(k) for k in ("offset_v", "amplitude_vpp", "sample_rate_hz"))
        if self._normalized is None or offset is None or vpp is None or rate is None:
            return None
        return offset + self._normalized * (vpp / 2.0), float(rate)

    def _check_envelope(self, prop: ScpiProperty, value: Any) -> None:
        if prop.envelope_key == "output":
            if value:
                self._check_played(prop.name, {})
                self.guard.check_contact(self.name, prop.name)
        elif prop.envelope_key == "level":
            if self._output_on is not False:  # a live output would play it now
                self._check_played(prop.name, {prop.name: float(value)})
        else:
            super()._check_envelope(prop, value)

    def _check_played(self, setting: str, override: dict[str, float]) -> None:
        played = self.played_waveform_v(**override)
        if played is None:
            self.guard.refuse(
                self.name, setting, "unknown waveform", "known_waveform_required",
                "upload a waveform with upload_waveform first",
            )  # fmt: skip
        self.guard.check_waveform(self.name, setting, *played)

    def upload_waveform(
        self, name: str, samples_v: np.ndarray, sample_rate_hz: float, binary: bool = True
    ) -> None:
        """Load one period ``samples_v`` (V at the device) as arb ``name`` and select it.

        Normalises to [-1, 1] with Vpp and offset so the device sees ``samples_v``. The output
        is switched off first and stays off. Refused (``EnvelopeError``) before anything is
        sent if the waveform exceeds |V|, pulse width, pulse energy or edge rate limits.
        """
        where = f"{self.name}: upload_waveform"
        if not _ARB_NAME.match(name):
            raise SettingRangeError(f"{where}: arb name {name!r} must match {_ARB_NAME.pattern}")
        v = np.asarray(samples_v, dtype=np.float64).ravel()
        if not MIN_POINTS <= v.size <= MAX_POINTS:
            raise SettingRangeError(f"{where}: {v.size} points, allowed {MIN_POINTS}..{MAX_POINTS}")
        if not np.all(np.isfinite(v)):
            raise SettingRangeError(f"{where}: samples must be finite")
        rate = in_range(1e-6, 250e6)(sample_rate_hz, f"{where}: sample_rate_hz")
        self.guard.check_waveform(self.name, "samples_v", v, rate)
        high, low = float(v.max()), float(v.min())
        offset_v = (high + low) / 2.0
        vpp = max(high - low, MIN_VPP_HIGH_Z)
        if abs(offset_v) + vpp / 2.0 > MAX_LEVEL_HIGH_Z_V:
            raise SettingRangeError(f"{where}: |offset| + Vpp/2 exceeds {MAX_LEVEL_HIGH_Z_V} V")
        normalized = np.clip((v - offset_v) / (vpp / 2.0), -1.0, 1.0).astype(np.float32)

        self.write("OUTP1 OFF")
        self._output_on = False
        self.write("SOUR1:DATA:VOL:CLE")
        self._normalized = None
        self.write("FORM:BORD SWAP")
        if binary:
            self.write_binary(f"SOUR1:DATA:ARB {name},", normalized, datatype="f")
        else:
            self.write(f"SOUR1:DATA:ARB {name}," + ",".join(f"{x:.7g}" for x in normalized))
        self._normalized = normalized.astype(np.float64)
        self.configure_settings(
            f"SOUR1:FUNC:ARB {name}",
            "SOUR1:FUNC ARB",
            ("sample_rate_hz", rate),
            "OUTP1:LOAD INF",
            ("amplitude_vpp", vpp),
            ("offset_v", offset_v),
            check=False,
        )
        self.wait_complete()
        self.check_errors()

    def configure_burst(self, n_cycles: int) -> None:
        """Play ``n_cycles`` periods on each bus trigger (``*TRG``)."""
        self.configure_settings(
            "SOUR1:BURS:MODE TRIG",
            ("burst_cycles", n_cycles),
            "TRIG1:SOUR BUS",
            "SOUR1:BURS:STAT ON",
        )

    def trigger(self) -> None:
        """Play one burst now (``*TRG``) and wait until the instrument has taken it."""
        self.write("*TRG")
        self.wait_complete()
        self.check_errors()

    def shutdown(self) -> None:
        """Output off."""
        self.write("OUTP1 OFF")
        self._output_on = False
        self.check_errors()

    def ensure_safe(self) -> None:
        """Shutdown unless this driver knows the output is off."""
        if self._output_on is not False:
            self.shutdown()
