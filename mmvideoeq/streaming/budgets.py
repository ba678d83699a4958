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
from collections.abc import Mapping, Sequence
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
    'DeadlineBudget',
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


class DeadlineBudget(TimeBudget):
    """A deadline scheduler: each frame's steps ``M``, and whether to process it at all, chosen
    so that the frame's output is ready by the next frame boundary it can reach.

    Frames arrive every ``1 / fps`` s (frame ``i`` at ``i / fps``, the real-time simulation's
    clock, :mod:`.realtime`). A worker that becomes free at ``t`` takes the latest frame,
    ``i = floor(t * fps)``. An output finished at ``f`` is first used by the ground-truth frame
    ``ceil(f * fps)`` (streaming AP pairs frame ``k`` with the outputs finished by ``k / fps``).
    With the estimated latency ``cost(M)`` (s) of each candidate budget, :meth:`decide` (called
    with the time the frame is taken):

    1. if some budgets **finish within the frame interval** (by ``(i + 1) / fps``, when the next
       frame arrives), the most steps among them: the worker would otherwise idle until then, so
       the extra steps cost no freshness (more solver steps, a better fixed point);
    2. otherwise **wait** (skip frame ``i``) if frame ``i + 1``, started when it arrives with the
       fastest budget, is used no later than frame ``i`` with it
       (``ceil(((i + 1) / fps + cost) * fps) <= ceil((t + cost) * fps)``): as early, and from a
       newer frame;
    3. otherwise the fastest budget: any extra time would delay every later frame.

    With a single budget, rules 2 and 3 are the reference's dynamic schedule (Li et al., *Towards
    Streaming Perception*, ECCV 2020, Sec. 4.3, "shrinking tail"; github ``mtli/sAP``,
    ``det/srt_det.py --dynamic-schedule``: wait when ``rtf < floor(r + rtf)`` with ``rtf`` the
    runtime in frame intervals and ``r`` the fraction of the current interval gone) whenever
    ``rtf > 1``; the reference never waits when ``rtf <= 1``, this rule also waits then if the
    frame was taken so late in its interval that the next frame's output is ready as early.

    The latency of ``M`` steps is either the linear model of :class:`TimeBudget` (``fixed +
    (M + extra) * per_eval``, learned from the measured solves) or a measured table
    ``latency_ms`` (``{M: ms}``, e.g. a latency table's ``stream@M`` entries); :meth:`update`
    keeps either up to date (the table by an EMA of each ``M``'s measurements). Without any
    estimate a frame is processed with ``init_iter`` steps.

    Args:
        fps: Frame rate of the stream (> 0).
        latency_ms: Measured ms per frame of each budget ``M`` (keys: steps, ints or numeric
            strings); its keys are then the candidates. ``None``: the linear model.
        choices: Candidate step counts (default: the table's keys, else ``min_iter ..
            max_iter``).
        wait: Apply rule 2 (skip a frame when waiting for the next is no later).
        fixed_ms, iter_ms, min_iter, max_iter, init_iter, tol, ema_decay: As for
            :class:`TimeBudget` (whose per-frame budget is set to one frame interval).
    """

    def __init__(
        self,
        fps: float,
        *,
        latency_ms: Mapping[int | str, float] | None = None,
        choices: Sequence[int] | None = None,
        wait: bool = True,
        fixed_ms: float | None = None,
        iter_ms: float | None = None,
        min_iter: int = 1,
        max_iter: int = 30,
        init_iter: int | None = None,
        tol: float = 0.0,
        ema_decay: float = 0.7,
    ) -> None:
        self.fps = check_positive('DeadlineBudget.fps', fps)
        table = None
        if latency_ms is not None:
            if not isinstance(latency_ms, Mapping) or not latency_ms:
                raise TypeError(
                    'DeadlineBudget.latency_ms must be a non-empty dict {steps M: ms per frame}'
                )
            table = {}
            for k, v in latency_ms.items():
                if isinstance(k, str) and k.strip().isdigit():
                    m = int(k)
                elif isinstance(k, int) and not isinstance(k, bool):
                    m = k
                else:
                    raise ValueError(
                        f'DeadlineBudget.latency_ms: key {k!r} is not a number of steps'
                    )
                table[check_int('DeadlineBudget.latency_ms key', m)] = check_ms(
                    f'DeadlineBudget.latency_ms[{k!r}]', v
                )
            if choices is None:
                choices = sorted(table)
                min_iter, max_iter = min(min_iter, choices[0]), max(max_iter, choices[-1])
        if choices is None:
            choices = range(min_iter, max_iter + 1)
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence):
            raise TypeError(
                f'DeadlineBudget.choices must be a list of step counts, got {choices!r}'
            )
        choices = sorted({check_int('DeadlineBudget.choices', m) for m in choices})
        if not choices:
            raise ValueError('DeadlineBudget.choices is empty')
        if table is not None and any(m not in table for m in choices):
            raise ValueError(
                f'DeadlineBudget.choices {choices} must all have a latency in latency_ms '
                f'({sorted(table)})'
            )
        super().__init__(
            1000.0 / self.fps,
            fixed_ms=fixed_ms,
            iter_ms=iter_ms,
            min_iter=min(min_iter, choices[0]),
            max_iter=max(max_iter, choices[-1]),
            init_iter=choices[0] if init_iter is None else init_iter,
            tol=tol,
            ema_decay=ema_decay,
        )
        self.choices = choices
        self.latency_ms = table
        self.wait = bool(wait)
        self.last: Budget | None = None

    def cost_ms(self, m: int) -> float | None:
        """Estimated ms of a frame with ``m`` steps (``None``: nothing measured yet)."""
        if self.latency_ms is not None:
            return self.latency_ms[m]
        if self.iter_ms_est is None:
            return None
        return self.fixed_ms_est + (m + self.extra_evals) * self.iter_ms_est

    def decide(self, now: float) -> Budget | None:
        """The budget of the frame taken at ``now`` (seconds on the stream's clock, frame ``i``
        arriving at ``i / fps``), or ``None``: skip it and take the next frame when it arrives.
        """
        now = check_ms('DeadlineBudget.decide(now)', now)
        costs = [self.cost_ms(m) for m in self.choices]
        if costs[0] is None:
            self.last = Budget(self.init_iter, self.tol)
            return self.last
        fps = self.fps
        nxt = (math.floor(now * fps) + 1) / fps  # the next frame's arrival
        fit = [m for m, c in zip(self.choices, costs) if now + c / 1000.0 <= nxt]
        if fit:  # the worker would idle until nxt: spend the time on steps
            self.last = Budget(max(fit), self.tol)
            return self.last
        fastest = min(zip(costs, self.choices))
        used_now = math.ceil((now + fastest[0] / 1000.0) * fps)
        if self.wait and math.ceil((nxt + fastest[0] / 1000.0) * fps) <= used_now:
            self.last = None
            return None
        self.last = Budget(fastest[1], self.tol)
        return self.last

    def plan(self) -> Budget:
        """The budget of the last :meth:`decide` (before any: the steps of one frame interval)."""
        return self.last if self.last is not None else super().plan()

    def update(self, stats: SolverStats | None, elapsed_ms: float, *, iters: int | None = None):
        if self.latency_ms is None:
            return super().update(stats, elapsed_ms, iters=iters)
        t = check_ms('elapsed_ms', elapsed_ms)
        m = int(stats.nstep.max()) if iters is None and stats is not None else iters
        if m in self.latency_ms:
            d = self.ema_decay
            self.latency_ms[m] = d * self.latency_ms[m] + (1 - d) * t

    def __repr__(self) -> str:
        model = (
            f'latency_ms={self.latency_ms}'
            if self.latency_ms is not None
            else f'fixed_ms_est={self.fixed_ms_est}, iter_ms_est={self.iter_ms_est}'
        )
        return f'DeadlineBudget(fps={self.fps}, choices={self.choices}, {model}, wait={self.wait})'


_BUDGETS: dict[str, type[IterationBudget]] = {
    'FixedBudget': FixedBudget,
    'AdaptiveBudget': AdaptiveBudget,
    'TimeBudget': TimeBudget,
    'DeadlineBudget': DeadlineBudget,
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
