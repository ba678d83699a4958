"""Broyden's "good" method on ``g(z) = f(z) - z`` (StreamDEQ thesis Eq. 3.2), MDEQ's L-Broyden.

Follows locuslab/mdeq ``lib/modules/broyden.py`` (MIT; Bai, Koltun & Kolter, "Multiscale Deep
Equilibrium Models", NeurIPS 2020), written for mmvideoeq (no code copied):

* ``g(x_0)`` is evaluated first; each of at most ``max_iter`` steps (the reference's
  ``threshold``) moves to ``x_{k+1} = x_k + d_k`` and evaluates ``g(x_{k+1})``, so ``T`` steps cost
  ``T + 1`` evaluations of ``f``. The returned state is an iterate ``x_k`` itself (the lowest-
  residual one, ``x_0`` included, with ``return_lowest``; else the last), step ``k``.
* ``B ~ J_g^{-1} = -I + U V^T`` starts at ``-I`` (``d_0 = g_0``, so ``x_1 = f(x_0)``); after a step
  ``dx = s d_k`` with residual change ``dg`` the rank-one update is
  ``u = (dx - B_k dg) / (v^T dg)``, ``v^T = dx^T B_k``, and ``d_{k+1} = -B_{k+1} g_{k+1}``.
  ``B_k dg`` is not formed: ``B_k g_k = -d_k`` gives ``dx - B_k dg = (s - 1) d_k - B_k g_{k+1}`` and
  ``v^T dg = v^T g_{k+1} + s ||d_k||^2``. A zero or non-finite denominator skips the update
  (the reference zeroes NaN entries of ``u`` and ``v``).
* ``memory`` updates are stored (the reference's ``LBFGS_thres = min(threshold, 27)``); when full,
  the oldest slot is overwritten (slot ``(k - 1) mod memory``), as there.

Per-sample residuals and stopping (the reference takes norms over the whole batch; with batch 1
the two agree). Optional line search: per-sample Armijo backtracking on ``||g||^2`` (the step is
halved up to ``ls_max_halvings`` times while ``||g(x + s d)||^2 > (1 - ls_c1 s) ||g(x)||^2``); its
trial evaluations count in ``stats.n_eval``, not as steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..utils import StateLayout, check_state_like
from .common import StateFn, dot, put, residual_norms, rows_dot
from .stats import Tracker

__all__ = ['broyden', 'MDEQ_MEMORY']

#: Stored updates of locuslab/mdeq's L-Broyden (``LBFGS_thres = min(threshold, 27)``).
MDEQ_MEMORY = 27


def broyden(
    f: StateFn,
    z0: list[Tensor],
    layout: StateLayout,
    tracker: Tracker,
    max_iter: int,
    *,
    memory: int | None = MDEQ_MEMORY,
    line_search: bool = False,
    ls_max_halvings: int = 3,
    ls_c1: float = 1e-4,
) -> None:
    """Runs at most ``max_iter`` Broyden steps (``max_iter + 1`` evaluations) from ``z0``."""
    b, d = layout.batch, layout.dim

    def g_at(x: Tensor) -> tuple[Tensor, list[Tensor], tuple[Tensor, Tensor]]:
        fz = check_state_like(f(layout.unpack(x)), z0)
        tracker.n_eval += 1
        return layout.pack(fz) - x, fz, residual_norms(fz, x, layout, tracker.sdt)

    def done() -> bool:
        return tracker.tol is not None and tracker.all_stopped()

    x = layout.pack(z0)
    g, fz, norms = g_at(x)
    tracker.record(0, layout.unpack(x), fz, norms)
    if max_iter == 0 or done():
        return
    inplace = not (g.requires_grad or x.requires_grad)  # autograd records: no in-place writes
    cap = max(1, max_iter - 1 if memory is None else min(memory, max_iter - 1))
    U = torch.zeros(b, cap, d, dtype=x.dtype, device=x.device)
    V = torch.zeros_like(U)
    n_upd = 0
    update = g  # d_0 = -B_0 g_0 with B_0 = -I
    for step in range(1, max_iter + 1):
        x_new = x + update
        g_new, fz, norms = g_at(x_new)
        s = None
        if line_search:
            x_new, g_new, fz, norms, s = _backtrack(
                g_at,
                x,
                update,
                g_new,
                fz,
                norms,
                tracker.abs_trace[:, step - 1],
                ls_max_halvings,
                ls_c1,
            )
        tracker.record(step, layout.unpack(x_new), fz, norms)
        if step == max_iter or done():
            return
        n = min(n_upd, cap)
        Uc, Vc = U[:, :n], V[:, :n]
        # B_k g_{k+1} = -g_{k+1} + U (V g_{k+1});  v^T = dx^T B_k = -dx + (dx U^T) V
        bg = torch.baddbmm(g_new.unsqueeze(1), rows_dot(Vc, g_new).unsqueeze(1), Uc, beta=-1)
        vt = torch.baddbmm(update.unsqueeze(1), rows_dot(Uc, update).unsqueeze(1), Vc, beta=-1)
        bg, vt = bg.squeeze(1), vt.squeeze(1)
        if s is not None:
            vt = vt * s
        vtg = dot(vt, g_new)
        dd = dot(update, update)
        denom = vtg + (dd if s is None else s * dd)
        ok = (denom != 0) & torch.isfinite(denom)
        inv = torch.where(ok, 1.0 / torch.where(ok, denom, 1.0), 0.0)
        u = -bg * inv if s is None else ((s - 1) * update - bg) * inv
        slot = n_upd % cap
        U, V = put(U, slot, u, inplace), put(V, slot, vt, inplace)
        n_upd += 1
        if n_upd <= cap:  # B_{k+1} = B_k + u v^T: d_{k+1} = -(B_k g_{k+1} + u (v^T g_{k+1}))
            update = -(bg + u * vtg)
        else:  # an old update was overwritten: d_{k+1} = g_{k+1} - U (V g_{k+1})
            update = torch.baddbmm(
                g_new.unsqueeze(1), rows_dot(V, g_new).unsqueeze(1), U, alpha=-1
            ).squeeze(1)
        x, g = x_new, g_new


def _backtrack(g_at, x, update, g_new, fz, norms, gnorm, halvings, c1):
    """Per-sample Armijo backtracking (see the module docstring); returns the accepted point."""
    step = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    gn_new = norms[0]
    x_new = x + update
    for _ in range(halvings):
        fail = ~(gn_new.square() <= (1 - c1 * step.squeeze(1).to(gnorm.dtype)) * gnorm.square())
        if not bool(fail.any()):
            break
        step = torch.where(fail[:, None], step * 0.5, step)
        x_try = x + step * update
        g_try, fz_try, norms_try = g_at(x_try)
        keep = fail[:, None]
        x_new = torch.where(keep, x_try, x_new)
        g_new = torch.where(keep, g_try, g_new)
        fz = [torch.where(keep.view(-1, *([1] * (a.dim() - 1))), a, c) for a, c in zip(fz_try, fz)]
        norms = tuple(torch.where(fail, a, c) for a, c in zip(norms_try, norms))
        gn_new = norms[0]
    return x_new, g_new, fz, norms, step
