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
combination of the steps taken, and every step ``d_j = sigma_j a_j`` a combination of the
residuals, ``a_j = sum_{i <= j} tri[j, i] g_i``. The solver keeps ``x_0`` and the residuals
``g_0, g_1, ...`` (rows ``(B, D)`` of one history buffer; each residual is computed into its row
and never rewritten) and small float64 matrices: ``tri`` (lower triangular), the scales
``sigma_j``, the Gram matrix ``a_i . a_j`` and the coefficients of ``u_i`` and ``v_i`` on the
``a_j``. With ``B_k g_k = -d_k`` the update needs no ``B_k dg``: ``dx - B_k dg = (s - 1) d_k -
B_k g_{k+1}``, ``v^T dg = v^T g_{k+1} + s ||d_k||^2``, and in particular
``u_k = d_{k+1} / ||d_k||^2`` without line search or wrap-around (in general
``u_k = (d_{k+1} + (s - 1) d_k - u_old (v_old . g_{k+1})) / (s ||d_k||^2)``, ``u_old`` the
overwritten update). A step reads the stored rows twice: once for the inner products
``g_i . g_{k+1}`` (``a_j . g_{k+1} = sum_i tri[j, i] g_i . g_{k+1}``; the last one is
``||g_{k+1}||^2``, the recorded residual), and once for the next iterate
``x_{k+1} = x_0 + sum_i c_i g_i``, one matrix product written into one of a few reused
iterate buffers (:class:`.common.Iterates`). No direction is materialised (but ``d_k`` for the
trial points of the line search, which then steps from ``x_k`` and takes ``||g||`` directly);
the new direction's Gram row follows from the inner products,
``a_{k+1} . a_j = a_j . g_{k+1} + sum_i w_i a_i . a_j`` for ``a_{k+1} = g_{k+1} + sum_i w_i a_i``,
and ``||a_{k+1}||^2 = a_{k+1} . g_{k+1} + sum_i w_i a_{k+1} . a_i``. The rows are kept for the
whole solve (``max_iter + 1`` vectors), also when ``memory`` is smaller: the ``v_i`` of a
wrapped-around memory involve every earlier step. The coefficient algebra runs in float64 (in
numpy on the CPU without autograd). The iterates equal those of the factored form up to rounding
(``tests/deq/test_broyden_compact.py`` compares them with explicit ``U``/``V`` vectors,
``tests/deq/test_reference_parity.py`` with dense matrices).

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
from .common import Iterates, StateFn, dot, history_buffer, image_norm, rows_dot
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

    def norm(self, sq: Tensor, dtype: torch.dtype) -> Tensor:
        """``sqrt(sq)`` as a detached ``dtype`` tensor (a norm from its square)."""
        return sq.detach().sqrt().to(dtype)

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
        return torch.from_numpy(a.astype(np.float32 if dtype == torch.float32 else np.float64))

    def norm(self, sq: np.ndarray, dtype: torch.dtype) -> Tensor:
        """``sqrt(sq)`` as a ``dtype`` tensor (a norm from its square)."""
        return self.tensor(np.sqrt(sq), dtype)

    def cat(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a, b], 1)

    def set(self, t: np.ndarray, index: tuple, value) -> np.ndarray:
        t[index] = value
        return t


class _Rows:
    """The initial state ``x_0`` and the residuals ``g_0, g_1, ...`` ``(B, D)`` of one solve.

    Without autograd they are the rows of one ``(B, 1 + rows, D)`` history buffer, ``x_0``
    first, written in place (each ``g`` is computed straight into the next free row); when
    autograd records the iterations they are tensors in a list (every operation out of place,
    and no stacked copies kept for backward).
    """

    def __init__(self, x0: Tensor, buf: Tensor | None) -> None:
        self.buf = buf
        if buf is not None:
            buf[:, 0].copy_(x0)
            x0 = buf[:, 0]
        self.x0 = x0
        self.rows: list[Tensor] = []

    def free(self) -> Tensor | None:
        """Where the next residual will be (to compute it there directly), if in the buffer."""
        if self.buf is None or len(self.rows) + 1 >= self.buf.shape[1]:
            return None
        return self.buf[:, len(self.rows) + 1]

    def append(self, g: Tensor) -> Tensor:
        """Stores ``g`` ``(B, D)`` as the next residual (a copy unless it is already there)."""
        row = g
        if self.buf is not None:
            row = self.buf[:, len(self.rows) + 1]
            if g.data_ptr() != row.data_ptr() or g.stride() != row.stride():
                row.copy_(g)
        self.rows.append(row)
        return row

    def dots(self, vec: Tensor) -> Tensor:
        """``(B, n)`` inner products ``g_j . vec`` of every stored residual."""
        if self.buf is not None:
            return rows_dot(self.buf[:, 1 : len(self.rows) + 1], vec)
        return torch.stack([dot(r, vec)[:, 0] for r in self.rows], 1)

    def combine(self, coef: Tensor, out: Tensor | None = None, start: int = 0) -> Tensor:
        """``sum_j coef_j r_{start + j}`` ``(B, D)`` of the rows ``r = (x_0, g_0, g_1, ...)``.

        Args:
            coef: ``(B, n)`` coefficients in the state's dtype.
            out: ``(B, D)`` tensor to write into, in-place path only.
            start: The first row (``0``: ``x_0``, ``1``: ``g_0``).
        """
        n = coef.shape[1]
        if self.buf is None:
            acc = None
            for c, r in zip(coef.unbind(1), [self.x0, *self.rows][start : start + n]):
                term = c[:, None] * r
                acc = term if acc is None else acc + term
            return acc
        rows = self.buf[:, start : start + n]
        return torch.bmm(coef[:, None], rows, out=None if out is None else out[:, None])[:, 0]


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
    b, sdt = layout.batch, tracker.sdt

    def evaluate(x: Tensor, out: Tensor | None = None, gnorm: bool = True):
        """``(state views of x, g, f(x), (||g||, ||f(x)||))``; ``||g||`` is ``None`` unless
        ``gnorm`` (the caller takes it from the residuals' inner products)."""
        xs = layout.unpack(x)
        fz = check_state_like(f(xs), z0)
        tracker.n_eval += 1
        g = layout.residual(fz, x, out)
        norm = torch.linalg.vector_norm(g.detach(), dim=1, dtype=sdt) if gnorm else None
        return xs, g, fz, (norm, image_norm(fz, sdt))

    def done() -> bool:
        return tracker.tol is not None and tracker.all_stopped()

    x = layout.pack(z0)
    xs, g, fz, norms = evaluate(x)
    tracker.record(0, xs, fz, norms)
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
            buf = stack.enter_context(
                history_buffer(b, max_iter + 1, layout.dim, x.dtype, x.device)
            )
        rows = _Rows(x, buf)
        iterates = Iterates(tracker) if inplace else None
        sigma = ops.ones(b, max_iter)  # d_j = sigma_j a_j
        tri = ops.zeros(b, max_iter, max_iter)  # a_j = sum_i tri[j, i] g_i (lower triangular)
        tri = ops.set(tri, (slice(None), 0, 0), 1.0)  # a_0 = g_0: d_0 = -B_0 g_0, B_0 = -I
        # x_k = x_0 + sum_i pos[i + 1] g_i (column 0: x_0's coefficient, 1)
        pos = ops.set(ops.zeros(b, max_iter + 1), (slice(None), 0), 1.0)
        gram = ops.zeros(b, max_iter, max_iter)  # a_i . a_j
        coef_u = ops.zeros(b, cap, max_iter)  # u_i = sum_j coef_u[i, j] a_j
        coef_v = ops.zeros(b, cap, max_iter)  # v_i = sum_j coef_v[i, j] a_j
        row = rows.append(g)
        gram = ops.set(gram, (slice(None), 0, 0), ops.array(rows.dots(row))[:, 0])
        n_upd = 0  # updates made (slots written)
        for step in range(1, max_iter + 1):
            k = step - 1  # the direction d_k = sigma_k a_k leads from x_k to x_{k+1}
            last = step == max_iter
            step_coef = sigma[:, k : k + 1] * tri[:, k, : k + 1]  # d_k on g_0..g_k
            out = None if last else rows.free()  # g_{k+1} is computed into its row
            if line_search:  # d_k itself is needed for the trial points
                d = rows.combine(ops.tensor(step_coef, x.dtype), start=1)
                x_new = x + d
                _, g_new, fz, norms_new = evaluate(x_new, out)
                x_new, g_new, fz, norms_new, s = _backtrack(
                    evaluate, x, d, x_new, g_new, fz, norms_new, norms[0], ls_max_halvings, ls_c1
                )
                xs, s = layout.unpack(x_new), ops.array(s)[:, 0]
            else:  # x_{k+1} = x_0 + sum_i pos[i + 1] g_i: one pass over the rows
                s = None
                pos = ops.set(pos, (slice(None), slice(1, k + 2)), pos[:, 1 : k + 2] + step_coef)
                x_new = rows.combine(
                    ops.tensor(pos[:, : k + 2], x.dtype), iterates.take(x) if inplace else None
                )
                xs, g_new, fz, norms_new = evaluate(x_new, out, gnorm=last)
            if not last:
                rows.append(g_new)
                q = ops.array(rows.dots(g_new))  # (B, k + 2): g_i . g_{k+1}
                if s is None:  # ||g_{k+1}||^2 is the last of them
                    norms_new = (ops.norm(q[:, k + 1], sdt), norms_new[1])
            tracker.record(step, xs, fz, norms_new)
            if last or done():
                return
            nk, n = k + 1, min(n_upd, cap)  # directions a_0..a_k; updates in use
            p = (tri[:, :nk, :nk] @ q[:, :nk, None])[..., 0]  # (B, nk): a_j . g_{k+1}
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
            # a_{k+1} = g_{k+1} + sum_j w_j a_j on the residuals: tri[k+1] = e_{k+1} + w tri[:k+1]
            t_new = (w[:, None, :] @ tri[:, :nk, : nk + 1])[:, 0]
            t_new = ops.set(t_new, (slice(None), nk), 1.0)
            tri = ops.set(tri, (slice(None), nk, slice(0, nk + 1)), t_new)
            sigma = ops.set(sigma, (slice(None), nk), c_g)
            # Gram row of a_{k+1}: a_{k+1} . a_j = p_j + sum_i w_i (a_i . a_j), and
            # ||a_{k+1}||^2 = a_{k+1} . g_{k+1} + sum_j w_j (a_{k+1} . a_j)
            grow = p + (w[:, None, :] @ gram[:, :nk, :nk])[:, 0]
            norm2 = q[:, nk] + (w * p).sum(1) + (w * grow).sum(1)
            grow = ops.cat(grow, norm2[:, None])
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
        _, g_try, fz_try, norms_try = g_at(x_try)
        keep = fail[:, None]
        x_new = torch.where(keep, x_try, x_new)
        g_new = torch.where(keep, g_try, g_new)
        fz = [torch.where(keep.view(-1, *([1] * (a.dim() - 1))), a, c) for a, c in zip(fz_try, fz)]
        norms = tuple(torch.where(fail, a, c) for a, c in zip(norms_try, norms))
        gn_new = norms[0]
    return x_new, g_new, fz, norms, step
