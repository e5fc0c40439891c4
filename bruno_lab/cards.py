"""The model card: population statistics of one device kind, what the trainer consumes.

A card is produced by calibration from fits of measured devices, stored versioned in the
database (a refit adds a version, never overwrites) and read by the trainer. This module is the
schema (pydantic, JSON/YAML on disk) and its loading with errors that name the file and field.

Parameter names are those of the ``bruno_lab.devices`` parameter dataclasses, with their SI unit
in ``unit``. Device-to-device variability follows the design: theta_i = mean*(1 + sigma_rel*eps_i).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bruno_lab.errors import ModelCardError

SCHEMA_VERSION = 1

DeviceKindName = Literal["fecap", "felif", "rram"]
ScopeName = Literal["wafer", "lot"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParameterStats(_Strict):
    """Distribution of one model parameter over the devices of the scope."""

    unit: str = Field(description="SI unit of mean and std, e.g. 'm**2', 'V/m', '' for none.")
    mean: float
    std: float = Field(ge=0.0, description="Standard deviation over devices, in `unit`.")
    family: Literal["normal", "lognormal"] = "normal"
    n_devices: int = Field(ge=1)

    @property
    def sigma_rel(self) -> float:
        """Relative spread std/|mean| (the design's sigma in theta = mu*(1 + sigma*eps))."""
        return self.std / abs(self.mean) if self.mean != 0 else 0.0


class Correlations(_Strict):
    """Pearson correlations between parameters, as a symmetric matrix in `names` order."""

    names: list[str]
    matrix: list[list[float]]

    @model_validator(mode="after")
    def _square_symmetric(self) -> Correlations:
        n = len(self.names)
        if len(self.matrix) != n or any(len(row) != n for row in self.matrix):
            raise ValueError(f"matrix must be {n}x{n} to match names")
        for i in range(n):
            if abs(self.matrix[i][i] - 1.0) > 1e-6:
                raise ValueError(f"diagonal entry {i} must be 1")
            for j in range(n):
                c = self.matrix[i][j]
                if not -1.0 - 1e-9 <= c <= 1.0 + 1e-9 or abs(c - self.matrix[j][i]) > 1e-6:
                    raise ValueError(f"entry ({i},{j}) must lie in [-1, 1] and be symmetric")
        return self


class RramLevel(_Strict):
    """One programmed level after write-verify: where cells land and how widely."""

    index: int = Field(ge=0, description="0 = lowest conductance.")
    mean_siemens: float = Field(gt=0.0)
    sigma_siemens: float = Field(ge=0.0, description="Cell-to-cell spread after verify.")
    n_cells: int = Field(ge=1)
    # from arrays (optional): the distribution's tails and what programming it took
    p05_siemens: float | None = Field(None, ge=0.0, description="5th percentile over cells.")
    p95_siemens: float | None = Field(None, ge=0.0, description="95th percentile over cells.")
    mean_attempts: float | None = Field(None, ge=0.0, description="Pulses per cell to reach it.")
    p95_attempts: float | None = Field(None, ge=0.0)
    success_rate: float | None = Field(None, ge=0.0, le=1.0, description="Cells that reached it.")


class SpatialTrend(_Strict):
    """Spatial structure of one measured quantity over a crossbar: a plane in row and column
    plus random row and column effects and the per-cell rest (all in ``unit``)."""

    quantity: str = Field(min_length=1, description="e.g. forming_voltage_v.")
    unit: str
    mean: float
    per_row: float = Field(description="Change per row (from row 0 down), unit/row.")
    per_col: float = Field(description="Change per column, unit/column.")
    row_sigma: float = Field(ge=0.0, description="Spread of row means about the plane.")
    col_sigma: float = Field(ge=0.0, description="Spread of column means about the plane.")
    cell_sigma: float = Field(ge=0.0, description="Per-cell spread about plane and effects.")
    n_cells: int = Field(ge=1)


class ArrayDefects(_Strict):
    """Health-map statistics of the arrays (fractions of all cells)."""

    n_cells: int = Field(ge=1)
    stuck_fraction: float = Field(ge=0.0, le=1.0, description="Do not switch (e.g. stuck LRS).")
    unformed_fraction: float = Field(ge=0.0, le=1.0, description="Never formed.")
    out_of_window_fraction: float = Field(ge=0.0, le=1.0, description="Cannot span the window.")
    stuck_conductance_siemens: float = Field(ge=0.0, description="Mean read of stuck cells.")
    clustered_rows: int = Field(0, ge=0, description="Rows with more defects than chance.")
    clustered_cols: int = Field(0, ge=0, description="Columns with more defects than chance.")


class TransistorCompliance(_Strict):
    """The access transistors' saturation current I_sat(V_G), EKV model of
    ``bruno_lab.devices.one_t_one_r`` (``vth_v``, ``beta_a_v2`` fitted per cell from SET-pulse
    currents at several gate voltages; ``slope_n`` and ``temperature_k`` held)."""

    model_name: str = "ekv-saturation"
    vth_v: ParameterStats
    beta_a_v2: ParameterStats
    slope_n: float = Field(gt=0.0)
    temperature_k: float = Field(gt=0.0)
    gate_range_v: list[float] = Field(min_length=2, max_length=2)


class RramArrayStats(_Strict):
    """What only arrays give: spatial structure, defect maps, transistor compliance, and how
    programming went (scheme, tolerance, attempts)."""

    n_arrays: int = Field(ge=1)
    rows: int = Field(ge=1)
    cols: int = Field(ge=1)
    n_cells: int = Field(ge=1)
    scheme: str = Field(description="igvva or ispva.")
    tolerance_siemens: float = Field(gt=0.0)
    mean_attempts: float = Field(ge=0.0)
    spatial: list[SpatialTrend] = Field(default_factory=list)
    defects: ArrayDefects | None = None
    compliance: TransistorCompliance | None = None


class RramReadNoise(_Strict):
    """Noise on every read: sigma_siemens = floor_siemens + slope_rel * G."""

    floor_siemens: float = Field(ge=0.0)
    slope_rel: float = Field(ge=0.0)

    def sigma_siemens(self, conductance_siemens: float) -> float:
        return self.floor_siemens + self.slope_rel * conductance_siemens


class RramRelaxation(_Strict):
    """Change of a programmed state over log time after programming.

    After t seconds (t > t0_s) a cell's conductance is
    G*(1 + drift_rel_per_decade*d) + N(0, (sigma_siemens_per_decade*d)^2), d = log10(t/t0_s).
    """

    t0_s: float = Field(gt=0.0)
    drift_rel_per_decade: float
    sigma_siemens_per_decade: float = Field(ge=0.0)


class RramLadder(_Strict):
    """What write-verify reaches on this RRAM population: the level ladder and its noise.

    ``read_noise`` and ``relaxation`` are None when the wafer's plan did not measure them
    (no ``rram_read_noise`` with repeated reads of at least two levels, no ``rram_retention``):
    the card then says nothing about them, and readers must not invent them. The trainer's
    device synapse reads noise-free when ``read_noise`` is None and refuses a relaxation time
    > 0 when ``relaxation`` is None (``bruno_lab.train``)."""

    read_voltage_v: float = Field(gt=0.0)
    levels: list[RramLevel] = Field(min_length=2)
    read_noise: RramReadNoise | None = Field(
        None, description="Read-noise model; None when not measured (no repeated reads)."
    )
    relaxation: RramRelaxation | None = Field(
        None, description="Relaxation over log time; None when not measured (no retention)."
    )
    stuck_fraction: float = Field(ge=0.0, le=1.0, description="Cells that ignore programming.")
    stuck_conductance_siemens: float = Field(
        ge=0.0, description="Mean conductance a stuck cell reads (measured on the stuck cells)."
    )
    array: RramArrayStats | None = Field(
        None, description="From 1T1R arrays (None: single test cells only)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> RramLadder:
        idx = [lv.index for lv in self.levels]
        if idx != list(range(len(idx))):
            raise ValueError("levels must be indexed 0..n-1 in order")
        means = [lv.mean_siemens for lv in self.levels]
        if any(b <= a for a, b in itertools.pairwise(means)):
            raise ValueError("level means must increase with index")
        return self


class ModelCardBody(_Strict):
    """The JSON body of a model card (schema version 1)."""

    schema_version: Literal[1] = 1  # SCHEMA_VERSION
    device_kind: DeviceKindName
    scope: ScopeName
    scope_id: str = Field(min_length=1, description="Wafer name or lot name.")
    model_name: str = Field(min_length=1, description="Compact model, e.g. 'felif-lumped'.")
    model_version: str = Field(min_length=1)
    n_devices: int = Field(ge=1, description="Devices whose fits made these statistics.")
    n_defective: int = Field(ge=0, description="Devices flagged defective and left out.")
    parameters: dict[str, ParameterStats]
    correlations: Correlations | None = None
    rram: RramLadder | None = None
    notes: str = ""

    @model_validator(mode="after")
    def _kind_consistent(self) -> ModelCardBody:
        if (self.device_kind == "rram") != (self.rram is not None):
            raise ValueError("the `rram` ladder is required for rram cards and only for them")
        for name, stats in self.parameters.items():
            if not math.isfinite(stats.mean) or not math.isfinite(stats.std):
                raise ValueError(f"parameter {name}: mean and std must be finite")
        if self.correlations is not None:
            unknown = set(self.correlations.names) - set(self.parameters)
            if unknown:
                raise ValueError(f"correlations name unknown parameters {sorted(unknown)}")
        return self

    def sigma_rel(self) -> dict[str, float]:
        """Relative device-to-device spread of every parameter."""
        return {name: s.sigma_rel for name, s in self.parameters.items()}

    def means(self) -> dict[str, float]:
        return {name: s.mean for name, s in self.parameters.items()}


def parse_card(data: Any, *, where: str = "model card") -> ModelCardBody:
    """Validate a card document; errors name `where` and the offending field path."""
    try:
        return ModelCardBody.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ModelCardError(
            f"{where}: field {field}: {first['msg']} ({exc.error_count()} error(s))"
        ) from exc


def load_card_file(path: str | Path) -> ModelCardBody:
    """Read a card from a .json or .yaml file (as written by ``bruno-lab cards export``).

    Read through ``bruno_lab.yamlio``: strict UTF-8, no duplicate keys, bounded size/depth."""
    from bruno_lab.yamlio import load_data_file

    path = Path(path)
    if path.suffix.lower() not in {".json", ".yaml", ".yml"}:
        raise ModelCardError(f"{path}: a model card file is .json, .yaml or .yml")
    data = load_data_file(path, "model card", error=ModelCardError)
    return parse_card(data, where=str(path))


def card_json_schema() -> dict[str, Any]:
    """The JSON Schema of a card body, for documentation and external validators."""
    return ModelCardBody.model_json_schema()
