"""Every protocol by its stored name. One module per protocol, each exposing ``SPEC``."""

from __future__ import annotations

from functools import lru_cache
from importlib import import_module

from protocols.base import ProtocolSpec

PROTOCOL_MODULES: tuple[str, ...] = (
    "pund",
    "pv_loop",
    "switching_kinetics",
    "felif_response",
    "rram_forming",
    "rram_iv",
    "rram_pulsed",
    "rram_program_verify",
    "rram_read_noise",
    "rram_retention",
    "rram_endurance",
    "array_forming",
    "array_health",
    "array_program",
    "array_map",
    "array_read_noise",
    "array_retention",
    "array_compliance",
)


@lru_cache(maxsize=1)
def all_protocols() -> dict[str, ProtocolSpec]:
    """Name -> spec, in the order above."""
    specs: dict[str, ProtocolSpec] = {}
    for module in PROTOCOL_MODULES:
        spec: ProtocolSpec = import_module(f"protocols.{module}").SPEC
        specs[spec.name] = spec
    return specs


def get_protocol(name: str) -> ProtocolSpec:
    """The spec of ``name``; a ``KeyError`` lists the known names."""
    specs = all_protocols()
    if name not in specs:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(specs)}")
    return specs[name]
