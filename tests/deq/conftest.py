"""Small fixed-point problems with independently computed solutions, shared by the DEQ tests."""

from __future__ import annotations

import pytest
import torch


class TanhProblem:
    """``f(z) = tanh(z W^T + x)`` with ``||W||_2 = 0.5`` (a contraction), float64.

    ``reference()`` solves ``z = f(z)`` by Newton's method with the dense Jacobian and
    ``torch.linalg.solve`` -- independent of the solvers under test.
    """

    def __init__(self, batch: int = 2, dim: int = 6, seed: int = 0, scale: float = 0.5) -> None:
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(dim, dim, generator=g, dtype=torch.float64)
        self.W = w / torch.linalg.matrix_norm(w, 2) * scale
        self.x = torch.randn(batch, dim, generator=g, dtype=torch.float64)
        self.calls = 0

    def f(self, z: list[torch.Tensor]) -> list[torch.Tensor]:
        self.calls += 1
        return [torch.tanh(z[0] @ self.W.T + self.x)]

    def z0(self) -> list[torch.Tensor]:
        return [torch.zeros_like(self.x)]

    def reference(self) -> torch.Tensor:
        z = torch.zeros_like(self.x)
        eye = torch.eye(self.W.shape[0], dtype=torch.float64)
        for _ in range(50):
            t = torch.tanh(z @ self.W.T + self.x)
            res = z - t  # root of z - f(z)
            jac = (1 - t * t)[:, :, None] * self.W[None]  # df/dz per sample
            z = z - torch.linalg.solve(eye - jac, res.unsqueeze(2)).squeeze(2)
        return z


class LinearMultiscale:
    """Multiscale linear map ``vec(f(z)) = A vec(z) + c`` on two scales of different shapes.

    ``reference()`` is ``(I - A)^{-1} c`` per sample via ``torch.linalg.solve``.
    """

    shapes = [(2, 3, 3), (3, 2, 2)]

    def __init__(self, batch: int = 2, seed: int = 1, scale: float = 0.6) -> None:
        g = torch.Generator().manual_seed(seed)
        self.sizes = [int(torch.Size(s).numel()) for s in self.shapes]
        d = sum(self.sizes)
        a = torch.randn(d, d, generator=g, dtype=torch.float64)
        self.A = a / torch.linalg.matrix_norm(a, 2) * scale
        self.c = torch.randn(batch, d, generator=g, dtype=torch.float64)
        self.batch = batch

    def f(self, z: list[torch.Tensor]) -> list[torch.Tensor]:
        v = torch.cat([t.reshape(self.batch, -1) for t in z], dim=1)
        out = v @ self.A.T + self.c
        parts = torch.split(out, self.sizes, dim=1)
        return [p.reshape(self.batch, *s) for p, s in zip(parts, self.shapes)]

    def z0(self) -> list[torch.Tensor]:
        return [torch.zeros(self.batch, *s, dtype=torch.float64) for s in self.shapes]

    def reference(self) -> list[torch.Tensor]:
        eye = torch.eye(self.A.shape[0], dtype=torch.float64)
        v = torch.linalg.solve(eye - self.A, self.c.T).T
        parts = torch.split(v, self.sizes, dim=1)
        return [p.reshape(self.batch, *s) for p, s in zip(parts, self.shapes)]


@pytest.fixture
def tanh_problem() -> TanhProblem:
    return TanhProblem()


@pytest.fixture
def linear_multiscale() -> LinearMultiscale:
    return LinearMultiscale()


@pytest.fixture
def make_tanh() -> type[TanhProblem]:
    """The :class:`TanhProblem` class, for tests that need several instances."""
    return TanhProblem
