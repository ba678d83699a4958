"""Batched fixed-point solvers for (multiscale) DEQ states: one contract, three methods.

All solvers find ``z* = f(z*)`` (equivalently the root of ``g(z) = f(z) - z``, StreamDEQ thesis
Eq. 3.1/3.2) for a state ``z = [z_1, ..., z_S]`` of tensors ``(B, *shape_s)``:

    z, stats = solve(f, z0, method='broyden', max_iter=26, tol=1e-3, stop_mode='rel')

Iteration-count semantics (the same for every method; streaming budgets rely on them):

* One **iteration** is one evaluation of ``f`` on a new iterate. The evaluation ``f(z0)`` of the
  initial state is iteration 1 and is counted. ``max_iter=M`` therefore costs at most ``M``
  evaluations of ``f`` and exactly ``M`` when ``tol`` is ``None`` or ``0``, for all three methods
  (Broyden's line search, off by default, spends extra evaluations from the same budget).
* Every evaluated iterate ``z_k`` (``k = 0 .. T-1``) has a residual ``||f(z_k) - z_k||``, recorded
  in ``stats.abs_trace[:, k]`` / ``stats.rel_trace[:, k]``.
* The returned state for sample ``b`` is the *image* ``f(z_k)`` of the lowest-residual iterate
  (``return_lowest=True``) or of the last one (``False``), among the iterates evaluated up to the
  sample's own stopping step; ``stats.nstep[b] = k + 1`` is the evaluation that produced it. The
  image is free (it was computed to get the residual), is never worse than ``z_k`` for a
  contraction, and makes ``max_iter=1`` return ``f(z0)`` (one layer application) for every
  method, as StreamDEQ's few-iterations-per-frame inference needs.
* With a ``tol``, sample ``b`` stops at the first iteration whose residual (``stop_mode``) is
  below ``tol``; its output and statistics are frozen there, so a sample's result does not depend
  on the other samples of the batch. The batch stops when every sample has stopped (converged or
  produced a non-finite residual), and never after ``M`` iterations. A sample also stops at its
  first non-finite residual without a ``tol``: nothing evaluated after it is returned, even if
  ``f`` recovers (the batch goes on to ``M`` iterations).
* Divergence: a sample is flagged in ``stats.diverged`` when an iterate's residual is non-finite
  or exceeds ``divergence_factor`` times its initial residual. A non-finite image is never
  returned: the lowest-residual finite one is (or ``z0`` itself, with ``nstep = 0``, if no finite
  image exists).

Methods:

* ``'fixed_point'``: ``z_{k+1} = f(z_k)``; ``f`` gets its own output list back, and only the
  residual's norms are computed (on CPU by the fused kernel of :mod:`mmvideoeq.deq.native`).
* ``'anderson'``: Anderson acceleration (type II, window ``m``, mixing ``beta``, Tikhonov ``lam``)
  as in Walker & Ni, "Anderson acceleration for fixed-point iterations", SIAM J. Numer. Anal. 2011,
  and the implicit-layers tutorial of Kolter, Duvenaud & Johnson (chapter 4).
* ``'broyden'``: Broyden's "good" method on ``g(z) = f(z) - z`` with a low-rank inverse Jacobian
  ``B = -I + U V^T`` (Broyden, Math. Comp. 1965), as in MDEQ (Bai et al., "Multiscale Deep
  Equilibrium Models", NeurIPS 2020). Without autograd on CPU the same iterates are computed in
  the product form of Kelley's ``brsol`` (one read of each stored step per iteration instead of
  two of each factor; see :func:`_broyden_product_loop`).

Written for mmvideoeq; the Broyden update and the Anderson least-squares problem follow the
formulas of locuslab/mdeq ``lib/modules/broyden.py`` (MIT licence) and locuslab/deq /
torchdeq ``torchdeq/solver/anderson.py`` (MIT licence); no code was copied.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from . import native
from .utils import StateLayout, as_state_list, check_state_like, norm_dtype

__all__ = ['SolverStats', 'solve', 'METHODS', 'release_solver_buffers']

METHODS = ('broyden', 'anderson', 'fixed_point')
_REL_EPS = 1e-8
_GRAM_FLOOR = torch.finfo(torch.float64).tiny ** 0.5
StateFn = Callable[[list[Tensor]], Sequence[Tensor]]


@dataclass
class SolverStats:
    """Per-sample statistics of one solve (all tensors detached).

    Attributes:
        nstep: ``(B,)`` long. The evaluation (1-based) whose image ``f(z_k)`` was returned for each
            sample, ``k = nstep - 1``; ``0`` means no finite image existed and ``z0`` was returned.
        abs_trace: ``(B, T)`` ``||f(z_k) - z_k||`` of each evaluated iterate, ``T`` = number of
            evaluations the batch ran (entries after a sample's own stopping step are recorded but
            not used for that sample).
        rel_trace: ``(B, T)`` ``||f(z_k) - z_k|| / (||f(z_k)|| + 1e-8)``.
        abs_lowest: ``(B,)`` lowest finite absolute residual up to the sample's stop (inf if none).
        rel_lowest: ``(B,)`` lowest finite relative residual up to the sample's stop (inf if none).
        diverged: ``(B,)`` bool, a residual was non-finite or grew past ``divergence_factor`` times
            the initial one.
        method: Name of the solver that produced the stats.
    """

    nstep: Tensor
    abs_trace: Tensor
    rel_trace: Tensor
    abs_lowest: Tensor
    rel_lowest: Tensor
    diverged: Tensor
    method: str

    @property
    def first_rel(self) -> Tensor:
        """``(B,)`` relative residual of the initial state ``z0`` (the shot-change signal)."""
        return self.rel_trace[:, 0]

    @property
    def first_abs(self) -> Tensor:
        """``(B,)`` absolute residual of the initial state ``z0``."""
        return self.abs_trace[:, 0]

    @property
    def final_rel(self) -> Tensor:
        """``(B,)`` relative residual of the iterate whose image was returned."""
        idx = (self.nstep - 1).clamp(min=0)[:, None]
        return self.rel_trace.gather(1, idx)[:, 0]

    @property
    def final_abs(self) -> Tensor:
        """``(B,)`` absolute residual of the iterate whose image was returned."""
        idx = (self.nstep - 1).clamp(min=0)[:, None]
        return self.abs_trace.gather(1, idx)[:, 0]

    @property
    def n_eval(self) -> int:
        """Number of evaluations of ``f`` the batch ran (``T``)."""
        return int(self.abs_trace.shape[1])


class _Selection:
    """A per-sample selected state (a list of S tensors ``(B, ...)``) and how it is updated.

    ``update(mask, new)`` sets sample ``b`` to ``new[b]`` where ``mask[b]``; ``mask`` is a
    ``(B,)`` bool tensor or, from the host-side bookkeeping of :class:`_Tracker`, a list of
    bools (a CPU mask is read as one). With host flags it keeps a reference when every sample is
    taken (the common case), does nothing when none is, and otherwise copies rows into buffers
    of its own (no autograd) or takes an out-of-place ``torch.where`` (autograd records: ``new``
    or the value requires grad). With an accelerator mask it is one in-place ``torch.where`` per
    scale into owned buffers (no host sync), out of place under autograd. Working on the state
    list, not a packed copy, spares the solvers a concatenation per step.
    """

    def __init__(self, init: list[Tensor]) -> None:
        self.value = list(init)
        self.owned = False  # ``value`` holds buffers of ours that may be written in place

    def update(self, mask: Tensor | list[bool], new: list[Tensor]) -> None:
        grad = new[0].requires_grad or self.value[0].requires_grad
        if isinstance(mask, Tensor) and mask.device.type == 'cpu':
            mask = mask.tolist()
        if isinstance(mask, list):
            if all(mask):
                self.value, self.owned = list(new), False
                return
            if not any(mask):
                return
            if not grad:
                if not self.owned:
                    self.value, self.owned = [v.clone() for v in self.value], True
                for b, take in enumerate(mask):
                    if take:
                        for v, n in zip(self.value, new):
                            v[b].copy_(n[b])
                return
            mask = torch.tensor(mask, device=new[0].device)
        if grad:
            self.value = [torch.where(_per_sample(mask, n), n, v) for n, v in zip(new, self.value)]
            self.owned = False
        elif self.owned:
            for n, v in zip(new, self.value):
                torch.where(_per_sample(mask, n), n, v, out=v)
        else:
            self.value = [torch.where(_per_sample(mask, n), n, v) for n, v in zip(new, self.value)]
            self.owned = True


# Device types whose per-sample solver bookkeeping runs on the host (see :class:`_Tracker`); the
# tests empty it to run the accelerator path on CPU.
_HOST_BOOKKEEPING = {'cpu'}


def _per_sample(mask: Tensor, like: Tensor) -> Tensor:
    """Views a ``(B,)`` mask so that it broadcasts over ``like`` ``(B, ...)``."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def _shares_storage(a: list[Tensor], b: list[Tensor]) -> bool:
    """Whether a tensor of ``a`` lives in the storage of a tensor of ``b``."""
    ptrs = {t.untyped_storage().data_ptr() for t in b}
    return any(t.untyped_storage().data_ptr() in ptrs for t in a)


def _residual_into(
    fx: list[Tensor],
    x: Tensor | list[Tensor],
    out: Tensor,
    layout: StateLayout,
    dtype: torch.dtype,
    pack: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """Writes ``fx - x`` into the packed ``out`` ``(B, D)`` (no autograd) and returns the
    per-sample norms ``(||fx - x||, ||fx||)``, ``(B,)`` each in ``dtype``.

    ``fx`` is a state list, ``x`` packed or a state list. On CPU (memory-bound) it works scale by
    scale into views of ``out``, each scale's two norms right after the subtraction that read
    ``fx`` and wrote that scale's residual, while both are in cache (on the 2-core CPU ~10 % less
    time than subtracting everything first and then reducing the packed buffer), and nothing is
    concatenated. On an accelerator (launch-bound for small states) ``fx`` is packed first, so
    that the subtraction and each norm are one kernel, not one per scale (``pack`` overrides
    the choice).
    """
    if pack is None:
        pack = out.device.type != 'cpu' and len(fx) > 1
    if pack:
        packed = layout.pack([t.detach() for t in fx])
        xp = x.detach() if isinstance(x, Tensor) else layout.pack([t.detach() for t in x])
        torch.sub(packed, xp, out=out)
        return _row_norm(out, dtype), _row_norm(packed, dtype)
    xs = layout.unpack(x) if isinstance(x, Tensor) else x
    gn, fn = [], []
    for a, z, o in zip(fx, xs, layout.unpack(out)):
        a = a.detach()
        b = a.shape[0]
        fn.append(torch.linalg.vector_norm(a.reshape(b, -1), dim=1, dtype=dtype))
        torch.sub(a, z.detach(), out=o)
        gn.append(torch.linalg.vector_norm(o.reshape(b, -1), dim=1, dtype=dtype))
    return _combine_scale_norms(gn), _combine_scale_norms(fn)


def _combine_scale_norms(norms: list[Tensor]) -> Tensor:
    """The per-sample norm ``(B,)`` over all scales from the per-scale norms ``(B,)``."""
    return norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms, 1), dim=1)


def _row_norm(x: Tensor | list[Tensor], dtype: torch.dtype) -> Tensor:
    """Per-sample 2-norm ``(B,)`` of a packed ``(B, D)`` tensor or of a state list (all scales)."""
    if isinstance(x, Tensor):
        return torch.linalg.vector_norm(x.detach(), dim=1, dtype=dtype)
    return _combine_scale_norms(
        [
            torch.linalg.vector_norm(t.detach().reshape(t.shape[0], -1), dim=1, dtype=dtype)
            for t in x
        ]
    )


class _Tracker:
    """Records residuals and selects, per sample, the image to return (see module docstring).

    Gets the iterate and its image as state lists with the two residual norms. Per evaluation it
    writes the traces, then updates per sample the running lowest residual, whether the sample
    is still active (no tolerance reached, no non-finite residual yet: later iterates are never
    selected) and the selected state(s). ``nstep``, ``diverged`` and the lowest residuals are
    derived from the traces in :meth:`finish`.

    The per-sample bookkeeping runs on the host where reading a ``(B,)`` tensor is free (CPU, see
    :data:`_HOST_BOOKKEEPING`): a handful of Python comparisons on ``B`` floats instead of about
    eight tensor operations of ~10 us each, a measurable part of a fixed-point step. On an
    accelerator it stays in tensors, and the only host synchronisation is :meth:`all_stopped`,
    called only when a tolerance is set.
    """

    def __init__(
        self,
        x0: list[Tensor],
        max_iter: int,
        tol: float | None,
        stop_mode: str,
        return_lowest: bool,
        divergence_factor: float,
        keep_preimage: bool,
    ) -> None:
        b = x0[0].shape[0]
        dev = x0[0].device
        self.sdt = norm_dtype(x0[0].dtype)
        self.tol = tol
        # the tolerance as the statistics dtype rounds it: host comparisons match the tensor ones
        self.tol_host = None if tol is None else float(torch.tensor(tol, dtype=self.sdt))
        self.use_rel = stop_mode == 'rel'
        self.return_lowest = return_lowest
        self.div_factor = divergence_factor
        self.abs_trace = torch.empty(b, max_iter, dtype=self.sdt, device=dev)
        self.rel_trace = torch.empty(b, max_iter, dtype=self.sdt, device=dev)
        self.host = dev.type in _HOST_BOOKKEEPING
        if self.host:
            self.active: Tensor | list[bool] = [True] * b
            self.best_res: Tensor | list[float] = [float('inf')] * b
        else:
            self.active = torch.ones(b, dtype=torch.bool, device=dev)
            self.best_res = torch.full((b,), float('inf'), dtype=self.sdt, device=dev)
        self.fz0_norm: Tensor | None = None
        # Image (and pre-image) of the lowest-residual iterate; x0 until one is selected.
        self.best = _Selection(x0)
        self.best_pre = _Selection(x0) if keep_preimage else None
        # return_lowest=False: the last finite image (``best`` is the non-finite fallback).
        self.last = None if return_lowest else _Selection(x0)
        self.last_pre = None if return_lowest or not keep_preimage else _Selection(x0)
        self.steps = 0

    def record(
        self, k: int, x: list[Tensor], fx: list[Tensor], abs_res: Tensor, fn: Tensor
    ) -> None:
        """Records evaluation ``k`` (0-based) of the iterate ``x`` with image ``fx``.

        Args:
            k: 0-based evaluation index.
            x: Iterate, a state list (only kept when the pre-image is tracked).
            fx: Its image ``f(x)``, a state list.
            abs_res: ``||fx - x||`` per sample ``(B,)`` in the statistics dtype (see
                :func:`_residual_into`).
            fn: ``||fx||`` per sample ``(B,)`` (a temporary: modified in place).
        """
        if _shares_storage(fx, x):  # f returned (a view of) its input: keep a copy, since a
            fx = [t.clone() for t in fx]  # solver may update its iterate in place
        self.abs_trace[:, k] = abs_res
        if k == 0:
            self.fz0_norm = fn.clone()
        res = torch.div(abs_res, fn.add_(_REL_EPS), out=self.rel_trace[:, k])
        if not self.use_rel:
            res = abs_res
        if self.host:
            self._select_host(res.tolist(), x, fx)
        else:
            self._select_device(res, x, fx)
        self.steps = k + 1

    def _select_host(self, res: list[float], x: list[Tensor], fx: list[Tensor]) -> None:
        inf = float('inf')
        # Comparisons with NaN are False: a NaN residual is never taken and deactivates.
        take = [a and r < lo for r, lo, a in zip(res, self.best_res, self.active)]
        self.best_res = [r if t else lo for r, lo, t in zip(res, self.best_res, take)]
        self.best.update(take, fx)
        if self.best_pre is not None:
            self.best_pre.update(take, x)
        if self.last is not None:
            take_last = [a and r < inf for r, a in zip(res, self.active)]
            self.last.update(take_last, fx)
            if self.last_pre is not None:
                self.last_pre.update(take_last, x)
        tol = self.tol_host
        self.active = [
            a and r < inf and (tol is None or r >= tol) for r, a in zip(res, self.active)
        ]

    def _select_device(self, res: Tensor, x: list[Tensor], fx: list[Tensor]) -> None:
        take = (res < self.best_res).logical_and_(self.active)  # False for NaN/inf residuals
        self.best_res = torch.where(take, res, self.best_res)
        self.best.update(take, fx)
        if self.best_pre is not None:
            self.best_pre.update(take, x)
        finite = res < float('inf')
        if self.last is not None:
            take_last = finite & self.active
            self.last.update(take_last, fx)
            if self.last_pre is not None:
                self.last_pre.update(take_last, x)
        if self.tol is not None:
            finite.logical_and_(res >= self.tol)
        self.active = self.active & finite

    def all_stopped(self) -> bool:
        """Whether every sample has stopped (a host sync on accelerators)."""
        if self.host:
            return not any(self.active)
        return not bool(self.active.any())

    def finish(self, method: str) -> tuple[Tensor, Tensor, SolverStats]:
        """Returns ``(image, pre_image, stats)`` (state lists) of each sample's selected iterate."""
        t = self.steps
        abs_trace = self.abs_trace[:, :t]
        rel_trace = self.rel_trace[:, :t]
        res = rel_trace if self.use_rel else abs_trace
        finite = res < float('inf')
        # Steps each sample used: up to and including its own stopping step (1-based count).
        stop = ~finite if self.tol is None else ~finite | (res < self.tol)
        steps = torch.arange(1, t + 1, device=res.device).expand_as(res)
        # (amin/argmin: Tensor.min(dim) is pathologically slow on tiny CPU tensors.)
        n_used = torch.where(stop, steps, t).amin(dim=1)
        used = steps <= n_used[:, None]
        inf = float('inf')
        res_used = torch.where(used & finite, res, inf)
        low_val, low_idx = res_used.amin(dim=1), res_used.argmin(dim=1)
        nstep_low = torch.where(low_val < inf, low_idx + 1, 0)
        nonfinite = (used & ~finite).any(dim=1)
        # Divergence: non-finite, or abs residual above factor x the initial one (floored by a
        # few ulps of ||f(z0)|| so that an exact start is not flagged for round-off).
        eps = torch.finfo(abs_trace.dtype).eps
        thresh = self.div_factor * torch.maximum(abs_trace[:, 0], eps * (self.fz0_norm + 1.0))
        grew = ~(abs_trace <= thresh[:, None])
        diverged = (used & (grew | ~finite)).any(dim=1)
        if self.return_lowest:
            out = self.best.value
            pre = self.best_pre.value if self.best_pre is not None else out
            nstep = nstep_low
        else:
            # The last finite image unless the sample hit a non-finite residual: then the
            # lowest-residual finite one (never return what came out of a blow-up).
            keep_last = ~nonfinite
            out = _where_state(keep_last, self.last.value, self.best.value)
            pre = (
                _where_state(keep_last, self.last_pre.value, self.best_pre.value)
                if self.last_pre is not None
                else out
            )
            nstep = torch.where(keep_last, n_used, nstep_low)
        abs_used = torch.where(used & (abs_trace < inf), abs_trace, inf)
        rel_used = torch.where(used & (rel_trace < inf), rel_trace, inf)
        stats = SolverStats(
            nstep=nstep,
            abs_trace=abs_trace,
            rel_trace=rel_trace,
            abs_lowest=abs_used.amin(dim=1),
            rel_lowest=rel_used.amin(dim=1),
            diverged=diverged,
            method=method,
        )
        return out, pre, stats


class _BufferCache:
    """Scratch storage of the Broyden and Anderson loops without autograd, kept between solves
    on CPU.

    Why: the loops need ``(B, rows, D)`` of storage per solve (the steps, the factors, or
    Anderson's image and residual histories). A fresh
    block that size is mapped by glibc (above its mmap threshold), so every page is faulted in
    and zeroed on first write; and storage taken a state at a time from the heap instead makes
    ``f``'s own temporaries land on fresh pages (measured, MDEQ-Small at 256x512 on the 2-core
    CPU: ~800 minor faults inside each ``f`` of a Broyden solve against ~0-130 in fixed-point
    iteration, ``f`` ~2.5 % slower). Streaming solves the same shapes every frame, so the block
    of the last solve is handed to the next (CUDA needs none of this: its caching allocator
    reuses blocks). At most ``max_entries`` blocks (one per ``(dtype, B, D)``, the most recently
    used) are kept; :func:`release_solver_buffers` frees them. A block is lent to one solve at
    a time (a concurrent or nested solve allocates its own).
    """

    def __init__(self, max_entries: int = 2) -> None:
        self.max_entries = max_entries
        self._free: OrderedDict[tuple, Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, b: int, rows: int, d: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """A ``(B, >= rows, D)`` block, from the cache on CPU when one is free (uninitialised)."""
        if device.type != 'cpu':
            return torch.empty(b, rows, d, dtype=dtype, device=device)
        with self._lock:
            buf = self._free.pop((dtype, b, d), None)
        if buf is None or buf.shape[1] < rows:
            buf = torch.empty(b, rows, d, dtype=dtype)
        return buf

    def give(self, buf: Tensor) -> None:
        """Returns a block from :meth:`take` for later solves (CPU only)."""
        if buf.device.type != 'cpu':
            return
        key = (buf.dtype, buf.shape[0], buf.shape[2])
        with self._lock:
            self._free[key] = buf
            self._free.move_to_end(key)
            while len(self._free) > self.max_entries:
                self._free.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


_BUFFERS = _BufferCache()


def release_solver_buffers() -> None:
    """Frees the scratch blocks the Broyden and Anderson solvers keep between solves on CPU.

    The solvers keep the storage of their last solve (at most two blocks; Broyden's is
    ``(max_iter - 1) x B x D`` floats, e.g. 50 MB for MDEQ-Small at 256x512 and 26 iterations,
    Anderson's ``2 m x B x D``) so that the next solve of the same size does not page it in
    again. Call this to return the memory.
    """
    _BUFFERS.clear()


def _where_state(mask: Tensor, a: list[Tensor], b: list[Tensor]) -> list[Tensor]:
    """Per sample, state ``a`` where ``mask`` ``(B,)`` is set, else ``b``."""
    return [torch.where(_per_sample(mask, s), s, t) for s, t in zip(a, b)]


def _rows_dot(mat: Tensor, vec: Tensor) -> Tensor:
    """``(B, n, D) x (B, D) -> (B, n)``, the inner products of ``vec`` with each stored row.

    The fast form differs by device: on CPU ``(B,1,D) x (B,D,n)`` (MKL's batched GEMV is slow for
    ``(B,n,D) x (B,D,1)``), on GPU ``(B,n,D) x (B,D,1)`` (a GEMM with one output row and a long
    reduction, the CPU form, gets no split-K parallelism from cuBLAS).
    """
    if vec.device.type == 'cpu':
        return torch.bmm(vec.unsqueeze(1), mat.transpose(1, 2)).squeeze(1)
    return torch.bmm(mat, vec.unsqueeze(2)).squeeze(2)


def _dot(p: Tensor, q: Tensor) -> Tensor:
    """Per-sample inner product ``(B, D), (B, D) -> (B, 1)``.

    On CPU one BLAS ``dot`` per sample: ``bmm`` of ``(B, 1, D) x (B, D, 1)`` takes the slow path
    for ``B > 1`` (3.2 ms against 0.3 ms for two ``dot`` calls at ``D = 491,520``, torch 2.13).
    """
    if p.device.type == 'cpu':
        if p.shape[0] == 1:
            return torch.dot(p[0], q[0]).reshape(1, 1)
        return torch.stack([torch.dot(a, b) for a, b in zip(p, q)]).unsqueeze(1)
    return (p * q).sum(dim=1, keepdim=True)


def _put(buf: Tensor, slot: int, val: Tensor, inplace: bool) -> Tensor:
    """Writes ``val`` ``(B, ...)`` into ``buf[:, slot]`` (out of place when autograd records)."""
    if inplace:
        buf[:, slot] = val
        return buf
    idx = torch.tensor([slot], device=buf.device)
    return buf.index_copy(1, idx, val.unsqueeze(1))


def _fixed_point(
    f: StateFn, z0: list[Tensor], layout: StateLayout, tracker: _Tracker, max_iter: int
) -> None:
    """Plain fixed-point iteration ``z_{k+1} = f(z_k)`` (thesis Eq. 3.1).

    ``f`` gets its own output back as a list and nothing is packed. The residual is needed only
    for its norms (the statistics): on CPU the fused kernel of :mod:`.native` reads ``z`` and
    ``f(z)`` once and writes nothing; elsewhere (or without the kernel) each scale's residual is
    computed on detached tensors into its part of one reused ``(B, D)`` buffer. The selection
    keeps the image list.
    """
    z = z0
    buf = None
    for k in range(max_iter):
        fz = f(z)
        fz = check_state_like(fz, z0) if k == 0 else list(fz)
        norms = native.residual_norms(fz, z, tracker.sdt)  # None: no kernel / not applicable
        if norms is None:
            if buf is None:
                shape = (layout.batch, layout.dim)
                buf = torch.empty(shape, dtype=layout.dtype, device=layout.device)
            norms = _residual_into(fz, z, buf, layout, tracker.sdt)
        tracker.record(k, z, fz, *norms)
        if tracker.tol is not None and tracker.all_stopped():
            return
        z = fz


def _anderson(
    f: StateFn,
    z0: list[Tensor],
    layout: StateLayout,
    tracker: _Tracker,
    max_iter: int,
    *,
    m: int = 5,
    beta: float = 1.0,
    lam: float = 1e-4,
) -> None:
    """Anderson acceleration (type II) with window ``m`` (Walker & Ni 2011, Eq. 1.2/Alg. AA).

    Step ``k >= 1`` mixes the last ``n = min(k, m)`` images ``F_i = f(x_i)`` and residuals
    ``G_i = F_i - x_i``: ``alpha = argmin ||sum_i alpha_i G_i||^2 + lam' ||alpha||^2`` subject to
    ``sum_i alpha_i = 1`` and ``x_{k+1} = sum_i alpha_i (F_i - (1 - beta) G_i)``. The first step is
    ``x_1 = beta f(x_0) + (1 - beta) x_0``. ``lam' = lam * mean(diag(G G^T))`` (scale-invariant;
    the tutorial/torchdeq add ``lam`` unscaled). The Gram matrix is updated one row per step.
    """
    b, d = layout.batch, layout.dim
    x = layout.pack(z0)
    mm = max(1, min(m, max_iter - 1))
    F = G = gram = store = None
    inplace = True
    try:
        for k in range(max_iter):
            fz = f(layout.unpack(x))
            if k == 0:
                fz = check_state_like(fz, z0)
            fx = layout.pack(fz)
            if k == 0:
                # Write into the history in place unless autograd records the iterations.
                inplace = not (fx.requires_grad or x.requires_grad)
                if inplace:  # the history block of the last solve (see _BufferCache)
                    store = _BUFFERS.take(b, 2 * mm, d, x.dtype, x.device)
                    F, G = store[:, :mm], store[:, mm : 2 * mm]
                else:
                    F = torch.empty(b, mm, d, dtype=x.dtype, device=x.device)
                    G = torch.empty(b, mm, d, dtype=x.dtype, device=x.device)
                gram = torch.empty(b, mm, mm, dtype=x.dtype, device=x.device)
            slot = k % mm
            gx = torch.sub(fx, x, out=G[:, slot]) if inplace else fx - x
            fz = list(fz)
            tracker.record(
                k, layout.unpack(x), fz, _row_norm(gx, tracker.sdt), _row_norm(fz, tracker.sdt)
            )
            if k == max_iter - 1 or (tracker.tol is not None and tracker.all_stopped()):
                return
            n = min(k + 1, mm)
            F = _put(F, slot, fx, inplace)
            if inplace:
                row = _rows_dot(G[:, :n], gx)  # (B, n) Gram row
                gram[:, slot, :n] = row
                gram[:, :n, slot] = row
                gram_n = gram[:, :n, :n]
            else:  # autograd records: rebuild, no in-place writes
                G = _put(G, slot, gx, inplace)
                gram_n = torch.bmm(G[:, :n], G[:, :n].transpose(1, 2))
            if n == 1:
                alpha = torch.ones(b, 1, dtype=x.dtype, device=x.device)
            else:
                alpha = _anderson_weights(gram_n, lam, slot)
            a = alpha.unsqueeze(1)  # (B, 1, n)
            x = torch.bmm(a, F[:, :n]).squeeze(1)
            if beta != 1.0:
                x = x - (1.0 - beta) * torch.bmm(a, G[:, :n]).squeeze(1)
    finally:
        if store is not None:
            _BUFFERS.give(store)


def _anderson_weights(gram: Tensor, lam: float, latest: int) -> Tensor:
    """Solves the constrained least-squares problem of Anderson mixing per sample.

    Args:
        gram: ``(B, n, n)`` Gram matrix ``G G^T`` of the stored residuals.
        lam: Relative Tikhonov regularisation.
        latest: Column of the most recent residual (fallback if a system is not solvable).

    Returns:
        Tensor: ``(B, n)`` weights summing to one (``w / sum(w)`` with ``(GG^T + lam' I) w = 1``,
        the Lagrange solution of ``min a^T H a`` s.t. ``1^T a = 1``), in float64 arithmetic.
    """
    b, n, _ = gram.shape
    h = gram.to(torch.float64, copy=True)
    diag = h.diagonal(dim1=1, dim2=2)
    # lam' = lam * mean diagonal, floored so that H stays positive definite when G = 0.
    diag.add_(diag.mean(dim=1, keepdim=True).mul(lam).add(_GRAM_FLOOR))
    ones = torch.ones(b, n, 1, dtype=h.dtype, device=h.device)
    w = torch.linalg.solve_ex(h, ones)[0].squeeze(2)
    alpha = w / w.sum(dim=1, keepdim=True)
    bad = ~(alpha.abs().sum(dim=1, keepdim=True) < float('inf'))  # NaN/inf: singular system
    fallback = torch.zeros(1, n, dtype=h.dtype, device=h.device)
    fallback[0, latest] = 1.0
    return torch.where(bad, fallback, alpha).to(gram.dtype)


def _broyden(
    f: StateFn,
    z0: list[Tensor],
    layout: StateLayout,
    tracker: _Tracker,
    max_iter: int,
    *,
    memory: int | None = None,
    line_search: bool = False,
    ls_max_halvings: int = 3,
    ls_c1: float = 1e-4,
) -> None:
    """Broyden's good method on ``g(z) = f(z) - z`` with ``B ~ J_g^{-1} = -I + U V^T``.

    Follows MDEQ's solver (locuslab/mdeq ``lib/modules/broyden.py``, MIT): ``B_0 = -I`` so the
    first step is ``x_1 = x_0 - B_0 g_0 = f(x_0)``; after a step ``dx = s d_k`` along
    ``d_k = -B_k g_k`` with residual change ``dg`` the rank-one update is
    ``u = (dx - B_k dg) / (v^T dg)``, ``v^T = dx^T B_k``, and the next direction is
    ``d_{k+1} = -B_{k+1} g_{k+1}``. ``memory`` caps the number of stored updates (the oldest is
    overwritten; MDEQ uses 24); ``None`` keeps all.

    Cost per step: one product with ``B_k`` (``B_k g_{k+1}``) and one with ``B_k^T`` (``v``), each
    reading the stored factors once. ``B_k dg`` is not formed: ``B_k g_k = -d_k`` gives
    ``dx - B_k dg = (s - 1) d_k - B_k g_{k+1}`` and ``v^T dg = v^T g_{k+1} + s ||d_k||^2``.

    Which loop runs: with autograd recording, or with line search, the general loop below; else,
    on CPU and unless ``memory`` wraps around, :func:`_broyden_product_loop` (the same iterates,
    half the memory traffic); else :func:`_broyden_inplace_loop` (the factored loop without
    allocations, e.g. on an accelerator).

    Line search (off by default): per-sample Armijo backtracking on ``||g||^2`` (step halved up to
    ``ls_max_halvings`` times while ``||g(x + s d)||^2 > (1 - ls_c1 s) ||g(x)||^2``). Every trial
    evaluates ``f`` for the whole batch and counts as an iteration.
    """
    b, d = layout.batch, layout.dim
    cap = max(1, max_iter - 2) if memory is None else max(1, min(memory, max_iter - 2))
    U = V = None
    n_upd = 0

    def evaluate(x: Tensor, k: int, out: Tensor | None = None) -> Tensor:
        xs = layout.unpack(x)
        fz = f(xs)
        fz = check_state_like(fz, z0) if k == 0 else list(fz)
        if out is None:  # (differentiable when autograd records)
            gx = layout.pack(fz) - x
            norms = _row_norm(gx, tracker.sdt), _row_norm(fz, tracker.sdt)
        else:  # scale by scale into the packed buffer (no packed copy of f(x))
            gx = out
            norms = _residual_into(fz, x, out, layout, tracker.sdt)
        tracker.record(k, xs, fz, *norms)
        return gx

    def done(k: int) -> bool:
        return k >= max_iter or (tracker.tol is not None and tracker.all_stopped())

    x = layout.pack(z0)
    g = evaluate(x, 0)
    # Write the factors in place unless autograd records the iterations.
    inplace = not (g.requires_grad or x.requires_grad)
    if inplace and not line_search:
        product = x.device.type == 'cpu' and cap >= max_iter - 2
        rows = max(max_iter - 1, 1) if product else 2 * cap
        store = _BUFFERS.take(b, rows, d, x.dtype, x.device)
        try:
            if product:
                keep_x = tracker.best_pre is not None
                _broyden_product_loop(evaluate, done, x, g, store, keep_x)
            else:
                U, V = store[:, :cap], store[:, cap : 2 * cap]
                _broyden_inplace_loop(evaluate, done, x, g, U, V, cap)
        finally:
            _BUFFERS.give(store)
        return
    if max_iter > 2:
        U = torch.empty(b, cap, d, dtype=x.dtype, device=x.device)
        V = torch.empty(b, cap, d, dtype=x.dtype, device=x.device)
    k = 1
    update = g  # d_0 = -B_0 g_0 with B_0 = -I
    gnorm = tracker.abs_trace[:, 0]  # ||g|| of the accepted iterate (line search)
    while not done(k):
        x_new = x + update
        g_new = evaluate(x_new, k)
        k += 1
        step = None
        if line_search:
            gn_new = tracker.abs_trace[:, k - 1]
            step = torch.ones(b, 1, dtype=x.dtype, device=x.device)
            for _ in range(ls_max_halvings):
                if done(k):
                    break
                s = step.squeeze(1).to(gnorm.dtype)
                fail = ~(gn_new.square() <= (1 - ls_c1 * s) * gnorm.square())
                if not bool(fail.any()):
                    break
                step = torch.where(fail[:, None], step * 0.5, step)
                x_try = x + step * update
                g_try = evaluate(x_try, k)
                k += 1
                x_new = torch.where(fail[:, None], x_try, x_new)
                g_new = torch.where(fail[:, None], g_try, g_new)
                gn_new = torch.where(fail, tracker.abs_trace[:, k - 1], gn_new)
            gnorm = gn_new
        if done(k):
            return
        n = min(n_upd, cap)
        if n > 0:
            Uc, Vc = U[:, :n], V[:, :n]
            # B_k g_{k+1} = -g_{k+1} + U (V g_{k+1});  v^T = dx^T B_k = -dx^T + (dx^T U^T) V
            bg_new = torch.baddbmm(
                g_new.unsqueeze(1), _rows_dot(Vc, g_new).unsqueeze(1), Uc, beta=-1
            ).squeeze(1)
            vt = torch.baddbmm(
                update.unsqueeze(1), _rows_dot(Uc, update).unsqueeze(1), Vc, beta=-1
            ).squeeze(1)
        else:
            bg_new = -g_new
            vt = -update
        if step is not None:
            vt = vt * step
        vtg = _dot(vt, g_new)
        # v^T dg = v^T g_{k+1} - v^T g_k = v^T g_{k+1} + s ||d_k||^2; a zero or non-finite
        # denominator (no progress, or a blown-up sample) skips the update (u = 0).
        denom = vtg + (_dot(update, update) if step is None else step * _dot(update, update))
        if inplace:
            inv = torch.nan_to_num(torch.reciprocal(denom), nan=0.0, posinf=0.0, neginf=0.0)
        else:  # differentiable: no inf * 0 in backward
            ok = (denom != 0) & (denom.abs() < float('inf'))
            inv = torch.where(ok, 1.0 / torch.where(ok, denom, 1.0), 0.0)
        if step is None:
            u = bg_new * inv.neg()  # dx - B_k dg = -B_k g_{k+1}
        else:
            u = ((step - 1) * update - bg_new) * inv
        slot = n_upd % cap
        U = _put(U, slot, u, inplace)
        V = _put(V, slot, vt, inplace)
        n_upd += 1
        # d_{k+1} = -B_{k+1} g_{k+1} = -(B_k g_{k+1} + u (v^T g_{k+1}))
        if inplace:
            update = torch.addcmul(bg_new, u, vtg).neg_()
        else:
            update = -(bg_new + u * vtg)
        x, g = x_new, g_new


def _broyden_product_loop(
    evaluate: Callable[[Tensor, int, Tensor | None], Tensor],
    done: Callable[[int], bool],
    x: Tensor,
    g: Tensor,
    store: Tensor,
    keep_x: bool,
) -> None:
    """The Broyden iteration of :func:`_broyden` in product form (CPU, no autograd, full steps).

    For full steps (no line search) the good-Broyden inverse update satisfies
    ``H_{k+1} = (I + s_{k+1} s_k^T / ||s_k||^2) H_k`` with ``H = -B`` (``H_0 = I``) and the steps
    ``s_k = d_k = -B_k g_k``, so ``B_k`` never has to be stored: the new direction is

        z = g_{k+1};  z <- z + s_{j+1} (s_j^T z) / ||s_j||^2  for j = 0 .. k-1;
        d_{k+1} = z / (1 - s_k^T z / ||s_k||^2)

    (Kelley, "Iterative Methods for Linear and Nonlinear Equations", SIAM 1995, Sec. 7.3,
    algorithm ``brsol``; the ``1 - ...`` denominator is ``v_k^T dg / ||s_k||^2`` of the factored
    form, and where it is zero or not finite the update is skipped as there: ``d_{k+1} = z`` and
    the factor ``k`` is left out of later products). In exact arithmetic these are the iterates of
    the factored loop (:func:`_broyden_inplace_loop`, MDEQ's ``U V^T`` form); in floating point
    they agree to rounding (tested in float64).

    Why a second form: per step it reads each stored step once (a dot product and an ``axpy``
    per step, the step reused from cache by the next dot), where the factored form reads ``U``
    and ``V`` twice each (``B g`` and ``d^T B``); it also stores ``k`` steps instead of ``2k``
    factors. On a CPU the step is memory-bound, so this halves the solver's cost per iteration
    (docs/mdeq.md, "Benchmark"). On an accelerator the ``2k`` small kernels per step would be
    launch-bound and the batched GEMVs of the factored form are kept. Used when no memory cap is
    hit (``memory`` wrap-around is MDEQ's overwrite-the-oldest rule, which has no product form).

    Args:
        evaluate: Evaluates ``f`` at a packed iterate, records it and returns the residual.
        done: Whether the iteration budget or every sample's tolerance is reached.
        x: Initial packed iterate ``(B, D)``.
        g: Its residual ``f(x) - x`` (a buffer of ours; becomes the first step ``s_0``).
        store: ``(B, >= max_iter - 1, D)`` storage for the later steps.
        keep_x: Allocate every iterate anew (the tracker keeps pre-images); otherwise ``x`` is
            updated in place from the second step on (the tracker never keeps a reference to
            an iterate's storage, see :meth:`_Tracker.record`).
    """
    k = 1
    # s_j = sig[j] * hat[j]: the scale of a new step is kept aside instead of applied (one pass
    # over the state less per step); coef[j] = sig[j] * sig[j + 1] / ||s_j||^2 is the weight of
    # factor j (0 where it is left out).
    hat, sig = [g], [torch.ones(g.shape[0], 1, dtype=g.dtype, device=g.device)]  # s_0 = g_0
    coef: list[Tensor] = []
    while not done(k):
        if k == 1 or keep_x:  # the first x may be the caller's z0; a kept pre-image is read later
            x = torch.addcmul(x, hat[-1], sig[-1])
        else:  # in place: a new state-sized block per step makes f's temporaries fault pages in
            x.addcmul_(hat[-1], sig[-1])
        z = evaluate(x, k, store[:, k - 1])  # g_{k+1}, turned into s_{k+1} in place
        k += 1
        if done(k):
            return
        for j, c in enumerate(coef):
            z.addcmul_(hat[j + 1], _dot(hat[j], z).mul_(c))
        s, s_sig = hat[-1], sig[-1]
        w = torch.nan_to_num(torch.reciprocal(_dot(s, s).mul_(s_sig.square())), posinf=0.0)
        denom = 1.0 - _dot(s, z).mul_(s_sig).mul_(w)
        ok = (denom != 0) & torch.isfinite(denom)
        scale = torch.where(ok, torch.reciprocal(denom), 1.0)
        coef.append(torch.where(ok, w * s_sig * scale, 0.0))
        hat.append(z)
        sig.append(scale)


def _broyden_inplace_loop(
    evaluate: Callable[[Tensor, int, Tensor | None], Tensor],
    done: Callable[[int], bool],
    x: Tensor,
    g: Tensor,
    U: Tensor | None,
    V: Tensor | None,
    cap: int,
) -> None:
    """The Broyden iteration of :func:`_broyden` without autograd and line search (``s = 1``).

    Used on accelerators (where its batched GEMVs beat the product form's many small kernels)
    and when ``memory`` wraps around (overwrite-the-oldest has no product form).

    Same updates as the general loop, with the per-step state-sized work cut to what the update
    needs: besides the four passes over the stored factors (``V g``, ``U d``, ``B g``,
    ``d^T B``) one pass each for ``x + d``, the residual, ``u`` and the next ``d``, and no
    allocation besides the new iterate (the same arithmetic, operation for operation, as the
    general loop). The residual ``g_{k+1}`` goes to one of two reused buffers (the tracker keeps
    no reference to it) and ``B_k g_{k+1}`` is formed in place there, ``u`` goes straight into
    its slot of ``U``, and ``v^T = dx^T B_k`` is formed in place in ``d_k``, which, until the
    memory wraps around, was written into the slot of ``V`` that ``v`` is stored in (nothing is
    copied). After a wrap-around ``d_k`` stays in its residual buffer until ``v^T`` is copied
    out, one step later; the next residual uses the other buffer.

    Args:
        evaluate: Evaluates ``f`` at a packed iterate, records it and returns the residual.
        done: Whether the iteration budget or every sample's tolerance is reached.
        x: Initial packed iterate ``(B, D)``.
        g: Its residual ``f(x) - x`` (a buffer of ours).
        U, V: Factor storage ``(B, cap, D)`` (``None`` when ``max_iter <= 2``).
        cap: Number of stored updates.
    """
    k = 1
    n_upd = 0
    update = g  # d_0 = -B_0 g_0 with B_0 = -I
    g_bufs: tuple[Tensor, Tensor] | None = None
    while not done(k):
        x = x + update
        if g_bufs is None:
            g_bufs = (torch.empty_like(x), torch.empty_like(x))
        g_new = evaluate(x, k, g_bufs[k % 2])
        k += 1
        if done(k):
            return
        n = min(n_upd, cap)
        slot = n_upd % cap
        vt_dst = V[:, slot]
        dd = _dot(update, update)
        if n > 0:
            Uc, Vc = U[:, :n], V[:, :n]
            vg = _rows_dot(Vc, g_new).unsqueeze(1)
            ud = _rows_dot(Uc, update).unsqueeze(1)
            # v^T = dx^T B_k = -d_k^T + (d_k^T U^T) V, in place in d_k (Vc excludes d_k's slot).
            update.unsqueeze(1).baddbmm_(ud, Vc, beta=-1)
        else:
            update.neg_()
        vt = update
        if vt.data_ptr() != vt_dst.data_ptr():  # first step, or the memory wrapped around
            vt = vt_dst.copy_(vt)
        vtg = _dot(vt, g_new)
        # v^T dg = v^T g_{k+1} + ||d_k||^2; a zero or non-finite denominator skips the update.
        inv = torch.nan_to_num(torch.reciprocal(vtg + dd), nan=0.0, posinf=0.0, neginf=0.0)
        bg_new = g_new  # B_k g_{k+1} = -g_{k+1} + U (V g_{k+1}), in place
        if n > 0:
            bg_new.unsqueeze(1).baddbmm_(vg, Uc, beta=-1)
        else:
            bg_new.neg_()
        u = torch.mul(bg_new, inv.neg(), out=U[:, slot])  # u = (dx - B_k dg) / (v^T dg)
        n_upd += 1
        # d_{k+1} = -(B_k g_{k+1} + u (v^T g_{k+1})); the next v^T goes to slot n_upd, outside
        # the next step's factors, unless the memory wraps around.
        if n_upd < cap:
            update = torch.addcmul(bg_new, u, vtg, out=V[:, n_upd]).neg_()
        else:
            update = bg_new.addcmul_(u, vtg).neg_()


def _all_finite(state: list[Tensor]) -> bool:
    """Whether every element of the state is finite (one reduction per tensor, one host sync).

    A finite sum proves it: an inf or NaN element makes the sum inf or NaN. The sum reads the
    data once and allocates nothing, where ``isfinite(t).all()`` writes a full-size bool tensor
    first (about 0.5 ms per solve for MDEQ-Small at 256x512 on the 2-core CPU, a cost every
    streaming frame paid). Only a non-finite sum (a bad element, or finite values whose sum
    overflows) is checked element-wise.
    """
    if bool(torch.isfinite(torch.stack([t.detach().sum() for t in state])).all()):
        return True
    return all(bool(torch.isfinite(t).all()) for t in state)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f'{name} must be an int, got {type(value).__name__} ({value!r}).')
    if value < minimum:
        raise ValueError(f'{name} must be >= {minimum}, got {value}.')
    return value


def _check_solver_args(
    method: str, max_iter: int, tol: float | None, stop_mode: str, divergence_factor: float
) -> float | None:
    if method not in METHODS:
        raise ValueError(f'Unknown solver method {method!r}; choose one of {METHODS}.')
    _check_int('max_iter', max_iter, 1)
    if stop_mode not in ('rel', 'abs'):
        raise ValueError(f"stop_mode must be 'rel' or 'abs', got {stop_mode!r}.")
    if tol is not None:
        if isinstance(tol, bool) or not isinstance(tol, (int, float)):
            raise TypeError(f'tol must be a float or None, got {type(tol).__name__}.')
        if tol < 0:
            raise ValueError(
                f'tol must be >= 0 (or None for exactly max_iter iterations), ' f'got {tol}.'
            )
        if tol == 0:
            tol = None
    if not divergence_factor > 1:
        raise ValueError(f'divergence_factor must be > 1, got {divergence_factor}.')
    return None if tol is None else float(tol)


_METHOD_KWARGS = {
    'fixed_point': set(),
    'anderson': {'m', 'beta', 'lam'},
    'broyden': {'memory', 'line_search', 'ls_max_halvings', 'ls_c1'},
}


def _check_method_kwargs(method: str, kwargs: dict) -> None:
    unknown = set(kwargs) - _METHOD_KWARGS[method]
    if unknown:
        raise TypeError(
            f'Unexpected solver option(s) {sorted(unknown)} for method={method!r}; '
            f'it accepts {sorted(_METHOD_KWARGS[method]) or "none"}.'
        )
    if method == 'anderson':
        if 'm' in kwargs:
            _check_int('m', kwargs['m'], 1)
        if 'beta' in kwargs and not 0 < kwargs['beta'] <= 1:
            raise ValueError(f"Anderson beta must be in (0, 1], got {kwargs['beta']}.")
        if 'lam' in kwargs and not kwargs['lam'] >= 0:
            raise ValueError(f"Anderson lam must be >= 0, got {kwargs['lam']}.")
    if method == 'broyden':
        if kwargs.get('memory') is not None:
            _check_int('memory', kwargs['memory'], 1)
        if 'ls_max_halvings' in kwargs:
            _check_int('ls_max_halvings', kwargs['ls_max_halvings'], 1)


def solve_with_preimage(
    f: StateFn,
    z0: list[Tensor],
    *,
    method: str = 'broyden',
    max_iter: int = 30,
    tol: float | None = 1e-3,
    stop_mode: str = 'rel',
    return_lowest: bool = True,
    divergence_factor: float = 1e3,
    keep_preimage: bool = False,
    **method_kwargs,
) -> tuple[list[Tensor], list[Tensor], SolverStats]:
    """Like :func:`solve` on a list state, also returning the pre-image ``z_k`` of the output.

    ``keep_preimage=False`` skips tracking the pre-image (it is then returned equal to the
    output). Used by the gradient code, which re-evaluates ``f(z_k)`` with autograd.
    """
    tol = _check_solver_args(method, max_iter, tol, stop_mode, divergence_factor)
    _check_method_kwargs(method, method_kwargs)
    z0 = as_state_list(z0)
    if not _all_finite(z0):
        raise ValueError('z0 contains NaN or inf; start from a finite state (e.g. zeros).')
    layout = StateLayout(z0)
    tracker = _Tracker(
        z0, max_iter, tol, stop_mode, return_lowest, divergence_factor, keep_preimage
    )
    if method == 'fixed_point':
        _fixed_point(f, z0, layout, tracker, max_iter)
    elif method == 'anderson':
        _anderson(f, z0, layout, tracker, max_iter, **method_kwargs)
    else:
        _broyden(f, z0, layout, tracker, max_iter, **method_kwargs)
    out, pre, stats = tracker.finish(method)
    out = [t.contiguous() for t in out]
    pre = list(pre) if keep_preimage else out
    return out, pre, stats


def solve(
    f: StateFn | Callable[[Tensor], Tensor],
    z0: Tensor | Sequence[Tensor],
    *,
    method: str = 'broyden',
    max_iter: int = 30,
    tol: float | None = 1e-3,
    stop_mode: str = 'rel',
    return_lowest: bool = True,
    divergence_factor: float = 1e3,
    **method_kwargs,
) -> tuple[Tensor | list[Tensor], SolverStats]:
    """Solves ``z = f(z)`` for a batched (multiscale) state; see the module docstring.

    Autograd: the iterations are recorded if grad mode is on (backprop through the solver, the
    ``'unroll'`` gradient); wrap the call in ``torch.no_grad()`` otherwise.

    Args:
        f: The layer ``f_theta(.; x)`` with the input injection closed over. If ``z0`` is a list,
            ``f`` maps a list of S tensors to a list/tuple of S tensors of the same shapes; if
            ``z0`` is a single tensor, ``f`` maps a tensor to a tensor.
        z0: Initial state, a tensor ``(B, ...)`` or a list of S tensors ``(B, C_s, H_s, W_s)``
            (finite values; e.g. zeros, or the previous frame's fixed point in streaming).
        method: ``'broyden'``, ``'anderson'`` or ``'fixed_point'``.
        max_iter: Maximum number of evaluations of ``f``, counting ``f(z0)`` (exactly this many
            when ``tol`` is ``None`` or ``0``).
        tol: Per-sample stopping tolerance on the ``stop_mode`` residual; ``None``/``0`` disables
            early stopping.
        stop_mode: ``'rel'`` (``||f(z)-z|| / ||f(z)||``) or ``'abs'`` (``||f(z)-z||``).
        return_lowest: Return the image of the lowest-residual iterate (``True``) or of the last
            one (``False``) of each sample.
        divergence_factor: A residual above this factor times the initial residual marks the
            sample as diverged.
        **method_kwargs: Anderson: ``m`` (window, 5), ``beta`` (mixing, 1.0), ``lam`` (relative
            regularisation, 1e-4). Broyden: ``memory`` (max stored updates, None = all),
            ``line_search`` (False), ``ls_max_halvings`` (3), ``ls_c1`` (1e-4).

    Returns:
        tuple: ``(z, stats)`` where ``z`` has the structure of ``z0`` (list of S tensors
        ``(B, C_s, H_s, W_s)`` or one tensor) and ``stats`` is a :class:`SolverStats`.

    Raises:
        ValueError: Unknown method/stop_mode, ``max_iter < 1``, ``tol < 0``, non-finite ``z0``,
            or ``f`` returning a state of another structure.
        TypeError: Wrong argument types or an option the method does not accept.
    """
    single = isinstance(z0, Tensor)
    if not callable(f):
        raise TypeError(f'f must be callable, got {type(f).__name__}.')
    if single:

        def fn(zs: list[Tensor]) -> list[Tensor]:
            out = f(zs[0])
            if not isinstance(out, Tensor):
                raise TypeError(
                    'z0 is a single tensor, so f must return a single tensor, got '
                    f'{type(out).__name__}.'
                )
            return [out]
    else:
        fn = f
    out, _, stats = solve_with_preimage(
        fn,
        as_state_list(z0),
        method=method,
        max_iter=max_iter,
        tol=tol,
        stop_mode=stop_mode,
        return_lowest=return_lowest,
        divergence_factor=divergence_factor,
        **method_kwargs,
    )
    return (out[0] if single else out), stats
