"""Keysight InfiniiVision oscilloscopes (DSOX/MSOX 2000-6000 X), SCPI (InfiniiVision
3000T X-Series Programmer's Guide).

Waveforms are read as WORD (int16, LSB first, signed) IEEE 488.2 blocks and scaled with the
preamble: ``t = (i - xreference) * xincrement + xorigin``,
``v = (code - yreference) * yincrement + yorigin``. ``:TIM:REF LEFT`` puts the trigger
reference at the left of the screen; ``:TIM:POS`` is the delay from the trigger to it. The
trigger comes from the AWG's sync on the EXT input. ``arm_single`` reads ``:TER?`` first,
which clears a stale "triggered" flag, sends ``:SING`` and polls ``:AER?`` (arm event
register) until armed; ``wait_acquired`` polls ``:TER?``.

    scope.configure(1e-6, {1: (0.5, 0.0), 2: (0.2, 0.0)})
    scope.arm_single(); awg.trigger(); scope.wait_acquired(2.0)
    t_s, v = scope.read_waveform(1)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from instruments.errors import GarbledReply, InstrumentTimeout, SettingRangeError
from instruments.roles import Oscilloscope, register_model
from instruments.scpi import ScpiInstrument, scpi_measurement, scpi_setting
from instruments.validators import in_range, integer_in_range, one_of, parse_bool

N_CHANNELS = 4
LEFT_REFERENCE_DIVISIONS = 1.0  # :TIM:REF LEFT is one division in from the left edge
FORMAT_WORD = 1  # preamble format field: 0 BYTE, 1 WORD, 4 ASCii
_VOLTS_PER_DIV = in_range(1e-3, 5.0)  # 1 MOhm input: 1 mV/div to 5 V/div
_OFFSET_V = in_range(-40.0, 40.0)


@register_model("infiniivision", role="scope")
class InfiniiVision(ScpiInstrument, Oscilloscope):
    """Keysight InfiniiVision X-series scope (e.g. DSOX3024T)."""

    IDENTITY_PATTERN = r"(KEYSIGHT|AGILENT) TECHNOLOGIES,[DM]SO-?X ?\d{4}[A-Z]*,"

    time_scale_s_per_div = scpi_setting(
        ":TIM:SCAL {}", unit="s/div", validator=in_range(1e-9, 50.0),
        doc="Set the horizontal scale (10 divisions on screen).",
    )  # fmt: skip
    time_position_s = scpi_setting(
        ":TIM:POS {}", unit="s", validator=in_range(-500.0, 500.0),
        doc="Set the delay from the trigger to the reference point (left edge).",
    )  # fmt: skip
    trigger_source = scpi_setting(
        ":TRIG:SOUR {}", formatter=str, validator=one_of("EXT", "CHAN1", "CHAN2", "CHAN3", "CHAN4"),
        doc="Set the edge trigger source.",
    )  # fmt: skip
    waveform_points = scpi_setting(
        ":WAV:POIN {}", unit="points", validator=integer_in_range(100, 8_000_000), formatter=str,
        doc="Set how many points a waveform read returns (RAW mode: up to the record).",
    )  # fmt: skip
    acquisition_done = scpi_measurement(
        ":TER?", parse_bool, doc="Get (and clear) whether a trigger happened since last asked."
    )

    def configure(
        self,
        time_scale_s_per_div: float,
        channels: Mapping[int, tuple[float, float]],
        *,
        time_position_s: float = 0.0,
        left_edge_s: float | None = None,
        trigger_source: str = "EXT",
    ) -> None:
        """Horizontal scale (s/div, 10 divisions) and per channel ``(volts_per_div, offset_v)``;
        the channels are displayed (acquired). Normal acquisition, edge trigger on
        ``trigger_source``.

        With ``:TIM:REF LEFT`` the reference point is one division from the left edge and
        ``:TIM:POS`` (``time_position_s``) is its delay after the trigger, so the screen spans
        ``[time_position_s - 1 div, time_position_s + 9 div]`` around the trigger. Pass
        ``left_edge_s`` instead to say where the screen starts (``left_edge_s=0.0``: the
        screen starts at the trigger and shows 10 divisions after it).
        """
        if left_edge_s is not None:
            time_position_s = float(left_edge_s) + LEFT_REFERENCE_DIVISIONS * float(
                time_scale_s_per_div
            )
        commands: list[str | tuple[str, Any]] = [
            ":TIM:REF LEFT",
            ("time_scale_s_per_div", time_scale_s_per_div),
            ("time_position_s", time_position_s),
        ]
        if not channels:
            raise SettingRangeError(f"{self.name}: configure needs at least one channel")
        for channel in sorted(channels):
            n = _channel(channel, self.name)
            volts_per_div, offset_v = channels[channel]
            volts_per_div = _VOLTS_PER_DIV(volts_per_div, f"{self.name}: channel {n} V/div")
            offset_v = _OFFSET_V(offset_v, f"{self.name}: channel {n} offset_v")
            commands += [
                f":CHAN{n}:DISP ON",
                f":CHAN{n}:SCAL {volts_per_div:.9g}",
                f":CHAN{n}:OFFS {offset_v:.9g}",
            ]
        commands += [("trigger_source", trigger_source), ":ACQ:TYPE NORM"]
        self.configure_settings(*commands)
        self._sent_settings["channels_v_per_div_offset_v"] = {
            int(ch): (float(v[0]), float(v[1])) for ch, v in channels.items()
        }

    def arm_single(self, timeout_s: float = 5.0) -> None:
        """Clear the trigger flag (``:TER?``), arm one acquisition (``:SING``) and wait until
        the scope reports itself armed (``:AER?``): only then may the stimulus be triggered,
        or its start is missed."""
        _ = self.acquisition_done
        self.write(":SING")
        self._poll(":AER?", timeout_s, "scope not armed")

    def _poll(self, query: str, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + float(timeout_s)
        pause_s = 1e-3
        while not self.query_parsed(query, parse_bool):
            if time.monotonic() >= deadline:
                raise InstrumentTimeout(
                    f"{what} within {timeout_s:g} s", instrument=self.name, command=query
                )
            time.sleep(pause_s)
            pause_s = min(2 * pause_s, 0.05)

    def wait_acquired(self, timeout_s: float) -> None:
        """Poll ``:TER?`` until the acquisition is done; ``InstrumentTimeout`` after
        ``timeout_s`` seconds (wall time)."""
        self._poll(":TER?", timeout_s, "acquisition not complete")

    def read_waveform(
        self, channel: int, points: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The last acquisition of ``channel``: ``(time_s, volts)``, scaled by the preamble."""
        n = _channel(channel, self.name)
        setup: list[str | tuple[str, Any]] = [
            f":WAV:SOUR CHAN{n}",
            ":WAV:FORM WORD",
            ":WAV:BYT LSBF",
            ":WAV:UNS 0",
            ":WAV:POIN:MODE RAW",
        ]
        if points is not None:
            setup.append(("waveform_points", points))
        self.configure_settings(*setup)
        pre = self.query_parsed(":WAV:PRE?", _parse_preamble)
        if pre["format"] != FORMAT_WORD:
            raise GarbledReply(
                f"preamble format {pre['format']}, expected WORD", instrument=self.name,
                command=":WAV:PRE?",
            )  # fmt: skip
        with self.timeout_extended(pre["points"] * 2 / 1e6):  # ~1 MB/s worst case
            codes = self.query_binary(":WAV:DATA?", datatype="h", big_endian=False)
        if codes.size != pre["points"]:
            raise GarbledReply(
                f"{codes.size} samples, preamble says {pre['points']}", instrument=self.name,
                command=":WAV:DATA?",
            )  # fmt: skip
        index = np.arange(codes.size, dtype=np.float64)
        time_s = (index - pre["xreference"]) * pre["xincrement"] + pre["xorigin"]
        volts = (codes.astype(np.float64) - pre["yreference"]) * pre["yincrement"] + pre["yorigin"]
        return time_s, volts


def _channel(channel: int, name: str) -> int:
    return integer_in_range(1, N_CHANNELS)(channel, f"{name}: channel")


_PREAMBLE_FIELDS = (
    "format", "type", "points", "count", "xincrement", "xorigin", "xreference",
    "yincrement", "yorigin", "yreference",
)  # fmt: skip


def _parse_preamble(reply: str) -> dict[str, float]:
    """The 10-field ``:WAV:PRE?`` reply as a dict (ints for format, type, points, count)."""
    fields = reply.strip().split(",")
    if len(fields) != len(_PREAMBLE_FIELDS):
        raise ValueError(f"{len(fields)} preamble fields, expected {len(_PREAMBLE_FIELDS)}")
    values = [float(f) for f in fields]
    if not np.all(np.isfinite(values)) or values[2] < 0 or values[4] <= 0:
        raise ValueError("preamble values out of range")
    out: dict[str, Any] = dict(zip(_PREAMBLE_FIELDS, values, strict=True))
    for key in ("format", "type", "points", "count"):
        out[key] = int(out[key])
    return out
