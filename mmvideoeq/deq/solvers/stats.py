"""Solver statistics and the per-sample bookkeeping every solver shares.

Step counting and which state is returned follow the reference of each method (see the
:mod:`mmvideoeq.deq.solvers` docstring and ``docs/deq_core.md``). A solver reports every
evaluated iterate ``x_k`` with its residual to :class:`Tracker`, which keeps, per sample, the
running lowest residual, whether the sample is still running, and the state to return.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ['SolverStats', 'Tracker', 'STOP_MODES', 'REL_EPS']

STOP_MODES = ('rel', 'abs', 'rms')
#: Denominator guard of the relative residual, as in locuslab/mdeq and torchdeq (``+ 1e-9``).
REL_EPS = 1e-9


@dataclass
class SolverStats:
    """Per-sample statistics of one solve (all tensors detached).

    A *step* is the counting unit of ``max_iter`` for the method: a quasi-Newton step after the
    initial evaluation for Broyden (locuslab/mdeq's ``nstep``), an evaluation of ``f`` for
    fixed-point iteration and Anderson (torchdeq's step index).

    Attributes:
        nstep: ``(B,)`` steps the sample ran before it stopped (tolerance reached, non-finite
            residual, stall) or the budget ended.
        lowest_step: ``(B,)`` step of the lowest-residual state (MDEQ's ``lowest_step``).
        out_step: ``(B,)`` step of the returned state: ``lowest_step`` with ``return_lowest``,
            else ``nstep`` (or ``lowest_step`` when the last state is not finite). ``0`` means
            ``z0`` was returned.
        abs_trace: ``(B, T)`` ``||f(x_k) - x_k||`` of every evaluated iterate, ``k = 0..T-1``
            (entries after a sample's own stop are recorded but not used for that sample).
        rel_trace: ``(B, T)`` ``||f(x_k) - x_k|| / (||f(x_k)|| + 1e-9)``.
        diverged: ``(B,)`` bool: a used residual was non-finite or grew past
            ``divergence_factor`` times the initial one.
        method: The solver's name.
        returns: ``'iterate'`` (the state at step ``s`` is ``x_s``: Broyden) or ``'image'`` (the
            state at step ``s`` is ``f(x_{s-1})``: fixed point, Anderson).
        n_eval: Evaluations of ``f`` the batch ran (line-search trials included).
    """

    nstep: Tensor
    lowest_step: Tensor
    out_step: Tensor
    abs_trace: Tensor
    rel_trace: Tensor
    diverged: Tensor
    method: str
    returns: str
    n_eval: int

    def _column(self, step: Tensor) -> Tensor:
        """Trace column of the iterate that describes the state of ``step``."""
        shift = 0 if self.returns == 'iterate' else 1
        return (step - shift).clamp(min=0, max=self.abs_trace.shape[1] - 1)[:, None]

    def _used(self) -> Tensor:
        cols = torch.arange(self.abs_trace.shape[1], device=self.abs_trace.device)
        return cols[None] <= self._column(self.nstep)

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
        """``(B,)`` relative residual of the iterate that describes the returned state."""
        return self.rel_trace.gather(1, self._column(self.out_step))[:, 0]

    @property
    def final_abs(self) -> Tensor:
        """``(B,)`` absolute residual of the iterate that describes the returned state."""
        return self.abs_trace.gather(1, self._column(self.out_step))[:, 0]

    @property
    def abs_lowest(self) -> Tensor:
        """``(B,)`` lowest finite absolute residual up to the sample's stop (inf if none)."""
        return (
            torch.where(self._used(), self.abs_trace, float('inf'))
            .nan_to_num(nan=float('inf'))
            .amin(dim=1)
        )

    @property
    def rel_lowest(self) -> Tensor:
        """``(B,)`` lowest finite relative residual up to the sample's stop (inf if none)."""
        return (
            torch.where(self._used(), self.rel_trace, float('inf'))
            .nan_to_num(nan=float('inf'))
            .amin(dim=1)
        )


class _Selection:
    """A per-sample selected state (list of S tensors ``(B, ...)``).

    ``update(mask, new)`` sets sample ``b`` to ``new[b]`` where ``mask[b]``. With every sample
    taken it keeps a reference (no copy; the common case of batch 1); otherwise one
    ``torch.where`` per scale, out of place so that autograd (unrolled training) records it.
    """

    def __init__(self, init: list[Tensor]) -> None:
        self.value = list(init)

    def update(self, mask: Tensor, new: list[Tensor]) -> None:
        if bool(mask.all()):
            self.value = list(new)
        elif bool(mask.any()):
            self.value = [
                torch.where(mask.view(-1, *([1] * (n.dim() - 1))), n, v)
                for n, v in zip(new, self.value)
            ]


class Tracker:
    """Records residuals and selects, per sample, the state to return.

    Args:
        x0: Initial state (list of S tensors ``(B, ...)``).
        max_steps: The method's step budget (``max_iter``).
        tol: Stopping tolerance on the ``stop_mode`` residual, or ``None``.
        stop_mode: ``'rel'``, ``'abs'`` or ``'rms'`` (``||g|| / sqrt(D)``).
        return_lowest: Return the lowest-residual state (else the last one).
        divergence_factor: Flag a sample whose residual exceeds this factor times the initial.
        returns: ``'iterate'`` (Broyden) or ``'image'`` (fixed point, Anderson).
        keep_preimage: Also keep the iterate whose image is returned (gradients).
        stall_window: Broyden's stall rule of locuslab/mdeq: stop a sample whose residual is
            below ``3 tol`` after more than ``stall_window`` steps while the last
            ``stall_window`` residuals vary by less than a factor 1.3 (``None``: off).
    """

    def __init__(
        self,
        x0: list[Tensor],
        max_steps: int,
        tol: float | None,
        stop_mode: str,
        return_lowest: bool,
        divergence_factor: float,
        returns: str,
        keep_preimage: bool,
        stall_window: int | None = None,
    ) -> None:
        b, dev = x0[0].shape[0], x0[0].device
        self.sdt = torch.float64 if x0[0].dtype == torch.float64 else torch.float32
        self.tol, self.stop_mode, self.returns = tol, stop_mode, returns
        self.return_lowest, self.div_factor = return_lowest, divergence_factor
        self.stall_window = stall_window
        self.sqrt_dim = float(sum(t[0].numel() for t in x0)) ** 0.5
        cols = max_steps + 1 if returns == 'iterate' else max_steps
        self.abs_trace = torch.full((b, cols), float('nan'), dtype=self.sdt, device=dev)
        self.rel_trace = torch.full((b, cols), float('nan'), dtype=self.sdt, device=dev)
        self.active = torch.ones(b, dtype=torch.bool, device=dev)
        long = dict(dtype=torch.long, device=dev)
        self.nstep, self.lowest_step = torch.zeros(b, **long), torch.zeros(b, **long)
        self.last_step = torch.zeros(b, **long)
        self.best_res = torch.full((b,), float('inf'), dtype=self.sdt, device=dev)
        self.fz0_norm: Tensor | None = None
        self.best, self.last = _Selection(x0), _Selection(x0)
        self.best_pre = _Selection(x0) if keep_preimage and returns == 'image' else None
        self.last_pre = _Selection(x0) if keep_preimage and returns == 'image' else None
        self.columns = 0
        self.n_eval = 0

    def residual(self, abs_res: Tensor, rel_res: Tensor) -> Tensor:
        """The ``stop_mode`` residual from the absolute and relative ones."""
        if self.stop_mode == 'rel':
            return rel_res
        return abs_res if self.stop_mode == 'abs' else abs_res / self.sqrt_dim

    def record(self, k: int, x: list[Tensor], fx: list[Tensor], norms: tuple[Tensor, Tensor]):
        """Records evaluation ``k`` (0-based trace column) of iterate ``x`` with image ``fx``.

        Args:
            k: Trace column: Broyden's step ``k`` (``x_k``) or the ``k``-th evaluation.
            x: The iterate ``x_k`` (state list).
            fx: Its image ``f(x_k)`` (state list; a view of ``x`` is copied).
            norms: ``(||fx - x||, ||fx||)`` per sample ``(B,)`` in the statistics dtype.
        """
        abs_res, fx_norm = norms
        if any(
            a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() for a in fx for b in x
        ):
            fx = [t.clone() for t in fx]  # f returned its input: the solver may update x in place
        self.abs_trace[:, k] = abs_res
        self.rel_trace[:, k] = rel = abs_res / (fx_norm + REL_EPS)
        if k == 0:
            self.fz0_norm = fx_norm
        self.columns = k + 1
        res = self.residual(abs_res, rel)
        step = k if self.returns == 'iterate' else k + 1
        state = x if self.returns == 'iterate' else fx
        finite = torch.isfinite(res)
        take = self.active & finite & (res < self.best_res)
        self.best_res = torch.where(take, res, self.best_res)
        self.lowest_step = torch.where(take, step, self.lowest_step)
        self.best.update(take, state)
        take_last = self.active & finite
        self.last_step = torch.where(take_last, step, self.last_step)
        self.last.update(take_last, state)
        if self.best_pre is not None:
            self.best_pre.update(take, x)
            self.last_pre.update(take_last, x)
        self.nstep = torch.where(self.active, step, self.nstep)
        stop = ~finite
        if self.tol is not None:
            stop |= res < self.tol
            if self.stall_window is not None and step > self.stall_window:
                recent = self.abs_trace[:, k - self.stall_window + 1 : k + 1]
                recent = self.residual(recent, self.rel_trace[:, k - self.stall_window + 1 : k + 1])
                flat = recent.amax(dim=1) / recent.amin(dim=1) < 1.3
                stop |= (res < 3 * self.tol) & flat
        self.active = self.active & ~stop

    def all_stopped(self) -> bool:
        """Whether every sample has stopped (a host synchronisation on accelerators)."""
        return not bool(self.active.any())

    def finish(self, method: str) -> tuple[list[Tensor], list[Tensor], SolverStats]:
        """Returns ``(state, pre_image, stats)``; ``pre_image`` is the iterate describing it."""
        t = self.columns
        abs_trace, rel_trace = self.abs_trace[:, :t], self.rel_trace[:, :t]
        shift = 0 if self.returns == 'iterate' else 1
        cols = torch.arange(t, device=abs_trace.device)[None]
        used = cols <= (self.nstep - shift).clamp(min=0)[:, None]
        res = self.residual(abs_trace, rel_trace)
        # Divergence: a non-finite residual, or an absolute one above factor x the initial one
        # (floored by a few ulps of ||f(z0)|| so that an exact start is not flagged).
        eps = torch.finfo(self.sdt).eps
        thresh = self.div_factor * torch.maximum(abs_trace[:, 0], eps * (self.fz0_norm + 1.0))
        bad = ~torch.isfinite(res) | ~(abs_trace <= thresh[:, None])
        diverged = (used & bad).any(dim=1)
        if self.return_lowest:
            out, out_step = self.best.value, self.lowest_step
            pre = self.best_pre.value if self.best_pre is not None else out
        else:
            # The last finite state, unless the sample ran into a non-finite residual: then the
            # lowest-residual one (never return what came out of a blow-up).
            keep = ~(used & ~torch.isfinite(res)).any(dim=1)
            out = _where_state(keep, self.last.value, self.best.value)
            out_step = torch.where(keep, self.last_step, self.lowest_step)
            pre = out
            if self.best_pre is not None:
                pre = _where_state(keep, self.last_pre.value, self.best_pre.value)
        stats = SolverStats(
            nstep=self.nstep,
            lowest_step=self.lowest_step,
            out_step=out_step,
            abs_trace=abs_trace,
            rel_trace=rel_trace,
            diverged=diverged,
            method=method,
            returns=self.returns,
            n_eval=self.n_eval,
        )
        return out, pre, stats


def _where_state(mask: Tensor, a: list[Tensor], b: list[Tensor]) -> list[Tensor]:
    """Per sample, state ``a`` where ``mask`` ``(B,)`` is set, else ``b``."""
    if bool(mask.all()):
        return a
    return [torch.where(mask.view(-1, *([1] * (s.dim() - 1))), s, t) for s, t in zip(a, b)]
