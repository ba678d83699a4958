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
  A zero or non-finite denominator (or a zero step) skips the update (the reference zeroes NaN
  entries of ``u`` and ``v``).
* ``memory`` updates are kept (the reference's ``LBFGS_thres = min(threshold, 27)``); when all
  are in use, the oldest slot is overwritten (slot ``(k - 1) mod memory``) and the new direction
  uses the remaining ones, as there.

**Compact representation.** ``U`` and ``V`` are not stored: every ``u_i`` and ``v_i`` is a
combination of the steps taken, so the solver keeps the steps ``d_j = sigma_j a_j`` (rows
``a_j``, ``(B, D)`` each, and scales ``sigma_j``), their Gram matrix ``a_i . a_j`` and the
coefficients of ``u_i`` and ``v_i`` on the rows (small ``(B, memory, max_iter)`` matrices). With
``B_k g_k = -d_k`` the update needs no ``B_k dg``: ``dx - B_k dg = (s - 1) d_k - B_k g_{k+1}``,
``v^T dg = v^T g_{k+1} + s ||d_k||^2``, and in particular ``u_k = d_{k+1} / ||d_k||^2`` without
line search or wrap-around (in general
``u_k = (d_{k+1} + (s - 1) d_k - u_old (v_old . g_{k+1})) / (s ||d_k||^2)``, ``u_old`` the
overwritten update). A step then reads the stored rows twice: once for their inner products with
``g_{k+1}`` and once to combine the new direction, against four reads of ``U`` and ``V`` in the
factored form; the new row's Gram entries follow from those inner products (its norm is taken
directly). The rows are kept for the whole solve (``max_iter`` vectors), also when ``memory`` is
smaller: the ``v_i`` of a wrapped-around memory involve every earlier step. The coefficient
algebra runs in float64 (in numpy on the CPU without autograd). The iterates equal those of the
factored form up to rounding (``tests/deq/test_broyden_compact.py`` compares them with explicit
``U``/``V`` vectors, ``tests/deq/test_reference_parity.py`` with dense matrices).

Per-sample residuals and stopping (the reference takes norms over the whole batch; with batch 1
the two agree). Optional line search: per-sample Armijo backtracking on ``||g||^2`` (the step is
halved up to ``ls_max_halvings`` times while ``||g(x + s d)||^2 > (1 - ls_c1 s) ||g(x)||^2``); its
trial evaluations count in ``stats.n_eval``, not as steps.
"""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import torch
from torch import Tensor

from ..utils import StateLayout, check_state_like
from .common import StateFn, dot, history_buffer, residual_norms, rows_dot
from .stats import Tracker

__all__ = ['broyden', 'MDEQ_MEMORY']

#: Stored updates of locuslab/mdeq's L-Broyden (``LBFGS_thres = min(threshold, 27)``).
MDEQ_MEMORY = 27


class _TorchOps:
    """The small coefficient algebra on torch tensors (float64, the state's device); used when
    autograd records the iterations (every write out of place) and on accelerators."""

    def __init__(self, device: torch.device, inplace: bool) -> None:
        self.device, self.inplace = device, inplace
        self.where, self.isfinite = torch.where, torch.isfinite

    def zeros(self, *shape: int) -> Tensor:
        return torch.zeros(*shape, dtype=torch.float64, device=self.device)

    def ones(self, *shape: int) -> Tensor:
        return torch.ones(*shape, dtype=torch.float64, device=self.device)

    def array(self, t: Tensor) -> Tensor:
        return t.to(torch.float64)

    def tensor(self, a: Tensor, dtype: torch.dtype) -> Tensor:
        return a.to(dtype)

    def cat(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([a, b], 1)

    def set(self, t: Tensor, index: tuple, value) -> Tensor:
        """``t[index] = value``, on a copy of ``t`` when autograd records."""
        if not self.inplace:
            t = t.clone()
        t[index] = value
        return t


class _NumpyOps:
    """The small coefficient algebra in numpy float64, for the in-place path on CPU: a numpy
    operation on a ``(B, memory, max_iter)`` matrix costs about a microsecond, a torch call
    several, and a Broyden step makes a few dozen of them."""

    inplace = True
    where, isfinite = staticmethod(np.where), staticmethod(np.isfinite)

    def zeros(self, *shape: int) -> np.ndarray:
        return np.zeros(shape)

    def ones(self, *shape: int) -> np.ndarray:
        return np.ones(shape)

    def array(self, t: Tensor) -> np.ndarray:
        return t.detach().to(torch.float64).numpy()

    def tensor(self, a: np.ndarray, dtype: torch.dtype) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)

    def cat(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a, b], 1)

    def set(self, t: np.ndarray, index: tuple, value) -> np.ndarray:
        t[index] = value
        return t


class _Rows:
    """The rows ``a_0, a_1, ...`` ``(B, D)`` of one solve.

    Without autograd they are the rows of a ``(B, rows, D)`` history buffer, written in place;
    when autograd records the iterations they are a list of tensors (every operation out of
    place, and no stacked copies kept for backward).
    """

    def __init__(self, buf: Tensor | None) -> None:
        self.buf = buf
        self.rows: list[Tensor] = []

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, j: int) -> Tensor:
        return self.rows[j]

    def free(self) -> Tensor | None:
        """Where the next row will be (to compute ``g`` there directly), if it is a buffer row."""
        if self.buf is None or len(self.rows) >= self.buf.shape[1]:
            return None
        return self.buf[:, len(self.rows)]

    def dots(self, vec: Tensor) -> Tensor:
        """``(B, n)`` inner products ``a_j . vec`` of every row."""
        n = len(self.rows)
        if self.buf is not None:
            return rows_dot(self.buf[:, :n], vec)
        return torch.stack([dot(r, vec)[:, 0] for r in self.rows], 1)

    def push(self, g: Tensor, coef: Tensor | None) -> Tensor:
        """Appends ``a = g + sum_j coef_j a_j`` (``coef`` ``(B, n)``, the state's dtype)."""
        n = len(self.rows)
        if self.buf is None:
            row = g
            if coef is not None:
                for j, r in enumerate(self.rows):
                    row = row + coef[:, j : j + 1] * r
        else:
            row = self.buf[:, n]
            if g.data_ptr() != row.data_ptr() or g.stride() != row.stride():
                row.copy_(g)
            if coef is not None and n:
                row.unsqueeze(1).baddbmm_(coef.unsqueeze(1), self.buf[:, :n])
        self.rows.append(row)
        return row


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
    b = layout.batch

    def g_at(x: Tensor, out: Tensor | None = None):
        fz = check_state_like(f(layout.unpack(x)), z0)
        tracker.n_eval += 1
        g = layout.residual(fz, x, out)
        return g, fz, residual_norms(fz, x, layout, tracker.sdt, g=g)

    def done() -> bool:
        return tracker.tol is not None and tracker.all_stopped()

    x = layout.pack(z0)
    g, fz, norms = g_at(x)
    tracker.record(0, layout.unpack(x), fz, norms)
    if done():
        return
    inplace = not (g.requires_grad or x.requires_grad)  # autograd records: no in-place writes
    cap = max(1, max_iter - 1 if memory is None else min(memory, max_iter - 1))
    small = inplace and x.device.type == 'cpu' and x.dtype in (torch.float32, torch.float64)
    ops = _NumpyOps() if small else _TorchOps(x.device, inplace)
    with ExitStack() as stack:
        if small:  # inf and NaN propagate silently, as in torch (the tracker stops such samples)
            stack.enter_context(np.errstate(all='ignore'))
        buf = None
        if inplace:
            buf = stack.enter_context(history_buffer(b, max_iter, layout.dim, x.dtype, x.device))
        rows = _Rows(buf)
        sigma = ops.ones(b, max_iter)  # d_j = sigma_j a_j
        gram = ops.zeros(b, max_iter, max_iter)  # a_i . a_j
        coef_u = ops.zeros(b, cap, max_iter)  # u_i = sum_j coef_u[i, j] a_j
        coef_v = ops.zeros(b, cap, max_iter)  # v_i = sum_j coef_v[i, j] a_j
        row = rows.push(g, None)  # a_0 = g_0: d_0 = -B_0 g_0 with B_0 = -I
        gram = ops.set(gram, (slice(None), 0, 0), ops.array(dot(row, row))[:, 0])
        n_upd = 0  # updates made (slots written)
        for step in range(1, max_iter + 1):
            k = step - 1  # the direction d_k = sigma_k a_k leads from x_k to x_{k+1}
            scale = ops.tensor(sigma[:, k : k + 1], x.dtype)
            x_new = torch.addcmul(x, rows[k], scale)
            g_new, fz, norms_new = g_at(x_new, rows.free() if step < max_iter else None)
            s = None  # the accepted step size, (B,), with line search
            if line_search:
                x_new, g_new, fz, norms_new, s = _backtrack(
                    g_at, x, rows[k] * scale, x_new, g_new, fz, norms_new, norms[0],
                    ls_max_halvings, ls_c1,
                )  # fmt: skip
                s = ops.array(s)[:, 0]
            tracker.record(step, layout.unpack(x_new), fz, norms_new)
            if step == max_iter or done():
                return
            nk, n = k + 1, min(n_upd, cap)  # rows a_0..a_k; updates in use
            p = ops.array(rows.dots(g_new))  # (B, nk): a_j . g_{k+1}
            cu, cv = coef_u[:, :n, :nk], coef_v[:, :n, :nk]
            sk = sigma[:, k]
            vg = (cv @ p[..., None])[..., 0]  # v_i . g
            du = sk[:, None] * (cu @ gram[:, k, :nk, None])[..., 0]  # d_k . u_i
            bg = (cu.swapaxes(1, 2) @ vg[..., None])[..., 0]  # B_k g = -g + sum bg_j a_j
            # v^T = dx^T B_k = s (-d_k + sum_i (d_k . u_i) v_i)
            vt = (cv.swapaxes(1, 2) @ du[..., None])[..., 0]
            vt = ops.set(vt, (slice(None), k), vt[:, k] - sk)
            if s is not None:
                vt = vt * s[:, None]
            vtg = (vt * p).sum(1)  # v^T g
            dd = sk * sk * gram[:, k, k]  # ||d_k||^2
            sdd = dd if s is None else s * dd
            denom = vtg + sdd  # v^T dg
            ok = ops.isfinite(denom) & (denom != 0) & (sdd > 0)
            safe = ops.where(ok, denom, 1.0)
            c_g = ops.where(ok, sdd / safe, 1.0)  # coefficient of g in d_{k+1}
            # a_{k+1} = d_{k+1} / c_g = g - sum_j bg_j a_j [+ line-search and wrap-around terms];
            # u = (d_{k+1} + (s - 1) d_k - u_old (v_old . g)) / (s ||d_k||^2), 0 when skipped
            w = -bg
            u_new = ops.zeros(b, nk + 1)
            if s is not None:
                t = ops.where(ok, vtg / safe, 0.0)
                w = ops.set(w, (slice(None), k), w[:, k] - t * (s - 1) * sk / c_g)
                u_new[:, k] = (s - 1) * sk
            slot = n_upd % cap
            if n_upd >= cap:  # the oldest update is overwritten: -B_{k+1} g gets + u_old v_old^T g
                old = coef_u[:, slot, :nk] * vg[:, slot : slot + 1]
                w = w + old / c_g[:, None]
                u_new[:, :nk] -= old
            w_state = ops.tensor(w, x.dtype)  # the coefficients the row is combined with
            w = ops.array(w_state)
            row = rows.push(g_new, w_state)
            sigma = ops.set(sigma, (slice(None), nk), c_g)
            # Gram row of a_{k+1}: a_{k+1} . a_j = p_j + sum_i w_i (a_i . a_j); its norm directly
            grow = p + (w[:, None, :] @ gram[:, :nk, :nk])[:, 0]
            grow = ops.cat(grow, ops.array(dot(row, row)))
            gram = ops.set(gram, (slice(None), nk, slice(0, nk + 1)), grow)
            gram = ops.set(gram, (slice(None), slice(0, nk + 1), nk), grow)
            u_new[:, nk] = c_g
            u_new = ops.where(ok[:, None], u_new / ops.where(ok, sdd, 1.0)[:, None], 0.0)
            # (an overwritten slot's old coefficients lie in columns < nk: all replaced)
            coef_u = ops.set(coef_u, (slice(None), slot, slice(0, nk + 1)), u_new)
            coef_v = ops.set(coef_v, (slice(None), slot, slice(0, nk)), vt)
            n_upd += 1
            x, norms = x_new, norms_new


def _backtrack(g_at, x, update, x_new, g_new, fz, norms, gnorm, halvings, c1):
    """Per-sample Armijo backtracking (see the module docstring) from the evaluated full step
    ``x_new = x + update``; returns the accepted point and the step sizes ``(B, 1)``."""
    step = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    gn_new = norms[0]
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
