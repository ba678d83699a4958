"""The driver of streaming inference (plain PyTorch).

:func:`run_stream` feeds frames to a model's ``stream_step`` (the :mod:`.protocol`) under a
:class:`StreamPolicy`, keeping one :class:`StreamState` per stream and batching the frames given
together into shared solver calls. The streaming test loop, the inferencer and the benchmarks
all drive streams through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .policy import FramePlan, StreamPolicy
from .protocol import StepFn, StepOutput, as_memory_list
from .state import FrameRecord, StreamState, split_state, split_stats, stack_states

if TYPE_CHECKING:
    pass

__all__ = ['StreamFrame', 'StreamRun', 'run_stream', 'iter_stream', 'group_plans', 'split_outputs']


@dataclass
class StreamFrame:
    """One frame of one stream.

    Attributes:
        x: The model input of the frame with a leading batch dimension of 1, ``(1, 3, H, W)``.
        video_id: Id of the video.
        frame_id: Id of the frame in the video (strictly increasing within a video).
        stream: Key of the state slot; defaults to ``video_id`` (one state per video). A slot key
            (e.g. a batch position) runs several videos one after the other through one state,
            which then restarts at every new video.
        payload: Anything the step needs besides ``x`` (e.g. the frame's data sample); handed to
            ``step_fn`` in the order of the batch.
        skip: Why the frame cannot be processed (e.g. it failed to load); the frame is then
            recorded as skipped (:meth:`StreamPolicy.skip_frame`) and not solved.
    """

    x: Tensor | None
    video_id: str | int
    frame_id: int
    stream: Hashable | None = None
    payload: Any = None
    skip: str | None = None

    @property
    def key(self) -> Hashable:
        """The state slot of the frame."""
        return self.video_id if self.stream is None else self.stream


@dataclass
class StreamRun:
    """Result of :func:`run_stream`.

    Attributes:
        outputs: The step function's output for each frame, in input order (batched outputs cut
            to batch size 1 by :func:`split_outputs`); ``None`` for a skipped frame.
        records: The :class:`FrameRecord` of each frame, in input order.
        states: The final state of each stream, keyed by slot.
    """

    outputs: list[Any] = field(default_factory=list)
    records: list[FrameRecord] = field(default_factory=list)
    states: dict[Hashable, StreamState] = field(default_factory=dict)


def _as_frame(item: Any) -> StreamFrame:
    if isinstance(item, StreamFrame):
        return item
    if isinstance(item, dict):
        try:
            return StreamFrame(**item)
        except TypeError as e:
            raise ValueError(
                'a frame dict needs the keys x, video_id, frame_id (and optionally stream, '
                f'payload, skip): {e}'
            ) from e
    if isinstance(item, tuple) and len(item) in (3, 4):
        return StreamFrame(item[2], item[0], item[1], *item[3:])
    raise TypeError(
        'a frame must be a StreamFrame, a dict(x=, video_id=, frame_id=) or a tuple '
        f'(video_id, frame_id, x[, stream]), got {type(item).__name__}'
    )


def _is_single(item: Any) -> bool:
    return isinstance(item, (StreamFrame, dict)) or (
        isinstance(item, tuple) and len(item) in (3, 4) and isinstance(item[2], Tensor)
    )


def split_outputs(out: Any, n: int) -> list[Any]:
    """Cut a batched step output into ``n`` per-stream outputs.

    Tensors with a leading dimension ``n`` are sliced to batch size 1; lists, tuples and dicts
    are cut element-wise; ``None`` is repeated. A list of exactly ``n`` items that are not
    tensors or containers (e.g. data samples) is split item by item, also for ``n == 1``;
    otherwise with ``n == 1`` the output is returned as is.
    """
    if (
        isinstance(out, list)
        and len(out) == n
        and not any(isinstance(o, (Tensor, list, tuple, dict)) for o in out)
    ):
        return list(out)
    if n == 1:
        return [out]
    if out is None:
        return [None] * n
    if isinstance(out, Tensor):
        if out.dim() == 0 or out.shape[0] != n:
            raise ValueError(
                f'cannot split an output of shape {tuple(out.shape)} into {n} streams: step '
                'outputs must have the batch dimension first'
            )
        return [out[b : b + 1] for b in range(n)]
    if isinstance(out, (list, tuple)):
        parts = [split_outputs(o, n) for o in out]
        if hasattr(out, '_fields'):
            return [type(out)(*(p[b] for p in parts)) for b in range(n)]
        return [type(out)(p[b] for p in parts) for b in range(n)]
    if isinstance(out, dict):
        parts = {k: split_outputs(v, n) for k, v in out.items()}
        return [{k: v[b] for k, v in parts.items()} for b in range(n)]
    raise TypeError(
        f'cannot split a step output of type {type(out).__name__} into {n} streams; return '
        'tensors (batch first), lists/tuples/dicts of them, a list of n items, or None'
    )


def group_plans(plans: Sequence[FramePlan]) -> list[list[int]]:
    """Group frame plans that can share one solver call (equal budget and frame shape), in
    first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(plans):
        groups.setdefault((p.budget, p.frame_shape), []).append(i)
    return list(groups.values())


def _solve(
    step_fn: StepFn,
    frames: list[StreamFrame],
    plans: list[FramePlan],
    zeros_like_fn: Callable[[Tensor], Sequence[Tensor]] | None,
    clock: Callable[[], float],
) -> tuple[list[Any], list[list[Tensor]], list[Any], list[Any], Any, float]:
    n = len(frames)
    x = frames[0].x if n == 1 else torch.cat([f.x for f in frames], dim=0)
    z0s = [p.z0 for p in plans]
    if all(z is None for z in z0s):
        z0 = None
    elif n == 1:  # one stream: its stored state as it is (validated when it was stored)
        z0 = list(z0s[0])
    else:
        fn = None if zeros_like_fn is None else (lambda j: zeros_like_fn(frames[j].x))
        z0 = stack_states(z0s, zeros_like_fn=fn)
    memory = [p.memory for p in plans]
    t0 = clock()
    result = step_fn(x, z0, memory, plans[0].budget, [f.payload for f in frames])
    ms = (clock() - t0) * 1000.0
    if not isinstance(result, tuple) or len(result) != 4:
        raise TypeError(
            'step_fn(inputs, z0, memory, budget, payloads) must return a StepOutput '
            f'(outputs, z, memory, stats), got {type(result).__name__}'
        )
    out, z, new_memory, stats = StepOutput(*result)
    new_memory = as_memory_list(new_memory, n, 'the memory returned by step_fn')
    # one stream: its state and statistics as they are (end_frame validates the state)
    zs = [z] if n == 1 else split_state(z, n)
    return split_outputs(out, n), zs, new_memory, split_stats(stats, n), stats, ms


def _check_batch(batch: list[StreamFrame]) -> None:
    keys = [f.key for f in batch]
    if len(set(keys)) != len(keys):
        raise ValueError(
            f'a time step holds two frames of the same stream ({keys}); give a stream one frame '
            'per step'
        )
    for f in batch:
        if f.skip is None and (not isinstance(f.x, Tensor) or f.x.dim() == 0 or f.x.shape[0] != 1):
            raise ValueError(
                f'frame {f.frame_id} of video {f.video_id!r}: x must be a tensor with a leading '
                'batch dimension of 1, e.g. (1, 3, H, W)'
            )


def _run_step(step_fn, batch, sts, policy, zeros_like_fn, clock) -> tuple[list, list]:
    """Solve one time step of frames (none skipped): plan, solve in groups, follow-ups, record."""
    plans = [policy.begin_frame(s, f.x, f.video_id, f.frame_id) for s, f in zip(sts, batch)]
    n = len(batch)
    outs: list[Any] = [None] * n
    zs: list[Any] = [None] * n
    mems: list[Any] = [None] * n
    stats: list[Any] = [None] * n
    ms = [0.0] * n
    todo = list(enumerate(plans))
    while todo:
        for group in group_plans([p for _, p in todo]):
            idx = [todo[g][0] for g in group]
            o, z, m, s, s_batch, t = _solve(
                step_fn,
                [batch[i] for i in idx],
                [todo[g][1] for g in group],
                zeros_like_fn,
                clock,
            )
            policy.observe(s_batch, t)
            for j, i in enumerate(idx):
                outs[i], zs[i], mems[i], stats[i] = o[j], z[j], m[j], s[j]
                ms[i] += t / len(idx)
        # residual-jump shot changes: at most one follow-up solve per frame
        todo = [(i, policy.followup(sts[i], p, zs[i], stats[i])) for i, p in todo]
        todo = [(i, p) for i, p in todo if p is not None]
        for i, p in todo:
            plans[i] = p
    records = [
        policy.end_frame(sts[i], plans[i], zs[i], mems[i], stats[i], ms[i], update_budget=False)
        for i in range(n)
    ]
    return outs, records


def run_stream(
    step_fn: StepFn,
    frames: Iterable[Any],
    policy: StreamPolicy,
    *,
    states: dict[Hashable, StreamState] | None = None,
    zeros_like_fn: Callable[[Tensor], Sequence[Tensor]] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> StreamRun:
    """Run streaming inference over frames.

    Each element of ``frames`` is one time step: one frame or a list of frames of distinct
    streams that are solved together (frames whose plans have equal budgets and shapes share a
    ``step_fn`` call). A frame is a :class:`StreamFrame`, a dict of its fields or a tuple
    ``(video_id, frame_id, x[, stream])``. Per frame the policy plans the solve, the step runs, a
    residual-detected shot change may add a follow-up solve, and the state is updated; a frame
    with ``skip`` set is only recorded. The budget is told the cost of every ``step_fn`` call.

    Batched streams give the same results as streams run alone (up to floating-point
    reassociation): the DEQ core freezes each sample at its own stopping step.

    Args:
        step_fn: A streaming model's ``stream_step`` (:class:`~.protocol.StreamingModel`), or
            any function of its signature: ``step_fn(inputs, z0, memory, budget, payloads)``
            with ``inputs`` ``(B, ...)``, ``z0`` ``S`` tensors ``(B, ...)`` or ``None`` (every
            frame from the zero state), ``memory`` the ``B`` streams' memories, ``budget`` the
            frames' :class:`~mmvideoeq.deq.Budget` and ``payloads`` the frames' payloads;
            returns a :class:`~.protocol.StepOutput`.
        frames: Time steps (see above).
        policy: The stream policy.
        states: States to continue from, keyed by stream slot (updated in place).
        zeros_like_fn: ``zeros_like_fn(x) -> list[Tensor]``, the zero state of a frame
            ``(1, ...)`` (a model's ``stream_zero_state``), used when cold and warm streams are
            batched; default: zeros shaped like a warm stream's state.
        clock: Time source in seconds (inject a fake one in tests).
    """
    run = StreamRun(states={} if states is None else states)
    for out, record in iter_stream(
        step_fn, frames, policy, states=run.states, zeros_like_fn=zeros_like_fn, clock=clock
    ):
        run.outputs.append(out)
        run.records.append(record)
    return run


def iter_stream(
    step_fn: StepFn,
    frames: Iterable[Any],
    policy: StreamPolicy,
    *,
    states: dict[Hashable, StreamState] | None = None,
    zeros_like_fn: Callable[[Tensor], Sequence[Tensor]] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[tuple[Any, FrameRecord]]:
    """:func:`run_stream` as a generator: yields ``(output, record)`` per frame, in input order.

    Nothing is accumulated, so a stream of any length (a live camera, days of frames) runs in
    constant memory as long as ``frames`` is a generator, the states are bounded (slot keys
    ``StreamFrame.stream`` reused, or states popped by the caller when a video ends) and the
    policy keeps a bounded ``max_history``. Arguments as :func:`run_stream`.
    """
    if not isinstance(policy, StreamPolicy):
        raise TypeError(f'policy must be a StreamPolicy, got {type(policy).__name__}')
    if not callable(step_fn):
        raise TypeError('step_fn must be callable as step_fn(inputs, z0, memory, budget, payloads)')
    states = {} if states is None else states
    for step in frames:
        batch = [_as_frame(step)] if _is_single(step) else [_as_frame(f) for f in step]
        if not batch:
            continue
        _check_batch(batch)
        sts = [states.setdefault(f.key, policy.init_state()) for f in batch]
        live = [i for i, f in enumerate(batch) if f.skip is None]
        outs: list[Any] = [None] * len(batch)
        records: list[Any] = [None] * len(batch)
        for i, f in enumerate(batch):
            if f.skip is not None:
                records[i] = policy.skip_frame(sts[i], f.video_id, f.frame_id, f.skip)
        if live:
            o, r = _run_step(
                step_fn,
                [batch[i] for i in live],
                [sts[i] for i in live],
                policy,
                zeros_like_fn,
                clock,
            )
            for j, i in enumerate(live):
                outs[i], records[i] = o[j], r[j]
        for f, out, rec in zip(batch, outs, records):
            rec.stream = f.key
            yield out, rec
