"""Wafer plans in YAML: which dies, which sites per device kind, which protocols, when to stop.

The format is documented field by field in ``docs/plans.md``; an example ships as
``protocols/examples/wafer_baseline.yaml``. Loading validates everything a run needs before any
instrument is touched: YAML syntax, field names, units ("1.5 V", "100 ns"), protocol names and
their parameters, and (with a wafer map) that every named die exists. Every error is a
``PlanError`` that names the file, the line and field, and the allowed values.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator

from bruno_lab.errors import BadInputError, PlanError
from bruno_lab.safeio import read_text
from bruno_lab.strict import StrictModel
from bruno_lab.yamlio import MAX_FILE_BYTES, parse_yaml
from protocols.base import ProtocolParams, Seconds
from protocols.registry import all_protocols
from protocols.wafer import DieRef, WaferMap

KINDS = ("fecap", "rram", "felif", "rram_array")


class DiePattern(StrictModel):
    """Dies whose label matches a shell-style pattern (``"R0?C*"``)."""

    model_config = ConfigDict(extra="forbid")
    pattern: str


class ProtocolStep(StrictModel):
    """One entry of the protocol sequence: a protocol, its parameters, the kinds it runs on."""

    model_config = ConfigDict(extra="forbid")
    protocol: str
    params: dict[str, Any] = Field(default_factory=dict)
    kinds: list[Literal["fecap", "rram", "felif", "rram_array"]] | None = None


class StopConditions(StrictModel):
    """When the orchestrator stops a run early (cleanly, status failed)."""

    model_config = ConfigDict(extra="forbid")
    max_failed: int | None = Field(None, ge=0)
    max_consecutive_failed: int | None = Field(None, ge=1)
    max_duration_s: Seconds | None = Field(None, gt=0)


class PlanFile(StrictModel):
    """The raw plan as written (before protocols' parameters are typed)."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = 1
    name: str = Field(min_length=1, max_length=128)
    wafer: str | None = None
    dies: Literal["all"] | list[str | list[int]] | DiePattern = "all"
    sites: dict[Literal["fecap", "rram", "felif", "rram_array"], Literal["all"] | list[int]] = (
        Field(default_factory=dict)
    )
    protocols: list[ProtocolStep] = Field(min_length=1)
    stop: StopConditions = Field(default_factory=StopConditions)
    wafer_map: dict[str, Any] | None = None

    @field_validator("dies")
    @classmethod
    def _die_refs(cls, value: Any) -> Any:
        if isinstance(value, list):
            for item in value:
                if isinstance(item, list) and len(item) != 2:
                    raise ValueError("a die given as a list must be [col, row]")
        return value


class Step:
    """A validated protocol step: its typed parameters and the device kinds it runs on."""

    def __init__(self, name: str, params: ProtocolParams, kinds: tuple[str, ...]) -> None:
        self.name = name
        self.params = params
        self.kinds = kinds

    def rows(self) -> list[ProtocolParams]:
        return self.params.expand()


class Plan:
    """A loaded, validated plan. ``sha256`` identifies it for resuming an interrupted run."""

    def __init__(
        self,
        raw: PlanFile,
        steps: list[Step],
        source: str,
        document: dict,
        lines: dict[tuple[Any, ...], int] | None = None,
    ) -> None:
        self.raw = raw
        self.lines = lines or {}
        self.steps = steps
        self.source = source
        self.document = document
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
        self.sha256 = hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def name(self) -> str:
        return self.raw.name

    def where(self, *path: Any) -> str:
        """``file:line: field`` of a plan field, for error messages."""
        return _where(self.source, self.lines, tuple(path))

    def select_dies(self, wafer: WaferMap) -> list[DieRef]:
        """The dies of ``wafer`` this plan visits, in wafer-map order."""
        dies = self.raw.dies
        if dies == "all":
            return list(wafer.dies)
        if isinstance(dies, DiePattern):
            chosen = [d for d in wafer.dies if fnmatch.fnmatchcase(d.label, dies.pattern)]
            if not chosen:
                labels = ", ".join(d.label for d in wafer.dies[:8])
                raise PlanError(
                    f"{self.where('dies', 'pattern')}: {dies.pattern!r} matches no die "
                    f"(labels look like: {labels}, ...)"
                )
            return chosen
        wanted: list[DieRef] = []
        for i, item in enumerate(dies):
            die = wafer.find_die(item)
            if die is None:
                raise PlanError(
                    f"{self.where('dies', i)}: {item!r}: no such die on wafer {wafer.name!r} "
                    f"({len(wafer.dies)} dies; give [col, row] or a label such as "
                    f"{wafer.dies[0].label!r})"
                )
            wanted.append(die)
        order = {d: i for i, d in enumerate(wafer.dies)}
        return sorted(dict.fromkeys(wanted), key=order.__getitem__)

    def select_sites(self, wafer: WaferMap, kind: str) -> list[int]:
        """Site indices of ``kind`` the plan measures (default: all sites of that kind)."""
        of_kind = [s.site for s in wafer.sites if s.kind == kind]
        chosen = self.raw.sites.get(kind, "all")  # type: ignore[call-overload]
        if chosen == "all":
            return of_kind
        for site in chosen:
            if site not in of_kind:
                raise PlanError(
                    f"{self.where('sites', kind)}: site {site} is not a {kind} site on wafer "
                    f"{wafer.name!r}; {kind} sites are {of_kind}"
                )
        return list(chosen)

    def check_wafer(self, wafer: WaferMap) -> None:
        """Raise ``PlanError`` if the plan names a die, site or wafer the map does not hold."""
        if self.raw.wafer is not None and wafer.name and self.raw.wafer != wafer.name:
            raise PlanError(
                f"{self.where('wafer')}: plan is for {self.raw.wafer!r} but the station holds "
                f"wafer {wafer.name!r}"
            )
        self.select_dies(wafer)
        for kind in KINDS:
            self.select_sites(wafer, kind)


def _line_index(root: yaml.Node | None) -> dict[tuple[Any, ...], int]:
    """Map each YAML path (keys and list indices) to its 1-based line, for error messages."""
    index: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        index[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                kpath = (*path, key.value)
                index[kpath] = key.start_mark.line + 1
                walk(value, kpath)
                index[kpath] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return index


def _line_of(index: dict[tuple[Any, ...], int], path: tuple[Any, ...]) -> int | None:
    while path:
        if path in index:
            return index[path]
        path = path[:-1]
    return index.get(())


def _where(source: str, index: dict[tuple[Any, ...], int], path: tuple[Any, ...]) -> str:
    line = _line_of(index, path)
    dotted = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")
    return f"{source}:{line}: {dotted or '(top level)'}" if line else f"{source}: {dotted}"


def _format_validation(
    exc: ValidationError, source: str, index: dict[tuple[Any, ...], int], prefix: tuple = ()
) -> str:
    lines = []
    for err in exc.errors():
        # Drop pydantic's union-branch tags (e.g. 'list[...]', 'DiePattern') from the location.
        loc = tuple(p for p in err["loc"] if isinstance(p, int) or not _is_tag(p))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] in ("literal_error", "enum") and "expected" in err.get("ctx", {}):
            msg = f"allowed values: {err['ctx']['expected']}"
        lines.append(f"{_where(source, index, prefix + loc)}: {msg}")
    return "\n".join(dict.fromkeys(lines))


MAX_LIST = 10_000  # values in one list parameter (frequencies, amplitudes, ...)


def _longest_list(value: Any) -> int:
    if isinstance(value, dict):
        return max((_longest_list(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max(len(value), max((_longest_list(v) for v in value[: MAX_LIST + 1]), default=0))
    return 0


def _is_tag(part: str) -> bool:
    return any(c in part for c in "[]()") or part in {"DiePattern", "str", "int"}


def _allowed_fields(params_cls: type[ProtocolParams]) -> str:
    return ", ".join(params_cls.model_fields)


def parse_plan(text: str, source: str = "<plan>", wafer: WaferMap | None = None) -> Plan:
    """Validate plan YAML ``text`` (``source`` names it in errors); see :func:`load_plan`.

    The YAML goes through :mod:`bruno_lab.yamlio`: duplicate keys, alias bombs and deep
    nesting are refused with the line."""
    parsed = parse_yaml(text, source, error=PlanError)
    document = parsed.data
    index = _line_index(parsed.root)
    if not isinstance(document, dict):
        raise PlanError(f"{source}: a plan is a YAML mapping with name, dies, sites, protocols")
    try:
        raw = PlanFile.model_validate(document)
    except ValidationError as exc:
        raise PlanError(_format_validation(exc, source, index)) from None

    specs = all_protocols()
    steps: list[Step] = []
    for i, step in enumerate(raw.protocols):
        spec = specs.get(step.protocol)
        if spec is None:
            raise PlanError(
                f"{_where(source, index, ('protocols', i, 'protocol'))}: unknown protocol "
                f"{step.protocol!r}; allowed values: {', '.join(specs)}"
            )
        too_long = _longest_list(step.params)
        if too_long > MAX_LIST:
            raise PlanError(
                f"{_where(source, index, ('protocols', i, 'params'))}: a list of {too_long} "
                f"values; at most {MAX_LIST} per parameter"
            )
        try:
            params = spec.params_cls.model_validate(step.params)
        except ValidationError as exc:
            message = _format_validation(exc, source, index, ("protocols", i, "params"))
            raise PlanError(
                f"{message}\n(protocol {spec.name} takes: {_allowed_fields(spec.params_cls)})"
            ) from None
        kinds = tuple(step.kinds) if step.kinds else spec.params_cls.kinds
        wrong = [k for k in kinds if k not in spec.params_cls.kinds]
        if wrong:
            raise PlanError(
                f"{_where(source, index, ('protocols', i, 'kinds'))}: protocol {spec.name} "
                f"cannot run on {wrong}; allowed values: {list(spec.params_cls.kinds)}"
            )
        steps.append(Step(spec.name, params, kinds))
    plan = Plan(raw, steps, source, document, index)
    if wafer is not None:
        plan.check_wafer(wafer)
    return plan


def load_plan(path: str | Path, wafer: WaferMap | None = None) -> Plan:
    """Load and validate the plan file at ``path``; with ``wafer``, check dies and sites exist.

    Raises ``PlanError`` (exit 2) naming the file, line, field and allowed values.
    """
    path = Path(path)
    try:
        text = read_text(path, "plan", max_bytes=MAX_FILE_BYTES)
    except BadInputError as exc:
        raise PlanError(str(exc)) from None
    return parse_plan(text, str(path), wafer)
