"""Helpers shared by the solvers: argument checks, residual norms, per-sample products and the
reusable history and iterate buffers of the in-place solver paths."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

from mmvideoeq.utils.checks import check_int
from mmvideoeq.utils.checks import check_tol as _check_tol

from ..utils import StateLayout
from .stats import Tracker

__all__ = [
    'StateFn',
    'check_int',
    'check_tol',
    'residual_norms',
    'image_norm',
    'rows_dot',
    'dot',
    'put',
    'history_buffer',
    'Iterates',
    'release_workspace',
]

StateFn = Callable[[list[Tensor]], Sequence[Tensor]]


def check_tol(name: str, tol: object) -> float | None:
    """A solver tolerance: ``None``/``0`` (no early stop; returned as ``None``) or a float > 0."""
    if tol is None:
        return None
    tol = _check_tol(name, tol)
    return None if tol == 0 else tol


def residual_norms(
    fx: Sequence[Tensor],
    x: Tensor | Sequence[Tensor],
    layout: StateLayout,
    dtype: torch.dtype,
    g: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-sample ``(||fx - x||, ||fx||)``, ``(B,)`` each in ``dtype``, over all scales.

    ``fx`` is a state list; ``x`` a state list or its packed ``(B, D)`` form. Works scale by
    scale on detached tensors (nothing is concatenated). A solver that has formed the residual
    ``g = pack(fx) - x`` passes it as ``g``: ``||g||`` is then one norm of ``g`` (no second
    subtraction).
    """
    if g is not None:
        return torch.linalg.vector_norm(g.detach(), dim=1, dtype=dtype), image_norm(fx, dtype)
    xs = layout.unpack(x) if isinstance(x, Tensor) else x
    diff = []
    for a, z in zip(fx, xs):
        a = a.detach()
        r = a.reshape(a.shape[0], -1) - z.detach().reshape(a.shape[0], -1)
        diff.append(torch.linalg.vector_norm(r, dim=1, dtype=dtype))
    res = diff[0] if len(diff) == 1 else torch.linalg.vector_norm(torch.stack(diff, 1), dim=1)
    return res, image_norm(fx, dtype)


def image_norm(fx: Sequence[Tensor], dtype: torch.dtype) -> Tensor:
    """Per-sample ``||fx||`` ``(B,)`` in ``dtype`` of a state list, scale by scale."""
    norms = [
        torch.linalg.vector_norm(a.detach().reshape(a.shape[0], -1), dim=1, dtype=dtype) for a in fx
    ]
    return norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms, 1), dim=1)


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


class Iterates:
    """Reused ``(B, D)`` buffers for the iterates of the in-place solver paths.

    A buffer is handed out again only when neither the iterate being stepped from nor any state
    the tracker keeps by reference (the lowest-residual and the last state, and their
    pre-images) lives in it, so only a few exist. A solve's returned state may be one of them:
    unlike :func:`history_buffer`, they are never shared with another solve.

    Args:
        tracker: The solve's :class:`~.stats.Tracker`.
    """

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.bufs: list[Tensor] = []

    def take(self, x: Tensor) -> Tensor:
        """A buffer for the iterate after ``x``.

        Args:
            x: The current iterate ``(B, D)``.

        Returns:
            Tensor: An uninitialised contiguous ``(B, D)`` tensor holding nothing still in use.
        """
        held = self.tracker.held_storages()
        held.add(x.untyped_storage().data_ptr())
        for buf in self.bufs:
            if buf.untyped_storage().data_ptr() not in held:
                return buf
        buf = torch.empty_like(x, memory_format=torch.contiguous_format)
        self.bufs.append(buf)
        return buf


# ---------------------------------------------------------------------------------------------
# History buffers of the in-place (no-autograd) solver paths.
#
# A buffer of tens of MB that is allocated and freed by every solve is mapped by the operating
# system page by page at its first use (glibc serves allocations above 32 MB with a fresh
# mmap); on the project's CPU machine that costs about 19 ms for the 54 MB of a 27-step Broyden
# solve of MDEQ-Small at 256x512, 0.7 ms per evaluation of f. On CPU the buffers are therefore
# lent from a small pool and kept between solves. Accelerators reuse memory through their
# caching allocator: there a buffer is a plain ``torch.empty``.

#: Keep at most this many pooled buffers (one per batch size, state size, dtype and device).
POOL_ENTRIES = 4
#: Pooled buffers larger than this are freed after the solve instead.
POOL_MAX_BYTES = 512 * 2**20

_pool: dict[tuple, Tensor] = {}
_pool_lock = threading.Lock()


@contextmanager
def history_buffer(
    batch: int, rows: int, dim: int, dtype: torch.dtype, device: torch.device
) -> Iterator[Tensor]:
    """Lends an uninitialised ``(batch, rows, dim)`` buffer for the duration of one solve.

    On CPU the buffer comes from, and goes back to, a pool shared by all solves (a solve run
    inside another one, or in another thread, gets its own); :func:`release_workspace` empties
    it. On other devices it is a fresh ``torch.empty``.
    """
    device = torch.device(device)
    if device.type != 'cpu':
        yield torch.empty(batch, rows, dim, dtype=dtype, device=device)
        return
    key = (batch, dim, dtype, device)
    with _pool_lock:
        buf = _pool.pop(key, None)
    if buf is None or buf.shape[1] < rows:
        buf = None  # free the smaller one before allocating
        buf = torch.empty(batch, rows, dim, dtype=dtype, device=device)
    try:
        yield buf[:, :rows]
    finally:
        if buf.numel() * buf.element_size() <= POOL_MAX_BYTES:
            with _pool_lock:
                old = _pool.get(key)
                if old is None or old.shape[1] < buf.shape[1]:
                    _pool.pop(key, None)
                    _pool[key] = buf
                while len(_pool) > POOL_ENTRIES:
                    _pool.pop(next(iter(_pool)))


def release_workspace() -> None:
    """Frees the pooled CPU history buffers of the solvers (they are re-created when needed)."""
    with _pool_lock:
        _pool.clear()
