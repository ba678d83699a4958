"""Jacobian regularisation for DEQ layers (Bai et al., "Stabilizing Equilibrium Models by
Jacobian Regularization", ICML 2021, Sec. 3.2).

The Frobenius norm of the layer Jacobian ``J = df/dz`` at the equilibrium is estimated with the
Hutchinson estimator ``||J||_F^2 = E_{eps ~ N(0, I)} ||eps^T J||_2^2``, one vector-Jacobian
product per random vector. Normalised by the state size like locuslab/deq ``lib/jacobian.py``
(``jac_loss_estimate``, MIT licence), whose formula this follows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ['jac_frobenius_estimate']


def jac_frobenius_estimate(
    fz: Sequence[Tensor], z: Sequence[Tensor], *, n_vecs: int = 1, create_graph: bool = True
) -> Tensor:
    """Hutchinson estimate of ``||J_f(z)||_F^2 / D`` averaged over the batch.

    Args:
        fz: ``f(z)``, list of S tensors ``(B, ...)`` computed with autograd from ``z``.
        z: The input state, list of S tensors ``(B, ...)`` with ``requires_grad=True``.
        n_vecs: Number of Gaussian probe vectors (``>= 1``; drawn from the global RNG).
        create_graph: Keep the graph so the estimate can be minimised (training).

    Returns:
        Tensor: Scalar ``mean_b ||J_b||_F^2 / D`` estimate, ``D`` = per-sample state size (for a
        layer ``f(z) = A z + c`` its expectation is ``||A||_F^2 / D``).

    Raises:
        ValueError: If ``n_vecs < 1`` or ``fz`` does not depend on ``z`` through autograd.
    """
    if n_vecs < 1:
        raise ValueError(f'n_vecs must be >= 1, got {n_vecs}.')
    fz, z = list(fz), list(z)
    if not all(t.requires_grad for t in z) or not any(t.requires_grad for t in fz):
        raise ValueError(
            'jac_frobenius_estimate needs f(z) computed with autograd from a z that '
            'requires grad; call it inside torch.enable_grad().'
        )
    numel = sum(t.numel() for t in z)
    total = fz[0].new_zeros(())
    for i in range(n_vecs):
        vecs = [torch.randn_like(t) for t in fz]
        vjp = torch.autograd.grad(
            fz, z, vecs, retain_graph=True, create_graph=create_graph, allow_unused=True
        )
        for g in vjp:
            if g is not None:
                total = total + g.pow(2).sum()
    # numel = B * D, so this is the batch mean of ||eps^T J_b||^2 / D.
    return total / (n_vecs * numel)
