"""Task set-up shared by the CLI and the benchmarks: data loading and per-task defaults.

Initial weight scales (``init_scale`` times ``U(-1, 1)/sqrt(fan_in)``) are chosen so that the
hidden and output neurons fire at initialisation: LIF needs an input near its threshold 1, a
FeLIF neuron a current of ~``input_scale_a`` (10 nA moves ~11 pC of switching charge in ~1 ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bruno_lab.errors import BadInputError
from bruno_lab.train.data import TaskData

TASKS: tuple[str, ...] = ("chorales", "braille", "shd", "patterns")


@dataclass(frozen=True)
class TaskDefaults:
    kind: str
    n_hidden: int
    lr: float
    batch_size: int
    init_in: dict[str, float]
    init_out: dict[str, float]
    encoder_tiles: int = 0


DEFAULTS: dict[str, TaskDefaults] = {
    "patterns": TaskDefaults(
        "classify",
        64,
        2e-2,
        32,
        {"felif": 20.0, "lif": 20.0, "rlif": 20.0},
        {"felif": 4.0, "lif": 16.0, "rlif": 16.0},
    ),
    "braille": TaskDefaults(
        "classify",
        256,
        5e-3,
        128,
        {"felif": 20.0, "lif": 20.0, "rlif": 20.0},
        {"felif": 4.0, "lif": 16.0, "rlif": 16.0},
        encoder_tiles=32,
    ),
    "shd": TaskDefaults(  # the Braille network without its encoder (SHD is not in the paper)
        "classify",
        256,
        5e-3,
        128,
        {"felif": 20.0, "lif": 20.0, "rlif": 20.0},
        {"felif": 4.0, "lif": 16.0, "rlif": 16.0},
    ),
    "chorales": TaskDefaults(
        "sequence",
        150,
        5e-3,
        1,
        {"felif": 3.0, "lif": 6.0, "rlif": 6.0},
        {"felif": 1.0, "lif": 1.0, "rlif": 1.0},
    ),
}


def load_task(
    task: str,
    *,
    data_path: Path | None = None,
    seed: int = 0,
    max_sequences: int | None = None,
    max_steps: int | None = None,
    cache: Path | None = None,
) -> TaskData:
    """Load a task's data (``data_path`` is required for Braille and SHD)."""
    if task == "patterns":
        from bruno_lab.train.data.patterns import make_patterns

        return make_patterns(seed=seed)
    if task == "braille":
        if data_path is None:
            raise BadInputError("--task braille needs --data PATH (the published pickle)")
        from bruno_lab.train.data.braille import load_braille

        return load_braille(data_path, seed=seed)
    if task == "shd":
        if data_path is None:
            raise BadInputError(
                "--task shd needs --data PATH (a directory with shd_train.h5 and shd_test.h5, "
                "or one .h5 file in SHD's format)"
            )
        from bruno_lab.train.data.shd import load_shd

        return load_shd(data_path, seed=seed)
    if task == "chorales":
        from bruno_lab.train.data.chorales import load_chorales

        return load_chorales(max_sequences, cache=cache, max_steps=max_steps)
    raise BadInputError(f"--task {task!r}: allowed {', '.join(TASKS)}")
