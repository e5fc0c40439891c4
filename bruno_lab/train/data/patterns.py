"""A synthetic spatio-temporal spike-pattern task that trains in seconds.

Each of ``n_classes`` classes has a fixed random template: ``n_channels`` input channels over
``n_steps`` network steps, each (channel, step) firing with probability ``rate``. All templates
have the same mean rate, so only *which channel fires when* separates them. A sample is its
class template with every spike moved by a random -1/0/+1 step (``jitter``) and each (channel,
step) flipped with probability ``flip`` (noise spikes and deletions). Chance is 1/n_classes.
"""

from __future__ import annotations

import torch

from bruno_lab.train.data import TaskData


def make_patterns(
    *,
    n_classes: int = 4,
    n_channels: int = 20,
    n_steps: int = 20,
    n_train: int = 256,
    n_test: int = 128,
    rate: float = 0.15,
    flip: float = 0.02,
    jitter: bool = True,
    seed: int = 0,
) -> TaskData:
    """Build the task (seeded); x is (N, n_steps, n_channels) of 0/1 floats."""
    gen = torch.Generator().manual_seed(seed)
    templates = (torch.rand(n_classes, n_steps, n_channels, generator=gen) < rate).float()

    def samples(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, n_classes, (n,), generator=gen)
        x = templates[y].clone()
        if jitter:
            shift = torch.randint(-1, 2, (n, 1, n_channels), generator=gen)
            idx = (torch.arange(n_steps).view(1, -1, 1) - shift).clamp(0, n_steps - 1)
            x = torch.gather(x, 1, idx)
        flips = torch.rand(x.shape, generator=gen) < flip
        x = torch.where(flips, 1.0 - x, x)
        return x, y

    train_x, train_y = samples(n_train)
    test_x, test_y = samples(n_test)
    return TaskData(
        "classify",
        n_channels,
        n_classes,
        train_x,
        train_y,
        test_x,
        test_y,
        meta={"task": "patterns", "chance": 1.0 / n_classes, "n_steps": n_steps, "seed": seed},
    )
