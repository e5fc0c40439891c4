"""The report as data: sections of blocks (figures, tables, notes) that the template renders.

Sections build these objects and never write HTML; the Jinja2 templates do (autoescaped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from reporting.plotjson import dumps


@dataclass
class Cell:
    """A table cell: text, optionally a link (``href``) and a CSS class (``bad``, ``warn``)."""

    text: str
    href: str | None = None
    css: str = ""


@dataclass
class Block:
    kind: Literal["figure", "table", "note", "pre"]
    id: str = ""
    caption: str = ""
    figure: dict[str, Any] | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[list[Cell]] = field(default_factory=list)
    level: Literal["info", "warn", "bad", "good"] = "info"
    text: str = ""
    wide: bool = False

    @property
    def height(self) -> int:
        """The figure's height (px): its div is sized to it, so the page's layout never depends
        on when (or whether) plotly has drawn it."""
        return int(((self.figure or {}).get("layout") or {}).get("height") or 360)

    @property
    def figure_json(self) -> str:
        return dumps(self.figure or {})


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    blocks: list[Block] = field(default_factory=list)

    def fig(
        self, fig_id: str, figure: dict[str, Any], caption: str = "", wide: bool = False
    ) -> None:
        self.blocks.append(Block("figure", id=fig_id, caption=caption, figure=figure, wide=wide))

    def table(
        self, table_id: str, columns: list[str], rows: list[list[Any]], caption: str = ""
    ) -> None:
        cells = [[c if isinstance(c, Cell) else Cell(str(c)) for c in row] for row in rows]
        self.blocks.append(
            Block("table", id=table_id, caption=caption, columns=columns, rows=cells)
        )

    def note(self, text: str, level: Literal["info", "warn", "bad", "good"] = "info") -> None:
        self.blocks.append(Block("note", text=text, level=level))

    def figure_ids(self) -> list[str]:
        return [b.id for b in self.blocks if b.kind == "figure"]


@dataclass
class Report:
    title: str
    wafer: str
    subtitle: str
    sections: list[Section]
    meta: dict[str, Any] = field(default_factory=dict)
    device_curves: dict[str, Any] = field(default_factory=dict)  # device id -> curve traces

    def section(self, section_id: str) -> Section | None:
        return next((s for s in self.sections if s.id == section_id), None)
