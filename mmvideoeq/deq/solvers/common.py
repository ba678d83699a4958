"""Helpers shared by the solvers: argument checks, residual norms, per-sample products."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from mmvideoeq.utils.checks import check_int
from mmvideoeq.utils.checks import check_tol as _check_tol

from ..utils import StateLayout

__all__ = ['StateFn', 'check_int', 'check_tol', 'residual_norms', 'rows_dot', 'dot', 'put']

StateFn = Callable[[list[Tensor]], Sequence[Tensor]]


def check_tol(name: str, tol: object) -> float | None:
    """A solver tolerance: ``None``/``0`` (no early stop; returned as ``None``) or a float > 0."""
    if tol is None:
        return None
    tol = _check_tol(name, tol)
    return None if tol == 0 else tol


def residual_norms(
    fx: Sequence[Tensor], x: Tensor | Sequence[Tensor], layout: StateLayout, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Per-sample ``(||fx - x||, ||fx||)``, ``(B,)`` each in ``dtype``, over all scales.

    ``fx`` is a state list; ``x`` a state list or its packed ``(B, D)`` form. Works scale by
    scale on detached tensors (nothing is concatenated).
    """
    xs = layout.unpack(x) if isinstance(x, Tensor) else x
    diff, img = [], []
    for a, z in zip(fx, xs):
        a = a.detach().reshape(a.shape[0], -1)
        img.append(torch.linalg.vector_norm(a, dim=1, dtype=dtype))
        diff.append(
            torch.linalg.vector_norm(a - z.detach().reshape(a.shape[0], -1), dim=1, dtype=dtype)
        )
    if len(diff) == 1:
        return diff[0], img[0]
    return (
        torch.linalg.vector_norm(torch.stack(diff, 1), dim=1),
        torch.linalg.vector_norm(torch.stack(img, 1), dim=1),
    )


def rows_dot(mat: Tensor, vec: Tensor) -> Tensor:
    """``(B, n, D) x (B, D) -> (B, n)``: the inner products of ``vec`` with each stored row.

    The fast form differs by device: on CPU ``(B, 1, D) x (B, D, n)`` (MKL's batched GEMV is slow
    for ``(B, n, D) x (B, D, 1)``), on accelerators ``(B, n, D) x (B, D, 1)`` (the long reduction
    of the other form gets no split-K parallelism from cuBLAS).
    """
    if vec.device.type == 'cpu':
        return torch.bmm(vec.unsqueeze(1), mat.transpose(1, 2)).squeeze(1)
    return torch.bmm(mat, vec.unsqueeze(2)).squeeze(2)


def dot(p: Tensor, q: Tensor) -> Tensor:
    """Per-sample inner product ``(B, D), (B, D) -> (B, 1)``.

    On CPU one BLAS ``dot`` per sample (``bmm`` of ``(B, 1, D) x (B, D, 1)`` takes a slow path
    for ``B > 1``).
    """
    if p.device.type == 'cpu':
        return torch.stack([torch.dot(a, b) for a, b in zip(p, q)]).unsqueeze(1)
    return torch.bmm(p.unsqueeze(1), q.unsqueeze(2)).squeeze(2)


def put(buf: Tensor, slot: int, val: Tensor, inplace: bool) -> Tensor:
    """Writes ``val`` ``(B, ...)`` into ``buf[:, slot]`` (out of place when autograd records)."""
    if inplace:
        buf[:, slot] = val
        return buf
    return buf.index_copy(1, torch.tensor([slot], device=buf.device), val.unsqueeze(1))
