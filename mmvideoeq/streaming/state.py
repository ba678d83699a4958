"""Per-stream state of streaming DEQ inference and helpers to batch several streams (plain PyTorch).

A *stream* is one video seen frame by frame. Its state carries the fixed point of the last frame
from one frame to the next, which is what makes StreamDEQ work: the solver on frame ``t`` starts
from the estimate of frame ``t-1`` (Ertenli, *Streaming Multiscale Deep Equilibrium Models*, 2022,
Eq. 3.3-3.5).

A DEQ state ``z`` is a list of tensors ``[z_1, ..., z_S]`` (the multiscale state of MDEQ), each
``(B, C_s, H_s, W_s)``; a stream's own state always has batch dimension 1. :func:`stack_states`
concatenates several streams' states into one batch and :func:`split_state` cuts a batched state
back into per-stream states, so that streams can share one solver call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:  # the streaming layer only needs the fields of the DEQ-core contract
    from mmvideoeq.deq import SolverStats

__all__ = [
    'StreamState',
    'stack_states',
    'split_state',
    'split_stats',
    'as_state_list',
    'num_evaluations',
    'first_rel',
    'final_rel',
]


@dataclass
class StreamState:
    """State of one stream (one video), owned by whoever drives the stream.

    Attributes:
        stream_id: Id of the video this state belongs to; ``None`` before the first frame.
        frame_index: ``frame_id`` of the last processed frame, ``-1`` before the first frame.
        z: Fixed-point estimate of the last frame, detached: list of ``S`` tensors
            ``(1, C_s, H_s, W_s)``, or ``None`` (cold: the next solve starts from zeros).
        stats: Solver statistics of the last solve of the last frame (batch dimension 1).
        history: One record (dict) per processed frame of the current video, in order, with
            keys ``video_id``, ``frame_id``, ``offset`` (position in the video, 0-based),
            ``since_reset`` (frames since the last reset, 0 on the reset frame), ``iters`` (solver
            iterations spent on the frame, follow-up solves included; for a batched solve, the
            batch's evaluations), ``nstep``, ``max_iter``, ``tol``, ``first_rel`` (relative
            residual at the initial point), ``final_rel``, ``ms``, ``reset`` (bool), ``reason``,
            ``init``, ``diverged``, ``input_score``, ``residual_ratio``. ``reason`` is ``None``,
            ``'new_video'``, ``'cold_state'``, ``'shot_change:input'`` or
            ``'shot_change:residual'``; ``init`` is ``'warm'``, ``'zeros'``, ``'reference'`` or
            ``'provided'``.
        num_frames: Frames of the current video processed so far.
        since_reset: Frames processed since the last reset (0 on the reset frame, -1 before any).
        prev_thumb: Downsampled previous frame, kept for input-difference shot detection.
        rel0_avg: Running (EMA) average of the first-iteration relative residual over the warm
            frames since the last reset or detected shot change (residual-jump shot detection).
        rel0_count: Number of frames in ``rel0_avg``.
    """

    stream_id: str | int | None = None
    frame_index: int = -1
    z: list[Tensor] | None = None
    stats: SolverStats | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    num_frames: int = 0
    since_reset: int = -1
    prev_thumb: Tensor | None = None
    rel0_avg: float | None = None
    rel0_count: int = 0

    @property
    def is_cold(self) -> bool:
        """Whether the next solve of this stream starts from zeros (no stored fixed point)."""
        return self.z is None


def as_state_list(z: Tensor | Sequence[Tensor], name: str = 'z') -> list[Tensor]:
    """Normalise a state given as one tensor or a sequence of tensors into a list.

    Args:
        z: A tensor ``(B, ...)`` or a non-empty list/tuple of tensors ``(B, C_s, H_s, W_s)``.
        name: Name used in error messages.

    Returns:
        list[Tensor]: The state as a list.
    """
    if isinstance(z, Tensor):
        return [z]
    if not isinstance(z, (list, tuple)) or len(z) == 0:
        raise TypeError(
            f'{name} must be a tensor or a non-empty list of tensors, got '
            f'{type(z).__name__}{"" if z else " (empty)"}'
        )
    for s, t in enumerate(z):
        if not isinstance(t, Tensor):
            raise TypeError(f'{name}[{s}] must be a Tensor, got {type(t).__name__}')
        if t.dim() == 0:
            raise ValueError(
                f'{name}[{s}] is a 0-d tensor; every state tensor needs a leading '
                'batch dimension'
            )
    return list(z)


def _check_single(z: list[Tensor], name: str) -> None:
    for s, t in enumerate(z):
        if t.shape[0] != 1:
            raise ValueError(
                f'{name}[{s}] has batch size {t.shape[0]}; a per-stream state must '
                'have batch size 1 (use split_state to cut a batched state)'
            )


def stack_states(
    states: Sequence[StreamState | Sequence[Tensor] | Tensor | None],
    zeros_like_fn: Callable[[int], Sequence[Tensor]] | None = None,
) -> list[Tensor]:
    """Stack several streams' states into one batched state.

    Cold states (``None``, or a :class:`StreamState` whose ``z`` is ``None``) are replaced by
    zeros: by ``zeros_like_fn(i)`` when given (``i`` = position of the cold state in ``states``;
    e.g. ``lambda i: net.init_state(x[i:i + 1])``), otherwise by zeros shaped like the first warm
    state (valid when all streams have the same frame size).

    Args:
        states: ``B`` states, each a :class:`StreamState`, a list of ``S`` tensors
            ``(1, C_s, H_s, W_s)``, a single tensor ``(1, ...)``, or ``None``.
        zeros_like_fn: Returns the zero state (list of ``S`` tensors with batch size 1) for the
            cold state at a given position.

    Returns:
        list[Tensor]: ``S`` tensors ``(B, C_s, H_s, W_s)``; sample ``b`` is ``states[b]``.
    """
    if (
        isinstance(states, (StreamState, Tensor))
        or not isinstance(states, Sequence)
        or len(states) == 0
    ):
        raise ValueError(
            'stack_states needs a non-empty list of states (StreamState, list of '
            'tensors or None), one per stream'
        )
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
                    'zeros_like_fn (e.g. lambda i: net.init_state(x[i:i + 1])) or '
                    'pass z0=None to the solver'
                )
        filled.append(z)
    ref = filled[0]
    for i, z in enumerate(filled[1:], start=1):
        if len(z) != len(ref):
            raise ValueError(
                f'state {i} has {len(z)} tensors but state 0 has {len(ref)}; all '
                'streams batched together must come from the same model'
            )
        for s, (a, b) in enumerate(zip(z, ref, strict=True)):
            if a.shape[1:] != b.shape[1:]:
                raise ValueError(
                    f'state {i} tensor {s} has shape {tuple(a.shape)} but state 0 '
                    f'has {tuple(b.shape)}; only streams with equal frame sizes can '
                    'be batched together (group them by size)'
                )
    return [torch.cat([z[s] for z in filled], dim=0) for s in range(len(ref))]


def split_state(z: Tensor | Sequence[Tensor], n: int) -> list[list[Tensor]]:
    """Split a batched state into ``n`` per-stream states (inverse of :func:`stack_states`).

    Args:
        z: ``S`` tensors ``(n, C_s, H_s, W_s)`` (or one tensor ``(n, ...)``).
        n: Number of streams in the batch.

    Returns:
        list[list[Tensor]]: ``n`` states, each ``S`` tensors ``(1, C_s, H_s, W_s)`` (views of ``z``;
        :meth:`StreamPolicy.end_frame` detaches them before storing).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f'n must be a positive int (the number of streams), got {n!r}')
    zl = as_state_list(z)
    for s, t in enumerate(zl):
        if t.shape[0] != n:
            raise ValueError(
                f'z[{s}] has batch size {t.shape[0]} but n={n}; the batch dimension '
                'must hold one sample per stream'
            )
    return [[t[b : b + 1] for t in zl] for b in range(n)]


def split_stats(stats: SolverStats, n: int) -> list[SolverStats]:
    """Split batched solver statistics into ``n`` per-stream statistics.

    Every tensor field whose first dimension is ``n`` (``nstep``, ``rel_trace`` ...) is sliced to
    batch size 1; other fields (``method``) are shared.

    Args:
        stats: A ``SolverStats`` dataclass (see ``mmvideoeq.deq``) of batch size ``n``.
        n: Number of streams in the batch.

    Returns:
        list[SolverStats]: ``n`` statistics of batch size 1.
    """
    if not dataclasses.is_dataclass(stats) or isinstance(stats, type):
        raise TypeError(
            'stats must be a SolverStats dataclass instance, got ' f'{type(stats).__name__}'
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f'n must be a positive int (the number of streams), got {n!r}')
    if stats.rel_trace.shape[0] != n:
        raise ValueError(f'stats has batch size {stats.rel_trace.shape[0]} but n={n}')
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


def num_evaluations(stats: SolverStats) -> int:
    """Number of solver iterations (evaluations of ``f``) a solve spent: ``T`` of ``rel_trace``.

    Args:
        stats: Solver statistics with ``rel_trace`` of shape ``(B, T)``.

    Returns:
        int: ``T``.
    """
    return int(stats.rel_trace.shape[1])


def _single_float(v: Tensor, name: str) -> float:
    if v.numel() != 1:
        raise ValueError(
            f'{name}: expected statistics of one stream (batch size 1), got '
            f'{v.numel()} values; split batched stats with split_stats first'
        )
    return float(v.reshape(()))


def first_rel(stats: SolverStats) -> float:
    """Relative residual at the initial point of a one-stream solve (``rel_trace[0, 0]``).

    Args:
        stats: Solver statistics of batch size 1.

    Returns:
        float: The first relative residual.
    """
    return _single_float(stats.rel_trace[:, 0], 'first_rel')


def final_rel(stats: SolverStats) -> float:
    """Relative residual of the returned iterate of a one-stream solve.

    Uses ``stats.final_rel`` when the stats provide it, else the last entry of ``rel_trace``.

    Args:
        stats: Solver statistics of batch size 1.

    Returns:
        float: The final relative residual.
    """
    v = getattr(stats, 'final_rel', None)
    if not isinstance(v, Tensor):
        v = stats.rel_trace[:, -1]
    return _single_float(v, 'final_rel')
