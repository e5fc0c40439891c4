"""The virtual wafer: a die map, sites per die, and one drawn device per (die, site).

Built from a truth file (YAML, see ``truth_default.yaml`` and docs/sim-truth.md) and a seed.
Every device's draw uses its own generator seeded from ``(seed, col, row, site)``, so the wafer
is the same for the same seed whatever order devices are visited in, and devices are drawn only
when first touched. Parameter names are those of the ``bruno_lab.devices`` dataclasses; the
variability follows the design: theta_i = mean*(1 + sigma_rel*eps_i) (or lognormal).
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, ValidationError, model_validator

from bruno_lab.errors import PlanError
from bruno_lab.strict import StrictModel
from instruments.sim.device_truth import DeviceTruth, SimDevice

if TYPE_CHECKING:
    from instruments.sim.crossbar import Crossbar

DEFAULT_TRUTH_PATH = Path(__file__).with_name("truth_default.yaml")
MIN_DIE_UM = 100.0
MAX_DIES = 100_000
MAX_SITES = 10_000
KindName = Literal["fecap", "felif", "rram", "rram_array"]
"""``rram_array``: a 1T1R crossbar (``Site.array``) whose cells follow ``populations.rram``."""
PopulationKind = Literal["fecap", "felif", "rram"]
DefectName = Literal["short", "open", "stuck_lrs", "stuck_hrs"]


class _Strict(StrictModel):
    # StrictModel: unknown fields, inf/nan and booleans-as-numbers refused
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(_Strict):
    """How one parameter varies from device to device."""

    mean: float
    sigma_rel: float = Field(0.0, ge=0.0, le=1.0)
    family: Literal["normal", "lognormal"] = "normal"
    min: float | None = None
    max: float | None = None


class WaferGeometry(_Strict):
    """The round wafer and its rectangular die grid; dies wholly inside the usable disc.

    Dies are at least ``MIN_DIE_UM`` on a side and the grid holds at most ``MAX_DIES`` cells, so
    a typo (``die_width_um: 0.001``) is refused instead of building a map of 10^14 dies."""

    diameter_mm: float = Field(gt=0.0, le=450.0)
    edge_exclusion_mm: float = Field(0.0, ge=0.0)
    die_width_um: float = Field(ge=MIN_DIE_UM, le=450_000.0)
    die_height_um: float = Field(ge=MIN_DIE_UM, le=450_000.0)

    @model_validator(mode="after")
    def _bounded_grid(self) -> WaferGeometry:
        radius_um = (self.diameter_mm / 2.0 - self.edge_exclusion_mm) * 1000.0
        if radius_um <= 0:
            raise ValueError("edge_exclusion_mm leaves no usable wafer area")
        cells = (2 * radius_um // self.die_width_um) * (2 * radius_um // self.die_height_um)
        if cells > MAX_DIES:
            raise ValueError(
                f"a {self.die_width_um:g} x {self.die_height_um:g} um die grid on this wafer has "
                f"{cells:.3g} cells, more than {MAX_DIES}: use larger dies"
            )
        return self


class Gradient(_Strict):
    """A linear spatial trend of one parameter: relative change per row and per column of an
    array, counted from the array's centre (theta *= 1 + row_rel*(r - r_c) + col_rel*(c - c_c))."""

    row_rel: float = Field(0.0, ge=-0.1, le=0.1)
    col_rel: float = Field(0.0, ge=-0.1, le=0.1)


class DieGradient(_Strict):
    """A linear trend across the wafer: relative change per mm of die position (x right, y up)."""

    x_rel_per_mm: float = Field(0.0, ge=-0.1, le=0.1)
    y_rel_per_mm: float = Field(0.0, ge=-0.1, le=0.1)


class ArraySpec(_Strict):
    """A 1T1R crossbar: rows (word and source lines) x columns (bit lines) of cells.

    Each cell's RRAM parameters are drawn from ``populations.rram`` (per-cell spread), times the
    spatially correlated factors here (die offset, wafer trend, row/column trends); the access
    transistors from ``transistor``. Line resistances give IR drop; stuck cells are drawn per
    cell. Semantics: docs/sim-truth.md, physics: ``bruno_lab.devices.one_t_one_r``."""

    rows: int = Field(ge=1, le=1024)
    cols: int = Field(ge=1, le=1024)
    pitch_um: float = Field(0.5, gt=0.0)
    bit_line_ohm_per_cell: float = Field(0.5, ge=0.0, le=1e3)
    source_line_ohm_per_cell: float = Field(0.5, ge=0.0, le=1e3)
    transistor: dict[str, Distribution] = Field(default_factory=dict)
    gradients: dict[str, Gradient] = Field(default_factory=dict)
    die_sigma_rel: dict[str, float] = Field(default_factory=dict)
    die_gradients: dict[str, DieGradient] = Field(default_factory=dict)
    stuck_lrs_rate: float = Field(0.0, ge=0.0, le=1.0)
    stuck_hrs_rate: float = Field(0.0, ge=0.0, le=1.0)
    sense_noise_a: float = Field(5e-9, ge=0.0, description="column sense-amplifier noise, A rms")

    @property
    def n_cells(self) -> int:
        return self.rows * self.cols


class Site(_Strict):
    """One device position inside a die (the prober's sub-die site index counts from 0)."""

    kind: KindName
    area_m2: float = Field(gt=0.0)
    x_um: float = 0.0
    y_um: float = 0.0
    label: str = ""
    array: ArraySpec | None = None

    @model_validator(mode="after")
    def _array_iff_kind(self) -> Site:
        if (self.kind == "rram_array") != (self.array is not None):
            raise ValueError("`array` is required for kind rram_array sites and only for them")
        return self


class Population(_Strict):
    """The distribution of every model parameter of one device kind."""

    params: dict[str, Distribution] = Field(default_factory=dict)
    n_domains: int = Field(1, ge=1, le=4096)


class Defects(_Strict):
    """Probability that a device is born defective, per kind of defect."""

    short_rate: float = Field(0.0, ge=0.0, le=1.0)
    open_rate: float = Field(0.0, ge=0.0, le=1.0)
    stuck_rate: float = Field(0.0, ge=0.0, le=1.0, description="RRAM only: stuck LRS or HRS")


class Truth(_Strict):
    """The whole truth file."""

    name: str = Field(min_length=1, max_length=128)
    wafer: WaferGeometry
    sites: list[Site] = Field(min_length=1, max_length=MAX_SITES)
    populations: dict[PopulationKind, Population]
    defects: Defects = Defects()
    short_resistance_ohm: float = Field(10.0, gt=0.0)

    @classmethod
    def load(cls, source: str | Path | dict[str, Any] | Truth | None = None) -> Truth:
        """A truth from a path, a dict, a Truth, or None for the default that ships."""
        if isinstance(source, Truth):
            return source
        where = "<dict>"
        if source is None:
            source = DEFAULT_TRUTH_PATH
        if isinstance(source, str | Path):
            where = str(source)
            from bruno_lab.yamlio import load_yaml_file

            source = load_yaml_file(source, "truth file").data
        try:
            truth = cls.model_validate(source)
        except ValidationError as exc:
            raise PlanError(f"{where}: invalid truth file: {_first_errors(exc)}") from None
        needed = {"rram" if site.kind == "rram_array" else site.kind for site in truth.sites}
        missing = needed - set(truth.populations)
        if missing:
            raise PlanError(f"{where}: populations: no entry for kinds {sorted(missing)}")
        _check_parameters(truth, where)
        return truth


def _first_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _check_parameters(truth: Truth, where: str) -> None:
    """Every population names parameters of its device model, with means inside their bounds
    (checked now, not when the first device is drawn mid-run)."""
    from bruno_lab.devices.scenarios import params_class
    from bruno_lab.errors import BadInputError

    for kind, population in truth.populations.items():
        document = {name: dist.mean for name, dist in population.params.items()}
        try:
            params_class(kind).from_json(document, n=1, where=f"{where}: populations.{kind}")
        except BadInputError as exc:
            raise PlanError(str(exc)) from None


class Wafer:
    """The die map and the lazily drawn devices of one seeded wafer."""

    def __init__(self, truth: Truth, seed: int) -> None:
        self.truth = truth
        self.seed = int(seed)
        self.dies: list[tuple[int, int]] = _die_map(truth.wafer)
        if not self.dies:
            raise PlanError("truth wafer: no die fits inside the usable wafer area")
        self._index = {die: i for i, die in enumerate(self.dies)}
        self._devices: dict[tuple[int, int, int], SimDevice] = {}
        self._arrays: dict[tuple[int, int, int], Crossbar] = {}
        self.n_cols = max(c for c, _ in self.dies) + 1
        self.n_rows = max(r for _, r in self.dies) + 1

    @property
    def n_sites(self) -> int:
        return len(self.truth.sites)

    def die_index(self, col: int, row: int) -> int | None:
        return self._index.get((col, row))

    def die_position_um(self, col: int, row: int) -> tuple[float, float]:
        """Die centre from the wafer centre, µm (x right, y up)."""
        geometry = self.truth.wafer
        x_um = (col - (self.n_cols - 1) / 2.0) * geometry.die_width_um
        y_um = ((self.n_rows - 1) / 2.0 - row) * geometry.die_height_um
        return x_um, y_um

    def device(self, col: int, row: int, site: int) -> SimDevice:
        """The device at a die and site (site counts from 0); drawn on first use."""
        if (col, row) not in self._index:
            raise KeyError(f"die ({col}, {row}) is not on the wafer map")
        if not 0 <= site < self.n_sites:
            raise KeyError(f"site {site} outside 0..{self.n_sites - 1}")
        key = (col, row, site)
        if key not in self._devices:
            self._devices[key] = SimDevice(truth=self._draw(col, row, site))
        return self._devices[key]

    def array(self, col: int, row: int, site: int) -> Crossbar:
        """The crossbar (``instruments.sim.crossbar.Crossbar``) at a die's ``rram_array`` site,
        drawn on first use; ``KeyError`` for a site that holds no array."""
        if (col, row) not in self._index:
            raise KeyError(f"die ({col}, {row}) is not on the wafer map")
        if not 0 <= site < self.n_sites or self.truth.sites[site].array is None:
            raise KeyError(f"site {site} holds no rram_array")
        key = (col, row, site)
        if key not in self._arrays:
            from instruments.sim.crossbar import Crossbar

            self._arrays[key] = Crossbar.draw(self, col, row, site)
        return self._arrays[key]

    def _draw(self, col: int, row: int, site: int) -> DeviceTruth:
        spec = self.truth.sites[site]
        if spec.kind == "rram_array":  # its cells are the crossbar's (``array``)
            raise KeyError(f"site {site} is an rram_array: its cells belong to Wafer.array")
        population = self.truth.populations[spec.kind]
        rng = np.random.default_rng([self.seed, col, row, site, zlib.crc32(spec.kind.encode())])
        params = {name: _draw_one(dist, rng) for name, dist in sorted(population.params.items())}
        return DeviceTruth(
            col=col,
            row=row,
            site=site,
            kind=spec.kind,
            area_m2=spec.area_m2,
            params=params,
            n_domains=population.n_domains,
            defect=_draw_defect(self.truth.defects, spec.kind, rng),
        )

    def station_summary(self) -> dict[str, Any]:
        """What a plan needs to know of the map: the station file's ``wafer`` section."""
        return {
            "name": self.truth.name,
            "n_dies": len(self.dies),
            "dies": [[c, r] for c, r in self.dies],
            "sites": [
                {"site": i, "kind": s.kind, "area_m2": s.area_m2, "label": s.label}
                | (
                    {"geometry": {"rows": float(s.array.rows), "cols": float(s.array.cols)}}
                    if s.array is not None
                    else {}
                )
                for i, s in enumerate(self.truth.sites)
            ],
        }


def _draw_one(dist: Distribution, rng: np.random.Generator) -> float:
    eps = float(rng.standard_normal())
    if dist.family == "lognormal":
        value = dist.mean * math.exp(dist.sigma_rel * eps - 0.5 * dist.sigma_rel**2)
    else:
        value = dist.mean * (1.0 + dist.sigma_rel * eps)
    if dist.min is not None:
        value = max(value, dist.min)
    if dist.max is not None:
        value = min(value, dist.max)
    return value


def _draw_defect(defects: Defects, kind: str, rng: np.random.Generator) -> str | None:
    u = float(rng.random())
    if u < defects.short_rate:
        return "short"
    u -= defects.short_rate
    if u < defects.open_rate:
        return "open"
    u -= defects.open_rate
    if kind == "rram" and u < defects.stuck_rate:
        return "stuck_lrs" if rng.random() < 0.5 else "stuck_hrs"
    return None


def _die_map(geometry: WaferGeometry) -> list[tuple[int, int]]:
    """Dies (col, row) whose four corners lie inside the usable radius; row 0 at the top."""
    radius_um = (geometry.diameter_mm / 2.0 - geometry.edge_exclusion_mm) * 1000.0
    n_cols = int(2 * radius_um // geometry.die_width_um)
    n_rows = int(2 * radius_um // geometry.die_height_um)
    dies = []
    for row in range(n_rows):
        for col in range(n_cols):
            x0 = (col - n_cols / 2.0) * geometry.die_width_um
            y0 = (n_rows / 2.0 - row - 1) * geometry.die_height_um
            corners = [
                (x0 + dx, y0 + dy)
                for dx in (0.0, geometry.die_width_um)
                for dy in (0.0, geometry.die_height_um)
            ]
            if all(math.hypot(x, y) <= radius_um for x, y in corners):
                dies.append((col, row))
    # Renumber so that the map's bounding box starts at column 0 and row 0.
    if not dies:
        return []
    c0 = min(c for c, _ in dies)
    r0 = min(r for _, r in dies)
    return [(c - c0, r - r0) for c, r in dies]
