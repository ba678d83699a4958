"""Per-frame budget controllers of streaming inference (plain PyTorch).

A controller gives the next frame its :class:`~mmvideoeq.deq.Budget`: how many solver steps
``M``, which tolerance and which iterate (StreamDEQ, thesis Ch. 3: a few steps per frame instead
of a full solve). The budget goes unchanged to the model and its solver. What a step costs
depends on the solver (``mmvideoeq.deq.solvers``: a Broyden step is one evaluation of ``f``
after the initial one, a fixed-point or Anderson step one evaluation); the budgets count steps and
learn costs from the evaluations reported in the statistics.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mmvideoeq.deq.budget import FULL_SOLVE, Budget
from mmvideoeq.utils.checks import check_int, check_ms, check_positive, check_tol

if TYPE_CHECKING:
    from mmvideoeq.deq import SolverStats

__all__ = [
    'IterationBudget',
    'FixedBudget',
    'AdaptiveBudget',
    'TimeBudget',
    'FullSolve',
    'build_budget',
]


class IterationBudget:
    """Interface of a per-frame budget.

    :meth:`plan` gives the :class:`~mmvideoeq.deq.Budget` of the next frame (``FULL_SOLVE``:
    the model's configured full solve). :meth:`update` is told what a solve cost.
    """

    def plan(self) -> Budget:
        """The budget of the next frame."""
        raise NotImplementedError

    def update(self, stats: SolverStats | None, elapsed_ms: float, *, iters: int | None = None):
        """Record one solve: its statistics, wall time (ms, model forward included) and, if
        given, the evaluations of ``f`` it spent (default ``stats.n_eval``)."""


class FixedBudget(IterationBudget):
    """Exactly ``iters`` solver steps per frame, the last iterate: the StreamDEQ-M setting.

    Args:
        iters: Steps per frame ``M`` (settable at run time, e.g. by a controller).
    """

    def __init__(self, iters: int) -> None:
        self.iters = iters

    @property
    def iters(self) -> int:
        """Steps per frame."""
        return self._iters

    @iters.setter
    def iters(self, v: int) -> None:
        self._iters = check_int('FixedBudget.iters', v)

    def plan(self) -> Budget:
        return Budget.steps(self._iters)

    def __repr__(self) -> str:
        return f'FixedBudget(iters={self._iters})'


class FullSolve(IterationBudget):
    """The model's configured full solve on every frame (``plan() == FULL_SOLVE``)."""

    def plan(self) -> Budget:
        return FULL_SOLVE

    def __repr__(self) -> str:
        return 'FullSolve()'


class AdaptiveBudget(IterationBudget):
    """Stop once the residual is below ``tol``, never after more than ``max_iter`` steps.

    On a smooth video the warm start is already close to the fixed point and the solve stops
    after one or two steps; after a cut the full ``max_iter`` is spent.

    Args:
        tol: Stopping tolerance on the residual (the solver's ``stop_mode``, relative by default).
        max_iter: Most steps per frame.
    """

    def __init__(self, tol: float, max_iter: int) -> None:
        self.tol = check_positive('AdaptiveBudget.tol', tol)
        self.max_iter = check_int('AdaptiveBudget.max_iter', max_iter)

    def plan(self) -> Budget:
        return Budget(self.max_iter, self.tol)

    def __repr__(self) -> str:
        return f'AdaptiveBudget(tol={self.tol}, max_iter={self.max_iter})'


class TimeBudget(IterationBudget):
    """Convert a per-frame time budget in milliseconds into a step count.

    A step costs ``fixed + n * per_eval`` ms for ``n`` evaluations of ``f`` (``fixed``: stem,
    head, everything but the evaluations). The next frame gets the most steps whose evaluations
    fit, ``clamp(floor((ms_per_frame - fixed) / per_eval) - extra, min_iter, max_iter)`` with
    ``extra`` = evaluations a solve spends besides its steps (1 for Broyden's initial one, learned
    from the statistics), which is non-decreasing in ``ms_per_frame``. Both costs are running
    (EMA) estimates from every measured solve:

    * ``fixed``: ``fixed_ms`` when given (constant); otherwise the EMA of the intercepts
      ``t - n * (t - t') / (n - n')`` of consecutive solves with different evaluation counts
      (0 until such a pair is seen, which over-estimates ``per_eval`` and so errs towards fewer
      steps);
    * ``per_eval``: the EMA of ``(t - fixed) / n``.

    Args:
        ms_per_frame: Time budget per frame in ms (settable at run time).
        fixed_ms: Known fixed per-frame cost in ms; ``None`` learns it.
        iter_ms: Initial estimate of the cost of one evaluation in ms; ``None`` = unknown.
        min_iter: Fewest steps per frame.
        max_iter: Most steps per frame.
        init_iter: Steps before anything is measured; defaults to ``min_iter``.
        tol: Early-stopping tolerance passed to the solver (``0.0``: none).
        ema_decay: Weight of the previous estimate in the running averages, in ``[0, 1)``.
    """

    def __init__(
        self,
        ms_per_frame: float,
        *,
        fixed_ms: float | None = None,
        iter_ms: float | None = None,
        min_iter: int = 1,
        max_iter: int = 30,
        init_iter: int | None = None,
        tol: float = 0.0,
        ema_decay: float = 0.7,
    ) -> None:
        self.ms_per_frame = ms_per_frame
        self.min_iter = check_int('TimeBudget.min_iter', min_iter)
        self.max_iter = check_int('TimeBudget.max_iter', max_iter)
        if self.max_iter < self.min_iter:
            raise ValueError(f'TimeBudget.max_iter ({max_iter}) must be >= min_iter ({min_iter})')
        self.init_iter = (
            self.min_iter if init_iter is None else check_int('TimeBudget.init_iter', init_iter)
        )
        if not self.min_iter <= self.init_iter <= self.max_iter:
            raise ValueError(
                f'TimeBudget.init_iter ({init_iter}) must lie in [min_iter, max_iter] = '
                f'[{self.min_iter}, {self.max_iter}]'
            )
        self.tol = check_tol('TimeBudget.tol', tol)
        if (
            isinstance(ema_decay, bool)
            or not isinstance(ema_decay, (int, float))
            or not (0 <= ema_decay < 1)
        ):
            raise ValueError(f'TimeBudget.ema_decay must be in [0, 1), got {ema_decay!r}')
        self.ema_decay = float(ema_decay)
        self.fixed_known = fixed_ms is not None
        self.fixed_ms_est: float = 0.0 if fixed_ms is None else check_ms('fixed_ms', fixed_ms)
        self.iter_ms_est: float | None = check_positive(
            'TimeBudget.iter_ms', iter_ms, allow_none=True
        )
        self.extra_evals = 0
        self._fixed_seen = False
        self._last: tuple[int, float] | None = None

    @property
    def ms_per_frame(self) -> float:
        """Time budget per frame in ms."""
        return self._ms_per_frame

    @ms_per_frame.setter
    def ms_per_frame(self, v: float) -> None:
        v = check_ms('TimeBudget.ms_per_frame', v)
        if v == 0:
            raise ValueError('TimeBudget.ms_per_frame must be > 0 ms')
        self._ms_per_frame = v

    def iterations_for(self, ms: float) -> int:
        """Steps that fit in ``ms`` milliseconds with the current cost estimates."""
        ms = check_ms('ms', ms)
        if self.iter_ms_est is None:
            return self.init_iter
        if self.iter_ms_est <= 0:
            return self.max_iter
        n = math.floor((ms - self.fixed_ms_est) / self.iter_ms_est + 1e-9) - self.extra_evals
        return max(self.min_iter, min(self.max_iter, n))

    def plan(self) -> Budget:
        return Budget(self.iterations_for(self._ms_per_frame), self.tol)

    def update(self, stats: SolverStats | None, elapsed_ms: float, *, iters: int | None = None):
        t = check_ms('elapsed_ms', elapsed_ms)
        if iters is None:
            if stats is None:
                raise ValueError(
                    'TimeBudget.update needs stats or iters to know how many evaluations the '
                    'measured step ran'
                )
            n = int(stats.n_eval)
            self.extra_evals = max(0, n - int(stats.nstep.max()))
        else:
            n = check_int('iters', iters, 0)
        d = self.ema_decay
        if not self.fixed_known:
            sample = None
            if n == 0:
                sample = t
            elif self._last is not None and self._last[0] != n:
                n0, t0 = self._last
                slope = (t - t0) / (n - n0)
                if slope > 0:
                    sample = min(max(t - slope * n, 0.0), t)
            if sample is not None:
                self.fixed_ms_est = (
                    sample if not self._fixed_seen else d * self.fixed_ms_est + (1 - d) * sample
                )
                self._fixed_seen = True
            self._last = (n, t)
        if n > 0 and t > self.fixed_ms_est:
            s = (t - self.fixed_ms_est) / n
            self.iter_ms_est = s if self.iter_ms_est is None else d * self.iter_ms_est + (1 - d) * s

    def __repr__(self) -> str:
        return (
            f'TimeBudget(ms_per_frame={self._ms_per_frame}, fixed_ms_est={self.fixed_ms_est}, '
            f'iter_ms_est={self.iter_ms_est}, min_iter={self.min_iter}, '
            f'max_iter={self.max_iter}, tol={self.tol})'
        )


_BUDGETS: dict[str, type[IterationBudget]] = {
    'FixedBudget': FixedBudget,
    'AdaptiveBudget': AdaptiveBudget,
    'TimeBudget': TimeBudget,
    'FullSolve': FullSolve,
}


def build_budget(cfg: IterationBudget | dict) -> IterationBudget:
    """Build a budget from a config dict such as ``dict(type='FixedBudget', iters=4)``."""
    if isinstance(cfg, IterationBudget):
        return cfg
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(
            f'budget must be an IterationBudget or a dict with a "type" key (one of '
            f'{sorted(_BUDGETS)}), got {cfg!r}'
        )
    kw = dict(cfg)
    name = kw.pop('type')
    if name not in _BUDGETS:
        raise ValueError(f'unknown budget type {name!r}; expected one of {sorted(_BUDGETS)}')
    try:
        return _BUDGETS[name](**kw)
    except TypeError as e:
        raise TypeError(f'bad arguments for {name}: {e}') from e
