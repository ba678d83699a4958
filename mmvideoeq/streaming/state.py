"""Per-stream state of streaming inference, per-frame records, and batching helpers.

A *stream* is one video seen frame by frame. Its state has two parts (``docs/architecture.md``):

* ``z``, the solver state carried from the last frame to the next, which is what makes StreamDEQ
  work: the solver on frame ``t`` starts from ``z_{t-1}^[M]`` (Ertenli, *Streaming Multiscale Deep
  Equilibrium Models*, 2022, Eq. 3.3-3.5). It is a list of tensors ``[z_1, ..., z_S]`` (MDEQ's
  multiscale state, an RFP pyramid), each ``(B, C_s, H_s, W_s)``, ``[]`` for a model without a
  solver; a stream's own state has batch size 1. :func:`stack_states` concatenates several
  streams' states into one batch and :func:`split_state` cuts it back, so that streams can share
  one solver call.
* ``memory``, an object of the model's own type (a tracker's ids and masks), carried as it is.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from mmvideoeq.deq.solvers.common import image_norm
from mmvideoeq.deq.utils import as_state_list

if TYPE_CHECKING:  # the streaming layer only needs the fields of the DEQ-core contract
    from mmvideoeq.deq import SolverStats

__all__ = [
    'Reason',
    'FrameRecord',
    'StreamState',
    'stack_states',
    'split_state',
    'split_stats',
    'state_norm',
]


class Reason(str, enum.Enum):
    """Why a frame's solve deviates from a plain warm step (``FrameRecord.reason``)."""

    NEW_VIDEO = 'new_video'
    COLD_STATE = 'cold_state'
    SIZE_CHANGE = 'size_change'
    AFTER_SKIP = 'after_skip'
    SHOT_INPUT = 'shot_change:input'
    SHOT_RESIDUAL = 'shot_change:residual'
    FRAME_GAP = 'frame_gap'
    DIVERGED = 'after_divergence'

    def __str__(self) -> str:
        return self.value


@dataclass
class FrameRecord:
    """What happened to one frame of a stream.

    Attributes:
        video_id, frame_id: The frame.
        offset: Position of the frame in its video (0-based, frames the stream processed).
        since_reset: Frames since the stream's last reset (0 on the reset frame).
        iters: Solver steps spent on the frame (follow-up solves included).
        n_eval: Evaluations of ``f`` the frame's solve(s) cost (for a batched solve, the batch's).
        nstep: Steps the frame's own sample ran (per stream, even in a batched solve).
        max_iter: The frame's step budget, follow-ups included (``None``: the model's full
            solve).
        tol: The budget's tolerance (``0.0``: exactly ``max_iter`` steps).
        select: The iterate the budget returns, ``'last'`` or ``'lowest'``.
        solver: The solver's name (``SolverStats.method``), ``None`` for a model without one.
        first_rel: Relative residual at the initial state (the residual shot signal).
        final_rel: Relative residual of the iterate describing the carried state.
        ms: Wall time of the frame's solve(s) in ms (a batched solve's time over its frames).
        reset: The stream restarted on this frame.
        reason: A :class:`Reason`, or ``None`` for a plain warm step.
        init: ``'warm'``, ``'zeros'``, ``'reference'`` or ``'provided'``.
        diverged: The frame's solve diverged: the solver flagged it (non-finite or exploding
            residual), or its state norm left the stream's usual range (the policy then restarts
            the stream cold on the next frame, ``Reason.DIVERGED``).
        state_norm: Norm of the frame's solver state (``nan`` without one).
        residual_outlier: ``final_rel`` was far above the stream's usual level.
        skipped: Why the frame was not solved (it failed to load), else ``None``.
        input_score: Input-difference shot score, or ``None``.
        residual_ratio: Residual-jump ratio that triggered a follow-up, or ``None``.
        stream: The state slot of the frame (set by :func:`run_stream`).
    """

    video_id: str | int
    frame_id: int
    offset: int
    since_reset: int
    iters: int = 0
    n_eval: int = 0
    nstep: int = 0
    max_iter: int | None = None
    tol: float = 0.0
    select: str = 'last'
    solver: str | None = None
    first_rel: float = float('nan')
    final_rel: float = float('nan')
    ms: float = 0.0
    reset: bool = False
    reason: Reason | None = None
    init: str = 'warm'
    diverged: bool = False
    state_norm: float = float('nan')
    residual_outlier: bool = False
    skipped: str | None = None
    input_score: float | None = None
    residual_ratio: float | None = None
    stream: Any = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``reason`` as its string)."""
        out = dataclasses.asdict(self)
        out['reason'] = None if self.reason is None else str(self.reason)
        return out


@dataclass
class StreamState:
    """State of one stream (one video), owned by whoever drives the stream.

    Attributes:
        stream_id: Id of the video this state belongs to; ``None`` before the first frame.
        frame_index: ``frame_id`` of the last processed frame, ``-1`` before the first frame.
        z: Solver state of the last frame, detached: list of ``S`` tensors
            ``(1, C_s, H_s, W_s)`` (``[]`` for a model without a solver), or ``None`` (cold: the
            next solve starts from the model's zero state).
        memory: The model's memory of this stream (its own type; ``None``: nothing yet). Carried
            in warm and cold settings alike; dropped when a sequence ends (new video, size
            change, frame gap, a shot-change reset).
        stats: Solver statistics of the last solve of the last frame (batch size 1).
        history: The :class:`FrameRecord` of recent frames of the current video, oldest first
            (bounded by the policy's ``max_history``).
        num_frames: Frames of the current video processed so far (skipped ones included).
        since_reset: Frames processed since the last reset (0 on the reset frame, -1 before any).
        frame_shape: Shape of the last solved frame (a change resets the stream).
        prev_thumb: Downsampled previous frame (input-difference shot detection).
        rel0_avg, rel0_count: Running average of the initial relative residual over the warm
            frames since the last reset or shot change (residual-jump shot detection).
        final_avg, final_count: Running average of the final relative residual of warm frames
            (residual outlier detection).
        norm_ref, norm_count: Average solver-state norm of the first frames since the last
            reset (the divergence check's reference).
        pending_reason: Why the next frame restarts, when the state was dropped (a frame that
            could not be loaded).
    """

    stream_id: str | int | None = None
    frame_index: int = -1
    z: list[Tensor] | None = None
    memory: Any = None
    stats: SolverStats | None = None
    history: deque = field(default_factory=deque)
    num_frames: int = 0
    since_reset: int = -1
    frame_shape: tuple[int, ...] | None = None
    prev_thumb: Tensor | None = None
    rel0_avg: float | None = None
    rel0_count: int = 0
    final_avg: float | None = None
    final_count: int = 0
    norm_ref: float | None = None
    norm_count: int = 0
    pending_reason: Reason | None = None

    @property
    def is_cold(self) -> bool:
        """Whether the next solve of this stream starts from zeros (no stored fixed point)."""
        return self.z is None


def state_norm(z: Sequence[Tensor] | None) -> float:
    """The Euclidean norm of a stream's state (``S`` tensors of batch size 1) over all its
    tensors (``nan`` for an empty or no state).

    Accumulated in float32 (float64 when a tensor is float64), so half-precision states do not
    overflow; a float32 norm beyond float32's range (about 1.8e19) is ``inf``, which the
    divergence check of :class:`~.policy.StreamPolicy` treats as diverged. The solvers' own
    per-sample norm (:func:`mmvideoeq.deq.solvers.common.image_norm`), one host synchronisation.
    """
    if not z:
        return float('nan')
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in z) else torch.float32
    return float(image_norm(z, dtype)[0])


def _check_single(z: list[Tensor], name: str) -> None:
    for s, t in enumerate(z):
        if t.shape[0] != 1:
            raise ValueError(
                f'{name}[{s}] has batch size {t.shape[0]}; a per-stream state must have batch '
                'size 1 (use split_state to cut a batched state)'
            )


def stack_states(
    states: Sequence[StreamState | Sequence[Tensor] | Tensor | None],
    zeros_like_fn: Callable[[int], Sequence[Tensor]] | None = None,
) -> list[Tensor]:
    """Stack several streams' states into one batched state.

    Cold states (``None``, or a :class:`StreamState` whose ``z`` is ``None``) are replaced by
    zeros: by ``zeros_like_fn(i)`` when given (``i`` = position of the cold state), otherwise by
    zeros shaped like the first warm state (valid when all streams have the same frame size).

    Args:
        states: ``B`` states, each a :class:`StreamState`, a list of ``S`` tensors
            ``(1, C_s, H_s, W_s)``, a single tensor ``(1, ...)``, or ``None``.
        zeros_like_fn: Returns the zero state (``S`` tensors of batch 1) for a cold position.

    Returns:
        list[Tensor]: ``S`` tensors ``(B, C_s, H_s, W_s)``; sample ``b`` is ``states[b]``.
    """
    if isinstance(states, (StreamState, Tensor)) or not isinstance(states, Sequence) or not states:
        raise ValueError(
            'stack_states needs a non-empty list of states (StreamState, list of tensors or '
            'None), one per stream'
        )
    raw = [st.z if isinstance(st, StreamState) else st for st in states]
    if any(isinstance(z, (list, tuple)) and not z for z in raw):
        if any(z is not None and len(z) for z in raw):
            raise ValueError('empty and non-empty states cannot be batched together')
        return []  # a model without a solver state
    zs: list[list[Tensor] | None] = []
    for i, st in enumerate(states):
        z = st.z if isinstance(st, StreamState) else st
        if z is not None:
            z = as_state_list(z, f'states[{i}]')
            _check_single(z, f'states[{i}]')
        zs.append(z)
    template = next((z for z in zs if z is not None), None)
    filled: list[list[Tensor]] = []
    for i, z in enumerate(zs):
        if z is None:
            if zeros_like_fn is not None:
                z = as_state_list(zeros_like_fn(i), f'zeros_like_fn({i})')
                _check_single(z, f'zeros_like_fn({i})')
            elif template is not None:
                z = [torch.zeros_like(t) for t in template]
            else:
                raise ValueError(
                    'all states are cold (None) and no zeros_like_fn was given: pass '
                    'zeros_like_fn (e.g. lambda i: net.init_state(x[i:i + 1])) or pass z0=None '
                    'to the solver'
                )
        filled.append(z)
    ref = filled[0]
    for i, z in enumerate(filled[1:], start=1):
        if len(z) != len(ref):
            raise ValueError(
                f'state {i} has {len(z)} tensors but state 0 has {len(ref)}; all streams batched '
                'together must come from the same model'
            )
        for s, (a, b) in enumerate(zip(z, ref, strict=True)):
            if a.shape[1:] != b.shape[1:]:
                raise ValueError(
                    f'state {i} tensor {s} has shape {tuple(a.shape)} but state 0 has '
                    f'{tuple(b.shape)}; only streams with equal frame sizes can be batched '
                    'together (group them by size)'
                )
    return [torch.cat([z[s] for z in filled], dim=0) for s in range(len(ref))]


def split_state(z: Tensor | Sequence[Tensor], n: int) -> list[list[Tensor]]:
    """Split a batched state into ``n`` per-stream states (views; inverse of
    :func:`stack_states`). An empty state (a model without a solver) gives ``n`` empty ones."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f'n must be a positive int (the number of streams), got {n!r}')
    if isinstance(z, (list, tuple)) and not z:
        return [[] for _ in range(n)]
    zl = as_state_list(z, 'z')
    for s, t in enumerate(zl):
        if t.shape[0] != n:
            raise ValueError(
                f'z[{s}] has batch size {t.shape[0]} but n={n}; the batch dimension must hold '
                'one sample per stream'
            )
    if n == 1:  # one stream: its state as it is
        return [list(zl)]
    return [[t[b : b + 1] for t in zl] for b in range(n)]


def split_stats(stats: SolverStats | None, n: int) -> list[SolverStats | None]:
    """Split batched solver statistics into ``n`` per-stream statistics.

    Every tensor field whose first dimension is ``n`` is sliced to batch size 1; other fields
    (``method``, ``n_eval``) are shared. ``None`` (no solver ran) gives ``n`` times ``None``.
    """
    if stats is None:
        return [None] * n
    if not dataclasses.is_dataclass(stats) or isinstance(stats, type):
        raise TypeError(
            f'stats must be a SolverStats dataclass instance, got {type(stats).__name__}'
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f'n must be a positive int (the number of streams), got {n!r}')
    if stats.rel_trace.shape[0] != n:
        raise ValueError(f'stats has batch size {stats.rel_trace.shape[0]} but n={n}')
    if n == 1:  # one stream: its statistics as they are
        return [stats]
    out = []
    for b in range(n):
        kw = {}
        for f in dataclasses.fields(stats):
            v = getattr(stats, f.name)
            if isinstance(v, Tensor) and v.dim() >= 1 and v.shape[0] == n:
                v = v[b : b + 1]
            kw[f.name] = v
        out.append(dataclasses.replace(stats, **kw))
    return out
