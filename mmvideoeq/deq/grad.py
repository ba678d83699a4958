"""Gradients through a fixed point: implicit (IFT), phantom, and (trivially) unrolled.

Given the pre-image ``z`` of the solver's output (an iterate with ``f(z) ~ z``, detached), the
functions here re-evaluate the layer with autograd so that the loss's gradient reaches the
parameters of ``f`` (and anything ``f`` closes over, e.g. the input injection):

* :func:`implicit_layer` -- implicit function theorem (Bai et al., "Deep Equilibrium Models",
  NeurIPS 2019, Eq. 5 / Theorem 1): the output is ``f(z)`` evaluated once with autograd and a
  gate whose backward replaces the incoming gradient ``v`` by the solution ``w`` of the adjoint
  fixed-point equation ``w = J_f(z)^T w + v``, solved with the configured solver; the rest of the
  backward pass then propagates ``w`` through ``f``. Same scheme as locuslab/mdeq
  ``lib/models/mdeq_core.py`` (backward hook; MIT licence), written here as an
  ``autograd.Function`` so that multiscale (list) states need no packing.
* :func:`phantom_layer` -- unrolled phantom gradient (Geng et al., "On Training Implicit Models",
  NeurIPS 2021, Eq. 8): ``k`` damped steps ``z <- tau f(z) + (1 - tau) z`` from the fixed point,
  backpropagated with autograd.
* Plain backprop through the iterations needs no helper: call :func:`~.solvers.solve` with grad
  mode on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .solvers import solve_with_preimage

__all__ = ['implicit_layer', 'phantom_layer']

StateFn = Callable[[list[Tensor]], Sequence[Tensor]]


class _AdjointGate(torch.autograd.Function):
    """Identity in forward; backward maps the incoming gradients through ``adjoint``."""

    @staticmethod
    def forward(
        ctx,
        adjoint: Callable[[list[Tensor]], list[Tensor]],  # type: ignore[override]
        *fz: Tensor,
    ) -> tuple[Tensor, ...]:
        ctx.adjoint = adjoint
        return tuple(t.view_as(t) for t in fz)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> tuple:  # type: ignore[override]
        return (None, *ctx.adjoint(list(grads)))


def implicit_layer(
    f: StateFn,
    z_pre: Sequence[Tensor],
    *,
    method: str = 'broyden',
    max_iter: int = 30,
    tol: float | None = None,
    stop_mode: str = 'rel',
    record: dict | None = None,
    **method_kwargs,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Re-evaluates ``f`` at a fixed point with autograd and implicit (IFT) gradients.

    Args:
        f: The layer, list of S tensors -> list of S tensors.
        z_pre: Approximate fixed point ``z*`` (list of S tensors ``(B, ...)``; detached here).
        method: Solver for the adjoint equation ``w = J^T w + v`` (``'broyden'``,
            ``'anderson'``, ``'fixed_point'``), started from ``w = 0``.
        max_iter: Step budget of the adjoint solve (steps as :func:`~.solvers.solve` counts them
            for ``method``; each evaluation of ``w -> J^T w + v`` is one vector-Jacobian product).
        tol: Tolerance of the adjoint solve (``None``/``0``: exactly ``max_iter``).
        stop_mode: ``'rel'``, ``'abs'`` or ``'rms'`` for the adjoint solve.
        record: If a dict, the adjoint solve's :class:`SolverStats` is stored under
            ``'backward_stats'`` when the backward pass runs.
        **method_kwargs: Options of the adjoint solver (see :func:`~.solvers.solve`).

    Returns:
        tuple: ``(out, z_leaf, fz)``: ``out`` is ``f(z*)`` carrying the implicit gradient (list of
        S tensors), ``z_leaf`` the detached leaf ``z*`` (``requires_grad=True``) and ``fz`` the raw
        ``f(z_leaf)`` (for Jacobian regularisation).
    """
    z_leaf = [t.detach().requires_grad_() for t in z_pre]
    with torch.enable_grad():
        fz = list(f(z_leaf))

    def adjoint(v: list[Tensor]) -> list[Tensor]:
        v = [torch.zeros_like(t) if g is None else g for g, t in zip(v, fz)]

        def h(w: list[Tensor]) -> list[Tensor]:
            vjp = torch.autograd.grad(fz, z_leaf, w, retain_graph=True, allow_unused=True)
            return [b if a is None else a + b for a, b in zip(vjp, v)]

        with torch.no_grad():
            w, _, stats = solve_with_preimage(
                h,
                [torch.zeros_like(t) for t in v],
                method=method,
                max_iter=max_iter,
                tol=tol,
                stop_mode=stop_mode,
                **method_kwargs,
            )
        if record is not None:
            record['backward_stats'] = stats
        return w

    out = list(_AdjointGate.apply(adjoint, *fz))
    return out, z_leaf, fz


def phantom_layer(
    f: StateFn,
    z_pre: Sequence[Tensor],
    *,
    steps: int = 5,
    tau: float = 1.0,
    leaf_requires_grad: bool = False,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """``steps`` damped, differentiable iterations from the fixed point (phantom gradient).

    Args:
        f: The layer, list of S tensors -> list of S tensors.
        z_pre: Approximate fixed point (list of S tensors ``(B, ...)``; detached here).
        steps: Number of unrolled steps ``k >= 1`` (each one evaluation of ``f`` with autograd).
        tau: Damping ``lambda`` in ``(0, 1]`` of Geng et al. (``1``: plain iterations; with
            ``steps=1`` this is the Jacobian-free gradient of Fung et al., AAAI 2022).
        leaf_requires_grad: Make the detached start a grad-requiring leaf (needed to
            differentiate ``f`` w.r.t. ``z``, e.g. for Jacobian regularisation).

    Returns:
        tuple: ``(out, z_leaf, fz_first)``: the state after ``steps`` steps (with autograd
        graph), the detached start and ``f(z_leaf)`` of the first step.
    """
    z_leaf = [t.detach().requires_grad_(leaf_requires_grad) for t in z_pre]
    z = z_leaf
    first: list[Tensor] = []
    with torch.enable_grad():
        for i in range(steps):
            fz = list(f(z))
            if i == 0:
                first = fz
            z = fz if tau == 1.0 else [tau * a + (1.0 - tau) * b for a, b in zip(fz, z)]
    return z, z_leaf, first
