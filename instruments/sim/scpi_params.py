"""Parameter types of the simulated instruments' command tables: how a data element is read,
checked and formatted back.

Each type turns one data element (see :mod:`instruments.sim.scpi_message`) into a Python value
or raises :class:`CommandError` with the IEEE 488.2 / SCPI number: -104 data type error, -108
parameter not allowed, -109 missing parameter, -120/-121 bad numeric data, -131 invalid
suffix, -138 suffix not allowed, -141 invalid character data, -222 data out of range, -224
illegal parameter value. Numbers accept ``MINimum``/``MAXimum``/``DEFault`` and, where a step is
declared, ``UP``/``DOWN`` (SCPI-99 vol. 1, 7.2.1); unit suffixes take the SCPI multipliers
(SCPI-99 vol. 1, 7.7.3: ``M`` is milli, ``MA`` mega, except ``MHZ`` and ``MOHM``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from instruments.sim.scpi_message import Block, CommandError, Element, Expression, Quoted

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[ \t]*[eE][ \t]*[+-]?\d+)?")
_MULTIPLIERS = {
    "EX": 1e18, "PE": 1e15, "T": 1e12, "G": 1e9, "MA": 1e6, "K": 1e3, "M": 1e-3,
    "U": 1e-6, "N": 1e-9, "P": 1e-12, "F": 1e-15, "A": 1e-18,
}  # fmt: skip
_OPTION_PART = re.compile(r"(\[)?:?([A-Za-z0-9_]+)\]?")
NOT_A_NUMBER = 9.91e37  # IEEE 488.2 / SCPI: NAN
INFINITY = 9.9e37


def mnemonic_forms(word: str) -> tuple[str, str]:
    """(short, long) forms of a manual-cased mnemonic: ``VOLTage`` -> (``VOLT``, ``VOLTAGE``)."""
    short = "".join(c for c in word if not c.islower())
    return short.upper(), word.upper()


def nr3(value: float) -> str:
    """Keysight's reply format for reals: ``+1.00000000E+00``."""
    return f"{value:+.8E}"


def keithley_real(value: float) -> str:
    """Keithley 2450's reply format for reals: ``1.000000E+00``."""
    return f"{value:.6E}"


def nr1(value: float) -> str:
    return str(round(value))


def signed_nr1(value: float) -> str:
    return f"{round(value):+d}"


class Param:
    """A data element of a command; subclasses parse, check and format one kind."""

    name: str = "value"
    optional: bool = False

    def parse(self, element: Element, current: Any = None) -> Any:
        raise NotImplementedError

    def format(self, value: Any) -> str:
        return str(value)

    def describe(self) -> str:
        return self.name


@dataclass
class Number(Param):
    """A decimal (or, for integers, non-decimal) number in ``[low, high]``.

    ``unit`` is the suffix the manual allows (``V``, ``A``, ``S``, ``HZ``, ``OHM``, ``PCT``...);
    ``step`` enables UP/DOWN; ``special`` maps extra words to values (``INFinity`` for a load).
    """

    low: float = -float("inf")
    high: float = float("inf")
    default: float | None = None
    unit: str | None = None
    integer: bool = False
    step: float | None = None
    special: dict[str, float] = field(default_factory=dict)
    fmt: Callable[[float], str] = nr3
    name: str = "<numeric>"
    optional: bool = False

    def __post_init__(self) -> None:
        self._words: dict[str, float | None] = {"MIN": self.low, "MINIMUM": self.low}
        self._words |= {"MAX": self.high, "MAXIMUM": self.high}
        self._words |= {"DEF": self.default, "DEFAULT": self.default}
        for word, value in self.special.items():
            short, long = mnemonic_forms(word)
            self._words[short] = self._words[long] = value

    def parse(self, element: Element, current: Any = None) -> float:
        if type(element) is not str:
            raise CommandError(-104, "Data type error; numeric data expected")
        found = _NUMBER.match(element)
        if found is None:
            return self._word(element.upper(), current)
        value = float(found.group().replace(" ", "").replace("\t", ""))
        rest = element[found.end() :]
        if rest:
            value *= self._suffix(rest)
        return self._checked(value)

    def _word(self, word: str, current: Any) -> float:
        if word.startswith("#") and self.integer:
            return self._checked(_non_decimal(word))
        if word in ("UP", "DOWN") and self.step is not None and current is not None:
            return self._checked(float(current) + (self.step if word == "UP" else -self.step))
        if word in self._words:
            value = self._words[word]
            if value is None or value in (float("inf"), -float("inf")):
                raise CommandError(-224, f"Illegal parameter value; {word} not allowed here")
            return value
        if word[:1].isdigit() or word[:1] in "+-.":
            raise CommandError(-121, "Invalid character in number")
        raise CommandError(-104, "Data type error; numeric data expected")

    def _suffix(self, rest: str) -> float:
        suffix = rest.strip().upper()
        if not suffix:
            return 1.0
        if not suffix[0].isalpha() and suffix[0] != "%":
            raise CommandError(-121, "Invalid character in number")
        if self.unit is None:
            raise CommandError(-138, "Suffix not allowed")
        unit = self.unit.upper()
        if suffix == unit:
            return 1.0
        if suffix.endswith(unit):
            prefix = suffix[: -len(unit)]
            if prefix == "M" and unit in ("HZ", "OHM"):
                return 1e6  # SCPI: MHZ and MOHM are mega
            if prefix in _MULTIPLIERS:
                return _MULTIPLIERS[prefix]
        raise CommandError(-131, "Invalid suffix")

    def _checked(self, value: float) -> float:
        if self.integer:
            value = float(round(value))
        if not (self.low <= value <= self.high):
            raise CommandError(-222, "Data out of range")
        return value

    def format(self, value: Any) -> str:
        return self.fmt(value)

    def describe(self) -> str:
        text = _bounds(self.low, self.high)
        if self.unit:
            text += f" {self.unit}"
        words = "|".join(w for w in ("MIN", "MAX", "DEF") if self._words.get(w) is not None)
        if self.step is not None:
            words += "|UP|DOWN"
        for word in self.special:
            words += f"|{word}"
        return f"{text}, {words}" if words else text


def _bounds(low: float, high: float) -> str:
    return f"{low:g}..{high:g}"


def _non_decimal(word: str) -> float:
    bases = {"#H": 16, "#Q": 8, "#B": 2}
    try:
        return float(int(word[2:], bases[word[:2]]))
    except (KeyError, ValueError):
        raise CommandError(-121, "Invalid character in number") from None


@dataclass
class Boolean(Param):
    """``ON``/``OFF`` or a number (0 is off, any other value rounds to on)."""

    name: str = "ON|OFF|1|0"
    optional: bool = False
    fmt: Callable[[bool], str] = field(default=lambda v: "1" if v else "0")

    def parse(self, element: Element, current: Any = None) -> bool:
        if type(element) is not str:
            raise CommandError(-104, "Data type error; boolean expected")
        word = element.upper()
        if word == "ON":
            return True
        if word == "OFF":
            return False
        if _NUMBER.fullmatch(word) is None:
            raise CommandError(-224, "Illegal parameter value; ON, OFF, 1 or 0 expected")
        return round(float(word)) != 0

    def format(self, value: Any) -> str:
        return self.fmt(value)

    def describe(self) -> str:
        return "ON|OFF|1|0"


class Choice(Param):
    """One of the manual's words (``SINusoid``, ``SQUare``...; ``CURRent[:DC]`` style parts with
    colons too). The value is the canonical short form (``SIN``); ``quoted`` accepts the word in
    quotes as well (the 2450's ``:SENS:FUNC "CURR"``), ``reply`` says how a query shows it."""

    def __init__(
        self,
        *options: str,
        quoted: bool = False,
        reply: Callable[[str], str] | None = None,
        name: str | None = None,
        optional: bool = False,
    ) -> None:
        self.options = options
        self.quoted = quoted
        self.reply = reply
        self.optional = optional
        self.name = name or "|".join(options)
        self._lookup: dict[str, str] = {}
        for option in options:
            self._add(option)

    def _add(self, option: str) -> None:
        parts = [(bool(m.group(1)), m.group(2)) for m in _OPTION_PART.finditer(option)]
        canonical = ":".join(mnemonic_forms(word)[0] for _, word in parts)
        spellings: list[list[str]] = [[]]  # short/long per part; optional parts may be left out
        for optional_part, word in parts:
            forms = list(dict.fromkeys(mnemonic_forms(word)))
            grown = [[*s, f] for s in spellings for f in forms]
            spellings = grown + spellings if optional_part else grown
        for spelling in spellings:
            self._lookup[":".join(spelling)] = canonical

    def parse(self, element: Element, current: Any = None) -> str:
        if type(element) is Quoted and not self.quoted:
            raise CommandError(-104, "Data type error; character data expected")
        if not isinstance(element, str) or type(element) is Expression:
            raise CommandError(-104, "Data type error; character data expected")
        value = self._lookup.get(element.upper())
        if value is None:
            raise CommandError(-224, "Illegal parameter value")
        return value

    def format(self, value: Any) -> str:
        return self.reply(value) if self.reply is not None else str(value)

    def describe(self) -> str:
        return self.name


@dataclass
class String(Param):
    """A quoted string (``"defbuffer1"``); ``bare`` accepts an unquoted word too."""

    max_length: int = 1024
    bare: bool = False
    name: str = "<string>"
    optional: bool = False

    def parse(self, element: Element, current: Any = None) -> str:
        if type(element) is Quoted or (self.bare and type(element) is str):
            if len(element) > self.max_length:
                raise CommandError(-150, "String data error; too long")
            return str(element)
        raise CommandError(-104, "Data type error; string expected")

    def format(self, value: Any) -> str:
        return '"' + str(value).replace('"', '""') + '"'


@dataclass
class BlockData(Param):
    """Arbitrary block program data (``#<n><len><bytes>`` or ``#0...``)."""

    name: str = "<block>"
    optional: bool = False

    def parse(self, element: Element, current: Any = None) -> bytes:
        if type(element) is not Block:
            raise CommandError(-104, "Data type error; block data expected")
        return bytes(element)


@dataclass
class Raw(Param):
    """Any one data element, unparsed (character data, string, expression or block)."""

    name: str = "<data>"
    optional: bool = False

    def parse(self, element: Element, current: Any = None) -> Element:
        return element


@dataclass
class ChannelList(Param):
    """A SCPI channel list expression ``(@...)``; the value is the text after ``@``."""

    name: str = "(@<channels>)"
    optional: bool = False

    def parse(self, element: Element, current: Any = None) -> str:
        if type(element) is not Expression or not element.startswith("@"):
            raise CommandError(-104, "Data type error; channel list (@...) expected")
        return element[1:].strip()


def parse_number_list(
    elements: Sequence[Element], low: float, high: float, max_count: int
) -> np.ndarray:
    """Comma-separated numbers (all remaining data elements) as float64; -104, -108 or -222.

    Converts in numpy (an ASCII waveform of a million points costs one C pass) and then refuses
    what Python's float() accepts beyond SCPI's numbers (``inf``, ``nan``, ``1_0``).
    """
    if not elements:
        raise CommandError(-109, "Missing parameter")
    if len(elements) > max_count:
        raise CommandError(-108, f"Parameter not allowed; at most {max_count} values")
    if any(type(e) is not str for e in elements):
        raise CommandError(-104, "Data type error; numeric data expected")
    try:  # numpy's C conversion checks each value; what Python's float() allows beyond
        values = np.array(elements, dtype=np.float64)  # SCPI's numbers is refused below
    except ValueError:
        raise CommandError(-104, "Data type error; numeric data expected") from None
    if not np.all(np.isfinite(values)) or "_" in ",".join(elements):  # type: ignore[arg-type]
        raise CommandError(-104, "Data type error; numeric data expected")  # inf, nan, 1_0
    if values.size and (values.min() < low or values.max() > high):
        raise CommandError(-222, "Data out of range")
    return values
