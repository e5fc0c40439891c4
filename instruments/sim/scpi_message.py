"""IEEE 488.2 program messages, split into units and data elements, for every simulated instrument.

Follows IEEE 488.2-1992 chapter 7 ("Device listening syntax") and SCPI-99 volume 1 chapter 6:

- a program message is units separated by ``;``; a unit is a header, optional white space and
  comma-separated data (``:SOUR:VOLT 1.5;:OUTP ON``);
- data elements are decimal numbers (NR1/NR2/NR3, with an optional unit suffix: ``100 mV``,
  ``1.5E-3A``), non-decimal numbers (``#H1F``, ``#Q17``, ``#B101``), character data
  (``MAXimum``, ``ON``), strings in ``"`` or ``'`` (a doubled quote stands for one), definite
  blocks ``#<n><len><bytes>`` and indefinite blocks ``#0<bytes>`` (up to the end of the message),
  and expressions in parentheses (SCPI channel lists ``(@1!1,2!3)``).

A definite block that the transport took out of the line by its length (see
``instruments.sim.server.BlockParser``) appears here as the placeholder ``#<N bytes>`` and its
bytes come separately. Errors are :class:`CommandError` with the standard numbers: -101 invalid
character, -102 syntax error, -103 invalid separator, -104 data type error, -151 invalid string
data, -161 invalid block data, -171 invalid expression.
"""

from __future__ import annotations

import re

__all__ = [
    "Block",
    "CommandError",
    "Expression",
    "MessageError",
    "Quoted",
    "Unit",
    "split_message",
]


class CommandError(Exception):
    """Raised while parsing or executing: the instrument queues ``code,"text"``."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f'{code},"{text}"')
        self.code = code
        self.text = text


class MessageError(CommandError):
    """A malformed unit; ``units`` holds the well-formed units before it (they still run)."""

    def __init__(self, code: int, text: str, units: list[Unit]) -> None:
        super().__init__(code, text)
        self.units = units


class Quoted(str):
    """A string data element (quotes removed, doubled quotes undone)."""

    __slots__ = ()


class Expression(str):
    """An expression data element, the text inside the parentheses (``@1!1,2`` for ``(@1!1,2)``)."""

    __slots__ = ()


class Block(bytes):
    """Arbitrary block program data (definite or indefinite)."""

    __slots__ = ()


# A data element: raw text (numeric or character data, stripped), or one of the typed kinds.
Element = str | Quoted | Expression | Block


class Unit:
    """One program message unit: its header (upper case, as sent) and its data elements."""

    __slots__ = ("data", "header")

    def __init__(self, header: str, data: list[Element]) -> None:
        self.header = header
        self.data = data

    def __repr__(self) -> str:
        return f"Unit({self.header!r}, {self.data!r})"


_SPECIAL = re.compile(r"[;\"'#(]")
_HEADER = re.compile(r"^:?(\*[A-Z][A-Z0-9_]*\??|[A-Z][A-Z0-9_]*(?::[A-Z][A-Z0-9_]*)*\??)$")
_PLACEHOLDER = re.compile(r"#<(\d+) bytes>")
_WHITE = " \t\r\n"


def split_message(text: str, blocks: list[bytes] | None = None) -> list[Unit]:
    """Split one program message (terminator removed) into units.

    ``blocks`` holds, in order, the bytes of the blocks the transport replaced by placeholders.
    Raises ``CommandError`` (-100 family) at the first malformed unit; the caller discards the
    rest of the message, as IEEE 488.2 6.1.6.1.1 asks of a command error.
    """
    if _SPECIAL.search(text) is None:  # the fast path: plain headers, numbers and words
        units: list[Unit] = []
        pieces = text.split(";") if ";" in text else [text]
        if len(pieces) > 1 and not pieces[-1].strip(_WHITE):
            pieces.pop()  # a trailing ';' before the terminator is tolerated
        try:
            for piece in pieces:
                units.append(_plain_unit(piece))
        except CommandError as exc:
            if len(pieces) == 1 and not text.strip(_WHITE):
                return []  # white space alone is an empty program message (IEEE 488.2 7.3.2)
            raise MessageError(exc.code, exc.text, units) from None
        return units
    return _Scanner(text, blocks or []).units()


def _plain_unit(piece: str) -> Unit:
    piece = piece.strip(_WHITE)
    header, _, rest = piece.partition(" ")
    if "\t" in header:
        header, _, more = header.partition("\t")
        rest = more + " " + rest
    header = header.upper()
    if not header:
        raise CommandError(-102, "Syntax error; empty unit")
    _check_header(header)
    rest = rest.strip(_WHITE)
    if not rest:
        return Unit(header, [])
    if " " in rest or "\t" in rest:
        data: list[Element] = [element.strip(_WHITE) for element in rest.split(",")]
    else:
        data = rest.split(",")  # type: ignore[assignment]
    if "" in data:
        raise CommandError(-103, "Invalid separator")
    return Unit(header, data)


def _check_header(header: str) -> None:
    if _HEADER.match(header) is None:
        if any(not (c.isalnum() or c in ":*?_") for c in header):
            raise CommandError(-101, "Invalid character")
        raise CommandError(-102, "Syntax error; malformed header")


class _Scanner:
    """Character scanner for messages with strings, blocks, expressions or several units."""

    def __init__(self, text: str, blocks: list[bytes]) -> None:
        self.text = text
        self.pos = 0
        self.blocks = list(blocks)

    def units(self) -> list[Unit]:
        units: list[Unit] = []
        try:
            return self._units(units)
        except CommandError as exc:
            raise MessageError(exc.code, exc.text, units) from None

    def _units(self, units: list[Unit]) -> list[Unit]:
        text = self.text
        while True:
            self._skip_white()
            start = self.pos
            while self.pos < len(text) and text[self.pos] not in _WHITE + ";":
                self.pos += 1
            header = text[start : self.pos].upper()
            if not header:
                if self.pos >= len(text) and units:
                    return units  # a trailing ';' before the terminator is tolerated
                raise CommandError(-102, "Syntax error; empty unit")
            _check_header(header)
            data = self._data()
            units.append(Unit(header, data))
            if self.pos >= len(text):
                return units
            self.pos += 1  # the ';'

    def _skip_white(self) -> None:
        text = self.text
        while self.pos < len(text) and text[self.pos] in _WHITE:
            self.pos += 1

    def _data(self) -> list[Element]:
        """Data elements up to the ';' or the end; leaves ``pos`` on the ';' (or at the end)."""
        data: list[Element] = []
        text = self.text
        self._skip_white()
        if self.pos >= len(text) or text[self.pos] == ";":
            return data
        while True:
            self._skip_white()
            data.append(self._element())
            self._skip_white()
            if self.pos >= len(text) or text[self.pos] == ";":
                return data
            if text[self.pos] != ",":
                raise CommandError(-103, "Invalid separator")
            self.pos += 1

    def _element(self) -> Element:
        text = self.text
        if self.pos >= len(text):
            raise CommandError(-103, "Invalid separator; missing data after ','")
        c = text[self.pos]
        if c in "\"'":
            return self._string(c)
        if c == "(":
            end = text.find(")", self.pos)
            if end < 0:
                raise CommandError(-171, "Invalid expression")
            inner = text[self.pos + 1 : end]
            self.pos = end + 1
            return Expression(inner.strip())
        if c == "#" and self.pos + 1 < len(text):
            nxt = text[self.pos + 1]
            if nxt == "<":
                return self._placeholder()
            if nxt.isdigit():
                return self._block(int(nxt))
        start = self.pos
        while self.pos < len(text) and text[self.pos] not in ",;":
            if text[self.pos] in "\"'(":
                raise CommandError(-101, "Invalid character")
            self.pos += 1
        element = text[start : self.pos].strip(_WHITE)
        if not element:
            raise CommandError(-103, "Invalid separator")
        return element

    def _string(self, quote: str) -> Quoted:
        text = self.text
        out: list[str] = []
        self.pos += 1
        while True:
            end = text.find(quote, self.pos)
            if end < 0:
                raise CommandError(-151, "Invalid string data; unterminated string")
            out.append(text[self.pos : end])
            self.pos = end + 1
            if self.pos < len(text) and text[self.pos] == quote:  # a doubled quote
                out.append(quote)
                self.pos += 1
                continue
            return Quoted("".join(out))

    def _placeholder(self) -> Block:
        found = _PLACEHOLDER.match(self.text, self.pos)
        if found is None or not self.blocks:
            raise CommandError(-161, "Invalid block data")
        self.pos = found.end()
        return Block(self.blocks.pop(0))

    def _block(self, n_digits: int) -> Block:
        text = self.text
        if n_digits == 0:  # indefinite length: everything up to the message terminator
            payload = text[self.pos + 2 :]
            self.pos = len(text)
            return Block(payload.encode("latin-1"))
        start = self.pos + 2
        length_text = text[start : start + n_digits]
        if len(length_text) != n_digits or not length_text.isdigit():
            raise CommandError(-161, "Invalid block data; bad length header")
        begin = start + n_digits
        end = begin + int(length_text)
        if end > len(text):
            raise CommandError(-161, "Invalid block data; block shorter than its header")
        self.pos = end
        return Block(text[begin:end].encode("latin-1"))
