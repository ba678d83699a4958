"""Anderson acceleration (type II) of fixed-point iteration.

Walker & Ni, "Anderson acceleration for fixed-point iterations", SIAM J. Numer. Anal. 2011, with
the conventions of torchdeq's ``anderson_solver`` (``torchdeq/solver/anderson.py``, MIT):
``max_iter`` counts evaluations of ``f``; the first step is the plain ``x_1 = f(x_0)``; from then
on ``x_{k+1} = beta sum_i alpha_i F_i + (1 - beta) sum_i alpha_i x_i`` over the last
``n = min(k + 1, m)`` iterates ``x_i`` and images ``F_i = f(x_i)``, with
``alpha = argmin ||sum_i alpha_i G_i||^2 + lam ||alpha||^2`` subject to ``sum_i alpha_i = 1``,
``G_i = F_i - x_i`` (the bordered system of torchdeq, solved as ``alpha = w / sum(w)`` with
``(G G^T + lam I) w = 1``). The returned state is an image ``F_k`` (step ``k + 1``).

Without autograd the window's ``F_i`` and ``G_i`` are rows of one history buffer, written in
place: ``f(x_k)`` is packed into its row and ``g_k`` computed into its own. The Gram matrix
``G G^T`` (float64; numpy on the CPU, as the weights) gains one row per step from one pass over
the ``G`` rows, computed before the step is recorded because its diagonal entry is
``||g_k||^2``; ``||f(x_k)||`` is taken from the packed row while it is still cached. The mixed
iterate ``x_{k+1}`` is written into the ``G`` row that ``g_{k+1}`` will occupy, and ``g_{k+1}``
is formed there in place (when the pre-images are kept or ``beta < 1``, into one of a few reused
buffers, :class:`.common.Iterates`). When autograd records the iterations, every write is out of
place.

Deviation, documented in ``docs/deq_core.md``: torchdeq neither records nor returns the images of
the first two evaluations (with ``max_iter <= 2`` it returns ``x_0``); here every evaluation is a
candidate. Written for mmvideoeq; no code was copied.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..utils import StateLayout, check_state_like
from .common import Iterates, StateFn, history_buffer, put, residual_norms, rows_dot
from .stats import Tracker

__all__ = ['anderson']


def anderson(
    f: StateFn,
    z0: list[Tensor],
    layout: StateLayout,
    tracker: Tracker,
    max_iter: int,
    *,
    m: int = 6,
    beta: float = 1.0,
    lam: float = 1e-4,
) -> None:
    """Runs at most ``max_iter`` evaluations: window ``m``, mixing ``beta``, Tikhonov ``lam``."""
    x = layout.pack(z0)
    xs = layout.unpack(x)
    fz = check_state_like(f(xs), z0)
    tracker.n_eval += 1
    mm = max(1, min(m, max_iter - 1))
    if x.requires_grad or any(t.requires_grad for t in fz):  # autograd records
        _recorded(f, x, xs, fz, layout, tracker, max_iter, mm, beta, lam)
        return
    with history_buffer(layout.batch, 2 * mm, layout.dim, x.dtype, x.device) as buf:
        _inplace(f, x, xs, fz, layout, tracker, max_iter, mm, beta, lam, buf)


def _inplace(f, x, xs, fz, layout, tracker, max_iter, mm, beta, lam, buf) -> None:
    """The loop without autograd: the images ``F`` and residuals ``G`` are rows of one history
    buffer written in place, their Gram matrix is kept in float64 (numpy on CPU) and updated by
    one row per step.

    Where nothing needs ``x_k`` after its evaluation (no pre-image kept, ``beta = 1``), the mix
    writes ``x_{k+1}`` into the ``G`` row that ``g_{k+1}`` will occupy (the oldest one, whose
    Gram row is already taken) and ``g_{k+1} = f(x_{k+1}) - x_{k+1}`` is formed there in place;
    otherwise the iterates go into reused buffers of their own.
    """
    sdt = tracker.sdt
    F, G = buf[:, :mm], buf[:, mm:]
    host = x.device.type == 'cpu'  # the Gram matrix and the weights in numpy
    gram = torch.zeros(layout.batch, mm, mm, dtype=torch.float64, device=x.device)
    if host:
        gram = gram.numpy()
    in_row = beta == 1.0 and tracker.best_pre is None  # x_k lives in its G row
    iterates = None if in_row else Iterates(tracker)
    buf_ptr = buf.untyped_storage().data_ptr()
    for k in range(max_iter):
        if k:
            fz = list(f(xs))
            tracker.n_eval += 1
        slot, n = k % mm, min(k + 1, mm)
        fx = layout.pack_into(fz, F[:, slot])  # f(x_k) and g_k straight into their rows
        if k and in_row:  # x_k is G[:, slot]; g_k overwrites it
            if any(t.untyped_storage().data_ptr() == buf_ptr for t in fz):
                fz = [t.clone() for t in fz]  # f returned (a view of) its input
            gx = torch.sub(fx, x, out=x)
        else:
            gx = torch.sub(fx, x, out=G[:, slot])
        last = k == max_iter - 1
        fnorm = torch.linalg.vector_norm(fx, dim=1, dtype=sdt)  # the packed row, still cached
        if last:
            gnorm = torch.linalg.vector_norm(gx, dim=1, dtype=sdt)
        else:  # the new Gram row (before recording: ||g_k||^2 is one of its entries)
            row = rows_dot(G[:, :n], gx).to(torch.float64)
            row = row.numpy() if host else row
            gram[:, slot, :n] = row
            gram[:, :n, slot] = row
            gg = row[:, slot]
            gnorm = (torch.from_numpy(np.sqrt(gg)) if host else gg.sqrt()).to(sdt)
        # (with in_row, xs now hold g_k: the tracker keeps only the image and uses x to detect
        # an f that returned its input, handled above)
        tracker.record(k, xs, fz, (gnorm, fnorm))
        if last or (tracker.tol is not None and tracker.all_stopped()):
            return
        out = G[:, (k + 1) % mm] if in_row else iterates.take(x)
        if k == 0:  # x_1 = f(x_0), as torchdeq
            x = out.copy_(fx)
        else:
            if host:
                a = torch.from_numpy(_weights_host(gram[:, :n, :n], lam, slot))
            else:
                a = _weights(gram[:, :n, :n], lam, slot)
            a = a.to(x.dtype).unsqueeze(1)  # (B, 1, n)
            x = torch.bmm(a, F[:, :n], out=out.unsqueeze(1)).squeeze(1)
            if beta != 1.0:  # beta alpha F + (1 - beta) alpha X, with X = F - G
                x.unsqueeze(1).baddbmm_(a, G[:, :n], alpha=beta - 1.0)
        xs = layout.unpack(x)


def _recorded(f, x, xs, fz, layout, tracker, max_iter, mm, beta, lam) -> None:
    """The loop when autograd records the iterations: every write out of place."""
    b, d = layout.batch, layout.dim
    F = torch.empty(b, mm, d, dtype=x.dtype, device=x.device)
    G = torch.empty(b, mm, d, dtype=x.dtype, device=x.device)
    for k in range(max_iter):
        if k:
            fz = list(f(xs))
            tracker.n_eval += 1
        slot, n = k % mm, min(k + 1, mm)
        fx = layout.pack(fz)
        gx = fx - x
        F, G = put(F, slot, fx, False), put(G, slot, gx, False)
        tracker.record(k, xs, fz, residual_norms(fz, x, layout, tracker.sdt, g=gx))
        if k == max_iter - 1 or (tracker.tol is not None and tracker.all_stopped()):
            return
        if k == 0:
            x = fx
        else:
            gram_n = torch.bmm(G[:, :n], G[:, :n].transpose(1, 2))
            a = _weights(gram_n, lam, slot).to(x.dtype).unsqueeze(1)  # (B, 1, n)
            x = torch.bmm(a, F[:, :n]).squeeze(1)
            if beta != 1.0:  # beta alpha F + (1 - beta) alpha X, with X = F - G
                x = x - (1.0 - beta) * torch.bmm(a, G[:, :n]).squeeze(1)
        xs = layout.unpack(x)


def _weights(gram: Tensor, lam: float, latest: int) -> Tensor:
    """``(B, n)`` mixing weights summing to one, ``w / sum(w)`` with ``(G G^T + lam I) w = 1``.

    Solved in float64; a sample whose system is singular (weights not finite) takes the latest
    image alone.
    """
    b, n, _ = gram.shape
    h = gram.to(torch.float64, copy=True)
    h.diagonal(dim1=1, dim2=2).add_(lam)
    ones = torch.ones(b, n, 1, dtype=h.dtype, device=h.device)
    w = torch.linalg.solve_ex(h, ones)[0].squeeze(2)
    alpha = w / w.sum(dim=1, keepdim=True)
    bad = ~torch.isfinite(alpha).all(dim=1, keepdim=True)
    fallback = torch.zeros(1, n, dtype=h.dtype, device=h.device)
    fallback[0, latest] = 1.0
    return torch.where(bad, fallback, alpha)


def _weights_host(gram: np.ndarray, lam: float, latest: int) -> np.ndarray:
    """:func:`_weights` in numpy (``(B, n, n)`` float64 -> ``(B, n)``): a few microseconds per
    call on the CPU against tens for the same torch calls."""
    b, n, _ = gram.shape
    h = gram + lam * np.eye(n)
    with np.errstate(all='ignore'):
        try:
            w = np.linalg.solve(h, np.ones((b, n, 1)))[..., 0]
        except np.linalg.LinAlgError:  # a singular sample: solve one by one
            w = np.full((b, n), np.nan)
            for i in range(b):
                try:
                    w[i] = np.linalg.solve(h[i], np.ones(n))
                except np.linalg.LinAlgError:
                    pass
        alpha = w / w.sum(axis=1, keepdims=True)
    bad = ~np.isfinite(alpha).all(axis=1)
    alpha[bad] = 0.0
    alpha[bad, latest] = 1.0
    return alpha
