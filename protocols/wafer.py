"""The wafer map a run steps through: dies (column, row, label) and the sites on every die.

It comes from the station file's ``wafer`` section (written by ``bruno-lab sim serve``, or by
hand for a real prober) or from the plan's own ``wafer_map`` section, which wins. Format::

    name: W01
    dies: [[0, 0, "R00C00"], [1, 0, "R00C01"], ...]      # or [{col:, row:, label:}, ...]
    sites: [{site: 0, kind: fecap, geometry: {area_m2: 2.5e-11}}, ...]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bruno_lab.errors import PlanError


@dataclass(frozen=True)
class DieRef:
    """A die by its prober map index (column, row) and its label."""

    col: int
    row: int
    label: str


@dataclass(frozen=True)
class SiteRef:
    """A site (sub-die index) with the kind and geometry of the device it holds."""

    site: int
    kind: str
    geometry: dict[str, float] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class WaferMap:
    """Dies in stepping order and the sites every die holds."""

    name: str
    dies: tuple[DieRef, ...]
    sites: tuple[SiteRef, ...]

    def find_die(self, ref: str | list[int] | tuple[int, int]) -> DieRef | None:
        """The die given as a label or as ``[col, row]`` (also ``"col,row"``), or None."""
        if isinstance(ref, list | tuple):
            col, row = int(ref[0]), int(ref[1])
            return next((d for d in self.dies if (d.col, d.row) == (col, row)), None)
        for die in self.dies:
            if die.label == ref:
                return die
        if "," in ref:
            try:
                col, row = (int(p) for p in ref.split(","))
            except ValueError:
                return None
            return self.find_die([col, row])
        return None

    def site(self, index: int) -> SiteRef:
        for s in self.sites:
            if s.site == index:
                return s
        raise KeyError(index)


def _die(item: Any, where: str) -> DieRef:
    if isinstance(item, Mapping):
        col, row = int(item["col"]), int(item["row"])
        label = str(item.get("label") or f"{col},{row}")
    else:
        col, row = int(item[0]), int(item[1])
        label = str(item[2]) if len(item) > 2 else f"{col},{row}"
    return DieRef(col, row, label)


def wafer_map_from_dict(section: Mapping[str, Any], where: str = "wafer") -> WaferMap:
    """Build a ``WaferMap`` from a station's or plan's wafer section (format in module doc).

    Also accepts a die grid (``n_cols``/``n_rows``) when no explicit die list is given.
    """
    try:
        if "dies" in section and not isinstance(section["dies"], int):
            dies = tuple(_die(item, where) for item in section["dies"])
        elif "n_cols" in section and "n_rows" in section:
            dies = tuple(
                DieRef(c, r, f"{c},{r}")
                for r in range(int(section["n_rows"]))
                for c in range(int(section["n_cols"]))
            )
        else:
            raise KeyError("dies")
        sites = []
        for i, item in enumerate(section["sites"]):
            if isinstance(item, str):
                sites.append(SiteRef(i, item))
                continue
            geometry = {str(k): float(v) for k, v in (item.get("geometry") or {}).items()}
            # The sim writes geometry keys at the top level of each site (``area_m2``).
            geometry.update(
                {
                    k: float(v)
                    for k, v in item.items()
                    if k.endswith(("_m2", "_m")) and v is not None
                }
            )
            sites.append(
                SiteRef(int(item.get("site", item.get("index", i))), str(item["kind"]), geometry)
            )
        return WaferMap(str(section.get("name", "")), dies, tuple(sites))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else f"{exc}"
        raise PlanError(
            f"{where}: malformed wafer map ({what}); expected name, "
            "dies: [[col, row, label], ...] and sites: [{site, kind, geometry}, ...]"
        ) from None
