"""Solver statistics and the per-sample bookkeeping every solver shares.

Step counting and which state is returned follow the reference of each method (see the
:mod:`mmvideoeq.deq.solvers` docstring and ``docs/deq_core.md``). A solver reports every
evaluated iterate ``x_k`` with its residual to :class:`Tracker`, which keeps, per sample, the
running lowest residual, whether the sample is still running, and the state to return.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

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
        out_norm: ``(B,)`` Euclidean norm of each sample's returned state over all its tensors,
            in the statistics dtype (float64 for float64 states, else float32), taken when the
            solve returns (the state is then still in cache; a streaming policy reads it for its
            divergence check instead of reading the state again). ``None`` when not taken.
        out_ptrs: ``data_ptr()`` of the returned state's tensors, so that a consumer can tell
            whether a state it holds is the one ``out_norm`` describes (not compared, not shown).
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
    out_norm: Tensor | None = None
    out_ptrs: tuple[int, ...] = field(default=(), repr=False, compare=False)

    def single(self) -> tuple[float, float, int, bool]:
        """``(first_rel, final_rel, nstep, diverged)`` of a batch-1 solve as Python values.

        The same values as ``first_rel``, ``final_rel``, ``nstep`` and ``diverged``, read with
        one host transfer per field instead of a few tensor operations each (the per-frame
        bookkeeping of a stream).

        Raises:
            ValueError: The statistics hold more than one sample.
        """
        if self.rel_trace.shape[0] != 1:
            raise ValueError(
                f'SolverStats.single: the statistics hold {self.rel_trace.shape[0]} samples; '
                'cut batched statistics with split_stats first'
            )
        rel = self.rel_trace.tolist()[0]
        shift = 0 if self.returns == 'iterate' else 1
        col = min(max(int(self.out_step.tolist()[0]) - shift, 0), len(rel) - 1)
        nstep = int(self.nstep.tolist()[0])
        return rel[0], rel[col], nstep, bool(self.diverged.tolist()[0])

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

    ``update(take, new)`` sets sample ``b`` to ``new[b]`` where ``take[b]`` (a list of bools).
    With every sample taken it keeps a reference (no copy; the common case of batch 1);
    otherwise one ``torch.where`` per scale, out of place so that autograd (unrolled training)
    records it.
    """

    def __init__(self, init: list[Tensor]) -> None:
        self.value = list(init)

    def update(self, take: list[bool], new: list[Tensor]) -> None:
        if all(take):
            self.value = list(new)
        elif any(take):
            mask = torch.tensor(take, device=new[0].device)
            self.value = [
                torch.where(mask.view(-1, *([1] * (n.dim() - 1))), n, v)
                for n, v in zip(new, self.value)
            ]


def _rounding(dtype: torch.dtype):
    """Rounds a Python float to ``dtype`` (float32 or float64).

    The per-sample decisions are taken on the host with the values the statistics tensors hold;
    rounding a float64 quotient to float32 gives the float32 quotient exactly (53 >= 2 * 24 + 2
    bits), so the decisions equal those of the same comparisons on float32 tensors.
    """
    if dtype == torch.float64:
        return float
    fmt = struct.Struct('f')

    def to_float32(v: float) -> float:
        try:
            return fmt.unpack(fmt.pack(v))[0]
        except OverflowError:  # rounds past the largest float32
            return math.copysign(math.inf, v)

    return to_float32


class Tracker:
    """Records residuals and selects, per sample, the state to return.

    Each evaluation moves its residuals to the host once (one synchronisation; the selection
    needs it anyway) and takes the per-sample decisions there, so that the bookkeeping costs a
    few tensor operations per iteration whatever the batch size.

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
        b = x0[0].shape[0]
        self.device = x0[0].device
        self.sdt = torch.float64 if x0[0].dtype == torch.float64 else torch.float32
        rnd = _rounding(self.sdt)
        self._round = rnd
        self.tol, self.stop_mode, self.returns = tol, stop_mode, returns
        self.return_lowest, self.div_factor = return_lowest, divergence_factor
        self.stall_window = stall_window
        self.sqrt_dim = float(sum(t[0].numel() for t in x0)) ** 0.5
        # thresholds as the statistics dtype holds them (a tensor compared with a Python float
        # compares with the float rounded to the tensor's dtype)
        self._tol = None if tol is None else rnd(tol)
        self._stall_tol = None if tol is None else rnd(3 * tol)
        self._flat = rnd(1.3)
        self.max_steps = max_steps
        self.batch = b
        self.abs_cols: list[list[float]] = []  # per evaluation: (B,) absolute residuals
        self.rel_cols: list[list[float]] = []
        self.res_cols: list[list[float]] = []  # the stop_mode residual
        self.active = [True] * b
        self.nstep, self.lowest_step, self.last_step = [0] * b, [0] * b, [0] * b
        self.best_res = [math.inf] * b
        self.fz0_norm: Tensor | None = None
        self.best, self.last = _Selection(x0), _Selection(x0)
        self.best_pre = _Selection(x0) if keep_preimage and returns == 'image' else None
        self.last_pre = _Selection(x0) if keep_preimage and returns == 'image' else None
        self.n_eval = 0

    @property
    def columns(self) -> int:
        """Evaluations recorded so far."""
        return len(self.abs_cols)

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
        if k != len(self.abs_cols):
            raise ValueError(f'Tracker.record: expected column {len(self.abs_cols)}, got {k}.')
        abs_res, fx_norm = norms
        ptrs = {t.untyped_storage().data_ptr() for t in x}
        if any(t.untyped_storage().data_ptr() in ptrs for t in fx):
            fx = [t.clone() for t in fx]  # f returned its input: keep what it was
        rel = abs_res / (fx_norm + REL_EPS)
        if k == 0:
            self.fz0_norm = fx_norm
        vals = torch.stack((abs_res, rel, self.residual(abs_res, rel))).tolist()
        self.abs_cols.append(vals[0])
        self.rel_cols.append(vals[1])
        self.res_cols.append(vals[2])
        step = k if self.returns == 'iterate' else k + 1
        state = x if self.returns == 'iterate' else fx
        take, take_last = [], []
        for i, res in enumerate(vals[2]):
            active = self.active[i]
            finite = math.isfinite(res)
            best = active and finite and res < self.best_res[i]
            take.append(best)
            take_last.append(active and finite)
            if not active:
                continue
            if best:
                self.best_res[i], self.lowest_step[i] = res, step
            if finite:
                self.last_step[i] = step
            self.nstep[i] = step
            self.active[i] = finite and not self._stops(i, res, step, k)
        self.best.update(take, state)
        self.last.update(take_last, state)
        if self.best_pre is not None:
            self.best_pre.update(take, x)
            self.last_pre.update(take_last, x)

    def _stops(self, i: int, res: float, step: int, k: int) -> bool:
        """Tolerance or stall stop of an active sample with finite residual ``res``."""
        if self._tol is None:
            return False
        if res < self._tol:
            return True
        w = self.stall_window
        if w is None or step <= w or not res < self._stall_tol:
            return False
        recent = [col[i] for col in self.res_cols[k - w + 1 : k + 1]]
        low = min(recent)  # every entry is finite and >= tol: recorded while active
        return low > 0 and self._round(max(recent) / low) < self._flat

    def held_storages(self) -> set[int]:
        """Storage addresses of the states the tracker keeps by reference (a solver may reuse
        the memory of an iterate only when it is not among them)."""
        sels = (self.best, self.last, self.best_pre, self.last_pre)
        return {t.untyped_storage().data_ptr() for s in sels if s is not None for t in s.value}

    def all_stopped(self) -> bool:
        """Whether every sample has stopped."""
        return not any(self.active)

    def finish(self, method: str) -> tuple[list[Tensor], list[Tensor], SolverStats]:
        """Returns ``(state, pre_image, stats)``; ``pre_image`` is the iterate describing it."""
        dev = self.device
        t = self.columns
        abs_trace = torch.tensor(self.abs_cols, dtype=self.sdt, device=dev).T.contiguous()
        rel_trace = torch.tensor(self.rel_cols, dtype=self.sdt, device=dev).T.contiguous()
        res = torch.tensor(self.res_cols, dtype=self.sdt, device=dev).T
        long = dict(dtype=torch.long, device=dev)
        nstep = torch.tensor(self.nstep, **long)
        lowest_step = torch.tensor(self.lowest_step, **long)
        shift = 0 if self.returns == 'iterate' else 1
        cols = torch.arange(t, device=dev)[None]
        used = cols <= (nstep - shift).clamp(min=0)[:, None]
        # Divergence: a non-finite residual, or an absolute one above factor x the initial one
        # (floored by a few ulps of ||f(z0)|| so that an exact start is not flagged).
        eps = torch.finfo(self.sdt).eps
        thresh = self.div_factor * torch.maximum(abs_trace[:, 0], eps * (self.fz0_norm + 1.0))
        bad = ~torch.isfinite(res) | ~(abs_trace <= thresh[:, None])
        diverged = (used & bad).any(dim=1)
        if self.return_lowest:
            out, out_step = self.best.value, lowest_step
            pre = self.best_pre.value if self.best_pre is not None else out
        else:
            # The last finite state, unless the sample ran into a non-finite residual: then the
            # lowest-residual one (never return what came out of a blow-up).
            keep = ~(used & ~torch.isfinite(res)).any(dim=1)
            out = _where_state(keep, self.last.value, self.best.value)
            out_step = torch.where(keep, torch.tensor(self.last_step, **long), lowest_step)
            pre = out
            if self.best_pre is not None:
                pre = _where_state(keep, self.last_pre.value, self.best_pre.value)
        stats = SolverStats(
            nstep=nstep,
            lowest_step=lowest_step,
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
