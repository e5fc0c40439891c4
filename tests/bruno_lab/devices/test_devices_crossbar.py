"""The crossbar DC solve (bruno_lab.devices.crossbar) against independent references: the ideal
limit G^T v, a sparse nodal analysis of the whole resistive network (scipy), and a full
Newton solve of a small network of nonlinear cells (scipy.optimize)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from scipy.optimize import root

from bruno_lab.devices.crossbar import crossbar_solve, ideal_mvm_a, line_voltages_v


def _nodal_column_currents(
    g: np.ndarray, v_rows: np.ndarray, r_row: float, r_col: float, r_s: float
) -> np.ndarray:
    """Modified nodal analysis of the crossbar (row nodes, column nodes, internal cell nodes):
    rows driven at their left end, columns held at 0 V at their top end."""
    n_r, n_c = g.shape
    size = 3 * n_r * n_c
    row = lambda i, j: i * n_c + j  # noqa: E731
    col = lambda i, j: n_r * n_c + i * n_c + j  # noqa: E731
    mid = lambda i, j: 2 * n_r * n_c + i * n_c + j  # noqa: E731
    a = sp.lil_matrix((size, size))
    b = np.zeros(size)

    def branch(p: int, q: int, conductance: float) -> None:
        a[p, p] += conductance
        a[q, q] += conductance
        a[p, q] -= conductance
        a[q, p] -= conductance

    for i in range(n_r):
        a[row(i, 0), row(i, 0)] += 1 / r_row
        b[row(i, 0)] += v_rows[i] / r_row
        for j in range(n_c - 1):
            branch(row(i, j), row(i, j + 1), 1 / r_row)
    for j in range(n_c):
        a[col(0, j), col(0, j)] += 1 / r_col
        for i in range(n_r - 1):
            branch(col(i, j), col(i + 1, j), 1 / r_col)
    for i in range(n_r):
        for j in range(n_c):
            branch(row(i, j), mid(i, j), 1 / r_s)
            branch(mid(i, j), col(i, j), g[i, j])
    v = spla.spsolve(a.tocsr(), b)
    return np.array(
        [sum(g[i, j] * (v[mid(i, j)] - v[col(i, j)]) for i in range(n_r)) for j in range(n_c)]
    )


def _linear(g: torch.Tensor):
    return lambda v_x: g * v_x


def test_ideal_wires_and_linear_cells_give_exactly_g_transpose_v() -> None:
    gen = torch.Generator().manual_seed(0)
    g = torch.rand(16, 12, generator=gen, dtype=torch.float64) * 240e-6 + 6e-6
    v = (torch.rand(5, 16, generator=gen, dtype=torch.float64) > 0.5) * 0.2
    sol = crossbar_solve(
        v.double(), torch.zeros(12, dtype=torch.float64), _linear(g), active=torch.ones(16, 12),
        series_ohm=0.0, r_row_ohm=0.0, r_col_ohm=0.0, g_max_siemens=float(g.max()),
    )  # fmt: skip
    assert torch.allclose(sol.col_current_a, ideal_mvm_a(g, v.double()), rtol=1e-12, atol=0)
    assert torch.allclose(sol.row_current_a, (g * v.double()[:, :, None]).sum(-1), rtol=1e-12)


@pytest.mark.parametrize("r_line", [0.5, 2.0, 10.0])
def test_ir_drop_matches_a_nodal_analysis_of_the_whole_network(r_line: float) -> None:
    gen = torch.Generator().manual_seed(1)
    g = torch.rand(16, 12, generator=gen, dtype=torch.float64) * 240e-6 + 6e-6
    v = ((torch.rand(3, 16, generator=gen, dtype=torch.float64) > 0.4) * 0.2).double()
    sol = crossbar_solve(
        v, torch.zeros(12, dtype=torch.float64), _linear(g), active=torch.ones(16, 12),
        series_ohm=600.0, r_row_ohm=r_line, r_col_ohm=0.7 * r_line,
        g_max_siemens=float(g.max()),
    )  # fmt: skip
    for b in range(3):
        ref = _nodal_column_currents(g.numpy(), v[b].numpy(), r_line, 0.7 * r_line, 600.0)
        assert np.allclose(sol.col_current_a[b].numpy(), ref, rtol=1e-8, atol=1e-15)
    # the IR drop lowers every column current, more for longer and more resistive lines
    ideal = _nodal_column_currents(g.numpy(), v[0].numpy(), 1e-9, 1e-9, 600.0)
    assert bool((sol.col_current_a[0].numpy() < ideal).all())


def test_nonlinear_cells_match_a_newton_solve_of_the_full_network() -> None:
    n_r, n_c = 4, 3
    gen = torch.Generator().manual_seed(2)
    scale = torch.rand(n_r, n_c, generator=gen, dtype=torch.float64) * 1e-4 + 1e-5
    v0 = 0.25
    f = lambda v_x: scale * torch.sinh(v_x / v0)  # noqa: E731
    v_rows = torch.tensor([[0.3, 0.0, 0.25, 0.3]], dtype=torch.float64)
    r_row, r_col, r_s = 50.0, 30.0, 400.0
    sol = crossbar_solve(
        v_rows, torch.zeros(n_c, dtype=torch.float64), f, active=torch.ones(n_r, n_c),
        series_ohm=r_s, r_row_ohm=r_row, r_col_ohm=r_col,
        g_max_siemens=float((scale * math.cosh(0.3 / v0) / v0).max()),
    )  # fmt: skip
    s = scale.numpy()

    def residual(x: np.ndarray) -> np.ndarray:  # unknowns: every cell's own voltage
        v_x = x.reshape(n_r, n_c)
        i = s * np.sinh(v_x / v0)
        v_row, v_col = line_voltages_v(
            torch.as_tensor(i)[None], v_rows, torch.zeros(1, n_c, dtype=torch.float64), r_row, r_col
        )
        return (v_row[0].numpy() - v_col[0].numpy() - i * r_s - v_x).reshape(-1)

    ref = root(residual, np.full(n_r * n_c, 0.1), tol=1e-14)
    assert ref.success
    i_ref = (s * np.sinh(ref.x.reshape(n_r, n_c) / v0)).sum(0)
    assert np.allclose(sol.col_current_a[0].numpy(), i_ref, rtol=1e-7)


def test_line_voltages_are_the_drops_of_every_segment_to_the_driver() -> None:
    i = torch.tensor([[[1e-3, 2e-3], [3e-3, 4e-3]]], dtype=torch.float64)
    v_row, v_col = line_voltages_v(
        i, torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.5]]), 10.0, 1.0
    )
    # row 0: driver -> node 0 carries 3 mA, node 0 -> node 1 carries 2 mA
    assert v_row[0, 0].tolist() == pytest.approx([1.0 - 0.03, 1.0 - 0.03 - 0.02])
    # column 1: driver -> row 0 carries 6 mA, row 0 -> row 1 carries 4 mA
    assert v_col[0, :, 1].tolist() == pytest.approx([0.5 + 0.006, 0.5 + 0.006 + 0.004])


def test_a_solve_that_cannot_converge_says_so() -> None:
    g = torch.full((8, 8), 1e-3, dtype=torch.float64)
    with pytest.raises(ArithmeticError, match="did not converge"):
        crossbar_solve(
            torch.full((1, 8), 0.2, dtype=torch.float64), torch.zeros(8, dtype=torch.float64),
            _linear(g), active=torch.ones(8, 8), series_ohm=0.0, r_row_ohm=20.0, r_col_ohm=20.0,
            g_max_siemens=1e-3, max_iter=3,
        )  # fmt: skip


def test_the_solve_is_differentiable_in_the_conductances() -> None:
    gen = torch.Generator().manual_seed(4)
    g0 = torch.rand(4, 3, generator=gen, dtype=torch.float64) * 1e-4 + 1e-5
    v = torch.tensor([[0.2, 0.0, 0.2, 0.1]], dtype=torch.float64)

    def total(g: torch.Tensor) -> torch.Tensor:
        sol = crossbar_solve(
            v, torch.zeros(3, dtype=torch.float64), _linear(g), active=torch.ones(4, 3),
            series_ohm=100.0, r_row_ohm=5.0, r_col_ohm=5.0, g_max_siemens=2e-4, rtol=1e-15,
            atol_v=0.0, max_iter=2000,
        )  # fmt: skip
        return sol.col_current_a.sum()

    g = g0.clone().requires_grad_(True)
    total(g).backward()
    assert g.grad is not None
    h = 1e-9
    for i, j in ((0, 0), (1, 2), (3, 1)):
        up, down = g0.clone(), g0.clone()
        up[i, j] += h
        down[i, j] -= h
        fd = float(total(up) - total(down)) / (2 * h)
        assert float(g.grad[i, j]) == pytest.approx(fd, rel=1e-5, abs=1e-9)
