"""Run a batched fit locally or on a Dask distributed cluster, chunk by chunk, same numbers.

The devices are split into fixed chunks (``chunk_size`` devices, in order). Locally the chunks run
one after the other in this process; with a scheduler each chunk is one Dask task. Because the
fitter treats every device independently (per-device damping and convergence), and the chunks
are the same either way, a cluster run reproduces a local run exactly.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bruno_lab.extras import require_extra
from calibration.fitter import FitOptions, FitResult, fit_batched
from calibration.models import get_model

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 512


@dataclass
class FitTask:
    """Everything one chunk's fit needs, as plain arrays (picklable for Dask workers)."""

    model_name: str
    shared: dict[str, np.ndarray]
    per_device: dict[str, np.ndarray]
    y: np.ndarray
    initial: np.ndarray
    sigma: np.ndarray
    mask: np.ndarray
    options: FitOptions = field(default_factory=FitOptions)


def run_task(task: FitTask, n_threads: int | None = 1) -> FitResult:
    """Fit one chunk (module-level so Dask can ship it).

    One torch thread per task by default: the device models are long sequences of small ops,
    where intra-op threads only add contention (16x slower measured on a loaded 2-core box);
    scale out with more tasks (Dask workers) instead.
    """
    import torch

    if n_threads is not None:
        torch.set_num_threads(n_threads)
    fm = get_model(task.model_name)
    model = fm.build({**task.shared, **task.per_device})
    options = task.options
    if options.jacobian == "auto":
        options = dataclasses.replace(options, jacobian=fm.jacobian)
    return fit_batched(
        model,
        fm.specs,
        task.y,
        task.initial,
        sigma=task.sigma,
        mask=task.mask,
        options=options,
    )


def split_tasks(
    model_name: str,
    shared: Mapping[str, np.ndarray],
    per_device: Mapping[str, np.ndarray],
    y: np.ndarray,
    initial: np.ndarray,
    *,
    sigma: np.ndarray | float = 1.0,
    mask: np.ndarray | None = None,
    options: FitOptions | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> list[FitTask]:
    """Cut the wafer's devices into consecutive chunks of ``chunk_size``."""
    n = y.shape[0]
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), y.shape)
    msk = np.ones(y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    tasks = []
    for lo in range(0, n, chunk_size):
        sl = slice(lo, min(lo + chunk_size, n))
        tasks.append(
            FitTask(
                model_name=model_name,
                shared=dict(shared),
                per_device={k: np.asarray(v)[sl] for k, v in per_device.items()},
                y=np.ascontiguousarray(y[sl]),
                initial=np.ascontiguousarray(initial[sl]),
                sigma=np.array(sig[sl], dtype=np.float64),
                mask=np.ascontiguousarray(msk[sl]),
                options=options or FitOptions(),
            )
        )
    return tasks


def run_tasks(
    tasks: list[FitTask],
    *,
    scheduler: str | Any | None = None,
    on_chunk_done: Callable[[int], None] | None = None,
) -> FitResult:
    """Run the chunks locally (``scheduler`` None) or on Dask (an address or a ``Client``)."""
    if not tasks:
        raise ValueError("no fit tasks")
    if scheduler is None:
        local = []
        for task in tasks:
            local.append(run_task(task))
            if on_chunk_done:
                on_chunk_done(task.y.shape[0])
        return FitResult.concatenate(local)
    require_extra("dask", "fitting on a Dask scheduler (--scheduler)")
    from distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = client.map(run_task, tasks, pure=False)
        index = {f.key: k for k, f in enumerate(futures)}
        results: list[FitResult | None] = [None] * len(tasks)
        for fut in as_completed(futures):
            k = index[fut.key]
            results[k] = fut.result()
            if on_chunk_done:
                on_chunk_done(tasks[k].y.shape[0])
        log.info("fitted %d chunks on %s", len(tasks), getattr(client.scheduler, "address", "?"))
    finally:
        if client is not scheduler:
            client.close()
    return FitResult.concatenate([r for r in results if r is not None])
