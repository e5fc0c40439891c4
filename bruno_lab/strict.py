"""Strict pydantic models for user files: what a lab file says must mean one thing.

pydantic's lax mode reads ``amplitude_v: true`` as 1.0 V and ``max_failed: true`` as 1, and
accepts ``inf`` and ``nan`` for any float. :class:`StrictModel` refuses unknown fields,
non-finite floats, and a boolean wherever the field is not a boolean (also inside lists and
dicts), so a typo or a YAML ``yes`` never becomes a number.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def _allows_bool(annotation: Any) -> bool:
    """True if a boolean may appear anywhere in a value of this type (``Any`` included)."""
    if annotation is bool or annotation is Any:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return False  # a nested model checks its own fields (see refuse_bool)
    if typing.get_origin(annotation) is typing.Literal:
        return any(isinstance(a, bool) for a in typing.get_args(annotation))
    return any(_allows_bool(a) for a in typing.get_args(annotation))


def _has_model(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_has_model(a) for a in typing.get_args(annotation))


def _has_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, list | tuple):
        return any(_has_bool(v) for v in value)
    if isinstance(value, dict):
        return any(_has_bool(v) for v in value.values())
    return False


def _has_bool_outside_mappings(value: Any) -> bool:
    """A boolean that no nested model will see: directly in the list (``[true, 1]``), not
    inside a mapping (which the model validates)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, list | tuple):
        return any(_has_bool_outside_mappings(v) for v in value)
    return False


def refuse_bool(value: Any, annotation: Any) -> Any:
    """``value`` unchanged, or ValueError if it holds a boolean the annotation does not want."""
    if isinstance(value, dict | list | tuple) and _has_model(annotation):
        # validated by the nested model itself, which names the field inside it (a boolean
        # here would otherwise be reported against the whole list: ``protocols: [...]``)
        if not _allows_bool(annotation) and _has_bool_outside_mappings(value):
            raise ValueError(f"a boolean ({value!r}) is not a number here; give a value")
        return value
    if not _allows_bool(annotation) and _has_bool(value):
        raise ValueError(f"a boolean ({value!r}) is not a number here; give a value")
    return value


class StrictModel(BaseModel):
    """Base of the models of user files: unknown fields, inf/nan and stray booleans refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_stray_bool(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is None:
            return value
        return refuse_bool(value, field.annotation)
