"""The optional parts of bruno-lab and the pip extras that install them.

The base install (``pip install bruno-lab``) is the loop on SQLite: devices, store, simulated
and real instruments, protocols, fits, training, the CLI. Everything else is an extra, and a
feature whose extra is missing says which one to install, at the point of use::

    bruno-lab db export ... -> MissingExtraError: Parquet export needs pyarrow, which is not
    installed; install the extra: pip install 'bruno-lab[parquet]'

``pyproject.toml``'s ``[project.optional-dependencies]`` lists the same extras (a test checks
that both agree), and ``[all]`` is every one of them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from bruno_lab.errors import MissingExtraError


@dataclass(frozen=True)
class Extra:
    """One pip extra: the modules it brings and what they are for."""

    modules: tuple[str, ...]
    feature: str


EXTRAS: dict[str, Extra] = {
    "postgres": Extra(("psycopg",), "a PostgreSQL database"),
    "dask": Extra(("dask", "distributed"), "fitting on a Dask scheduler"),
    "music": Extra(("music21",), "the Bach chorales task"),
    "shd": Extra(("h5py",), "the SHD task (its HDF5 files)"),
    "parquet": Extra(("pyarrow",), "Parquet export"),
    "plot": Extra(("matplotlib",), "PNG plots"),
    "nir": Extra(("nir",), "NIR export"),
    "report": Extra(("jinja2", "plotly", "starlette", "uvicorn"), "the HTML report and live view"),
}


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra``."""
    return f"pip install 'bruno-lab[{extra}]'"


def require_extra(extra: str, feature: str | None = None) -> None:
    """Import the modules of ``extra``; a missing one raises :class:`MissingExtraError` naming
    ``feature`` (default: the extra's own), the module and the pip command."""
    spec = EXTRAS[extra]
    for module in spec.modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] != module.split(".")[0]:
                raise  # installed, but one of its own imports is missing: not ours to rename
            what = feature or spec.feature
            raise MissingExtraError(
                f"{what} needs {module}, which is not installed; install the extra: "
                f"{install_hint(extra)}"
            ) from exc
