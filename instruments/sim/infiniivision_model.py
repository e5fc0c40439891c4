"""The simulated InfiniiVision's acquisitions and waveform readout (mixed into its server).

Each method here is the ``run``/``ask`` of a table entry of
:class:`instruments.sim.infiniivision.InfiniiVisionServer`. Followed: InfiniiVision 3000T
X-Series Programmer's Guide, ":DIGitize", ":SINGle", ":RUN", ":STOP", ":TRIGger:FORCe",
":TER?", ":AER?", ":OPERegister:CONDition?" (bit 3 Run, bit 5 Wait Trig), ":WAVeform:DATA?"
(an IEEE 488.2 block with an ``#8`` header) and ":WAVeform:PREamble?" (format, type, points,
count, xincrement, xorigin, xreference, yincrement, yorigin, yreference).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.signal import lfilter

from instruments.sim.scpi_message import CommandError
from instruments.sim.scpi_params import Choice, nr3
from instruments.sim.scpi_server import WaitAfter

MAX_RECORD_POINTS = 100_000
MAX_SAMPLE_RATE_SA_S = 5e9
N_DIVISIONS_X = 10
N_DIVISIONS_Y = 8
REFERENCE_DIVISIONS = {"LEFT": 1.0, "CENT": 5.0, "RIGH": 9.0}
NOISE_DIV_RMS = 0.02
NOISE_FLOOR_V = 50e-6
BW_LIMIT_HZ = 25e6
OPER_RUN, OPER_WAIT_TRIG = 8, 32
_CHANNEL = Choice("CHANnel1", "CHANnel2", "CHANnel3", "CHANnel4")


@dataclass
class ChannelSettings:
    """One input channel (the table fills the settings at ``*RST``)."""

    scale_v: float = 1.0
    offset_v: float = 0.0
    probe: float = 1.0
    bw_limit: bool = False
    coupling: str = "DC"
    impedance: str = "ONEM"
    displayed: bool = False
    inverted: bool = False
    label: str = ""
    units: str = "VOLT"


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
    """Everything the scope is set to, and its acquisition state."""

    time_mode: str = "MAIN"
    time_scale_s_div: float = 100e-6
    time_position_s: float = 0.0
    time_reference: str = "CENT"
    window_scale_s_div: float = 10e-6
    window_position_s: float = 0.0
    channels: dict[int, ChannelSettings] = field(
        default_factory=lambda: {n: ChannelSettings() for n in range(1, 5)}
    )
    trigger_mode: str = "EDGE"
    trigger_sweep: str = "AUTO"
    trigger_source: str = "CHAN1"
    trigger_level_v: float = 0.0
    trigger_slope: str = "POS"
    trigger_holdoff_s: float = 40e-9
    acquire_type: str = "NORM"
    acquire_mode: str = "RTIM"
    acquire_count: int = 8
    waveform_source_name: str = "CHAN1"
    waveform_source: int = 1
    waveform_format: str = "BYTE"
    byte_order: str = "MSBF"
    unsigned: bool = True
    points_mode: str = "NORM"
    points: int = 1000
    armed: bool = False
    running: bool = False
    arm_reported: bool = False
    triggered: bool = False
    digitizing: bool = False
    capture: Capture | None = None

    @property
    def lsb_first(self) -> bool:
        return self.byte_order == "LSBF"

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


class ScopeModel:
    """Acquisitions and readout of the simulated scope."""

    state: Any
    status: Any
    bench: Any

    # ----- arming and triggers ------------------------------------------------------------------

    def _arm(self, running: bool) -> None:
        st = self.state
        st.armed, st.running, st.arm_reported, st.triggered = True, running, False, False
        self.status.operation.set_condition(OPER_RUN, True)
        self.status.operation.set_condition(OPER_WAIT_TRIG, True)

    def wants_trigger(self, sync_on: bool = True) -> bool:
        """Whether an AWG burst starting now triggers an acquisition (EXT needs the AWG's sync
        output on; ROLL mode has no trigger)."""
        st = self.state
        if not st.armed or st.time_mode == "ROLL":
            return False
        return (st.trigger_source == "EXT" and sync_on) or st.trigger_source.startswith("CHAN")

    def _acquire_idle(self) -> None:
        """An acquisition with no stimulus (auto trigger, forced trigger, roll mode)."""
        grid_s = self.state.record_grid_s()
        self.acquire(self.bench.idle_signals_v(grid_s), self.bench.rng)

    def _run_acquisition(self, call: Any) -> None:
        self._arm(running=True)
        if self.state.time_mode == "ROLL":
            self._acquire_idle()

    def _stop(self, call: Any) -> None:
        st = self.state
        if st.running and st.trigger_sweep == "AUTO" and st.capture is None:
            self._acquire_idle()  # auto trigger while it ran: the screen holds that record
        st.armed = st.running = False
        self.status.operation.set_condition(OPER_RUN, False)
        self.status.operation.set_condition(OPER_WAIT_TRIG, False)

    def _single(self, call: Any) -> None:
        self._arm(running=False)
        if self.state.time_mode == "ROLL":
            self._acquire_idle()

    def _digitize(self, call: Any, sources: list) -> None:
        st = self.state
        if sources:
            chosen = {int(_CHANNEL.parse(s)[-1]) for s in sources}
            for number, channel in st.channels.items():
                channel.displayed = number in chosen
        self._arm(running=False)
        if st.trigger_sweep == "AUTO" or st.time_mode == "ROLL":
            self._acquire_idle()  # nothing triggers within the auto timeout: auto trigger
            return
        st.digitizing = True
        self.begin_operation("digitize")  # type: ignore[attr-defined]
        raise WaitAfter  # the parser executes nothing more until the acquisition is done

    def _force(self, call: Any) -> None:
        if not self.state.armed:
            raise CommandError(-211, "Trigger ignored; not armed")
        self._acquire_idle()

    def _ter(self, call: Any) -> str:
        done = self.state.triggered
        self.state.triggered = False
        return "+1" if done else "+0"

    def _aer(self, call: Any) -> str:
        """Arm event register: +1 once armed (read clears it)."""
        armed = self.state.armed and not self.state.arm_reported
        self.state.arm_reported = self.state.armed
        return "+1" if armed else "+0"

    # ----- one acquisition ----------------------------------------------------------------------

    def acquire(self, signals_v: dict[int, np.ndarray], rng: np.random.Generator) -> None:
        """Store one acquisition of the analog ``signals_v`` (volts on the record grid)."""
        st = self.state
        grid_s = st.record_grid_s()
        dt_s = float(grid_s[1] - grid_s[0])
        codes, scales, offsets = {}, {}, {}
        for number, channel in st.channels.items():
            analog = signals_v.get(number, np.zeros_like(grid_s)) * channel.probe
            if channel.bw_limit:
                alpha = dt_s / (dt_s + 1.0 / (2.0 * np.pi * BW_LIMIT_HZ))
                analog = lfilter([alpha], [1.0, alpha - 1.0], analog, zi=[analog[0] * (1 - alpha)])[
                    0
                ]
            if channel.coupling == "AC":
                analog = analog - np.mean(analog)
            if channel.inverted:
                analog = -analog
            noise_v = NOISE_DIV_RMS * channel.scale_v + NOISE_FLOOR_V
            noisy = analog + noise_v * rng.standard_normal(grid_s.size)
            lsb_v = N_DIVISIONS_Y * channel.scale_v / 256.0
            code = np.round((noisy - channel.offset_v) / lsb_v)
            codes[number] = np.clip(code, -128, 127).astype(np.int16)
            scales[number] = channel.scale_v
            offsets[number] = channel.offset_v
        st.capture = Capture(codes, scales, offsets, dt_s, float(grid_s[0]))
        st.triggered = True
        self.status.operation.set_condition(OPER_WAIT_TRIG, st.running)
        if not st.running:
            st.armed = False
            self.status.operation.set_condition(OPER_RUN, False)
        if st.digitizing:
            st.digitizing = False
            self.end_operation("digitize")  # type: ignore[attr-defined]

    # ----- readout ------------------------------------------------------------------------------

    def _set_points(self, call: Any, points: float) -> None:
        self.state.points = int(points)

    def _stride(self) -> tuple[int, int]:
        capture = self.state.capture
        assert capture is not None
        record = capture.codes[1].size
        stride = max(1, -(-record // self.state.points))
        return stride, -(-record // stride)

    def _points_q(self, call: Any) -> str:
        if self.state.capture is None:
            return f"{self.state.points:+d}"
        return f"{self._stride()[1]:+d}"

    def _scaling(self) -> tuple[float, float, float]:
        """(yincrement, yorigin, yreference) of the current source and format."""
        capture = self._capture()
        number = self.state.waveform_source
        full_v = N_DIVISIONS_Y * capture.scales_v_div[number]
        if self.state.waveform_format == "ASC":
            return 0.0, 0.0, 0.0
        levels = 65536.0 if self.state.waveform_format == "WORD" else 256.0
        reference = levels / 2.0 if self.state.unsigned else 0.0
        return full_v / levels, capture.offsets_v[number], reference

    def _capture(self) -> Capture:
        if self.state.capture is None:
            raise CommandError(-230, "Data corrupt or stale; no acquisition")
        return self.state.capture

    def _preamble(self, call: Any) -> str:
        capture = self._capture()
        stride, n = self._stride()
        yincrement, yorigin, yreference = self._scaling()
        format_code = {"BYTE": 0, "WORD": 1, "ASC": 4}[self.state.waveform_format]
        type_code = {"NORM": 0, "PEAK": 1, "AVER": 2, "HRES": 3}[self.state.acquire_type]
        fields = [
            f"{format_code:+d}", f"{type_code:+d}", f"{n:+d}", "+1",
            f"{capture.xincrement_s * stride:+.6E}", f"{capture.xorigin_s:+.6E}", "+0",
            f"{yincrement:+.6E}", f"{yorigin:+.6E}", f"{int(yreference):+d}",
        ]  # fmt: skip
        return ",".join(fields)

    def _xincrement(self, call: Any) -> str:
        return nr3(self._capture().xincrement_s * self._stride()[0])

    def _xorigin(self, call: Any) -> str:
        return nr3(self._capture().xorigin_s)

    def _xreference(self, call: Any) -> str:
        return "+0"

    def _yincrement(self, call: Any) -> str:
        return nr3(self._scaling()[0])

    def _yorigin(self, call: Any) -> str:
        return nr3(self._scaling()[1])

    def _yreference(self, call: Any) -> str:
        return f"{int(self._scaling()[2]):+d}"

    def _data(self, call: Any) -> bytes:
        capture = self._capture()
        stride, _ = self._stride()
        number = self.state.waveform_source
        adc = capture.codes[number][::stride].astype(np.int32)
        fmt = self.state.waveform_format
        if fmt == "ASC":
            lsb_v = N_DIVISIONS_Y * capture.scales_v_div[number] / 256.0
            volts = adc * lsb_v + capture.offsets_v[number]
            return _block8(",".join(f"{v:+.6E}" for v in volts).encode())
        if fmt == "WORD":
            code = adc * 256 + (32768 if self.state.unsigned else 0)
            dtype = ("<" if self.state.lsb_first else ">") + ("u2" if self.state.unsigned else "i2")
            return _block8(code.astype(dtype).tobytes())
        code = adc + (128 if self.state.unsigned else 0)
        return _block8(code.astype("u1" if self.state.unsigned else "i1").tobytes())


def _block8(payload: bytes) -> bytes:
    """An IEEE 488.2 definite block with the InfiniiVision's 8-digit length: ``#800001000``."""
    return b"#8" + f"{len(payload):08d}".encode() + payload
