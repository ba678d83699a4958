"""Anderson acceleration (type II) of fixed-point iteration.

Walker & Ni, "Anderson acceleration for fixed-point iterations", SIAM J. Numer. Anal. 2011, with
the conventions of torchdeq's ``anderson_solver`` (``torchdeq/solver/anderson.py``, MIT):
``max_iter`` counts evaluations of ``f``; the first step is the plain ``x_1 = f(x_0)``; from then
on ``x_{k+1} = beta sum_i alpha_i F_i + (1 - beta) sum_i alpha_i x_i`` over the last
``n = min(k + 1, m)`` iterates ``x_i`` and images ``F_i = f(x_i)``, with
``alpha = argmin ||sum_i alpha_i G_i||^2 + lam ||alpha||^2`` subject to ``sum_i alpha_i = 1``,
``G_i = F_i - x_i`` (the bordered system of torchdeq, solved as ``alpha = w / sum(w)`` with
``(G G^T + lam I) w = 1``). The returned state is an image ``F_k`` (step ``k + 1``).

Deviation, documented in ``docs/deq_core.md``: torchdeq neither records nor returns the images of
the first two evaluations (with ``max_iter <= 2`` it returns ``x_0``); here every evaluation is a
candidate. Written for mmvideoeq; no code was copied.
"""

from __future__ import annotations

from contextlib import ExitStack

import torch
from torch import Tensor

from ..utils import StateLayout, check_state_like
from .common import StateFn, history_buffer, put, residual_norms, rows_dot
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
    with ExitStack() as stack:
        _loop(f, z0, layout, tracker, max_iter, m, beta, lam, stack)


def _loop(f, z0, layout, tracker, max_iter, m, beta, lam, stack) -> None:
    b, d = layout.batch, layout.dim
    x = layout.pack(z0)
    mm = max(1, min(m, max_iter - 1))
    F = G = gram = None
    inplace = True
    for k in range(max_iter):
        fz = f(layout.unpack(x))
        fz = check_state_like(fz, z0) if k == 0 else list(fz)
        tracker.n_eval += 1
        if k == 0:
            inplace = not (x.requires_grad or any(t.requires_grad for t in fz))
            if inplace:  # F and G rows of one history buffer, written in place
                buf = stack.enter_context(history_buffer(b, 2 * mm, d, x.dtype, x.device))
                F, G = buf[:, :mm], buf[:, mm:]
            else:  # autograd records: out-of-place writes
                F = torch.empty(b, mm, d, dtype=x.dtype, device=x.device)
                G = torch.empty(b, mm, d, dtype=x.dtype, device=x.device)
            gram = torch.empty(b, mm, mm, dtype=x.dtype, device=x.device)
        slot, n = k % mm, min(k + 1, mm)
        if inplace:  # f(x_k) and g_k straight into their rows
            fx = layout.pack_into(fz, F[:, slot])
            gx = torch.sub(fx, x, out=G[:, slot])
        else:
            fx = layout.pack(fz)
            gx = fx - x
            F, G = put(F, slot, fx, False), put(G, slot, gx, False)
        tracker.record(k, layout.unpack(x), fz, residual_norms(fz, x, layout, tracker.sdt, g=gx))
        if k == max_iter - 1 or (tracker.tol is not None and tracker.all_stopped()):
            return
        if inplace:  # one new Gram row per step
            row = rows_dot(G[:, :n], gx)
            gram[:, slot, :n] = row
            gram[:, :n, slot] = row
        if k == 0:
            x = layout.pack(fz)  # x_1 = f(x_0), as torchdeq (not a view of the reused rows)
            continue
        if inplace:
            gram_n = gram[:, :n, :n]
        else:
            gram_n = torch.bmm(G[:, :n], G[:, :n].transpose(1, 2))
        a = _weights(gram_n, lam, slot).unsqueeze(1)  # (B, 1, n)
        x = torch.bmm(a, F[:, :n]).squeeze(1)
        if beta != 1.0:  # beta alpha F + (1 - beta) alpha X, with X = F - G
            x = x - (1.0 - beta) * torch.bmm(a, G[:, :n]).squeeze(1)


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
    return torch.where(bad, fallback, alpha).to(gram.dtype)
