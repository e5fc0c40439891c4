"""The options every command shares, defined once: ``--json``, ``--db``, ``--station``,
``--threads``. A command declares ``as_json: JsonOption = False`` instead of restating the
option, so the flag, its help and its checks are the same everywhere."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from bruno_lab.limits import MAX_THREADS

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json", help="Print one JSON document on stdout (progress and messages go to stderr)."
    ),
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database: an SQLAlchemy URL or an SQLite file (default: $BRUNO_LAB_DB, else "
        "$XDG_DATA_HOME/bruno-lab/lab.db).",
        show_default=False,
    ),
]
_STATION_HELP = (
    "Station file: the instruments and where they are (`bruno-lab sim serve` writes one)."
)
StationOption = Annotated[Path, typer.Option("--station", help=_STATION_HELP)]
OptionalStationOption = Annotated[Path | None, typer.Option("--station", help=_STATION_HELP)]
ThreadsOption = Annotated[
    int, typer.Option("--threads", min=1, max=MAX_THREADS, help="torch threads in this process.")
]

# Enumerated choices, as enums: typer lists them in --help and refuses anything else (exit 2);
# a member is a str (StrEnum), so the library receives the plain value. Written out here so that
# --help imports nothing heavy; tests/bruno_lab/test_cli_help.py checks each against the
# library's own tuple, so the two cannot drift.


class TaskName(StrEnum):
    """The task (bruno_lab.train.tasks.TASKS)."""

    CHORALES = "chorales"
    BRAILLE = "braille"
    PATTERNS = "patterns"
    SHD = "shd"


class NeuronName(StrEnum):
    """A neuron model (bruno_lab.train.network.NEURONS)."""

    FELIF = "felif"
    LIF = "lif"
    RLIF = "rlif"


class MethodName(StrEnum):
    """How FeLIF layers are trained (felif_layer.METHODS)."""

    BRUNO = "bruno"
    BPTT = "bptt"
    BPTT_CKPT = "bptt-ckpt"


class SynapseName(StrEnum):
    """A synapse mode (bruno_lab.train.synapse.SYNAPSE_MODES)."""

    FP32 = "fp32"
    PAPER3 = "paper3"
    PAPER4 = "paper4"
    PAPER8 = "paper8"
    DEVICE = "device"


class CoarseGradientName(StrEnum):
    """BRUNO's coarse-step gradient (felif_layer.COARSE_GRADIENTS)."""

    HOLD_SWITCHING = "hold-switching"
    FULL = "full"


class CoarseClipName(StrEnum):
    """BRUNO's coarse-step voltage clip (felif_layer.COARSE_CLIPS)."""

    STRAIGHT_THROUGH = "straight-through"
    HARD = "hard"


class FelifResetName(StrEnum):
    """When a FeLIF neuron resets in training."""

    NEXT_STEP = "next-step"
    AT_CROSSING = "at-crossing"


class FelifRedrawName(StrEnum):
    """How FeLIF devices are redrawn in training."""

    NONE = "none"
    CARD = "card"
    PAPER = "paper"


class DeviceKindName(StrEnum):
    """A device kind (calibration.data.KINDS)."""

    FECAP = "fecap"
    FELIF = "felif"
    RRAM = "rram"
    RRAM_ARRAY = "rram_array"


class ModelName(StrEnum):
    """A device model (bruno_lab.devices.scenarios.KINDS)."""

    FELIF = "felif"
    FECAP = "fecap"
    RRAM = "rram"


class PurposeName(StrEnum):
    """A run's purpose (bruno_lab.store.models.RunPurpose)."""

    CHARACTERIZATION = "characterization"
    DEPLOYMENT = "deployment"
    EVALUATION = "evaluation"
    MAINTENANCE = "maintenance"


class DeployTargetName(StrEnum):
    """Where a deployment puts the cells (bruno_lab.loop.stages.DEPLOY_TARGETS)."""

    AUTO = "auto"
    CROSSBAR = "crossbar"
    CELLS = "cells"


class CardFormat(StrEnum):
    """A model-card file format."""

    JSON = "json"
    YAML = "yaml"
