"""Simulated Keysight 33522B AWG: two independent channels, its SCPI dialect as a command table.

Followed: 33500 Series Operating and Service Guide, "SCPI Programming Reference": the
``[SOURce[1|2]:]`` subsystem (``FUNCtion`` SIN/SQU/TRI/RAMP/PULS/PRBS/NOIS/ARB/DC, ``FREQuency``,
``VOLTage`` with ``:OFFSet``, ``:HIGH``, ``:LOW``, ``:UNIT`` VPP/VRMS/DBM, ``PHASe``, ``BURSt``,
``DATA:ARBitrary`` and ``DATA:ARBitrary:DAC``, ``DATA:VOLatile``, ``FUNCtion:ARBitrary``),
``OUTPut[1|2]`` (``:LOAD``, ``:POLarity``), ``OUTPut:SYNC``, ``TRIGger[1|2]``, ``FORMat:BORDer``.

Each channel has its own settings and its own volatile arb memory. Arbs are uploaded as float
blocks (float32 in [-1, 1], byte order from ``FORM:BORD``: NORM big-endian, SWAP
little-endian), DAC blocks (int16 in -32767..32767) or ASCII values; the instrument refuses a
name already in memory, values outside the range, fewer than 8 or more than 1 M points. The
16-bit DAC quantizes every arb. At a high-impedance device the level is
``offset + sample * Vpp/2`` with ``OUTP:LOAD INF``, twice that with the default 50 Ω setting,
as on the real instrument. Channel 1 is wired to the device: ``*TRG`` (or ``TRIG1``) with
``TRIG1:SOUR BUS`` and a triggered burst plays ``BURS:NCYC`` periods of the selected shape on
the bench in virtual time; the sync output (``OUTP:SYNC``, from ``OUTP:SYNC:SOUR``) is what the
scope's EXT input sees. Channel 2 plays to no device (its bursts are counted).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from instruments.sim.keysight33500b_waves import period_samples
from instruments.sim.scpi_message import CommandError
from instruments.sim.scpi_params import (
    Boolean,
    Choice,
    Number,
    String,
    parse_number_list,
)
from instruments.sim.scpi_server import Call, TableServer, Values
from instruments.sim.scpi_table import action, query, setting

MIN_POINTS = 8
MAX_POINTS = 1_000_000
MAX_SRATE_SA_S = 250e6
MIN_SRATE_SA_S = 1e-6
MAX_FREQUENCY_HZ = 30e6
MAX_HIGHZ_V = 10.0
INFINITE = 9.9e37
DAC_FULL_SCALE = 32767
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,11}$")
_RMS_OF_UNIT_PEAK = {"SIN": 1 / math.sqrt(2), "SQU": 1.0, "TRI": 1 / math.sqrt(3),
                     "RAMP": 1 / math.sqrt(3)}  # fmt: skip


def keysight_real(value: float) -> str:
    """The 33500's reply format for reals: ``+1.000000000000000E+03`` (from the shortest
    decimal of the value, so 9.9E+37 prints as the instrument's ``+9.900000000000000E+37``)."""
    if value == 0.0:
        return "+0.000000000000000E+00"
    text = f"{Decimal(repr(float(value))):+.15E}"
    return text if text[-2] in "0123456789" else text[:-1] + "0" + text[-1]  # E+0 -> E+00


@dataclass
class ChannelState:
    """One output channel: settings (filled from the table at ``*RST``) and arb memory."""

    function: str = "SIN"
    frequency_hz: float = 1e3
    frequency_mode: str = "CW"
    vpp_v: float = 0.1
    offset_v: float = 0.0
    voltage_unit: str = "VPP"
    phase_deg: float = 0.0
    duty_cycle_pct: float = 50.0
    ramp_symmetry_pct: float = 100.0
    pulse_width_s: float = 100e-6
    pulse_period_s: float = 1e-3
    pulse_edge_s: float = 10e-9
    arb_name: str | None = None
    srate_sa_s: float = 40e3
    arb_filter: str = "NORM"
    arb_advance: str = "SRAT"
    load_ohm: float = 50.0
    output_on: bool = False
    polarity: str = "NORM"
    burst_on: bool = False
    burst_mode: str = "TRIG"
    burst_cycles: float = 1.0
    burst_phase_deg: float = 0.0
    burst_period_s: float = 10e-3
    trigger_source: str = "IMM"
    trigger_slope: str = "POS"
    trigger_delay_s: float = 0.0
    trigger_count: float = 1.0
    trigger_timer_s: float = 1e-3
    gate_polarity: str = "NORM"
    sync_mode: str = "NORM"
    waveforms: dict[str, np.ndarray] = field(default_factory=dict)
    bursts_played: int = 0

    @property
    def load_highz(self) -> bool:
        return self.load_ohm >= INFINITE

    @property
    def polarity_inverted(self) -> bool:
        return self.polarity == "INV"

    def limit_v(self) -> float:
        """The largest |level| the load setting allows (±10 V high-Z, ±5 V into 50 Ω)."""
        return MAX_HIGHZ_V if self.load_highz else MAX_HIGHZ_V / 2.0

    def played_v(self, rng: np.random.Generator) -> tuple[np.ndarray, float] | None:
        """One period as volts at a high-impedance device and the seconds per sample, or None
        if not playable (no arb selected)."""
        played = period_samples(self, rng)
        if played is None:
            return None
        samples, dt_s = played
        gain = 1.0 if self.load_highz else 2.0
        if self.function == "DC":
            return gain * np.full(samples.size, self.offset_v), dt_s
        return gain * (self.offset_v + samples * self.vpp_v / 2.0), dt_s

    def device_waveform_v(self) -> np.ndarray | None:
        """One period as volts at a high-impedance device (noise drawn from a fixed seed)."""
        played = self.played_v(np.random.default_rng(0))
        return None if played is None else played[0]

    def idle_v(self) -> float:
        """The level between triggered bursts at the device: the first point of the period
        (the burst start phase), not the offset; 0 V when the output is off."""
        waveform = self.device_waveform_v()
        if not self.output_on or waveform is None or waveform.size == 0:
            return 0.0
        return float(waveform[0])


@dataclass
class AwgState:
    """The instrument: two channels and what they share. ``output_on``, ``waveforms`` and the
    other channel attributes read and write channel 1 (the one wired to the device)."""

    channels: dict[int, ChannelState] = field(
        default_factory=lambda: {1: ChannelState(), 2: ChannelState()}
    )
    little_endian: bool = False
    byte_order: str = "NORM"
    sync_on: bool = True
    sync_source: str = "CH1"

    def __getattr__(self, name: str) -> Any:
        if name == "channels":  # not yet set (dataclass init)
            raise AttributeError(name)
        return getattr(self.channels[1], name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in AwgState.__dataclass_fields__:
            object.__setattr__(self, name, value)
        else:
            setattr(self.channels[1], name, value)


class Amplitude(Number):
    """The amplitude in the channel's unit; MIN/MAX are resolved by the channel's limits."""

    def _word(self, word: str, current: Any) -> float:
        if word in ("MIN", "MINIMUM"):
            return -math.inf
        if word in ("MAX", "MAXIMUM"):
            return math.inf
        return super()._word(word, current)

    def _checked(self, value: float) -> float:
        return value  # the channel checks it, in its unit, against its load and offset


_BOOL = Boolean()
_CH = "[SOURce[1|2]:]"
_NAME_PARAM = String(max_length=12, bare=True)


class Keysight33500BServer(TableServer):
    """The 33522B's SCPI dialect over a socket, two independent channels."""

    role = "awg"
    IDN = "Agilent Technologies,33522B,MY52400123,3.05-1.19-2.00-52-00"
    ERROR_NONE = '+0,"No error"'
    QUEUE_DEPTH = 20
    _R = keysight_real
    COMMANDS = (
        setting(f"{_CH}FUNCtion", Choice("SINusoid", "SQUare", "TRIangle", "RAMP", "PULSe",
                "PRBS", "NOISe", "ARB", "DC"), "function", reset="SIN", per_unit=True,
                then="_changed", doc="Waveform shape."),
        setting(f"{_CH}FREQuency[:CW]", Number(1e-6, MAX_FREQUENCY_HZ, default=1e3, unit="HZ",
                fmt=_R), "frequency_hz", reset=1e3, per_unit=True, then="_changed"),
        setting(f"{_CH}FREQuency:MODE", Choice("CW", "LIST", "SWEep", "FIXed"), "frequency_mode",
                reset="CW", per_unit=True, check="_check_frequency_mode"),
        setting(f"{_CH}VOLTage[:LEVel][:IMMediate][:AMPLitude]", Amplitude(default=0.1,
                fmt=_R), "vpp_v", reset=0.1, per_unit=True, check="_check_amplitude",
                show="_show_amplitude", then="_changed",
                doc="Amplitude in VOLT:UNIT (Vpp, Vrms or dBm), within the load's limit."),
        setting(f"{_CH}VOLTage[:LEVel][:IMMediate]:OFFSet", Number(-MAX_HIGHZ_V, MAX_HIGHZ_V,
                default=0.0, unit="V", fmt=_R), "offset_v", reset=0.0, per_unit=True,
                check="_check_offset", then="_changed"),
        action(f"{_CH}VOLTage[:LEVel][:IMMediate]:HIGH", "_set_high", Number(-MAX_HIGHZ_V,
               MAX_HIGHZ_V, unit="V"), per_unit=True, doc="High level (sets Vpp and offset)."),
        query(f"{_CH}VOLTage[:LEVel][:IMMediate]:HIGH", "_high", per_unit=True),
        action(f"{_CH}VOLTage[:LEVel][:IMMediate]:LOW", "_set_low", Number(-MAX_HIGHZ_V,
               MAX_HIGHZ_V, unit="V"), per_unit=True, doc="Low level (sets Vpp and offset)."),
        query(f"{_CH}VOLTage[:LEVel][:IMMediate]:LOW", "_low", per_unit=True),
        setting(f"{_CH}VOLTage:UNIT", Choice("VPP", "VRMS", "DBM"), "voltage_unit",
                reset="VPP", per_unit=True, check="_check_unit"),
        setting(f"{_CH}PHASe[:ADJust]", Number(-360.0, 360.0, default=0.0, unit="DEG", fmt=_R),
                "phase_deg", reset=0.0, per_unit=True, doc="Phase offset, degrees."),
        setting(f"{_CH}FUNCtion:SQUare:DCYCle", Number(0.01, 99.99, default=50.0, unit="PCT",
                fmt=_R), "duty_cycle_pct", reset=50.0, per_unit=True),
        setting(f"{_CH}FUNCtion:RAMP:SYMMetry", Number(0.0, 100.0, default=100.0, unit="PCT",
                fmt=_R), "ramp_symmetry_pct", reset=100.0, per_unit=True),
        setting(f"{_CH}FUNCtion:PULSe:WIDTh", Number(16e-9, 1e6, default=100e-6, unit="S",
                fmt=_R), "pulse_width_s", reset=100e-6, per_unit=True, check="_check_width"),
        setting(f"{_CH}FUNCtion:PULSe:PERiod", Number(33e-9, 1e6, default=1e-3, unit="S",
                fmt=_R), "pulse_period_s", reset=1e-3, per_unit=True, check="_check_period"),
        setting(f"{_CH}FUNCtion:PULSe:TRANsition[:BOTH]", Number(8.4e-9, 1e-6, default=10e-9,
                unit="S", fmt=_R), "pulse_edge_s", reset=10e-9, per_unit=True),
        action(f"{_CH}DATA:ARBitrary[1|2]", "_upload", _NAME_PARAM, Values("<block>|<v>, ..."),
               per_unit=True, doc="Upload an arb: float block or values in [-1, 1]."),
        action(f"{_CH}DATA:ARBitrary[1|2]:DAC", "_upload_dac", _NAME_PARAM,
               Values("<block>|<v>, ..."), per_unit=True,
               doc="Upload an arb as DAC codes: int16 block or values in -32767..32767."),
        action(f"{_CH}DATA:VOLatile:CLEar", "_clear", per_unit=True,
               doc="Clear the channel's volatile arb memory."),
        query(f"{_CH}DATA:VOLatile:CATalog", "_catalog", per_unit=True),
        query(f"{_CH}DATA:VOLatile:FREE", "_free", per_unit=True),
        query(f"{_CH}DATA:ATTRibute:POINts", "_points", String(bare=True, optional=True),
              per_unit=True),
        setting(f"{_CH}FUNCtion:ARBitrary", String(max_length=64, bare=True), "arb_name",
                per_unit=True, check="_check_arb", show="_show_arb",
                doc="Select an arb from the channel's memory."),
        setting(f"{_CH}FUNCtion:ARBitrary:SRATe", Number(MIN_SRATE_SA_S, MAX_SRATE_SA_S,
                default=40e3, unit="HZ", fmt=_R), "srate_sa_s", reset=40e3, per_unit=True,
                then="_changed", doc="Arb sample rate, Sa/s."),
        setting(f"{_CH}FUNCtion:ARBitrary:FILTer", Choice("NORMal", "STEP", "OFF"),
                "arb_filter", reset="NORM", per_unit=True),
        setting(f"{_CH}FUNCtion:ARBitrary:ADVance", Choice("TRIGger", "SRATe"), "arb_advance",
                reset="SRAT", per_unit=True),
        query(f"{_CH}FUNCtion:ARBitrary:POINts", "_arb_points", per_unit=True),
        setting(f"{_CH}BURSt:STATe", _BOOL, "burst_on", reset=False, per_unit=True),
        setting(f"{_CH}BURSt:MODE", Choice("TRIGgered", "GATed"), "burst_mode", reset="TRIG",
                per_unit=True),
        setting(f"{_CH}BURSt:NCYCles", Number(1, 1e8, default=1, integer=True,
                special={"INFinity": INFINITE}, fmt=_R), "burst_cycles", reset=1.0,
                per_unit=True, doc="Periods per trigger (INFinity: until stopped)."),
        setting(f"{_CH}BURSt:PHASe", Number(-360.0, 360.0, default=0.0, unit="DEG", fmt=_R),
                "burst_phase_deg", reset=0.0, per_unit=True),
        setting(f"{_CH}BURSt:GATE:POLarity", Choice("NORMal", "INVerted"), "gate_polarity",
                reset="NORM", per_unit=True),
        setting(f"{_CH}BURSt:INTernal:PERiod", Number(1e-6, 8e3, default=10e-3, unit="S",
                fmt=_R), "burst_period_s", reset=10e-3, per_unit=True),
        setting("OUTPut[1|2][:STATe]", _BOOL, "output_on", reset=False, per_unit=True,
                then="_changed", doc="Channel output on/off."),
        setting("OUTPut[1|2]:LOAD", Number(1.0, 10e3, default=50.0, unit="OHM", fmt=_R,
                special={"INFinity": INFINITE}), "load_ohm", reset=50.0, per_unit=True,
                check="_check_load", doc="Load setting, ohm or INFinity (high Z)."),
        setting("OUTPut[1|2]:POLarity", Choice("NORMal", "INVerted"), "polarity",
                reset="NORM", per_unit=True, then="_changed"),
        setting("OUTPut:SYNC[:STATe]", _BOOL, "sync_on", reset=True,
                doc="Front-panel Sync output (the scope's EXT trigger)."),
        setting("OUTPut:SYNC:SOURce", Choice("CH1", "CH2"), "sync_source", reset="CH1"),
        setting("OUTPut[1|2]:SYNC:MODE", Choice("NORMal", "CARRier", "MARKer"), "sync_mode",
                reset="NORM", per_unit=True),
        setting("TRIGger[1|2]:SOURce", Choice("IMMediate", "EXTernal", "TIMer", "BUS"),
                "trigger_source", reset="IMM", per_unit=True),
        setting("TRIGger[1|2]:SLOPe", Choice("POSitive", "NEGative"), "trigger_slope",
                reset="POS", per_unit=True),
        setting("TRIGger[1|2]:COUNt", Number(1, 1e6, default=1, integer=True, fmt=_R,
                special={"INFinity": INFINITE}), "trigger_count", reset=1.0, per_unit=True),
        setting("TRIGger[1|2]:TIMer", Number(1e-6, 8e3, default=1e-3, unit="S", fmt=_R),
                "trigger_timer_s", reset=1e-3, per_unit=True),
        setting("TRIGger[1|2]:DELay", Number(0.0, 1000.0, default=0.0, unit="S", fmt=_R),
                "trigger_delay_s", reset=0.0, per_unit=True),
        action("TRIGger[1|2][:IMMediate]", "_trigger_channel", per_unit=True,
               doc="Trigger this channel's burst now."),
        action("*TRG", "_trigger", doc="Bus trigger: every channel with TRIG:SOUR BUS."),
        setting("FORMat:BORDer", Choice("NORMal", "SWAPped"), "byte_order", reset="NORM",
                check="_check_border", doc="Byte order of binary blocks."),
        action("PHASe:SYNChronize", "_phase_sync", doc="Restart both channels' phase."),
    )  # fmt: skip

    def __init__(self, bench: Any, *args: Any, **kwargs: Any) -> None:
        self.bench = bench
        super().__init__(*args, **kwargs)

    def new_state(self) -> AwgState:
        return AwgState()

    def unit(self, number: int) -> ChannelState:
        return self.state.channels[number]

    def units(self) -> list[ChannelState]:
        return list(self.state.channels.values())

    def after_reset(self) -> None:
        for channel in self.units():
            channel.waveforms.clear()  # volatile memory is lost too
            channel.arb_name = None
        self.bench.awg_changed()

    def _changed(self, call: Call) -> None:
        self.bench.awg_changed()

    # ----- levels -------------------------------------------------------------------------------

    def _rms_factor(self, channel: ChannelState) -> float:
        if channel.function == "ARB" and channel.arb_name in channel.waveforms:
            samples = channel.waveforms[channel.arb_name]
            peak = float(np.max(np.abs(samples))) or 1.0
            return float(np.sqrt(np.mean(samples**2))) / peak
        return _RMS_OF_UNIT_PEAK.get(channel.function, 1 / math.sqrt(2))

    def _to_vpp(self, channel: ChannelState, value: float) -> float:
        unit = channel.voltage_unit
        if unit == "VPP":
            return value
        if unit == "DBM":
            value = math.sqrt(50.0 * 1e-3 * 10 ** (value / 10.0))  # Vrms into 50 ohm
        return 2.0 * value / self._rms_factor(channel)

    def _from_vpp(self, channel: ChannelState, vpp: float) -> float:
        unit = channel.voltage_unit
        if unit == "VPP":
            return vpp
        vrms = vpp / 2.0 * self._rms_factor(channel)
        return vrms if unit == "VRMS" else 10.0 * math.log10(vrms**2 / 50.0 / 1e-3)

    def _vpp_bounds(self, channel: ChannelState) -> tuple[float, float]:
        """The smallest and largest Vpp the load setting and the offset allow."""
        low_vpp = 2e-3 if channel.load_highz else 1e-3
        return low_vpp, 2.0 * (channel.limit_v() - abs(channel.offset_v))

    def _check_amplitude(self, call: Call, value: float) -> float:
        channel = call.target
        low_vpp, high_vpp = self._vpp_bounds(channel)
        if value == -math.inf:
            return low_vpp
        if value == math.inf:
            return high_vpp
        vpp = self._to_vpp(channel, value)
        if not low_vpp * 0.999999 <= vpp <= high_vpp * 1.000001:
            raise CommandError(-222, "Data out of range; amplitude + offset")
        return vpp

    def _show_amplitude(self, call: Call, data: list) -> str:
        channel = call.target
        vpp = channel.vpp_v
        if data:
            word = data[0].upper() if len(data) == 1 and type(data[0]) is str else ""
            if word not in ("MIN", "MINIMUM", "MAX", "MAXIMUM"):
                raise CommandError(-108, "Parameter not allowed")
            vpp = self._vpp_bounds(channel)[0 if word.startswith("MIN") else 1]
        return keysight_real(self._from_vpp(channel, vpp))

    def _check_offset(self, call: Call, offset_v: float) -> float:
        channel = call.target
        if abs(offset_v) + channel.vpp_v / 2.0 > channel.limit_v() * 1.000001:
            raise CommandError(-222, "Data out of range; amplitude + offset")
        return offset_v

    def _check_unit(self, call: Call, unit: str) -> str:
        if unit == "DBM" and call.target.load_highz:
            raise CommandError(-221, "Settings conflict; dBm needs a finite load")
        return unit

    def _check_load(self, call: Call, load_ohm: float) -> float:
        channel = call.target
        if load_ohm >= INFINITE and channel.voltage_unit == "DBM":
            channel.voltage_unit = "VPP"  # dBm is meaningless into high Z
        return load_ohm

    def _set_levels(self, channel: ChannelState, high_v: float, low_v: float) -> None:
        if high_v <= low_v:
            raise CommandError(-221, "Settings conflict; high level must exceed low level")
        if max(abs(high_v), abs(low_v)) > channel.limit_v() * 1.000001:
            raise CommandError(-222, "Data out of range; level beyond the load's limit")
        channel.vpp_v, channel.offset_v = high_v - low_v, (high_v + low_v) / 2.0
        self.bench.awg_changed()

    def _set_high(self, call: Call, high_v: float) -> None:
        channel = call.target
        self._set_levels(channel, high_v, channel.offset_v - channel.vpp_v / 2.0)

    def _set_low(self, call: Call, low_v: float) -> None:
        channel = call.target
        self._set_levels(channel, channel.offset_v + channel.vpp_v / 2.0, low_v)

    def _high(self, call: Call) -> str:
        return keysight_real(call.target.offset_v + call.target.vpp_v / 2.0)

    def _low(self, call: Call) -> str:
        return keysight_real(call.target.offset_v - call.target.vpp_v / 2.0)

    def _check_frequency_mode(self, call: Call, mode: str) -> str:
        if mode not in ("CW", "FIX"):
            raise CommandError(-221, "Settings conflict; only CW frequency is simulated")
        return mode

    def _check_width(self, call: Call, width_s: float) -> float:
        if width_s >= call.target.pulse_period_s:
            raise CommandError(-221, "Settings conflict; pulse width must be below the period")
        return width_s

    def _check_period(self, call: Call, period_s: float) -> float:
        if period_s <= call.target.pulse_width_s:
            raise CommandError(-221, "Settings conflict; period must exceed the pulse width")
        return period_s

    def _check_border(self, call: Call, order: str) -> str:
        self.state.little_endian = order == "SWAP"
        return order

    def _phase_sync(self, call: Call) -> None:
        """Both channels restart at their programmed phase: nothing runs between bursts."""

    # ----- arbitrary waveforms ------------------------------------------------------------------

    def _store_arb(self, channel: ChannelState, name: str, samples: np.ndarray) -> None:
        if not _NAME.match(name):
            raise CommandError(-224, "Illegal parameter value; bad arb name")
        if name in channel.waveforms:
            raise CommandError(786, "Arb name already exists in volatile memory")
        if not MIN_POINTS <= samples.size <= MAX_POINTS:
            raise CommandError(-222, "Data out of range; arb length")
        if not np.all(np.isfinite(samples)) or np.max(np.abs(samples)) > 1.0:
            raise CommandError(-222, "Data out of range")
        if sum(w.size for w in channel.waveforms.values()) + samples.size > MAX_POINTS:
            raise CommandError(781, "Not enough memory to store new arb")
        codes = np.round(samples * DAC_FULL_SCALE)  # the 16-bit DAC
        channel.waveforms[name] = codes / DAC_FULL_SCALE

    def _payload(self, data: list, dtype: str, low: float, high: float) -> np.ndarray:
        if len(data) == 1 and isinstance(data[0], bytes):
            block = data[0]
            size = np.dtype(dtype).itemsize
            if len(block) % size:
                raise CommandError(-160, "Block data error; length not a whole number of points")
            order = "<" if self.state.little_endian else ">"
            return np.frombuffer(block, dtype=order + dtype).astype(np.float64)
        return parse_number_list(data, low, high, MAX_POINTS)

    def _upload(self, call: Call, name: str, data: list) -> None:
        self._store_arb(call.target, name, self._payload(data, "f4", -1.0, 1.0))

    def _upload_dac(self, call: Call, name: str, data: list) -> None:
        codes = self._payload(data, "i2", -DAC_FULL_SCALE, DAC_FULL_SCALE)
        if np.any(np.abs(codes) > DAC_FULL_SCALE):
            raise CommandError(-222, "Data out of range; DAC codes are -32767..32767")
        self._store_arb(call.target, name, codes / DAC_FULL_SCALE)

    def _clear(self, call: Call) -> None:
        channel = call.target
        if channel.output_on and channel.function == "ARB":
            raise CommandError(-221, "Settings conflict; arb in use on an output that is on")
        channel.waveforms.clear()
        channel.arb_name = None

    def _catalog(self, call: Call) -> str:
        return ",".join(f'"{name}"' for name in call.target.waveforms) or '""'

    def _free(self, call: Call) -> str:
        used = sum(w.size for w in call.target.waveforms.values())
        return f"{MAX_POINTS - used:+d}"

    def _points(self, call: Call, name: str | None) -> str:
        channel = call.target
        key = name or channel.arb_name
        if key not in channel.waveforms:
            raise CommandError(785, "Arb waveform not found in volatile memory")
        return f"{channel.waveforms[key].size:+d}"

    _arb_points = _points

    def _check_arb(self, call: Call, name: str) -> str:
        if name not in call.target.waveforms:
            raise CommandError(785, "Arb waveform not found in volatile memory")
        return name

    def _show_arb(self, call: Call, data: list) -> str:
        if data:
            raise CommandError(-108, "Parameter not allowed")
        return f'"{call.target.arb_name or ""}"'

    # ----- triggers -----------------------------------------------------------------------------

    def _play(self, number: int) -> None:
        channel = self.state.channels[number]
        if not channel.burst_on or channel.burst_mode != "TRIG":
            raise CommandError(-211, "Trigger ignored; no triggered burst")
        if channel.burst_cycles >= INFINITE:
            raise CommandError(-221, "Settings conflict; an infinite burst cannot be simulated")
        played = channel.played_v(self.bench.rng)
        if played is None:
            raise CommandError(-221, "Settings conflict; no arb selected")
        channel.bursts_played += 1
        if number != 1:
            return  # channel 2 drives no device on this bench
        waveform_v, dt_s = played
        idle_v = float(waveform_v[0]) if channel.output_on else 0.0
        self.bench.awg_burst(waveform_v, dt_s, int(channel.burst_cycles), idle_v)

    def _trigger(self, call: Call) -> None:
        bus = [n for n, ch in self.state.channels.items() if ch.trigger_source == "BUS"]
        if not bus:
            raise CommandError(-211, "Trigger ignored; no channel on TRIG:SOUR BUS")
        for number in bus:
            self._play(number)

    def _trigger_channel(self, call: Call) -> None:
        self._play(call.suffixes[0])

    def sync_to_scope(self) -> bool:
        """Whether the Sync output carries channel 1's bursts (what the scope's EXT sees)."""
        return bool(self.state.sync_on) and self.state.sync_source == "CH1"
