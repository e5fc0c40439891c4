"""Simulated Keysight InfiniiVision DSOX3024T (InfiniiVision 3000T X-Series programmer's guide).

``:SING`` arms one acquisition; the AWG's burst is the trigger (``:TRIG:SOUR EXT``, the AWG's
sync output; an edge trigger on channel 1 fires on the burst's start too). The screen spans 10
divisions; ``:TIM:REF LEFT|CENT|RIGH`` puts the reference one division from the left edge, at
the centre, or one division from the right, and ``:TIM:POS`` is the time from the trigger to
that reference (the manual's convention). Channel 1 sees the device voltage, channel 2 the
transimpedance amplifier's output (current x gain). The acquisition holds up to 100 kpts at up
to 5 GSa/s; each channel adds noise (0.02 div rms + 50 µV), quantizes with an 8-bit ADC over the
8 vertical divisions (WORD codes are 16-bit with the ADC's 8 bits on top) and clips off-screen.
``:WAV:DATA?`` returns the record decimated to ``:WAV:POIN`` points, BYTE, WORD (MSBF or LSBF,
signed or not) or ASCII, scaled by the 10-field preamble.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from instruments.sim.server import (
    CommandError,
    ScpiServer,
    ieee_block,
    parse_bool,
    parse_float,
)

MAX_RECORD_POINTS = 100_000
MAX_SAMPLE_RATE_SA_S = 5e9
N_CHANNELS = 4
N_DIVISIONS_X = 10
N_DIVISIONS_Y = 8
REFERENCE_DIVISIONS = {"LEFT": 1.0, "CENT": 5.0, "RIGH": 9.0}
NOISE_DIV_RMS = 0.02
NOISE_FLOOR_V = 50e-6


@dataclass
class Channel:
    scale_v_div: float = 1.0
    offset_v: float = 0.0
    displayed: bool = False


@dataclass
class Capture:
    """One acquisition: 8-bit ADC codes (-128..127) per channel and the scaling at capture."""

    codes: dict[int, np.ndarray]
    scales_v_div: dict[int, float]
    offsets_v: dict[int, float]
    xincrement_s: float
    xorigin_s: float


@dataclass
class ScopeState:
    time_scale_s_div: float = 100e-6
    time_position_s: float = 0.0
    time_reference: str = "CENT"
    channels: dict[int, Channel] = field(
        default_factory=lambda: {n: Channel(displayed=(n == 1)) for n in range(1, 5)}
    )
    trigger_source: str = "CHAN1"
    acquire_type: str = "NORM"
    armed: bool = False
    arm_reported: bool = False
    triggered: bool = False
    capture: Capture | None = None
    waveform_source: int = 1
    waveform_format: str = "BYTE"
    lsb_first: bool = False
    unsigned: bool = True
    points_mode: str = "NORM"
    points: int = 1000

    def window_s(self) -> tuple[float, float]:
        """The screen's first and last instants relative to the trigger, s."""
        width_s = N_DIVISIONS_X * self.time_scale_s_div
        left_s = self.time_position_s - REFERENCE_DIVISIONS[self.time_reference] * (
            self.time_scale_s_div
        )
        return left_s, left_s + width_s

    def record_grid_s(self) -> np.ndarray:
        """Sample instants of one acquisition relative to the trigger, s."""
        left_s, right_s = self.window_s()
        n = int(min(MAX_RECORD_POINTS, max(100, round((right_s - left_s) * MAX_SAMPLE_RATE_SA_S))))
        return left_s + np.arange(n) * ((right_s - left_s) / n)


class InfiniiVisionServer(ScpiServer):
    """The DSOX3024T's SCPI dialect over a socket."""

    role = "scope"
    IDN = "KEYSIGHT TECHNOLOGIES,DSOX3024T,MY58100123,07.50.2021102830"
    ERROR_NONE = '+0,"No error"'
    COMMANDS = (
        ("*IDN?", "_idn"),
        ("*RST", "_rst"),
        ("*CLS", "_cls"),
        ("*OPC?", "_opc"),
        ("*WAI", "_nothing"),
        ("SYSTem:ERRor?", "_err"),
        ("TIMebase:SCALe", "_time_scale"),
        ("TIMebase:SCALe?", "_time_scale_q"),
        ("TIMebase:POSition", "_time_position"),
        ("TIMebase:POSition?", "_time_position_q"),
        ("TIMebase:REFerence", "_time_reference"),
        ("CHANnel#:SCALe", "_channel_scale"),
        ("CHANnel#:SCALe?", "_channel_scale_q"),
        ("CHANnel#:OFFSet", "_channel_offset"),
        ("CHANnel#:OFFSet?", "_channel_offset_q"),
        ("CHANnel#:DISPlay", "_channel_display"),
        ("CHANnel#:COUPling", "_nothing"),
        ("CHANnel#:IMPedance", "_nothing"),
        ("TRIGger:SOURce", "_trigger_source"),
        ("TRIGger:EDGE:SOURce", "_trigger_source"),
        ("TRIGger:EDGE:LEVel", "_nothing"),
        ("TRIGger:SWEep", "_nothing"),
        ("ACQuire:TYPE", "_acquire_type"),
        ("SINGle", "_single"),
        ("STOP", "_stop"),
        ("RUN", "_nothing"),
        ("TER?", "_ter"),
        ("AER?", "_aer"),
        ("WAVeform:SOURce", "_waveform_source"),
        ("WAVeform:FORMat", "_waveform_format"),
        ("WAVeform:BYTeorder", "_byteorder"),
        ("WAVeform:UNSigned", "_unsigned"),
        ("WAVeform:POINts:MODE", "_points_mode"),
        ("WAVeform:POINts", "_points"),
        ("WAVeform:POINts?", "_points_q"),
        ("WAVeform:PREamble?", "_preamble"),
        ("WAVeform:DATA?", "_data"),
    )

    def __init__(self, bench, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bench = bench
        self.state = ScopeState()

    def _rst(self, s, a, b) -> None:
        self.state = ScopeState()

    def _channel(self, suffixes: list[int]) -> Channel:
        if not 1 <= suffixes[0] <= N_CHANNELS:
            raise CommandError(-114, "Header suffix out of range")
        return self.state.channels[suffixes[0]]

    def _time_scale(self, s, args, b) -> None:
        self.state.time_scale_s_div = parse_float(args, 1e-9, 50.0)

    def _time_scale_q(self, s, a, b) -> str:
        return f"{self.state.time_scale_s_div:+.9E}"

    def _time_position(self, s, args, b) -> None:
        self.state.time_position_s = parse_float(args, -500.0, 500.0)

    def _time_position_q(self, s, a, b) -> str:
        return f"{self.state.time_position_s:+.9E}"

    def _time_reference(self, s, args, b) -> None:
        word = args.upper()[:4]
        if word not in REFERENCE_DIVISIONS:
            raise CommandError(-224, "Illegal parameter value")
        self.state.time_reference = word

    def _channel_scale(self, s, args, b) -> None:
        self._channel(s).scale_v_div = parse_float(args, 1e-3, 5.0)

    def _channel_scale_q(self, s, a, b) -> str:
        return f"{self._channel(s).scale_v_div:+.9E}"

    def _channel_offset(self, s, args, b) -> None:
        self._channel(s).offset_v = parse_float(args, -40.0, 40.0)

    def _channel_offset_q(self, s, a, b) -> str:
        return f"{self._channel(s).offset_v:+.9E}"

    def _channel_display(self, s, args, b) -> None:
        self._channel(s).displayed = parse_bool(args)

    def _trigger_source(self, s, args, b) -> None:
        word = args.upper()
        if word in ("EXT", "EXTERNAL"):
            self.state.trigger_source = "EXT"
        elif word.startswith("CHAN") and word[-1:] in "1234":
            self.state.trigger_source = f"CHAN{word[-1]}"
        else:
            raise CommandError(-224, "Illegal parameter value")

    def _acquire_type(self, s, args, b) -> None:
        word = args.upper()[:4]
        if word not in ("NORM", "AVER", "HRES", "PEAK"):
            raise CommandError(-224, "Illegal parameter value")
        self.state.acquire_type = word

    def _single(self, s, a, b) -> None:
        self.state.armed = True
        self.state.arm_reported = False
        self.state.triggered = False

    def _stop(self, s, a, b) -> None:
        self.state.armed = False

    def _ter(self, s, a, b) -> str:
        done = self.state.triggered
        self.state.triggered = False
        return "+1" if done else "+0"

    def _aer(self, s, a, b) -> str:
        """Arm event register: +1 once armed (read clears it)."""
        armed = self.state.armed and not self.state.arm_reported
        self.state.arm_reported = self.state.armed
        return "+1" if armed else "+0"

    def wants_trigger(self) -> bool:
        return self.state.armed and self.state.trigger_source in ("EXT", "CHAN1")

    def acquire(self, signals_v: dict[int, np.ndarray], rng: np.random.Generator) -> None:
        """Store one acquisition of the analog ``signals_v`` (volts on the record grid)."""
        st = self.state
        grid_s = st.record_grid_s()
        codes, scales, offsets = {}, {}, {}
        for number, channel in st.channels.items():
            analog = signals_v.get(number, np.zeros_like(grid_s))
            noise_v = NOISE_DIV_RMS * channel.scale_v_div + NOISE_FLOOR_V
            noisy = analog + noise_v * rng.standard_normal(grid_s.size)
            lsb_v = N_DIVISIONS_Y * channel.scale_v_div / 256.0
            code = np.round((noisy - channel.offset_v) / lsb_v)
            codes[number] = np.clip(code, -128, 127).astype(np.int16)
            scales[number] = channel.scale_v_div
            offsets[number] = channel.offset_v
        xincrement_s = float(grid_s[1] - grid_s[0])
        st.capture = Capture(codes, scales, offsets, xincrement_s, float(grid_s[0]))
        st.armed = False
        st.triggered = True

    def _waveform_source(self, s, args, b) -> None:
        word = args.upper()
        if not (word.startswith("CHAN") and word[-1:] in "1234"):
            raise CommandError(-224, "Illegal parameter value")
        self.state.waveform_source = int(word[-1])

    def _waveform_format(self, s, args, b) -> None:
        word = args.upper()[:4]
        formats = {"WORD": "WORD", "BYTE": "BYTE", "ASC": "ASC", "ASCI": "ASC"}
        if word not in formats:
            raise CommandError(-224, "Illegal parameter value")
        self.state.waveform_format = formats[word]

    def _byteorder(self, s, args, b) -> None:
        word = args.upper()
        if word not in ("LSBF", "LSBFIRST", "MSBF", "MSBFIRST"):
            raise CommandError(-224, "Illegal parameter value")
        self.state.lsb_first = word.startswith("LSB")

    def _unsigned(self, s, args, b) -> None:
        self.state.unsigned = parse_bool(args)

    def _points_mode(self, s, args, b) -> None:
        word = args.upper()[:3]
        if word not in ("NOR", "MAX", "RAW"):
            raise CommandError(-224, "Illegal parameter value")
        self.state.points_mode = word

    def _points(self, s, args, b) -> None:
        value = parse_float(args, 100, 8_000_000)
        self.state.points = int(value)

    def _stride(self) -> tuple[int, int]:
        capture = self.state.capture
        assert capture is not None
        record = capture.codes[1].size
        stride = max(1, -(-record // self.state.points))
        return stride, -(-record // stride)

    def _points_q(self, s, a, b) -> str:
        if self.state.capture is None:
            return f"{self.state.points:+d}"
        return f"{self._stride()[1]:+d}"

    def _scaling(self) -> tuple[float, float, float]:
        """(yincrement, yorigin, yreference) of the current source and format."""
        capture = self.state.capture
        assert capture is not None
        number = self.state.waveform_source
        full_v = N_DIVISIONS_Y * capture.scales_v_div[number]
        if self.state.waveform_format == "ASC":
            return 0.0, 0.0, 0.0
        levels = 65536.0 if self.state.waveform_format == "WORD" else 256.0
        reference = levels / 2.0 if self.state.unsigned else 0.0
        return full_v / levels, capture.offsets_v[number], reference

    def _require_capture(self) -> None:
        if self.state.capture is None:
            raise CommandError(-230, "Data corrupt or stale; no acquisition")

    def _preamble(self, s, a, b) -> str:
        self._require_capture()
        capture = self.state.capture
        assert capture is not None
        stride, n = self._stride()
        yincrement, yorigin, yreference = self._scaling()
        format_code = {"BYTE": 0, "WORD": 1, "ASC": 4}[self.state.waveform_format]
        type_code = {"NORM": 0, "PEAK": 1, "AVER": 2, "HRES": 3}[self.state.acquire_type]
        fields = [
            f"{format_code:+d}",
            f"{type_code:+d}",
            f"{n:+d}",
            "+1",
            f"{capture.xincrement_s * stride:+.6E}",
            f"{capture.xorigin_s:+.6E}",
            "+0",
            f"{yincrement:+.6E}",
            f"{yorigin:+.6E}",
            f"{int(yreference):+d}",
        ]
        return ",".join(fields)

    def _data(self, s, a, b) -> bytes:
        self._require_capture()
        capture = self.state.capture
        assert capture is not None
        stride, _ = self._stride()
        number = self.state.waveform_source
        adc = capture.codes[number][::stride].astype(np.int32)
        fmt = self.state.waveform_format
        if fmt == "ASC":
            lsb_v = N_DIVISIONS_Y * capture.scales_v_div[number] / 256.0
            volts = adc * lsb_v + capture.offsets_v[number]
            return ieee_block(",".join(f"{v:+.6E}" for v in volts).encode())
        if fmt == "WORD":
            code = adc * 256 + (32768 if self.state.unsigned else 0)
            dtype = ("<" if self.state.lsb_first else ">") + ("u2" if self.state.unsigned else "i2")
            return ieee_block(code.astype(dtype).tobytes())
        code = adc + (128 if self.state.unsigned else 0)
        return ieee_block(code.astype("u1" if self.state.unsigned else "i1").tobytes())
