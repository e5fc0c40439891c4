"""Typed, frozen parameter sets for the compact models: one tensor per field, leading device dim.

Every field of a parameter dataclass is declared with :func:`param_field`, which records its SI
unit, physical bounds, default and a one-line meaning in the field metadata. Defaults are built by
a function taking ``dtype``/``device`` (no tensors at import time). A parameter set serializes to
and from the JSON of a model card: a dict ``name -> float`` (shared by every device) or
``name -> list`` (one value per device).

A parameter set may *compose* another (:func:`component_field`): the FeLIF neuron's membrane is a
FeCap, so ``FeLIFParams`` holds a ``FeCapParams`` instead of declaring its fields again. The
component's fields (all, or the subset named) appear in the composite's flat namespace: in
``specs()``, the JSON, ``replace``, the constructor and attribute access (``felif.area_m2`` is
``felif.fecap.area_m2``); fields of the component left out of the subset hold their defaults.

Device-to-device variability follows the BRUNO paper: ``theta_i = mu * (1 + sigma * eps_i)``,
``eps_i ~ N(0, 1)``, drawn once per device from a seeded ``torch.Generator``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Self, TypeVar

import torch
from torch import Tensor

from bruno_lab.errors import ModelCardError

_META_KEY = "bruno_lab_param"
_COMPONENT_KEY = "bruno_lab_component"


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """What a parameter field means: SI unit, inclusive physical bounds, default, meaning."""

    unit: str
    low: float
    high: float
    default: float
    doc: str


def param_field(default: float, unit: str, low: float, high: float, doc: str) -> Any:
    """Declare a tensor field of a parameter dataclass with its unit, bounds and default."""
    if not low <= default <= high:
        raise ValueError(f"default {default} outside [{low}, {high}] for {doc!r}")
    return dataclasses.field(metadata={_META_KEY: ParamSpec(unit, low, high, default, doc)})


@dataclasses.dataclass(frozen=True)
class _Component:
    """A composed parameter set: its class and the names of its fields the composite exposes."""

    cls: type[DeviceParams]
    names: tuple[str, ...]


def component_field(cls: type[DeviceParams], names: tuple[str, ...] | None = None) -> Any:
    """Declare a field holding a whole parameter set ``cls`` (a composed device); ``names``: the
    subset of its fields the composite exposes (default all), each keeping its one definition."""
    known = tuple(cls.specs())
    chosen = known if names is None else tuple(names)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ValueError(f"component {cls.__name__}: unknown field(s) {unknown}")
    return dataclasses.field(metadata={_COMPONENT_KEY: _Component(cls, chosen)})


@dataclasses.dataclass(frozen=True)
class DeviceParams:
    """Base of every parameter set: per-device tensors, all of one dtype and torch device.

    Subclasses are frozen dataclasses of :func:`param_field` tensors and, optionally,
    :func:`component_field` parameter sets. A class with components is declared with
    ``init=False`` and gets the flat constructor ``Cls(**{flat name: tensor})`` (a component
    may also be passed whole by its field name)."""

    @classmethod
    def _components(cls) -> dict[str, _Component]:
        return {
            f.name: f.metadata[_COMPONENT_KEY]
            for f in dataclasses.fields(cls)
            if _COMPONENT_KEY in f.metadata
        }

    @classmethod
    def specs(cls) -> dict[str, ParamSpec]:
        """Flat field name -> :class:`ParamSpec`, in declaration order (a component's exposed
        fields in its own order, at the component's place)."""
        out: dict[str, ParamSpec] = {}
        for f in dataclasses.fields(cls):
            comp = f.metadata.get(_COMPONENT_KEY)
            if comp is None:
                out[f.name] = f.metadata[_META_KEY]
            else:
                child = comp.cls.specs()
                out.update({name: child[name] for name in comp.names})
        return out

    def __init__(self, **values: Any) -> None:
        """Flat constructor of a composite (plain parameter sets use the dataclass ``__init__``):
        every exposed name is required; a component's other fields take their defaults, shaped
        like its first exposed field."""
        cls = type(self)
        components = cls._components()
        own = [f.name for f in dataclasses.fields(cls) if f.name not in components]
        for fname, comp in components.items():
            whole = values.pop(fname, None)
            if whole is None:
                missing = [n for n in comp.names if n not in values]
                if missing:
                    raise TypeError(f"{cls.__name__}: missing {missing}")
                first = values[comp.names[0]]
                sub: dict[str, Tensor] = {}
                for name, spec in comp.cls.specs().items():
                    if name in comp.names:
                        sub[name] = values.pop(name)
                    else:
                        sub[name] = torch.full_like(torch.as_tensor(first), spec.default)
                whole = comp.cls(**sub)
            elif not isinstance(whole, comp.cls):
                raise TypeError(f"{cls.__name__}.{fname} must be a {comp.cls.__name__}")
            object.__setattr__(self, fname, whole)
        for name in own:
            if name not in values:
                raise TypeError(f"{cls.__name__}: missing {name!r}")
            object.__setattr__(self, name, values.pop(name))
        if values:
            valid = sorted(cls.specs())
            raise TypeError(f"{cls.__name__}: unknown field(s) {sorted(values)}; valid {valid}")

    def __getattr__(self, name: str) -> Tensor:
        """A component's exposed field read through the composite (``felif.area_m2``)."""
        # only reached when normal lookup fails; never for the dataclass fields themselves
        for fname, comp in type(self)._components().items():
            if name in comp.names:
                return getattr(object.__getattribute__(self, fname), name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def _flat(self) -> dict[str, Tensor]:
        return {n: getattr(self, n) for n in self.specs()}

    @classmethod
    def default(
        cls,
        n: int = 1,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ) -> Self:
        """The design's defaults for ``n`` identical devices, each field of shape ``(n,)``."""
        values = {
            name: torch.full((n,), spec.default, dtype=dtype, device=device)
            for name, spec in cls.specs().items()
        }
        return cls(**values)

    @classmethod
    def from_json(
        cls,
        document: Mapping[str, float | list[float]],
        n: int | None = None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        where: str = "model card",
    ) -> Self:
        """Build from a model card's dict; missing names take their default, unknown names or
        values beyond the physical bounds raise ``ModelCardError`` naming the field."""
        specs = cls.specs()
        unknown = sorted(set(document) - set(specs))
        if unknown:
            raise ModelCardError(
                f"{where}: unknown {cls.__name__} parameter(s) {unknown}; valid: {sorted(specs)}"
            )
        lengths = {len(v) for v in document.values() if isinstance(v, list | tuple)}
        if len(lengths) > 1:
            raise ModelCardError(f"{where}: per-device lists differ in length: {sorted(lengths)}")
        n_dev = n if n is not None else (lengths.pop() if lengths else 1)
        values: dict[str, Tensor] = {}
        for name, spec in specs.items():
            raw = document.get(name, spec.default)
            try:
                t = torch.as_tensor(raw, dtype=dtype, device=device).reshape(-1)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise ModelCardError(f"{where}: {name} is not a number or list: {raw!r}") from exc
            if t.numel() == 1:
                t = t.expand(n_dev).clone()
            if t.numel() != n_dev:
                raise ModelCardError(f"{where}: {name} has {t.numel()} values, expected {n_dev}")
            _check_bounds(name, spec, t, where)
            values[name] = t
        return cls(**values)

    def to_json(self) -> dict[str, float | list[float]]:
        """Model-card dict: a float where all devices agree, else a list (one per device)."""
        out: dict[str, float | list[float]] = {}
        for name in self.specs():
            t = getattr(self, name).detach().reshape(-1).to("cpu", torch.float64)
            if t.numel() > 0 and bool((t == t[0]).all()):
                out[name] = float(t[0])
            else:
                out[name] = [float(x) for x in t]
        return out

    def replace(self, **values: float | Tensor) -> Self:
        """A copy with some fields replaced; floats are broadcast to every device."""
        ref = self._ref()
        specs = self.specs()
        new: dict[str, Tensor] = {}
        for name, value in values.items():
            if name not in specs:
                raise ModelCardError(
                    f"unknown {type(self).__name__} parameter {name!r}; valid: {sorted(specs)}"
                )
            t = torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
            new[name] = t.expand_as(getattr(self, name)).clone() if t.ndim == 0 else t
        return type(self)(**{**self._flat(), **new})

    def to(
        self, dtype: torch.dtype | None = None, device: str | torch.device | None = None
    ) -> Self:
        """Every field cast/moved (float64 for the lab and fits, float32 for training)."""
        return type(self)(
            **{n: getattr(self, n).to(device=device, dtype=dtype) for n in self.specs()}
        )

    def select(self, index: int | slice | Tensor) -> Self:
        """The parameters of a subset of devices (along the leading dim)."""
        out = {}
        for n in self.specs():
            t = getattr(self, n)
            out[n] = t[index] if t.ndim > 0 else t
        return type(self)(**out)

    @property
    def n_devices(self) -> int:
        """Number of devices (the largest leading dim of any field)."""
        return max(
            (getattr(self, n).shape[0] if getattr(self, n).ndim else 1) for n in self.specs()
        )

    def check_bounds(self, where: str = "parameters") -> None:
        """Raise ``ModelCardError`` if any value lies outside its physical bounds."""
        for name, spec in self.specs().items():
            _check_bounds(name, spec, getattr(self, name), where)

    def _ref(self) -> Tensor:
        return getattr(self, next(iter(self.specs())))


P = TypeVar("P", bound=DeviceParams)


def _check_bounds(name: str, spec: ParamSpec, t: Tensor, where: str) -> None:
    bad = ~((t >= spec.low) & (t <= spec.high))
    if bool(bad.any()):
        value = float(t[bad].reshape(-1)[0])
        raise ModelCardError(
            f"{where}: {name} = {value:g} {spec.unit} outside [{spec.low:g}, {spec.high:g}]"
        )


def sample_population(
    mean: P, sigma_rel: Mapping[str, float], n: int, generator: torch.Generator
) -> P:
    """``n`` devices with ``theta_i = mu * (1 + sigma * eps_i)``, ``eps_i ~ N(0, 1)`` drawn once.

    ``mean`` holds one device (or ``n``); fields not named in ``sigma_rel`` are copied. Draws are
    made in the order of ``sigma_rel``'s sorted names, so a seed gives the same population. A draw
    is clipped into the field's physical bounds (a negative area is not a device).
    """
    specs = mean.specs()
    unknown = sorted(set(sigma_rel) - set(specs))
    if unknown:
        raise ModelCardError(f"sigma_rel: unknown parameter(s) {unknown}; valid: {sorted(specs)}")
    values: dict[str, Tensor] = {}
    for name in specs:
        mu = getattr(mean, name)
        values[name] = mu.expand(n).clone() if mu.numel() == 1 else mu.reshape(n).clone()
    for name in sorted(sigma_rel):
        sigma = float(sigma_rel[name])
        if not (math.isfinite(sigma) and sigma >= 0.0):
            raise ModelCardError(f"sigma_rel[{name}] = {sigma} must be finite and >= 0")
        mu = values[name]
        eps = torch.randn(n, generator=generator, dtype=torch.float64, device="cpu")
        theta = mu * (1.0 + sigma * eps.to(dtype=mu.dtype, device=mu.device))
        spec = specs[name]
        values[name] = theta.clamp(spec.low, spec.high)
    return type(mean)(**values)
