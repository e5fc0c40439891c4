"""Simulated Keysight InfiniiVision DSOX3024T, its SCPI dialect as a command table.

Followed: InfiniiVision 3000T X-Series Oscilloscopes Programmer's Guide: root commands
(``:AUToscale``, ``:DIGitize``, ``:RUN``, ``:STOP``, ``:SINGle``, ``:TER?``, ``:AER?``,
``:OPERegister``), ``:CHANnel<n>`` (``:SCALe``, ``:RANGe``, ``:OFFSet``, ``:PROBe``,
``:BWLimit``, ``:COUPling``, ``:IMPedance``, ``:DISPlay``, ``:INVert``, ``:LABel``, ``:UNITs``
and the ``:CHANnel<n>?`` summary), ``:TIMebase`` (``:MODE`` MAIN/WINDow/XY/ROLL, ``:SCALe``,
``:RANGe``, ``:POSition``, ``:REFerence``, the ``:TIMebase?`` summary), ``:TRIGger``
(``:SWEep`` AUTO/NORMal, ``[:EDGE]:SOURce``, ``:LEVel``, ``:SLOPe``, ``:FORCe``),
``:ACQuire``, ``:WAVeform`` (BYTE/WORD/ASCii, ``:PREamble?``), ``:SYSTem:PRESet``.

``:SINGle`` arms one acquisition; the AWG's burst is the trigger (EXT is the AWG's sync
output, when ``OUTP:SYNC`` is on; a channel edge trigger fires on the burst's start too);
``:TRIGger:FORCe`` acquires now. ``:DIGitize`` is blocking: in AUTO sweep (or ROLL mode) it
acquires at once; in NORMal sweep it waits for a trigger, and until then the connection
executes nothing more (``*OPC?`` after it answers when the acquisition is done). ``:RUN``
re-arms after every acquisition until ``:STOP``. The screen spans 10 divisions; ``:TIM:REF``
puts the reference one division from the left, at the centre or one from the right, and
``:TIM:POS`` is the time from the trigger to it. Channel 1 sees the device voltage, channel 2
the transimpedance amplifier's output (current x gain). The sim's probes are 1:1 wires: a
probe setting of 10 shows ten times the input, as a scope with a mismatched probe setting
does; ``:BWLimit`` low-passes the record at 25 MHz (first order), AC coupling removes its mean,
``:INVert`` negates it. The record holds up to 100 kpts at up to 5 GSa/s; noise 0.02 div rms +
50 µV, an 8-bit ADC over 8 divisions, clipped off screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from instruments.sim.infiniivision_model import (
    ChannelSettings,
    ScopeModel,
    ScopeState,
)
from instruments.sim.scpi_params import Boolean, Choice, Number, String, nr1, nr3
from instruments.sim.scpi_server import Call, TableServer, Values
from instruments.sim.scpi_table import action, query, setting

N_CHANNELS = 4
_BOOL = Boolean()
_R = nr3
_CHANNEL = Choice("CHANnel1", "CHANnel2", "CHANnel3", "CHANnel4")


class InfiniiVisionServer(TableServer, ScopeModel):
    """The DSOX3024T's SCPI dialect over a socket."""

    role = "scope"
    IDN = "KEYSIGHT TECHNOLOGIES,DSOX3024T,MY58100123,07.50.2021102830"
    ERROR_NONE = '+0,"No error"'
    SUFFIX_RANGES: ClassVar[dict[str, Sequence[int]]] = {"n": range(1, N_CHANNELS + 1)}
    COMMANDS = (
        setting(":CHANnel<n>:SCALe", Number(1e-3, 5.0, default=1.0, unit="V", fmt=_R), "scale_v",
                reset=1.0, per_unit=True, doc="Vertical scale, V/div."),
        action(":CHANnel<n>:RANGe", "_set_range", Number(8e-3, 40.0, unit="V"), per_unit=True,
               doc="Full scale (8 divisions), V."),
        query(":CHANnel<n>:RANGe", "_range", per_unit=True),
        setting(":CHANnel<n>:OFFSet", Number(-40.0, 40.0, default=0.0, unit="V", fmt=_R),
                "offset_v", reset=0.0, per_unit=True, doc="Value at the screen centre, V."),
        setting(":CHANnel<n>:PROBe", Number(1e-3, 1e4, default=1.0, fmt=_R), "probe",
                reset=1.0, per_unit=True, doc="Probe attenuation (the sim's probes are 1:1)."),
        setting(":CHANnel<n>:BWLimit", _BOOL, "bw_limit", reset=False, per_unit=True,
                doc="25 MHz bandwidth limit (a first-order low-pass on the record)."),
        setting(":CHANnel<n>:COUPling", Choice("DC", "AC"), "coupling", reset="DC",
                per_unit=True, doc="AC removes the record's mean."),
        setting(":CHANnel<n>:IMPedance", Choice("ONEMeg", "FIFTy"), "impedance",
                reset="ONEM", per_unit=True),
        setting(":CHANnel<n>:DISPlay", _BOOL, "displayed", per_unit=True,
                doc="Channel on (channel 1 after *RST)."),
        setting(":CHANnel<n>:INVert", _BOOL, "inverted", reset=False, per_unit=True),
        setting(":CHANnel<n>:LABel", String(max_length=32), "label", per_unit=True),
        setting(":CHANnel<n>:UNITs", Choice("VOLT", "AMPere"), "units", reset="VOLT",
                per_unit=True),
        query(":CHANnel<n>", "_channel_summary", per_unit=True,
              doc="All channel settings in one reply (:CHAN1:RANG ...;OFFS ...;...)."),
        setting(":TIMebase:MODE", Choice("MAIN", "WINDow", "XY", "ROLL"), "time_mode",
                reset="MAIN"),
        setting(":TIMebase[:MAIN]:SCALe", Number(1e-9, 50.0, default=100e-6, unit="S", fmt=_R),
                "time_scale_s_div", reset=100e-6, doc="Horizontal scale, s/div."),
        action(":TIMebase[:MAIN]:RANGe", "_set_time_range", Number(10e-9, 500.0, unit="S"),
               doc="Full screen (10 divisions), s."),
        query(":TIMebase[:MAIN]:RANGe", "_time_range"),
        setting(":TIMebase[:MAIN]:POSition", Number(-500.0, 500.0, default=0.0, unit="S",
                fmt=_R), "time_position_s", reset=0.0, doc="Trigger to reference, s."),
        setting(":TIMebase:REFerence", Choice("LEFT", "CENTer", "RIGHt"), "time_reference",
                reset="CENT"),
        setting(":TIMebase:WINDow:SCALe", Number(1e-10, 50.0, default=10e-6, unit="S",
                fmt=_R), "window_scale_s_div", reset=10e-6),
        setting(":TIMebase:WINDow:POSition", Number(-500.0, 500.0, default=0.0, unit="S",
                fmt=_R), "window_position_s", reset=0.0),
        query(":TIMebase", "_timebase_summary", doc="Timebase settings in one reply."),
        setting(":TRIGger:MODE", Choice("EDGE"), "trigger_mode", reset="EDGE"),
        setting(":TRIGger:SWEep", Choice("AUTO", "NORMal"), "trigger_sweep", reset="AUTO",
                doc="AUTO: :DIGitize acquires without a trigger; NORMal: it waits."),
        setting(":TRIGger[:EDGE]:SOURce", Choice("CHANnel1", "CHANnel2", "CHANnel3",
                "CHANnel4", "EXTernal", "LINE", "WGEN"), "trigger_source", reset="CHAN1"),
        setting(":TRIGger[:EDGE]:LEVel", Number(-100.0, 100.0, default=0.0, unit="V", fmt=_R),
                "trigger_level_v", reset=0.0),
        setting(":TRIGger[:EDGE]:SLOPe", Choice("POSitive", "NEGative", "EITHer",
                "ALTernate"), "trigger_slope", reset="POS"),
        setting(":TRIGger:HOLDoff", Number(40e-9, 10.0, default=40e-9, unit="S", fmt=_R),
                "trigger_holdoff_s", reset=40e-9),
        action(":TRIGger:FORCe", "_force", doc="Trigger an armed acquisition now."),
        setting(":ACQuire:TYPE", Choice("NORMal", "AVERage", "HRESolution", "PEAK"),
                "acquire_type", reset="NORM"),
        setting(":ACQuire:MODE", Choice("RTIMe", "SEGMented"), "acquire_mode", reset="RTIM"),
        setting(":ACQuire:COUNt", Number(2, 65536, default=8, integer=True, fmt=nr1),
                "acquire_count", reset=8),
        query(":ACQuire:POINts", "_acquire_points"),
        query(":ACQuire:SRATe", "_acquire_srate"),
        action(":RUN", "_run_acquisition", doc="Acquire continuously (re-armed each trigger)."),
        action(":STOP", "_stop"),
        action(":SINGle", "_single", doc="Arm one acquisition."),
        action(":DIGitize", "_digitize", Values("[CHANnel<n>, ...]"),
               doc="Acquire now (AUTO) or at the next trigger (NORMal); blocks the parser."),
        action(":AUToscale", "_autoscale", Values("[CHANnel<n>, ...]"),
               doc="Scale the channels and timebase to the last signal; trigger on CHAN1."),
        action(":SYSTem:PRESet", "_common_rst", doc="Default setup (as *RST)."),
        query(":TER", "_ter", doc="Trigger event register: +1 once triggered (read clears)."),
        query(":AER", "_aer", doc="Arm event register: +1 once armed (read clears)."),
        query(":OPERegister:CONDition", "_oper_condition",
              doc="Bit 3 Run (armed or running), bit 5 Wait Trig."),
        query(":OPERegister[:EVENt]", "_oper_event"),
        setting(":WAVeform:SOURce", _CHANNEL, "waveform_source_name", reset="CHAN1",
                check="_check_waveform_source"),
        setting(":WAVeform:FORMat", Choice("WORD", "BYTE", "ASCii"), "waveform_format",
                reset="BYTE"),
        setting(":WAVeform:BYTeorder", Choice("LSBFirst", "MSBFirst"), "byte_order",
                reset="MSBF"),
        setting(":WAVeform:UNSigned", _BOOL, "unsigned", reset=True),
        setting(":WAVeform:POINts:MODE", Choice("NORMal", "MAXimum", "RAW"), "points_mode",
                reset="NORM"),
        action(":WAVeform:POINts", "_set_points", Number(100, 8_000_000, integer=True,
               special={"MAXimum": 8_000_000})),
        query(":WAVeform:POINts", "_points_q"),
        query(":WAVeform:PREamble", "_preamble", doc="The 10 scaling fields of the record."),
        query(":WAVeform:DATA", "_data", doc="The record as an IEEE 488.2 #8 block."),
        query(":WAVeform:XINCrement", "_xincrement"),
        query(":WAVeform:XORigin", "_xorigin"),
        query(":WAVeform:XREFerence", "_xreference"),
        query(":WAVeform:YINCrement", "_yincrement"),
        query(":WAVeform:YORigin", "_yorigin"),
        query(":WAVeform:YREFerence", "_yreference"),
    )  # fmt: skip

    def __init__(self, bench: Any, *args: Any, **kwargs: Any) -> None:
        self.bench = bench
        super().__init__(*args, **kwargs)

    def new_state(self) -> ScopeState:
        return ScopeState()

    def unit(self, number: int) -> ChannelSettings:
        return self.state.channels[number]

    def units(self) -> list[ChannelSettings]:
        return list(self.state.channels.values())

    def apply_reset(self) -> None:
        super().apply_reset()
        for number, channel in self.state.channels.items():
            channel.displayed = number == 1
            channel.label = str(number)

    def after_reset(self) -> None:
        st = self.state
        st.armed = st.running = st.arm_reported = st.triggered = False
        st.capture = None
        st.points = 1000
        self.status.operation.condition = 0

    # ----- settings with their own rules ---------------------------------------------------------

    def _set_range(self, call: Call, range_v: float) -> None:
        call.target.scale_v = range_v / 8.0

    def _range(self, call: Call) -> str:
        return nr3(8.0 * call.target.scale_v)

    def _set_time_range(self, call: Call, range_s: float) -> None:
        self.state.time_scale_s_div = range_s / 10.0

    def _time_range(self, call: Call) -> str:
        return nr3(10.0 * self.state.time_scale_s_div)

    def _check_waveform_source(self, call: Call, name: str) -> str:
        self.state.waveform_source = int(name[-1])
        return name

    def _channel_summary(self, call: Call) -> str:
        ch = call.target
        n = call.suffixes[0]
        fields = [
            f":CHAN{n}:RANG {8.0 * ch.scale_v:+.4E}", f"OFFS {ch.offset_v:+.5E}",
            f"COUP {ch.coupling}", f"IMP {ch.impedance}", f"DISP {int(ch.displayed)}",
            f"BWL {int(ch.bw_limit)}", f"INV {int(ch.inverted)}", f'LAB "{ch.label}"',
            f"UNIT {ch.units}", f"PROB {ch.probe:+.4E}", "PROB:SKEW +0.00E+00", "STYP SING",
        ]  # fmt: skip
        return ";".join(fields)

    def _timebase_summary(self, call: Call) -> str:
        st = self.state
        reference = {"LEFT": "LEFT", "CENT": "CENT", "RIGH": "RIGH"}[st.time_reference]
        return (
            f":TIM:MODE {st.time_mode};REF {reference};"
            f"MAIN:RANG {10.0 * st.time_scale_s_div:+.4E};POS {st.time_position_s:+.4E}"
        )

    def _acquire_points(self, call: Call) -> str:
        return f"{self.state.record_grid_s().size:+d}"

    def _acquire_srate(self, call: Call) -> str:
        grid_s = self.state.record_grid_s()
        return nr3(1.0 / float(grid_s[1] - grid_s[0]))

    def _oper_condition(self, call: Call) -> str:
        return f"{self.status.operation.condition:+d}"

    def _oper_event(self, call: Call) -> str:
        return f"{self.status.operation.read_event():+d}"

    def _autoscale(self, call: Call, sources: list) -> None:
        """Scale to the last burst's signals (or 1 V/div when there was none): each channel
        shown on about six divisions, ten divisions of time over the burst."""
        burst = self.bench.bursts[-1] if self.bench.bursts else None
        for number in [int(_CHANNEL.parse(s)[-1]) for s in sources] or [1, 2]:
            channel = self.state.channels[number]
            channel.displayed = True
            signal = None
            if burst is not None:
                signal = (
                    burst.voltage_v
                    if number == 1
                    else burst.current_a * (self.bench.wiring.tia_gain_v_per_a)
                )
            if signal is None or float(np.ptp(signal)) == 0.0:
                channel.scale_v, channel.offset_v = 1.0, 0.0
                continue
            channel.scale_v = _one_two_five(float(np.ptp(signal)) / 6.0)
            channel.offset_v = float(np.min(signal) + np.max(signal)) / 2.0
        if burst is not None and burst.time_s.size > 1:
            self.state.time_scale_s_div = _one_two_five(float(np.ptp(burst.time_s)) / 10.0)
        self.state.time_reference = "CENT"
        self.state.trigger_source, self.state.trigger_sweep = "CHAN1", "AUTO"
        self._run_acquisition(call)


def _one_two_five(value: float) -> float:
    """The 1-2-5 step at or above ``value`` (how the scope rounds autoscaled settings)."""
    if value <= 0:
        return 1.0
    exponent = np.floor(np.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * 10**exponent >= value * (1 - 1e-9):
            return float(step * 10**exponent)
    return float(10 ** (exponent + 1))
