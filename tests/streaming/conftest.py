"""Toy contractive DEQ layer shared by the streaming tests.

The layer is a two-scale state ``z = [z1 (B, 4, 8, 8), z2 (B, 4, 4, 4)]`` with

    z1' = tanh(A z1 + x),    z2' = tanh(B z2 + 0.5 avgpool2(z1))

(``A``, ``B`` 4x4 channel mixers of spectral norm 0.5): a contraction, so fixed-point iteration
converges. ``manual_iterate`` applies the layer by hand, independently of the solver, to give the
expected values.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from mmvideoeq.deq import Budget, solve
from mmvideoeq.streaming import StepOutput

#: Steps of the toy model's configured full solve.
FULL_ITERS = 30


class ToyDEQ:
    """Toy streaming model (the :class:`~mmvideoeq.streaming.StreamingModel` protocol).

    Its memory counts the frames of the current sequence (``None`` -> 1 -> 2 ...), so tests see
    where the policy carries and where it drops the memory. ``step`` is ``stream_step``.
    """

    def __init__(self, seed: int = 0, contraction: float = 0.5) -> None:
        g = torch.Generator().manual_seed(seed)

        def mixer() -> Tensor:
            w = torch.randn(4, 4, generator=g)
            return w * contraction / torch.linalg.matrix_norm(w, 2)

        self.A, self.B = mixer(), mixer()
        self.calls: list[tuple[int, int | None, float]] = []
        self.memories: list[list] = []

    def f(self, z: list[Tensor], x: Tensor) -> list[Tensor]:
        z1 = torch.tanh(torch.einsum('oc,bchw->bohw', self.A, z[0]) + x)
        z2 = torch.tanh(torch.einsum('oc,bchw->bohw', self.B, z[1]) + 0.5 * F.avg_pool2d(z[0], 2))
        return [z1, z2]

    def zeros(self, x: Tensor) -> list[Tensor]:
        return [x.new_zeros(x.shape[0], 4, 8, 8), x.new_zeros(x.shape[0], 4, 4, 4)]

    def stream_zero_state(self, x: Tensor) -> list[Tensor]:
        return self.zeros(x)

    def stream_step(
        self,
        x: Tensor,
        z0: list[Tensor] | None,
        memory: list,
        budget: Budget,
        payloads: list | None = None,
    ) -> StepOutput:
        self.calls.append((x.shape[0], budget.max_iter, budget.tol))
        self.memories.append(list(memory))
        z0 = self.zeros(x) if z0 is None else z0
        z, stats = solve(
            lambda z: self.f(z, x),
            z0,
            method='fixed_point',
            max_iter=FULL_ITERS if budget.is_full else budget.max_iter,
            tol=budget.tol,
            stop_mode='rel',
            return_lowest=budget.select == 'lowest',
        )
        new_memory = [1 if m is None else m + 1 for m in memory]
        return StepOutput([t.clone() for t in z], z, new_memory, stats)

    step = stream_step

    def manual_iterate(self, x: Tensor, z: list[Tensor] | None, n: int) -> list[Tensor]:
        z = self.zeros(x) if z is None else z
        for _ in range(n):
            z = self.f(z, x)
        return z


def make_video(seed: int, length: int, drift: float = 0.05) -> list[Tensor]:
    """A smooth clip: a random frame (1, 4, 8, 8) moving slowly along a random direction."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 4, 8, 8, generator=g)
    direction = torch.randn(1, 4, 8, 8, generator=g)
    return [base + drift * t * direction for t in range(length)]


@pytest.fixture
def toy() -> ToyDEQ:
    torch.manual_seed(0)
    return ToyDEQ(seed=0)


@pytest.fixture
def clip():
    """``clip(seed, length, drift=0.05) -> list of frames (1, 4, 8, 8)``."""
    return make_video
