"""Streaming policies: iteration budgets and the per-frame controller (plain PyTorch).

StreamDEQ (Ertenli 2022, Ch. 3) solves the fixed point of every frame with only a few solver
iterations, starting from the estimate of the previous frame:

* Eq. 3.5 (``init='zeros'``, the default): ``z_0^[0] = 0`` and ``z_t^[0] = z_{t-1}^[M]``;
* Eq. 3.4 (``init='reference'``): a full solve of ``N`` iterations on the first frame
  (``z_0^*``), then ``z_t^[0] = z_{t-1}^[M]``.

A *budget* says how many iterations ``M`` (and which tolerance) the next frame gets:
:class:`FixedBudget`, :class:`AdaptiveBudget` or :class:`TimeBudget`. :class:`StreamPolicy` is
the single place that decides, per frame, whether the stream restarts (new video, detected shot
change), where the solver starts and with which budget; see ``docs/streaming.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import TYPE_CHECKING, Any

from torch import Tensor

from .shot_change import ShotChangeDetector
from .state import StreamState, as_state_list, final_rel, first_rel, num_evaluations

if TYPE_CHECKING:
    from mmvideoeq.deq import SolverStats

__all__ = [
    'IterationBudget',
    'FixedBudget',
    'AdaptiveBudget',
    'TimeBudget',
    'build_budget',
    'FramePlan',
    'StreamPolicy',
    'INIT_MODES',
]

INIT_MODES = ('zeros', 'reference')


def _check_int(name: str, v: Any, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, Integral) or v < low:
        raise ValueError(f'{name} must be an int >= {low}, got {v!r}')
    return int(v)


def _check_tol(name: str, v: Any, allow_none: bool = True) -> float | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(
            f'{name} must be a positive finite number{" or None" * allow_none}, ' f'got {v!r}'
        )
    return float(v)


def _check_ms(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f'{name} must be a finite number of milliseconds >= 0, got {v!r}')
    return float(v)


class IterationBudget:
    """Interface of a per-frame iteration budget.

    :meth:`plan` gives ``(max_iter, tol)`` for the next frame: the solver runs at most
    ``max_iter`` iterations, exactly ``max_iter`` when ``tol`` is ``None``, and stops early once
    every sample's residual is below ``tol`` otherwise. :meth:`update` is told what a solve cost.
    """

    def plan(self) -> tuple[int, float | None]:
        """Return ``(max_iter, tol)`` for the next frame."""
        raise NotImplementedError

    def update(self, stats: SolverStats, elapsed_ms: float, *, iters: int | None = None) -> None:
        """Record one solve.

        Args:
            stats: Statistics of the solve (``rel_trace`` ``(B, T)``).
            elapsed_ms: Wall time of the whole step (model forward included), in ms.
            iters: Iterations spent; defaults to ``T`` of ``stats.rel_trace``.
        """


class FixedBudget(IterationBudget):
    """Exactly ``iters`` solver iterations per frame (``tol=None``): the StreamDEQ-M setting.

    Args:
        iters: Iterations per frame ``M`` (settable at run time, e.g. by a controller).
    """

    def __init__(self, iters: int) -> None:
        self.iters = iters

    @property
    def iters(self) -> int:
        """Iterations per frame."""
        return self._iters

    @iters.setter
    def iters(self, v: int) -> None:
        self._iters = _check_int('FixedBudget.iters', v)

    def plan(self) -> tuple[int, float | None]:
        return self._iters, None

    def __repr__(self) -> str:
        return f'FixedBudget(iters={self._iters})'


class AdaptiveBudget(IterationBudget):
    """Stop once the relative residual is below ``tol``, never after more than ``max_iter``.

    On a smooth video the warm start is already close to the fixed point and the solve stops
    after one or two iterations; after a cut the full ``max_iter`` is spent.

    Args:
        tol: Stopping tolerance on the residual (the solver's ``stop_mode``, relative by default).
        max_iter: Most iterations per frame.
    """

    def __init__(self, tol: float, max_iter: int) -> None:
        self.tol = tol
        self.max_iter = max_iter

    @property
    def tol(self) -> float:
        """Stopping tolerance."""
        return self._tol

    @tol.setter
    def tol(self, v: float) -> None:
        self._tol = _check_tol('AdaptiveBudget.tol', v, allow_none=False)

    @property
    def max_iter(self) -> int:
        """Most iterations per frame."""
        return self._max_iter

    @max_iter.setter
    def max_iter(self, v: int) -> None:
        self._max_iter = _check_int('AdaptiveBudget.max_iter', v)

    def plan(self) -> tuple[int, float | None]:
        return self._max_iter, self._tol

    def __repr__(self) -> str:
        return f'AdaptiveBudget(tol={self._tol}, max_iter={self._max_iter})'


class TimeBudget(IterationBudget):
    """Convert a per-frame time budget in milliseconds into an iteration count.

    A step costs ``fixed + iters * per_iter`` ms (``fixed``: everything but the solver iterations,
    e.g. stem and head). The next frame gets
    ``clamp(floor((ms_per_frame - fixed) / per_iter), min_iter, max_iter)`` iterations, which is
    non-decreasing in ``ms_per_frame``. Both costs are running (EMA) estimates updated from every
    measured step:

    * ``fixed``: ``fixed_ms`` when given (constant); otherwise learned as the EMA of the
      intercepts ``t - n * (t - t') / (n - n')`` of consecutive steps with different iteration
      counts ``n != n'`` (0 until such a pair is seen, which over-estimates ``per_iter`` and so
      errs towards fewer iterations);
    * ``per_iter``: the EMA of ``(t - fixed) / n``.

    Before the first measurement (and without ``iter_ms``) the budget returns ``init_iter``.

    Args:
        ms_per_frame: Time budget per frame in ms (settable at run time, e.g. by a controller).
        fixed_ms: Known fixed per-frame cost in ms; ``None`` learns it.
        iter_ms: Initial estimate of the cost of one iteration in ms; ``None`` = unknown.
        min_iter: Fewest iterations per frame.
        max_iter: Most iterations per frame.
        init_iter: Iterations before anything is measured; defaults to ``min_iter``.
        tol: Optional early-stopping tolerance passed to the solver.
        ema_decay: Weight of the previous estimate in the running averages, in ``[0, 1)``
            (``0``: use only the latest measurement).
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
        tol: float | None = None,
        ema_decay: float = 0.7,
    ) -> None:
        self.ms_per_frame = ms_per_frame
        self.min_iter = _check_int('TimeBudget.min_iter', min_iter)
        self.max_iter = _check_int('TimeBudget.max_iter', max_iter)
        if self.max_iter < self.min_iter:
            raise ValueError(f'TimeBudget.max_iter ({max_iter}) must be >= min_iter ({min_iter})')
        self.init_iter = (
            self.min_iter if init_iter is None else _check_int('TimeBudget.init_iter', init_iter)
        )
        if not self.min_iter <= self.init_iter <= self.max_iter:
            raise ValueError(
                f'TimeBudget.init_iter ({init_iter}) must lie in [min_iter, '
                f'max_iter] = [{self.min_iter}, {self.max_iter}]'
            )
        self.tol = _check_tol('TimeBudget.tol', tol)
        if (
            isinstance(ema_decay, bool)
            or not isinstance(ema_decay, (int, float))
            or not 0 <= ema_decay < 1
        ):
            raise ValueError(f'TimeBudget.ema_decay must be in [0, 1), got {ema_decay!r}')
        self.ema_decay = float(ema_decay)
        self.fixed_known = fixed_ms is not None
        self.fixed_ms_est: float = 0.0 if fixed_ms is None else _check_ms('fixed_ms', fixed_ms)
        self.iter_ms_est: float | None = (
            None if iter_ms is None else _check_tol('TimeBudget.iter_ms', iter_ms, allow_none=False)
        )
        self._fixed_seen = False
        self._last: tuple[int, float] | None = None

    @property
    def ms_per_frame(self) -> float:
        """Time budget per frame in ms."""
        return self._ms_per_frame

    @ms_per_frame.setter
    def ms_per_frame(self, v: float) -> None:
        v = _check_ms('TimeBudget.ms_per_frame', v)
        if v == 0:
            raise ValueError('TimeBudget.ms_per_frame must be > 0 ms')
        self._ms_per_frame = v

    def iterations_for(self, ms: float) -> int:
        """Iterations that fit in ``ms`` milliseconds with the current cost estimates.

        Args:
            ms: Time budget of one frame in ms.

        Returns:
            int: Iteration count in ``[min_iter, max_iter]``.
        """
        ms = _check_ms('ms', ms)
        if self.iter_ms_est is None:
            return self.init_iter
        if self.iter_ms_est <= 0:
            return self.max_iter
        n = math.floor((ms - self.fixed_ms_est) / self.iter_ms_est + 1e-9)
        return max(self.min_iter, min(self.max_iter, n))

    def plan(self) -> tuple[int, float | None]:
        return self.iterations_for(self._ms_per_frame), self.tol

    def update(
        self, stats: SolverStats | None, elapsed_ms: float, *, iters: int | None = None
    ) -> None:
        t = _check_ms('elapsed_ms', elapsed_ms)
        if iters is None:
            if stats is None:
                raise ValueError(
                    'TimeBudget.update needs stats or iters to know how many '
                    'iterations the measured step ran'
                )
            n = num_evaluations(stats)
        else:
            n = _check_int('iters', iters, low=0)
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
                    sample if not self._fixed_seen else (d * self.fixed_ms_est + (1 - d) * sample)
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
}


def build_budget(cfg: IterationBudget | dict) -> IterationBudget:
    """Build a budget from a config dict such as ``dict(type='FixedBudget', iters=4)``.

    Args:
        cfg: A budget (returned as is) or a dict with ``type`` in ``FixedBudget``,
            ``AdaptiveBudget``, ``TimeBudget`` and the constructor's keyword arguments.

    Returns:
        IterationBudget: The budget.
    """
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


@dataclass
class FramePlan:
    """What to do with one frame of one stream, decided by :meth:`StreamPolicy.begin_frame`.

    Attributes:
        video_id: Video the frame belongs to.
        frame_id: Frame id within the video.
        reset: The stream restarts on this frame (no warm start from the previous frame).
        reason: Why the plan deviates from a plain warm step: ``None``, ``'new_video'``,
            ``'cold_state'``, ``'shot_change:input'`` or ``'shot_change:residual'``.
        init: Where the solver starts: ``'warm'`` (previous fixed point), ``'zeros'``,
            ``'reference'`` (zeros, full solve of ``reference_iters``) or ``'provided'``
            (``init_z_fn``, e.g. another stream's fixed point).
        z0: Initial state, ``S`` tensors ``(1, C_s, H_s, W_s)``, or ``None`` for zeros.
        max_iter: Most solver iterations for this solve.
        tol: Stopping tolerance, or ``None`` to run exactly ``max_iter`` iterations.
        stage: 0 for the first solve of the frame, 1 for a follow-up solve.
        prior_iters: Iterations already spent on this frame by earlier solves.
        prior_first_rel: First relative residual of the first solve (follow-up plans).
        thumb: Downsampled frame (input-difference shot signal), or ``None``.
        input_score: Input-difference score of this frame, or ``None``.
        residual_ratio: Residual-jump ratio that triggered a follow-up, or ``None``.
    """

    video_id: str | int
    frame_id: int
    reset: bool
    reason: str | None
    init: str
    z0: list[Tensor] | None
    max_iter: int
    tol: float | None
    stage: int = 0
    prior_iters: int = 0
    prior_first_rel: float | None = None
    thumb: Tensor | None = None
    input_score: float | None = None
    residual_ratio: float | None = None


def _check_ids(video_id: Any, frame_id: Any) -> tuple[str | int, int]:
    if video_id is None:
        raise ValueError(
            'video_id is missing (None): every streamed frame needs a video id and a '
            'frame id (e.g. the video_id/frame_id metainfo of its data sample)'
        )
    if frame_id is None:
        raise ValueError(
            f'frame_id is missing (None) for a frame of video {video_id!r}: every '
            'streamed frame needs a frame id (its index in the video)'
        )
    if isinstance(video_id, bool) or not isinstance(video_id, (str, Integral)):
        raise TypeError(f'video_id must be a str or an int, got {type(video_id).__name__}')
    if isinstance(frame_id, bool) or not isinstance(frame_id, Integral):
        raise TypeError(f'frame_id must be an int, got {type(frame_id).__name__} ({frame_id!r})')
    return (video_id if isinstance(video_id, str) else int(video_id)), int(frame_id)


class StreamPolicy:
    """Decides, frame by frame, how each stream is solved: init mode, budget and shot changes.

    This is the one place where sequence boundaries are decided. Per frame of a stream::

        plan = policy.begin_frame(state, frame, video_id, frame_id)
        out, z, stats = step(frame, plan.z0, plan.max_iter, plan.tol)
        extra = policy.followup(state, plan, z, stats)        # residual-jump shot change
        if extra is not None:
            out, z, stats = step(frame, extra.z0, extra.max_iter, extra.tol)
            plan = extra
        state = policy.end_frame(state, plan, z, stats, elapsed_ms)

    (:func:`~mmvideoeq.streaming.run_stream` does exactly this, batching several streams.)

    Args:
        budget: Iteration budget of a normal frame: an :class:`IterationBudget` or its config
            dict (``dict(type='FixedBudget', iters=4)``).
        init: ``'zeros'`` (Eq. 3.5: the first frame starts from zeros with the normal budget) or
            ``'reference'`` (Eq. 3.4: the first frame gets a full solve of ``reference_iters``).
        reference_iters: Iterations ``N`` of the full solve of ``init='reference'``.
        reference_tol: Tolerance of that full solve (``None``: exactly ``reference_iters``).
        shot_change: A :class:`ShotChangeDetector`, its keyword arguments as a dict, or ``None``
            (no detection).
        init_z_fn: Optional ``init_z_fn(video_id) -> list[Tensor] | None``: the first frame of a
            video starts from the returned state (e.g. a fixed point of another video, the
            shot-change experiment of Sec. 4.1.3) with the normal budget; ``None`` falls back to
            ``init``.
        max_history: Keep at most this many records in ``state.history`` (``None``: all).
    """

    def __init__(
        self,
        *,
        budget: IterationBudget | dict,
        init: str = 'zeros',
        reference_iters: int = 26,
        reference_tol: float | None = None,
        shot_change: ShotChangeDetector | dict | None = None,
        init_z_fn: Callable[[str | int], Sequence[Tensor] | None] | None = None,
        max_history: int | None = None,
    ) -> None:
        self.budget = build_budget(budget)
        if init not in INIT_MODES:
            raise ValueError(f'init must be one of {INIT_MODES}, got {init!r}')
        self.init = init
        self.reference_iters = _check_int('reference_iters', reference_iters)
        self.reference_tol = _check_tol('reference_tol', reference_tol)
        if isinstance(shot_change, dict):
            shot_change = ShotChangeDetector(**shot_change)
        if shot_change is not None and not isinstance(shot_change, ShotChangeDetector):
            raise TypeError(
                'shot_change must be a ShotChangeDetector, a dict of its arguments or '
                f'None, got {type(shot_change).__name__}'
            )
        self.shot_change = shot_change
        if init_z_fn is not None and not callable(init_z_fn):
            raise TypeError(f'init_z_fn must be callable or None, got {type(init_z_fn).__name__}')
        self.init_z_fn = init_z_fn
        self.max_history = None if max_history is None else _check_int('max_history', max_history)

    @classmethod
    def from_cfg(cls, cfg: dict) -> StreamPolicy:
        """Build from a config dict with the constructor's keys, e.g.
        ``dict(budget=dict(type='FixedBudget', iters=4), init='zeros', shot_change=None)``."""
        if not isinstance(cfg, dict):
            raise TypeError(f'stream policy config must be a dict, got {type(cfg).__name__}')
        try:
            return cls(**cfg)
        except TypeError as e:
            raise TypeError(f'bad stream policy config {cfg!r}: {e}') from e

    def init_state(self, stream_id: str | int | None = None) -> StreamState:
        """A fresh, cold stream state."""
        return StreamState(stream_id=stream_id)

    # ------------------------------------------------------------------ planning
    def _reset_plan(
        self,
        video_id: str | int,
        frame_id: int,
        reason: str,
        thumb: Tensor | None,
        score: float | None,
    ) -> FramePlan:
        max_iter, tol = self.budget.plan()
        if reason == 'new_video' and self.init_z_fn is not None:
            z_init = self.init_z_fn(video_id)
            if z_init is not None:
                z_init = [t.detach() for t in as_state_list(z_init, 'init_z_fn(video_id)')]
                return FramePlan(
                    video_id,
                    frame_id,
                    True,
                    reason,
                    'provided',
                    z_init,
                    max_iter,
                    tol,
                    thumb=thumb,
                    input_score=score,
                )
        if self.init == 'reference':
            return FramePlan(
                video_id,
                frame_id,
                True,
                reason,
                'reference',
                None,
                self.reference_iters,
                self.reference_tol,
                thumb=thumb,
                input_score=score,
            )
        return FramePlan(
            video_id,
            frame_id,
            True,
            reason,
            'zeros',
            None,
            max_iter,
            tol,
            thumb=thumb,
            input_score=score,
        )

    def begin_frame(
        self, state: StreamState, frame: Tensor | None, video_id: str | int, frame_id: int
    ) -> FramePlan:
        """Plan the solve of a frame; the state is not modified.

        A new ``video_id`` (or a state that has seen no frame) restarts the stream; a ``frame_id``
        not greater than the previous one of the same video is an error.

        Args:
            state: The stream's state.
            frame: The frame, ``(1, C, H, W)``; only read by the input-difference shot signal
                (may be ``None`` when that signal is off).
            video_id: Id of the video of the frame.
            frame_id: Id (index) of the frame in its video; strictly increasing within a video.

        Returns:
            FramePlan: The plan of the first solve of the frame.
        """
        if not isinstance(state, StreamState):
            raise TypeError(f'state must be a StreamState, got {type(state).__name__}')
        video_id, frame_id = _check_ids(video_id, frame_id)
        # num_frames, not frame_index: a shot-change init frame may carry frame_id -1
        new_video = state.num_frames == 0 or state.stream_id != video_id
        if not new_video and frame_id <= state.frame_index:
            raise ValueError(
                f'frame_id {frame_id} of video {video_id!r} is not greater than the previous '
                f'frame_id {state.frame_index} of that video: frames of a video must arrive in '
                'increasing frame_id order (use a sequential, unshuffled sampler sorted by '
                'frame_id)'
            )
        det = self.shot_change
        thumb = None
        if det is not None and det.uses_input:
            if frame is None:
                raise ValueError(
                    'the input-difference shot signal (input_diff) needs the frame; '
                    'pass it to begin_frame or set input_diff=None'
                )
            thumb = det.thumbnail(frame)
        if new_video:
            return self._reset_plan(video_id, frame_id, 'new_video', thumb, None)
        if state.z is None:
            return self._reset_plan(video_id, frame_id, 'cold_state', thumb, None)
        max_iter, tol = self.budget.plan()
        if thumb is not None:
            changed, score = det.check_input(state.prev_thumb, thumb)
            if changed:
                reason = 'shot_change:input'
                if det.response == 'reset':
                    return self._reset_plan(video_id, frame_id, reason, thumb, score)
                if det.response == 'extra_iters':
                    max_iter += det.extra_iters
                return FramePlan(
                    video_id,
                    frame_id,
                    False,
                    reason,
                    'warm',
                    state.z,
                    max_iter,
                    tol,
                    thumb=thumb,
                    input_score=score,
                )
            return FramePlan(
                video_id,
                frame_id,
                False,
                None,
                'warm',
                state.z,
                max_iter,
                tol,
                thumb=thumb,
                input_score=score,
            )
        return FramePlan(video_id, frame_id, False, None, 'warm', state.z, max_iter, tol)

    def followup(
        self, state: StreamState, plan: FramePlan, z: Tensor | Sequence[Tensor], stats: SolverStats
    ) -> FramePlan | None:
        """Check the residual-jump shot signal after the first solve of a frame.

        Args:
            state: The stream's state (not yet updated with this frame).
            plan: The plan the solve ran with.
            z: The solve's result, ``S`` tensors ``(1, C_s, H_s, W_s)``.
            stats: The solve's statistics (batch size 1).

        Returns:
            FramePlan | None: A follow-up solve (``stage=1``) when a shot change was detected and
            the response is ``'extra_iters'`` (continue from ``z`` for ``extra_iters`` more
            iterations) or ``'reset'`` (restart the frame as the first frame of a video); else
            ``None``.
        """
        det = self.shot_change
        if (
            det is None
            or not det.uses_residual
            or plan.stage != 0
            or plan.reset
            or plan.reason is not None
            or det.response == 'none'
        ):
            return None
        rel0 = first_rel(stats)
        changed, ratio = det.check_residual(state.rel0_avg, state.rel0_count, rel0)
        if not changed:
            return None
        reason = 'shot_change:residual'
        spent = num_evaluations(stats)
        if det.response == 'reset':
            nxt = self._reset_plan(
                plan.video_id, plan.frame_id, reason, plan.thumb, plan.input_score
            )
        else:
            z_list = [t.detach() for t in as_state_list(z)]
            nxt = FramePlan(
                plan.video_id,
                plan.frame_id,
                False,
                reason,
                'warm',
                z_list,
                det.extra_iters,
                plan.tol,
                thumb=plan.thumb,
                input_score=plan.input_score,
            )
        nxt.stage, nxt.prior_iters, nxt.prior_first_rel = 1, spent, rel0
        nxt.residual_ratio = ratio
        return nxt

    def observe(
        self, stats: SolverStats | None, elapsed_ms: float, *, iters: int | None = None
    ) -> None:
        """Report one solve's cost to the budget (once per solver call, not per stream)."""
        self.budget.update(stats, elapsed_ms, iters=iters)

    def end_frame(
        self,
        state: StreamState,
        plan: FramePlan,
        z: Tensor | Sequence[Tensor],
        stats: SolverStats,
        elapsed_ms: float,
        *,
        update_budget: bool = True,
    ) -> StreamState:
        """Store a frame's result in the stream state (updated in place and returned).

        Args:
            state: The stream's state.
            plan: The plan of the last solve of the frame (the follow-up plan if there was one).
            z: The frame's fixed-point estimate, ``S`` tensors ``(1, C_s, H_s, W_s)``; stored
                detached.
            stats: Statistics of the last solve (batch size 1).
            elapsed_ms: Wall time of the frame's step(s) in ms.
            update_budget: Report the cost to the budget. Drivers that batch several streams in
                one solve pass ``False`` and call :meth:`observe` once per solve instead.

        Returns:
            StreamState: ``state``, updated.
        """
        if not isinstance(state, StreamState):
            raise TypeError(f'state must be a StreamState, got {type(state).__name__}')
        if not isinstance(plan, FramePlan):
            raise TypeError(
                f'plan must be the FramePlan of begin_frame, got ' f'{type(plan).__name__}'
            )
        if (
            not plan.reset
            and plan.reason != 'cold_state'
            and (state.stream_id != plan.video_id or plan.frame_id <= state.frame_index)
        ):
            raise ValueError(
                f'plan is for frame {plan.frame_id} of video {plan.video_id!r} but '
                f'the state is at frame {state.frame_index} of video '
                f'{state.stream_id!r}: pass each stream its own plan, once'
            )
        z_list = [t.detach() for t in as_state_list(z)]
        for s, t in enumerate(z_list):
            if t.shape[0] != 1:
                raise ValueError(
                    f'z[{s}] has batch size {t.shape[0]}; end_frame takes one '
                    'stream (cut batched results with split_state)'
                )
        if stats.rel_trace.shape[0] != 1:
            raise ValueError(
                f'stats has batch size {stats.rel_trace.shape[0]}; end_frame takes '
                'one stream (cut batched stats with split_stats)'
            )
        ms = _check_ms('elapsed_ms', elapsed_ms)
        spent = plan.prior_iters + num_evaluations(stats)
        rel0 = plan.prior_first_rel if plan.prior_first_rel is not None else first_rel(stats)
        reason, ratio = plan.reason, plan.residual_ratio
        det = self.shot_change
        # residual-jump signal on a plain warm frame: a change whose follow-up was not run (or
        # response 'none') is still recorded and restarts the running average
        if det is not None and reason is None and not plan.reset and plan.stage == 0:
            changed, ratio = det.check_residual(state.rel0_avg, state.rel0_count, rel0)
            if changed:
                reason = 'shot_change:residual'

        new_video = plan.reason == 'new_video'
        if new_video:
            state.stream_id = plan.video_id
            state.history = []
            state.num_frames = 0
        if plan.reset:
            state.since_reset = 0
        else:
            state.since_reset += 1
        state.num_frames += 1
        state.frame_index = plan.frame_id
        state.z = z_list
        state.stats = stats
        state.prev_thumb = plan.thumb
        if det is not None:
            if plan.reset or plan.init != 'warm' or reason is not None:
                state.rel0_avg, state.rel0_count = None, 0
            else:
                state.rel0_avg, state.rel0_count = det.update_average(
                    state.rel0_avg, state.rel0_count, rel0
                )
        record = dict(
            video_id=plan.video_id,
            frame_id=plan.frame_id,
            offset=state.num_frames - 1,
            since_reset=state.since_reset,
            iters=spent,
            nstep=plan.prior_iters + int(stats.nstep.reshape(-1)[0]),
            max_iter=plan.prior_iters + plan.max_iter,
            tol=plan.tol,
            first_rel=rel0,
            final_rel=final_rel(stats),
            ms=ms,
            reset=plan.reset,
            reason=reason,
            init=plan.init,
            diverged=bool(stats.diverged.reshape(-1)[0]),
            input_score=plan.input_score,
            residual_ratio=ratio,
        )
        state.history.append(record)
        if self.max_history is not None and len(state.history) > self.max_history:
            del state.history[: len(state.history) - self.max_history]
        if update_budget:
            self.budget.update(stats, ms, iters=spent)
        return state

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(budget={self.budget!r}, init={self.init!r}, '
            f'reference_iters={self.reference_iters}, reference_tol={self.reference_tol}, '
            f'shot_change={self.shot_change!r})'
        )
