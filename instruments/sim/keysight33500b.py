"""Simulated Keysight 33522B AWG, channel 1 (33500B-series operating and service guide, SCPI).

Arbitrary waveforms are uploaded into volatile memory as a binary block of float32 in [-1, 1]
(byte order from ``FORM:BORD``: NORM big-endian after ``*RST``, SWAP little-endian) or as ASCII
values; the instrument refuses a name already in memory, values outside [-1, 1], fewer than 8
or more than 1 M points. The waveform at a high-impedance device is
``offset + samples*Vpp/2`` when ``OUTP1:LOAD INF``; with the default 50 Ω load setting the
amplitude into the (high-Z) device is twice the setting, as on the real instrument. The 16-bit
DAC quantizes the samples; the output passes linearly through them, 1/srate apart (the
interpolating output filter). ``*TRG`` with ``TRIG1:SOUR BUS``
plays ``BURS:NCYC`` cycles on the bench in virtual time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from instruments.sim.server import (
    CommandError,
    ScpiServer,
    format_float,
    parse_bool,
    parse_float,
)

MIN_POINTS = 8
MAX_POINTS = 1_000_000
MAX_SRATE_SA_S = 250e6
MIN_SRATE_SA_S = 1e-6
MAX_HIGHZ_V = 10.0
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,11}$")


@dataclass
class AwgState:
    """Everything channel 1 is set to; the bench reads it when a burst plays."""

    waveforms: dict[str, np.ndarray] = field(default_factory=dict)
    function: str = "SIN"
    arb_name: str | None = None
    srate_sa_s: float = 40e3
    vpp_v: float = 0.1
    offset_v: float = 0.0
    load_highz: bool = False
    output_on: bool = False
    burst_on: bool = False
    burst_mode: str = "TRIG"
    burst_cycles: int = 1
    trigger_source: str = "IMM"
    little_endian: bool = False

    def device_waveform_v(self) -> np.ndarray | None:
        """The selected arb as volts at a high-impedance device, or None if not playable."""
        if self.function != "ARB" or self.arb_name not in self.waveforms:
            return None
        gain = 1.0 if self.load_highz else 2.0
        samples = self.waveforms[self.arb_name]
        return gain * (self.offset_v + samples * self.vpp_v / 2.0)

    def idle_v(self) -> float:
        """The level between triggered bursts, at the device: an arb's burst idles at the
        waveform's first point (the burst start phase), not at the offset; 0 V when off."""
        waveform = self.device_waveform_v()
        if not self.output_on or waveform is None or waveform.size == 0:
            return 0.0
        return float(waveform[0])


class Keysight33500BServer(ScpiServer):
    """The 33522B's SCPI dialect (channel 1 used) over a socket."""

    role = "awg"
    IDN = "Agilent Technologies,33522B,MY52400123,3.05-1.19-2.00-52-00"
    ERROR_NONE = '+0,"No error"'
    COMMANDS = (
        ("*IDN?", "_idn"),
        ("*RST", "_rst"),
        ("*CLS", "_cls"),
        ("*OPC?", "_opc"),
        ("*WAI", "_nothing"),
        ("*TRG", "_trigger"),
        ("SYSTem:ERRor?", "_err"),
        ("FORMat:BORDer", "_border"),
        ("SOURce#:DATA:VOLatile:CLEar", "_clear"),
        ("SOURce#:DATA:ARBitrary", "_upload"),
        ("SOURce#:DATA:VOLatile:CATalog?", "_catalog"),
        ("SOURce#:FUNCtion", "_function"),
        ("SOURce#:FUNCtion?", "_function_q"),
        ("SOURce#:FUNCtion:ARBitrary", "_select"),
        ("SOURce#:FUNCtion:ARBitrary?", "_select_q"),
        ("SOURce#:FUNCtion:ARBitrary:SRATe", "_srate"),
        ("SOURce#:FUNCtion:ARBitrary:SRATe?", "_srate_q"),
        ("SOURce#:VOLTage", "_vpp"),
        ("SOURce#:VOLTage?", "_vpp_q"),
        ("SOURce#:VOLTage:OFFSet", "_offset"),
        ("SOURce#:VOLTage:OFFSet?", "_offset_q"),
        ("OUTPut#:LOAD", "_load"),
        ("OUTPut#:LOAD?", "_load_q"),
        ("OUTPut#", "_output"),
        ("OUTPut#?", "_output_q"),
        ("SOURce#:BURSt:MODE", "_burst_mode"),
        ("SOURce#:BURSt:NCYCles", "_burst_cycles"),
        ("SOURce#:BURSt:NCYCles?", "_burst_cycles_q"),
        ("SOURce#:BURSt:STATe", "_burst_state"),
        ("SOURce#:BURSt:STATe?", "_burst_state_q"),
        ("TRIGger#:SOURce", "_trigger_source"),
        ("TRIGger#:SOURce?", "_trigger_source_q"),
    )

    def __init__(self, bench, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bench = bench
        self.state = AwgState()

    def _channel(self, suffixes: list[int]) -> None:
        if suffixes and suffixes[0] not in (1, 2):
            raise CommandError(-114, "Header suffix out of range")

    def _rst(self, s, a, b) -> None:
        self.state = AwgState()  # volatile arbs are lost too
        self.bench.awg_changed()

    def _border(self, s, args, b) -> None:
        word = args.upper()
        if word not in ("NORM", "NORMAL", "SWAP", "SWAPPED"):
            raise CommandError(-224, "Illegal parameter value")
        self.state.little_endian = word.startswith("SWAP")

    def _clear(self, s, a, b) -> None:
        self._channel(s)
        self.state.waveforms.clear()
        self.state.arb_name = None

    def _catalog(self, s, a, b) -> str:
        return ",".join(f'"{name}"' for name in self.state.waveforms) or '""'

    def _upload(self, s, args, block) -> None:
        self._channel(s)
        name, _, data = args.partition(",")
        name = name.strip()
        if not _NAME.match(name):
            raise CommandError(-224, "Illegal parameter value; bad arb name")
        if name in self.state.waveforms:
            raise CommandError(786, "Arb name already exists in volatile memory")
        if block is not None:
            if len(block) % 4:
                raise CommandError(-160, "Block data error")
            dtype = "<f4" if self.state.little_endian else ">f4"
            samples = np.frombuffer(block, dtype=dtype).astype(np.float64)
        else:
            try:
                samples = np.array([float(v) for v in data.split(",")], dtype=np.float64)
            except ValueError:
                raise CommandError(-104, "Data type error") from None
        if not MIN_POINTS <= samples.size <= MAX_POINTS:
            raise CommandError(-222, "Data out of range; arb length")
        if not np.all(np.isfinite(samples)) or np.max(np.abs(samples)) > 1.0:
            raise CommandError(-222, "Data out of range")
        self.state.waveforms[name] = np.round(samples * 32767.0) / 32767.0  # 16-bit DAC

    def _function(self, s, args, b) -> None:
        self._channel(s)
        word = args.upper()
        functions = {"ARB": "ARB", "ARBITRARY": "ARB", "SIN": "SIN", "SINUSOID": "SIN"}
        functions |= {"DC": "DC", "SQU": "SQU", "SQUARE": "SQU"}
        if word not in functions:
            raise CommandError(-224, "Illegal parameter value")
        self.state.function = functions[word]

    def _function_q(self, s, a, b) -> str:
        return self.state.function

    def _select(self, s, args, b) -> None:
        self._channel(s)
        name = args.strip().strip('"')
        if name not in self.state.waveforms:
            raise CommandError(785, "Arb waveform not found in volatile memory")
        self.state.arb_name = name

    def _select_q(self, s, a, b) -> str:
        return f'"{self.state.arb_name or ""}"'

    def _srate(self, s, args, b) -> None:
        self._channel(s)
        self.state.srate_sa_s = parse_float(args, MIN_SRATE_SA_S, MAX_SRATE_SA_S)

    def _srate_q(self, s, a, b) -> str:
        return format_float(self.state.srate_sa_s)

    def _limit_v(self) -> float:
        return MAX_HIGHZ_V if self.state.load_highz else MAX_HIGHZ_V / 2.0

    def _vpp(self, s, args, b) -> None:
        self._channel(s)
        limit = self._limit_v()
        vpp = parse_float(args, 1e-3, 2.0 * limit)
        if abs(self.state.offset_v) + vpp / 2.0 > limit * 1.000001:
            raise CommandError(-222, "Data out of range; amplitude + offset")
        self.state.vpp_v = vpp

    def _vpp_q(self, s, a, b) -> str:
        return format_float(self.state.vpp_v)

    def _offset(self, s, args, b) -> None:
        self._channel(s)
        limit = self._limit_v()
        offset = parse_float(args, -limit, limit)
        if abs(offset) + self.state.vpp_v / 2.0 > limit * 1.000001:
            raise CommandError(-222, "Data out of range; amplitude + offset")
        self.state.offset_v = offset

    def _offset_q(self, s, a, b) -> str:
        return format_float(self.state.offset_v)

    def _load(self, s, args, b) -> None:
        self._channel(s)
        word = args.upper()
        if word in ("INF", "INFINITY"):
            self.state.load_highz = True
        else:
            ohms = parse_float(args, 1.0, 10e3)
            self.state.load_highz = ohms >= 10e3

    def _load_q(self, s, a, b) -> str:
        return "9.9E+37" if self.state.load_highz else format_float(50.0)

    def _output(self, s, args, b) -> None:
        self._channel(s)
        self.state.output_on = parse_bool(args)
        self.bench.awg_changed()

    def _output_q(self, s, a, b) -> str:
        return "1" if self.state.output_on else "0"

    def _burst_mode(self, s, args, b) -> None:
        word = args.upper()
        if word not in ("TRIG", "TRIGGERED", "GAT", "GATED"):
            raise CommandError(-224, "Illegal parameter value")
        self.state.burst_mode = word[:4]

    def _burst_cycles(self, s, args, b) -> None:
        value = parse_float(args, 1, 1e8)
        if value != int(value):
            raise CommandError(-224, "Illegal parameter value")
        self.state.burst_cycles = int(value)

    def _burst_cycles_q(self, s, a, b) -> str:
        return f"{self.state.burst_cycles:+.9E}"

    def _burst_state(self, s, args, b) -> None:
        self.state.burst_on = parse_bool(args)

    def _burst_state_q(self, s, a, b) -> str:
        return "1" if self.state.burst_on else "0"

    def _trigger_source(self, s, args, b) -> None:
        word = args.upper()
        sources = {"BUS": "BUS", "IMM": "IMM", "IMMEDIATE": "IMM", "EXT": "EXT"}
        sources |= {"EXTERNAL": "EXT", "TIM": "TIM", "TIMER": "TIM"}
        if word not in sources:
            raise CommandError(-224, "Illegal parameter value")
        self.state.trigger_source = sources[word]

    def _trigger_source_q(self, s, a, b) -> str:
        return self.state.trigger_source

    def _trigger(self, s, a, b) -> None:
        st = self.state
        if st.trigger_source != "BUS" or not st.burst_on or st.burst_mode != "TRIG":
            raise CommandError(-211, "Trigger ignored")
        waveform = st.device_waveform_v()
        if waveform is None:
            raise CommandError(-221, "Settings conflict; no arb selected")
        self.bench.awg_burst(waveform, 1.0 / st.srate_sa_s, st.burst_cycles, st.idle_v())
