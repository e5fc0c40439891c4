"""The IEEE 488.2 / SCPI status system of a simulated instrument.

IEEE 488.2-1992 chapter 11 and SCPI-99 vol. 1 chapter 9: the Standard Event Status Register
(ESR: bit 0 OPC operation complete, 2 QYE query error, 3 DDE device-dependent error, 4 EXE
execution error, 5 CME command error, 7 PON power on) with its enable mask (``*ESE``); the
Status Byte (bit 2 EAV error queue not empty, 3 QUES summary, 5 ESB event summary, 6 MSS master
summary, 7 OPER summary) with the service-request enable (``*SRE``); the SCPI OPERation and
QUEStionable registers (condition, event, enable); and the error queue, whose last entry
becomes -350 "Queue overflow" when it is full. An error sets the ESR bit of its family.
``*OPC`` sets the OPC bit once every pending operation of the virtual bench has finished.
"""

from __future__ import annotations

import threading
from collections import deque

ESR_OPC, ESR_QYE, ESR_DDE, ESR_EXE, ESR_CME, ESR_PON = 1, 4, 8, 16, 32, 128
STB_EAV, STB_QUES, STB_ESB, STB_MSS, STB_OPER = 4, 8, 32, 64, 128


def esr_bit_for(code: int) -> int:
    """The ESR bit an error number sets (positive numbers are device-dependent)."""
    if -199 <= code <= -100:
        return ESR_CME
    if -299 <= code <= -200:
        return ESR_EXE
    if -499 <= code <= -400:
        return ESR_QYE
    return ESR_DDE


class Register:
    """A SCPI status register: condition, latched event (read clears), enable mask."""

    def __init__(self) -> None:
        self.condition = 0
        self.event = 0
        self.enable = 0

    def set_condition(self, bit: int, on: bool) -> None:
        """Positive transitions latch into the event register (the SCPI default filter)."""
        if on and not self.condition & bit:
            self.event |= bit
        self.condition = self.condition | bit if on else self.condition & ~bit

    def read_event(self) -> int:
        value, self.event = self.event, 0
        return value

    def summary(self) -> bool:
        return bool(self.event & self.enable)


class StatusSystem:
    """ESR/ESE, SRE, OPER/QUES registers, pending operations and the ``*OPC`` state."""

    def __init__(self, errors: deque[tuple[int, str]], queue_depth: int) -> None:
        self.errors = errors
        self.queue_depth = queue_depth
        self.esr = ESR_PON
        self.ese = 0
        self.sre = 0
        self.operation = Register()
        self.questionable = Register()
        self.opc_armed = False
        self.pending: set[str] = set()
        self.idle = threading.Event()
        self.idle.set()

    # ----- errors ---------------------------------------------------------------------------

    def push_error(self, code: int, text: str) -> None:
        self.esr |= esr_bit_for(code)
        if len(self.errors) >= self.queue_depth:
            self.errors[-1] = (-350, "Queue overflow")
            return
        self.errors.append((code, text))

    # ----- registers ------------------------------------------------------------------------

    def read_esr(self) -> int:
        value, self.esr = self.esr, 0
        return value

    def stb(self) -> int:
        """The status byte; MSS is the summary of the others under ``*SRE``."""
        value = 0
        if self.errors:
            value |= STB_EAV
        if self.questionable.summary():
            value |= STB_QUES
        if self.esr & self.ese:
            value |= STB_ESB
        if self.operation.summary():
            value |= STB_OPER
        if value & self.sre & ~STB_MSS:
            value |= STB_MSS
        return value

    def clear(self) -> None:
        """``*CLS``: event registers and the error queue cleared, ``*OPC`` forgotten."""
        self.errors.clear()
        self.esr = 0
        self.operation.event = 0
        self.questionable.event = 0
        self.opc_armed = False

    def preset(self) -> None:
        """``:STATus:PRESet``: the SCPI enable registers to 0 (ESE and SRE are untouched)."""
        self.operation.enable = 0
        self.questionable.enable = 0

    # ----- operations -----------------------------------------------------------------------

    def begin(self, name: str) -> None:
        """An overlapped operation started (an acquisition waiting for its trigger, ...)."""
        self.pending.add(name)
        self.idle.clear()

    def end(self, name: str) -> None:
        """It finished: with nothing pending, ``*OPC`` completes and ``*OPC?`` answers."""
        self.pending.discard(name)
        if not self.pending:
            if self.opc_armed:
                self.esr |= ESR_OPC
                self.opc_armed = False
            self.idle.set()

    def arm_opc(self) -> None:
        """``*OPC``: set the OPC bit now if idle, else when the last operation ends."""
        if self.pending:
            self.opc_armed = True
        else:
            self.esr |= ESR_OPC

    def abort(self) -> None:
        """``*RST`` / ``:ABORt``: every pending operation is dropped (idle at once)."""
        self.pending.clear()
        self.opc_armed = False
        self.idle.set()
