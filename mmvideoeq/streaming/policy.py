"""The per-frame controller of streaming DEQ inference (plain PyTorch).

StreamDEQ (Ertenli 2022, Ch. 3) solves the fixed point of every frame with a few solver steps,
starting from the estimate of the previous frame:

* Eq. 3.5 (``init='zeros'``, the default): ``z_0^[0] = 0`` and ``z_t^[0] = z_{t-1}^[M]``;
* Eq. 3.4 (``init='reference'``): a full solve on the first frame (``z_0^*``), then
  ``z_t^[0] = z_{t-1}^[M]``.

:class:`StreamPolicy` is the single place that decides, per frame, whether the stream restarts
(new video, frame size change, gap in the frame ids, detected shot change, after a frame that
could not be loaded or whose solve diverged), where the solver starts, with which budget
(:mod:`.budgets`) and which model memory; see ``docs/streaming.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from numbers import Integral
from typing import TYPE_CHECKING, Any

from torch import Tensor

from mmvideoeq.deq.budget import FULL_SOLVE, Budget
from mmvideoeq.deq.utils import as_state_list
from mmvideoeq.utils.checks import check_int, check_ms, check_positive, check_tol

from .budgets import IterationBudget, build_budget
from .shot_change import ShotChangeDetector
from .state import FrameRecord, Reason, StreamState, state_norm

if TYPE_CHECKING:
    from mmvideoeq.deq import SolverStats

__all__ = ['FramePlan', 'StreamPolicy', 'INIT_MODES', 'SKIP_RESPONSES', 'GAP_RESPONSES']

INIT_MODES = ('zeros', 'reference')
SKIP_RESPONSES = ('continue', 'reset')
GAP_RESPONSES = ('reset', 'continue')


@dataclass
class FramePlan:
    """What to do with one frame of one stream, decided by :meth:`StreamPolicy.begin_frame`.

    Attributes:
        video_id, frame_id: The frame.
        reset: The solver restarts on this frame (no warm start from the previous frame).
        reason: A :class:`Reason`, or ``None`` for a plain warm step.
        init: Where the solver starts: ``'warm'``, ``'zeros'``, ``'reference'`` (full solve of
            ``reference_iters``) or ``'provided'`` (``init_z_fn``).
        z0: Initial solver state, ``S`` tensors ``(1, C_s, H_s, W_s)``, or ``None`` for the
            model's zero state.
        budget: The :class:`~mmvideoeq.deq.Budget` of this solve, handed to the model unchanged.
        memory: The model memory the step starts from (``None``: a new sequence).
        stage: 0 for the first solve of the frame, 1 for a follow-up solve.
        prior_iters, prior_evals: Steps and evaluations already spent by earlier solves.
        prior_first_rel: First relative residual of the first solve (follow-up plans).
        thumb: Downsampled frame (input-difference shot signal), or ``None``.
        frame_shape: Shape of the frame.
        input_score: Input-difference score of this frame, or ``None``.
        residual_ratio: Residual-jump ratio that triggered a follow-up, or ``None``.
    """

    video_id: str | int
    frame_id: int
    reset: bool
    reason: Reason | None
    init: str
    z0: list[Tensor] | None
    budget: Budget
    memory: Any = None
    stage: int = 0
    prior_iters: int = 0
    prior_evals: int = 0
    prior_first_rel: float | None = None
    thumb: Tensor | None = None
    frame_shape: tuple[int, ...] | None = None
    input_score: float | None = None
    residual_ratio: float | None = None


def _check_ids(video_id: Any, frame_id: Any) -> tuple[str | int, int]:
    if video_id is None:
        raise ValueError(
            'video_id is missing (None): every streamed frame needs a video id and a frame id '
            '(e.g. the video_id/frame_id metainfo of its data sample)'
        )
    if frame_id is None:
        raise ValueError(
            f'frame_id is missing (None) for a frame of video {video_id!r}: every streamed frame '
            'needs a frame id (its index in the video)'
        )
    if isinstance(video_id, bool) or not isinstance(video_id, (str, Integral)):
        raise TypeError(f'video_id must be a str or an int, got {type(video_id).__name__}')
    if isinstance(frame_id, bool) or not isinstance(frame_id, Integral):
        raise TypeError(f'frame_id must be an int, got {type(frame_id).__name__} ({frame_id!r})')
    return (video_id if isinstance(video_id, str) else int(video_id)), int(frame_id)


def _norm(z: list[Tensor], stats: SolverStats | None) -> float:
    """The state norm of a frame: the one the solver took when it returned ``z`` (a batch-1
    ``stats`` whose ``out_ptrs`` are ``z``'s storage), else :func:`~.state.state_norm`."""
    if (
        stats is not None
        and stats.out_norm is not None
        and stats.out_norm.numel() == 1
        and stats.out_ptrs == tuple(t.data_ptr() for t in z)
    ):
        return stats.out_norm.item()
    return state_norm(z)


class StreamPolicy:
    """Decides, frame by frame, how each stream is solved: init mode, budget, resets, memory.

    Per frame of a stream (:func:`~mmvideoeq.streaming.run_stream` does exactly this, batching
    several streams)::

        plan = policy.begin_frame(state, frame, video_id, frame_id)
        out = step(frame, plan.z0, [plan.memory], plan.budget, payloads)
        extra = policy.followup(state, plan, out.z, out.stats)    # residual-jump shot change
        if extra is not None:
            out = step(frame, extra.z0, [extra.memory], extra.budget, payloads)
            plan = extra
        record = policy.end_frame(state, plan, out.z, out.memory[0], out.stats, elapsed_ms)

    A frame that could not be loaded goes to :meth:`skip_frame` instead.

    Sequence boundaries are decided here and nowhere else: a new video, a frame of another size,
    a gap in ``frame_id`` (more than ``frame_step`` after the previous frame) and a shot change
    with ``response='reset'`` end a sequence: the solver state and the model's memory both
    restart. After a frame that diverged only the solver state restarts (``Reason.DIVERGED``);
    the memory is kept. ``warm=False`` (the cold baseline) starts every solve from the zero
    state but still carries the memory within a sequence.

    Args:
        budget: Budget of a normal frame: an :class:`IterationBudget` or its config dict.
        init: ``'zeros'`` (Eq. 3.5) or ``'reference'`` (Eq. 3.4, a full solve of
            ``reference_iters`` steps on the first frame).
        reference_iters: Steps ``N`` of the full solve of ``init='reference'``.
        reference_tol: Tolerance of that full solve (``0.0``: exactly ``reference_iters``).
        warm: Carry the solver state to the next frame (``False``: every frame from zeros, the
            cold baseline).
        shot_change: A :class:`ShotChangeDetector`, its keyword arguments, or ``None``.
        skip_response: After a frame that could not be loaded: ``'continue'`` (the next frame
            starts from the last good state) or ``'reset'`` (the next frame starts cold).
        gap_response: After a gap in ``frame_id``: ``'reset'`` (the default: a warm start never
            crosses a gap) or ``'continue'`` (treat the frames as adjacent).
        frame_step: The ``frame_id`` step of adjacent frames (e.g. 5 for a video sampled every
            fifth frame); a larger step is a gap.
        outlier_factor: A warm frame whose final relative residual exceeds this factor times the
            stream's running average is reported (``FrameRecord.residual_outlier``).
        norm_factor: A frame whose solver-state norm exceeds this factor times the average norm
            of the first ``norm_frames`` frames since the last reset is diverged; ``None`` turns
            the check off (the solver's own flag stays).
        norm_frames: Frames that make the norm reference.
        init_z_fn: Optional ``init_z_fn(video_id) -> list[Tensor] | None``: the first frame of a
            video starts from the returned state (e.g. a fixed point of another video, Sec.
            4.1.3) with the normal budget; ``None`` falls back to ``init``.
        max_history: Keep at most this many records in ``state.history`` (``None``: all; the
            default keeps a long-running stream's state bounded).
    """

    def __init__(
        self,
        *,
        budget: IterationBudget | dict,
        init: str = 'zeros',
        reference_iters: int = 26,
        reference_tol: float = 0.0,
        warm: bool = True,
        shot_change: ShotChangeDetector | dict | None = None,
        skip_response: str = 'continue',
        gap_response: str = 'reset',
        frame_step: int = 1,
        outlier_factor: float = 10.0,
        norm_factor: float | None = 10.0,
        norm_frames: int = 3,
        init_z_fn: Callable[[str | int], Sequence[Tensor] | None] | None = None,
        max_history: int | None = 1000,
    ) -> None:
        self.budget = build_budget(budget)
        if init not in INIT_MODES:
            raise ValueError(f'init must be one of {INIT_MODES}, got {init!r}')
        self.init = init
        self.reference = Budget(
            check_int('reference_iters', reference_iters),
            check_tol('reference_tol', reference_tol),
        )
        self.warm = bool(warm)
        if isinstance(shot_change, dict):
            shot_change = ShotChangeDetector(**shot_change)
        if shot_change is not None and not isinstance(shot_change, ShotChangeDetector):
            raise TypeError(
                'shot_change must be a ShotChangeDetector, a dict of its arguments or None, got '
                f'{type(shot_change).__name__}'
            )
        self.shot_change = shot_change
        if skip_response not in SKIP_RESPONSES:
            raise ValueError(
                f'skip_response must be one of {SKIP_RESPONSES}, got {skip_response!r}'
            )
        self.skip_response = skip_response
        if gap_response not in GAP_RESPONSES:
            raise ValueError(f'gap_response must be one of {GAP_RESPONSES}, got {gap_response!r}')
        self.gap_response = gap_response
        self.frame_step = check_int('frame_step', frame_step)
        self.outlier_factor = check_positive('outlier_factor', outlier_factor)
        self.norm_factor = check_positive('norm_factor', norm_factor, allow_none=True)
        self.norm_frames = check_int('norm_frames', norm_frames)
        if init_z_fn is not None and not callable(init_z_fn):
            raise TypeError(f'init_z_fn must be callable or None, got {type(init_z_fn).__name__}')
        self.init_z_fn = init_z_fn
        self.max_history = None if max_history is None else check_int('max_history', max_history, 0)

    @classmethod
    def from_cfg(cls, cfg: dict) -> StreamPolicy:
        """Build from a config dict with the constructor's keys."""
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
    def _plan(self, video_id, frame_id, reset, reason, init, z0, memory, budget=None, **kw):
        budget = self.budget.plan() if budget is None else budget
        return FramePlan(video_id, frame_id, reset, reason, init, z0, budget, memory, **kw)

    def _reset_plan(self, video_id, frame_id, reason: Reason, memory, **kw) -> FramePlan:
        if not self.warm:
            return self._plan(video_id, frame_id, True, reason, 'zeros', None, memory, **kw)
        if reason == Reason.NEW_VIDEO and self.init_z_fn is not None:
            z_init = self.init_z_fn(video_id)
            if z_init is not None:
                z_init = [t.detach() for t in as_state_list(z_init, 'init_z_fn(video_id)')]
                return self._plan(
                    video_id, frame_id, True, reason, 'provided', z_init, memory, **kw
                )
        if self.init == 'reference':
            return self._plan(
                video_id, frame_id, True, reason, 'reference', None, memory, self.reference, **kw
            )
        return self._plan(video_id, frame_id, True, reason, 'zeros', None, memory, **kw)

    def _boundary(self, state: StreamState, video_id, frame_id, frame_shape) -> Reason | None:
        """Why the frame starts a new sequence (solver state and memory restart), or None."""
        if state.num_frames == 0 or state.stream_id != video_id:
            return Reason.NEW_VIDEO
        if frame_id <= state.frame_index:
            raise ValueError(
                f'frame_id {frame_id} of video {video_id!r} is not greater than the previous '
                f'frame_id {state.frame_index} of that video: frames of a video must arrive in '
                'increasing frame_id order (use a sequential, unshuffled sampler sorted by '
                'frame_id)'
            )
        if frame_shape is not None and state.frame_shape not in (None, frame_shape):
            return Reason.SIZE_CHANGE
        if self.gap_response == 'reset' and frame_id - state.frame_index > self.frame_step:
            return Reason.FRAME_GAP
        return None

    def begin_frame(
        self, state: StreamState, frame: Tensor | None, video_id: str | int, frame_id: int
    ) -> FramePlan:
        """Plan the solve of a frame; the state is not modified.

        A new ``video_id`` (or a state that has seen no frame), a frame of another size than the
        last and a gap in ``frame_id`` restart the stream; a ``frame_id`` not greater than the
        previous one of the same video is an error.

        Args:
            state: The stream's state.
            frame: The frame, ``(1, C, H, W)`` (may be ``None`` when neither the input shot
                signal nor the size check is wanted).
            video_id: Id of the video of the frame.
            frame_id: Id of the frame in its video; strictly increasing within a video.
        """
        if not isinstance(state, StreamState):
            raise TypeError(f'state must be a StreamState, got {type(state).__name__}')
        video_id, frame_id = _check_ids(video_id, frame_id)
        kw: dict[str, Any] = dict(frame_shape=None if frame is None else tuple(frame.shape))
        boundary = self._boundary(state, video_id, frame_id, kw['frame_shape'])
        det = self.shot_change
        if det is not None and det.uses_input:
            if frame is None:
                raise ValueError(
                    'the input-difference shot signal (input_diff) needs the frame; pass it to '
                    'begin_frame or set input_diff=None'
                )
            kw['thumb'] = det.thumbnail(frame)
        if boundary is not None:
            return self._reset_plan(video_id, frame_id, boundary, None, **kw)
        memory = state.memory
        if not self.warm:
            return self._plan(video_id, frame_id, False, None, 'zeros', None, memory, **kw)
        if state.z is None:
            reason = state.pending_reason or Reason.COLD_STATE
            if reason == Reason.AFTER_SKIP and self.skip_response == 'reset':
                memory = None
            return self._reset_plan(video_id, frame_id, reason, memory, **kw)
        budget = self.budget.plan()
        if 'thumb' in kw:
            changed, kw['input_score'] = det.check_input(state.prev_thumb, kw['thumb'])
            if changed:
                if det.response == 'reset':
                    return self._reset_plan(video_id, frame_id, Reason.SHOT_INPUT, None, **kw)
                if det.response == 'extra_iters' and not budget.is_full:
                    budget = replace(budget, max_iter=budget.max_iter + det.extra_iters)
                return self._plan(
                    video_id, frame_id, False, Reason.SHOT_INPUT, 'warm', state.z, memory, budget,
                    **kw,
                )  # fmt: skip
        return self._plan(video_id, frame_id, False, None, 'warm', state.z, memory, budget, **kw)

    def followup(
        self,
        state: StreamState,
        plan: FramePlan,
        z: Tensor | Sequence[Tensor],
        stats: SolverStats | None,
    ) -> FramePlan | None:
        """Check the residual-jump shot signal after the first solve of a frame.

        Returns:
            FramePlan | None: A follow-up solve (``stage=1``) when a shot change was detected and
            the response is ``'extra_iters'`` (continue from ``z`` for ``extra_iters`` more
            steps, from the same memory) or ``'reset'`` (restart the frame as the first frame
            of a sequence); else None.
        """
        det = self.shot_change
        if (
            det is None
            or stats is None
            or not det.uses_residual
            or plan.stage != 0
            or plan.reset
            or plan.reason is not None
            or det.response == 'none'
        ):
            return None
        rel0 = stats.single()[0]
        changed, ratio = det.check_residual(state.rel0_avg, state.rel0_count, rel0)
        if not changed:
            return None
        kw = dict(thumb=plan.thumb, frame_shape=plan.frame_shape, input_score=plan.input_score)
        reason = Reason.SHOT_RESIDUAL
        if det.response == 'reset':
            nxt = self._reset_plan(plan.video_id, plan.frame_id, reason, None, **kw)
        else:
            z_list = [t.detach() for t in as_state_list(z, 'z')]
            budget = Budget(det.extra_iters, plan.budget.tol, plan.budget.select)
            nxt = self._plan(
                plan.video_id, plan.frame_id, False, reason, 'warm', z_list, plan.memory, budget,
                **kw,
            )  # fmt: skip
        nxt.stage, nxt.prior_first_rel, nxt.residual_ratio = 1, rel0, ratio
        nxt.prior_iters = int(stats.nstep.reshape(-1)[0])
        nxt.prior_evals = int(stats.n_eval)
        return nxt

    def observe(self, stats: SolverStats | None, elapsed_ms: float):
        """Report one solve's cost to the budget (once per solver call, not per stream)."""
        self.budget.update(stats, elapsed_ms, iters=0 if stats is None else None)

    # ------------------------------------------------------------------ bookkeeping
    def _check_plan(self, state: StreamState, plan: FramePlan) -> None:
        if not isinstance(state, StreamState):
            raise TypeError(f'state must be a StreamState, got {type(state).__name__}')
        if not isinstance(plan, FramePlan):
            raise TypeError(f'plan must be the FramePlan of begin_frame, got {type(plan).__name__}')
        if plan.reset or plan.reason in (Reason.COLD_STATE, Reason.AFTER_SKIP, Reason.DIVERGED):
            return
        if state.stream_id != plan.video_id or plan.frame_id <= state.frame_index:
            raise ValueError(
                f'plan is for frame {plan.frame_id} of video {plan.video_id!r} but the state is '
                f'at frame {state.frame_index} of video {state.stream_id!r}: pass each stream '
                'its own plan, once'
            )

    def _advance(self, state: StreamState, plan: FramePlan) -> None:
        """Move the state's position to the plan's frame (a new video restarts the count)."""
        if state.num_frames == 0 or state.stream_id != plan.video_id:
            state.stream_id, state.num_frames = plan.video_id, 0
            state.history.clear()
        if plan.reset:
            state.norm_ref, state.norm_count = None, 0
        state.since_reset = 0 if plan.reset else state.since_reset + 1
        state.num_frames += 1
        state.frame_index = plan.frame_id
        state.pending_reason = None

    def _store(self, state: StreamState, record: FrameRecord) -> FrameRecord:
        state.history.append(record)
        if self.max_history is not None:
            while len(state.history) > self.max_history:
                state.history.popleft()
        return record

    def _residual_signals(
        self, state: StreamState, plan: FramePlan, rel0: float, final: float
    ) -> tuple[Reason | None, float | None, bool]:
        """Shot-change reason, residual ratio and outlier flag of a solved frame; updates the
        running averages of the state."""
        reason, ratio = plan.reason, plan.residual_ratio
        det = self.shot_change
        if det is not None and reason is None and not plan.reset and plan.stage == 0:
            changed, ratio = det.check_residual(state.rel0_avg, state.rel0_count, rel0)
            if changed:  # recorded even when no follow-up ran (response 'none')
                reason = Reason.SHOT_RESIDUAL
        plain_warm = not plan.reset and plan.init == 'warm' and reason is None
        if det is not None:
            if plain_warm:
                state.rel0_avg, state.rel0_count = det.update_average(
                    state.rel0_avg, state.rel0_count, rel0
                )
            else:
                state.rel0_avg, state.rel0_count = None, 0
        avg = state.final_avg
        outlier = plain_warm and avg is not None and final > self.outlier_factor * avg
        if plain_warm and not outlier and final == final:  # NaN never enters the average
            n = state.final_count
            state.final_avg = (
                final if avg is None else (avg * min(n, 19) + final) / (min(n, 19) + 1)
            )
            state.final_count = n + 1
        return reason, ratio, outlier

    def _norm_diverged(self, state: StreamState, norm: float) -> bool:
        """Whether the state norm left the stream's range; updates the norm reference.

        The reference is the average norm of the first ``norm_frames`` frames since the last
        reset (after :meth:`_advance`). A non-finite norm always counts as diverged.
        """
        if norm != norm:  # no solver state
            return False
        if not math.isfinite(norm):
            return True
        if self.norm_factor is None or not self.warm:
            return False
        ref = state.norm_ref
        if ref is not None and ref > 0 and norm > self.norm_factor * ref:
            return True
        if state.norm_count < self.norm_frames:
            n = state.norm_count
            state.norm_ref = norm if ref is None else (ref * n + norm) / (n + 1)
            state.norm_count = n + 1
        return False

    def end_frame(
        self,
        state: StreamState,
        plan: FramePlan,
        z: Tensor | Sequence[Tensor],
        memory: Any,
        stats: SolverStats | None,
        elapsed_ms: float,
        *,
        update_budget: bool = True,
    ) -> FrameRecord:
        """Store a frame's result in the stream state (updated in place) and return its record.

        Args:
            state: The stream's state.
            plan: The plan of the last solve of the frame (the follow-up plan if there was one).
            z: The frame's solver state, ``S`` tensors ``(1, C_s, H_s, W_s)`` (``[]`` without a
                solver); stored detached.
            memory: The model's memory after the frame (stored as it is).
            stats: Statistics of the last solve (batch size 1), or ``None`` without a solver.
            elapsed_ms: Wall time of the frame's solve(s) in ms.
            update_budget: Report the cost to the budget. Drivers that batch several streams in
                one solve pass ``False`` and call :meth:`observe` once per solve instead.
        """
        self._check_plan(state, plan)
        z_list = [] if isinstance(z, (list, tuple)) and not z else as_state_list(z, 'z')
        z_list = [t.detach() for t in z_list]
        for s, t in enumerate(z_list):
            if t.shape[0] != 1:
                raise ValueError(
                    f'z[{s}] has batch size {t.shape[0]}; end_frame takes one stream (cut batched '
                    'results with split_state)'
                )
        ms = check_ms('elapsed_ms', elapsed_ms)
        nan = float('nan')
        first, final, nstep, diverged = (nan, nan, 0, False) if stats is None else stats.single()
        rel0 = first if plan.prior_first_rel is None else plan.prior_first_rel
        reason, ratio, outlier = self._residual_signals(state, plan, rel0, final)
        self._advance(state, plan)
        norm = _norm(z_list, stats)
        diverged = self._norm_diverged(state, norm) or diverged
        keep = self.warm and not diverged
        state.z, state.stats = (z_list if keep else None), stats
        if self.warm and diverged:
            state.pending_reason = Reason.DIVERGED
        state.memory = memory
        state.frame_shape, state.prev_thumb = plan.frame_shape, plan.thumb
        budget = plan.budget
        record = FrameRecord(
            video_id=plan.video_id,
            frame_id=plan.frame_id,
            offset=state.num_frames - 1,
            since_reset=state.since_reset,
            iters=plan.prior_iters + nstep,
            n_eval=plan.prior_evals + (0 if stats is None else int(stats.n_eval)),
            nstep=nstep,
            max_iter=None if budget.is_full else plan.prior_iters + budget.max_iter,
            tol=budget.tol,
            select=budget.select,
            solver=None if stats is None else stats.method,
            first_rel=rel0,
            final_rel=final,
            ms=ms,
            reset=plan.reset,
            reason=reason,
            init=plan.init,
            diverged=diverged,
            state_norm=norm,
            residual_outlier=bool(outlier),
            input_score=plan.input_score,
            residual_ratio=ratio,
        )
        if update_budget:
            self.observe(stats, ms)
        return self._store(state, record)

    def skip_frame(
        self, state: StreamState, video_id: str | int, frame_id: int, reason: str
    ) -> FrameRecord:
        """Record a frame that could not be processed (e.g. it failed to load or decode).

        The stream keeps its position; with ``skip_response='reset'`` its solver state is
        dropped (and its memory with the next frame), so the next frame starts cold
        (``Reason.AFTER_SKIP``), else the next frame starts from the last good state.
        """
        video_id, frame_id = _check_ids(video_id, frame_id)
        new_video = state.num_frames == 0 or state.stream_id != video_id
        plan = FramePlan(video_id, frame_id, new_video, None, 'none', None, FULL_SOLVE)
        self._advance(state, plan)
        if new_video:
            state.memory = None
        if new_video or self.skip_response == 'reset':
            state.z, state.stats, state.prev_thumb = None, None, None
            state.pending_reason = Reason.AFTER_SKIP
        record = FrameRecord(
            video_id=video_id,
            frame_id=frame_id,
            offset=state.num_frames - 1,
            since_reset=state.since_reset,
            reset=new_video,
            init='none',
            skipped=str(reason),
        )
        return self._store(state, record)

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(budget={self.budget!r}, init={self.init!r}, warm={self.warm}, '
            f'reference={self.reference}, shot_change={self.shot_change!r}, '
            f'skip_response={self.skip_response!r}, gap_response={self.gap_response!r})'
        )
