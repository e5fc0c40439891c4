"""A synthetic task of the Braille task's shape, for speed figures and budgeted experiments.

NOT the Braille data: 27 classes, 4 channels, 102 network steps of 1 ms (the shape of the
preprocessed published set, ``data.braille``). Each class has a smooth random template (a
9-step moving average of white noise, x3); a sample is its class template plus ``noise`` times
smooth noise of the same kind; x is z-scored per channel with the training split's statistics
(std + 1e-3, as the Braille preprocessing). Seeded; chance is 1/27.
"""

from __future__ import annotations

import torch

from bruno_lab.train.data import TaskData

N_TRAIN, N_TEST, N_STEPS, N_CHANNELS, N_CLASSES = 4320, 1080, 102, 4, 27
SEED = 1234


def braille_shaped_data(
    n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = SEED, *, noise: float = 0.5
) -> TaskData:
    """Synthetic ``TaskData`` of the Braille task's shape (x z-scored, (N, 102, 4))."""
    gen = torch.Generator().manual_seed(seed)

    def smooth(*shape: int) -> torch.Tensor:
        """Low-pass noise along time (a 9-step moving average of white noise)."""
        raw = torch.randn(*shape[:-2], shape[-2] + 8, shape[-1], generator=gen)
        return raw.unfold(-2, 9, 1).mean(-1) * 3.0

    templates = smooth(N_CLASSES, N_STEPS, N_CHANNELS)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, N_CLASSES, (n,), generator=gen)
        return templates[y] + noise * smooth(n, N_STEPS, N_CHANNELS), y

    tx, ty = split(n_train)
    vx, vy = split(n_test)
    mean, std = tx.mean((0, 1), keepdim=True), tx.std((0, 1), keepdim=True)
    tx, vx = (tx - mean) / (std + 1e-3), (vx - mean) / (std + 1e-3)
    meta = {
        "task": "braille-shaped synthetic",
        "synthetic": True,
        "chance": 1.0 / N_CLASSES,
        "n_steps": N_STEPS,
        "noise": noise,
        "seed": seed,
    }
    return TaskData("classify", N_CHANNELS, N_CLASSES, tx, ty, vx, vy, meta=meta)
