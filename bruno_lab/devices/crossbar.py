"""A resistive crossbar's DC operating point: cells between row and column lines with wire
resistance (IR drop), solved for any batch of driver voltages. Batched and differentiable.

Geometry (the array tester's): row ``i`` is a source line driven from its left end (column
-1 side), column ``j`` a bit line driven/sensed at its top end (row -1 side); cell ``(i, j)``
connects row node ``(i, j)`` to column node ``(i, j)``, with ``r_row_ohm`` between neighbouring
row nodes (and from the driver to column 0) and ``r_col_ohm`` likewise along a column. A cell's
branch is a series resistance (the access transistor's channel, ``series_ohm``) and the
nonlinear cell ``I = f(V_x)``; inactive cells (word line off) carry nothing.

Why a fixed point and not a sparse solve: the cells are nonlinear and the batch is thousands
of input vectors (one per time step and sample of an inference); the line voltages follow from
the cell currents by two cumulative sums per line, so one iteration is a handful of tensor ops
over ``B x R x C`` and the whole solve stays differentiable. The iteration

    I = f(V_x);   V_row, V_col = lines(I);   V_x <- V_x + w*(V_row - V_col - I*R_s - V_x)

is a contraction for ``w*(1 + rho) < 2``, ``rho`` the loop gain ``G_diff*(R_s + line terms)``
(bounded from the largest cell conductance and the line lengths), so the damping ``w`` is
chosen from that bound; the residual is checked and a solve that does not converge raises.
The currents into the column drivers are the analog matrix-vector product: with ideal wires
and linear cells they are exactly ``G^T v``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

CellCurrent = Callable[[Tensor], Tensor]
"""``f(V_x [B, R, C]) -> I [B, R, C]``: a cell's current at its own voltage (A)."""

LINE_GAIN = 4.0 / math.pi**2
"""Largest eigenvalue of a line's cumulative-sum operator per (segments**2 * ohm)."""


class CrossbarSolution(NamedTuple):
    """Operating point: cell currents and voltages ``[B, R, C]``, driver currents, iterations.

    ``row_current_a [B, R]`` flows out of each row driver into its line, ``col_current_a
    [B, C]`` from each column line into its driver (the sensed MVM output when the columns are
    held at 0 V and the rows carry the inputs)."""

    cell_current_a: Tensor
    cell_voltage_v: Tensor
    row_current_a: Tensor
    col_current_a: Tensor
    n_iter: int


def line_voltages_v(
    cell_current_a: Tensor, row_v: Tensor, col_v: Tensor, r_row_ohm: float, r_col_ohm: float
) -> tuple[Tensor, Tensor]:
    """Row-node and column-node voltages ``[B, R, C]`` for given cell currents (row -> column).

    A row segment before node ``j`` carries the currents of cells ``j..C-1``; a column segment
    before node ``i`` those of cells ``i..R-1``; a node's voltage is its driver's minus (rows)
    or plus (columns) the drops of every segment between them."""
    i = cell_current_a
    # suffix sums as total - prefix + self (no flipped copies)
    row_seg = i.sum(-1, keepdim=True) - torch.cumsum(i, -1) + i
    col_seg = i.sum(-2, keepdim=True) - torch.cumsum(i, -2) + i
    v_row = row_v[..., :, None] - r_row_ohm * torch.cumsum(row_seg, -1)
    v_col = col_v[..., None, :] + r_col_ohm * torch.cumsum(col_seg, -2)
    return v_row, v_col


def crossbar_solve(
    row_v: Tensor,
    col_v: Tensor,
    cell_current: CellCurrent,
    *,
    active: Tensor,
    series_ohm: Tensor | float,
    r_row_ohm: float,
    r_col_ohm: float,
    g_max_siemens: float,
    rtol: float = 1e-9,
    atol_v: float = 1e-12,
    max_iter: int = 500,
    chunk: int = 64,
) -> CrossbarSolution:
    """Solve the crossbar for row driver voltages ``row_v [B, R]`` and column driver voltages
    ``col_v [B, C]`` (or ``[C]``); ``active [R, C]`` (or ``[B, R, C]``) masks the cells whose
    word line is on; ``g_max_siemens`` bounds the cells' differential conductance (sets the
    first relaxation factor). Batches larger than ``chunk`` are solved ``chunk`` vectors at a
    time (the tensors then stay in cache). Raises ``ArithmeticError`` if the iteration does not
    converge."""
    row_v = torch.as_tensor(row_v)
    if row_v.ndim == 1:
        row_v = row_v[None]
    dtype = row_v.dtype
    col_v = torch.as_tensor(col_v, dtype=dtype)
    if col_v.ndim == 1:
        col_v = col_v.expand(row_v.shape[0], -1)
    mask_t = torch.as_tensor(active, dtype=torch.bool)
    if row_v.shape[0] > chunk and mask_t.ndim == 2:
        parts = [
            crossbar_solve(
                row_v[k : k + chunk],
                col_v[k : k + chunk],
                cell_current,
                active=mask_t,
                series_ohm=series_ohm,
                r_row_ohm=r_row_ohm,
                r_col_ohm=r_col_ohm,
                g_max_siemens=g_max_siemens,
                rtol=rtol,
                atol_v=atol_v,
                max_iter=max_iter,
                chunk=chunk,
            )
            for k in range(0, row_v.shape[0], chunk)
        ]
        return CrossbarSolution(
            torch.cat([p.cell_current_a for p in parts]),
            torch.cat([p.cell_voltage_v for p in parts]),
            torch.cat([p.row_current_a for p in parts]),
            torch.cat([p.col_current_a for p in parts]),
            max(p.n_iter for p in parts),
        )
    n_rows, n_cols = row_v.shape[-1], col_v.shape[-1]
    mask = torch.as_tensor(active, dtype=torch.bool)
    r_s = torch.as_tensor(series_ohm, dtype=dtype)
    drive = row_v[..., :, None] - col_v[..., None, :]
    scale = float(drive.abs().max()) if drive.numel() else 0.0
    # Each cell's own loop (its channel and every line segment its current crosses) is the
    # diagonal of the Jacobian: dividing the step by it (a Jacobi-Newton step with the cell's
    # chord conductance at the largest drive) keeps a shorted cell next to open ones from
    # forcing a tiny damping on the whole array; what remains is the coupling through shared
    # segments, handled by a relaxation factor that halves whenever the step grows.
    rows_i = torch.arange(n_rows, dtype=dtype)[:, None]
    cols_j = torch.arange(n_cols, dtype=dtype)[None, :]
    self_ohm = r_s + r_row_ohm * (cols_j + 1.0) + r_col_ohm * (rows_i + 1.0)
    v_ref = max(scale, 1e-3)
    with torch.no_grad():
        probe = torch.full((n_rows, n_cols), v_ref, dtype=dtype)
        g_pre = (cell_current(probe) / v_ref).abs().clamp(max=g_max_siemens)
    precondition = 1.0 / (1.0 + g_pre * self_ohm)
    rho = (
        g_max_siemens * LINE_GAIN * (r_row_ohm * (n_cols + 1) ** 2 + r_col_ohm * (n_rows + 1) ** 2)
    )
    omega = min(1.0, 1.8 / (1.0 + rho * float(precondition.max())))
    v_x = torch.where(mask, drive * precondition, torch.zeros_like(drive))
    last = math.inf
    n_iter = 0
    for k in range(1, max_iter + 1):
        n_iter = k
        current = torch.where(mask, cell_current(v_x), torch.zeros_like(v_x))
        v_row, v_col = line_voltages_v(current, row_v, col_v, r_row_ohm, r_col_ohm)
        target = torch.where(mask, v_row - v_col - current * r_s, torch.zeros_like(v_x))
        step = target - v_x
        size = float(step.detach().abs().max())
        if size <= atol_v + rtol * scale:
            break
        if size > 1.5 * last:  # diverging mode: relax harder
            omega = max(omega / 2.0, 1e-3)
        last = size
        v_x = v_x + omega * precondition * step
    else:
        raise ArithmeticError(
            f"crossbar solve did not converge in {max_iter} iterations (loop gain {rho:.3g})"
        )
    current = torch.where(mask, cell_current(v_x), torch.zeros_like(v_x))
    return CrossbarSolution(current, v_x, current.sum(-1), current.sum(-2), n_iter)


def column_noise_sigma_a(
    cell_voltage_v: Tensor, conductance_siemens: Tensor, read_floor_s: Tensor, read_rel: Tensor
) -> Tensor:
    """Standard deviation of each column's current from its cells' independent read noise
    (``sigma_G = read_floor_s + read_rel*G`` per cell, as in ``bruno_lab.devices.rram``): the
    root of the summed variances ``(sigma_G*V_x)**2`` over the column, A, ``[B, C]``."""
    sigma = (read_floor_s + read_rel * conductance_siemens) * cell_voltage_v
    return torch.sqrt((sigma * sigma).sum(-2))


def ideal_mvm_a(conductance_siemens: Tensor, row_v: Tensor) -> Tensor:
    """The ideal analog product ``G^T v`` (A): what the column currents are with ideal wires and
    linear cells, the reference an IR-drop error is measured against."""
    return row_v @ conductance_siemens
