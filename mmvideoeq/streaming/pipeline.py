"""Depth-parallel (pipelined) streaming inference (plain PyTorch).

A streamed frame goes through three parts: the per-frame *stem* (pre-processing, stem, input
injection), the *solve* (the frame's M solver steps, started from the state the previous frame
left) and the per-frame *heads* (neck, heads, post-processing). Run one frame after the other,
a frame costs ``stem + solve + heads``. Run as a pipeline (the depth-parallel video models of
Carreira et al., "Massively Parallel Video Networks", ECCV 2018, presented in DeepMind's "Deep
video models" lecture), the parts run concurrently on consecutive frames: while frame ``t`` is in
its solve, frame ``t + 1`` is in its stem and frame ``t - 1`` in its heads. StreamDEQ is naturally
pipelined: only the solve carries state, and it hands it from frame ``t`` to frame ``t + 1``.

Semantics (what :class:`PipelinedStream` outputs): the solve stage is one worker that takes the
frames in order and runs them through :func:`~mmvideoeq.streaming.run_stream` with the given
policy and stream states, so frame ``t`` starts from exactly the state frame ``t - 1`` left and
the policy decides resets as it does for the sequential stream. Stem and heads depend on their
frame alone. A pipeline therefore gives **exactly the sequential stream's predictions and
records**, frame for frame (and bit for bit when every stage runs the same kernels with the same
number of intra-op threads as the sequential run); only *when* each output is ready changes.
Throughput is bounded by the slowest stage: at most ``sum(stage times) / max(stage time)`` times
the sequential one (the *stage bound*); a frame's latency stays at least the sum of its stages.

Execution (``backend='thread'``, the default): one thread per stage, connected by bounded
queues. PyTorch releases the GIL inside its
operators, so stages overlap as far as the Python between operators allows. On CPU each stage
thread sets its own number of intra-op threads (``torch.set_num_threads`` in that thread: with
PyTorch's OpenMP backend the OpenMP team size is per thread; the call also becomes the default of
threads started later, so the pipeline restores the caller's value when it ends). On GPU each
stage runs on its own CUDA stream and synchronises it before handing a frame on (the frames, or
the ``preprocess`` piece, put the inputs on the device; this path has not been run in this
project, which has no GPU).

``backend='process'`` (CPU, Linux) runs every stage in a process of its own instead
(:mod:`.pipeline_process`): the stages then share no interpreter lock, which the thread stages of
a model of many small operators do (measured in docs/results.md, "Pipelined streaming").

:class:`~.realtime.PipelineLatency` is the pipeline's timing for the real-time simulation
(:mod:`.realtime`): a :class:`~.realtime.LatencyModel` that accepts the next frame before the
current output is ready.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from mmvideoeq.deq.budget import Budget

from .pipeline_process import SYSTEM_CLOCKS, run_in_processes
from .policy import StreamPolicy
from .protocol import StepOutput
from .runner import StreamFrame, _as_frame, _is_single, run_stream, split_outputs
from .state import FrameRecord, StreamState

if TYPE_CHECKING:
    from mmvideoeq.deq import SolverStats

__all__ = [
    'StreamStages',
    'PIECES',
    'DEFAULT_STAGES',
    'PipelinedStream',
    'PipelineRun',
]

#: The pieces of a streamed step, in order; a pipeline stage is a contiguous group of them.
PIECES = ('preprocess', 'stem', 'solve', 'heads')
#: Three stages: pre-processing and stem / the solver steps / heads and post-processing.
DEFAULT_STAGES = (('preprocess', 'stem'), ('solve',), ('heads',))


@dataclass(frozen=True)
class StreamStages:
    """A streaming model's step cut into its stem, solve and heads.

    ``step`` (= the stages composed) has the :data:`~.protocol.StepFn` signature: a model whose
    ``stream_step`` is ``stream_stages().step`` streams the same sequentially and pipelined.

    Attributes:
        stem: ``stem(inputs) -> s``: the per-frame part before the solve, from the frames
            ``(B, C, H, W)`` to whatever the solve needs (opaque to the pipeline).
        solve: ``solve(s, z0, memory, budget) -> (features, z, memory, stats)``: the solver
            steps from ``z0`` (``S`` tensors ``(B, ...)`` or ``None`` for the zero state) with the
            frames' budget; ``z`` is the new solver state (detached), ``memory`` the ``B`` new
            memories and ``stats`` the :class:`~mmvideoeq.deq.SolverStats` (or ``None``).
        heads: ``heads(features, payloads) -> outputs``: the per-frame part after the solve.
    """

    stem: Callable[[Tensor], Any]
    solve: Callable[
        [Any, 'list[Tensor] | None', list, Budget],
        'tuple[Any, list[Tensor], list, SolverStats | None]',
    ]
    heads: Callable[[Any, list], Any]

    def step(
        self,
        inputs: Tensor,
        z0: list[Tensor] | None,
        memory: list[Any],
        budget: Budget,
        payloads: Sequence,
    ) -> StepOutput:
        """One sequential streaming step: ``heads(solve(stem(inputs), ...), payloads)``."""
        features, z, memory, stats = self.solve(self.stem(inputs), z0, memory, budget)
        return StepOutput(self.heads(features, list(payloads)), z, memory, stats)


def _check_groups(stages: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
    """Validate a grouping of :data:`PIECES` into contiguous stages."""
    if isinstance(stages, str) or not isinstance(stages, Sequence):
        raise TypeError(
            f'stages must be a sequence of groups of piece names, e.g. {DEFAULT_STAGES}, got '
            f'{stages!r}'
        )
    groups = tuple(
        (g,) if isinstance(g, str) else tuple(g) for g in stages
    )  # a bare name is a group of one
    flat = [p for g in groups for p in g]
    if any(not g for g in groups) or flat != list(PIECES):
        raise ValueError(
            f'stages {stages!r} must group the pieces {PIECES} in this order, each exactly once, '
            f'into non-empty contiguous stages, e.g. {DEFAULT_STAGES} (three stages) or '
            "(('preprocess', 'stem', 'solve'), ('heads',)) (two)"
        )
    return groups


@dataclass
class _Job:
    """One frame travelling through the pipeline."""

    index: int
    frame: StreamFrame
    stem: Any = None
    features: Any = None
    output: Any = None
    record: FrameRecord | None = None
    arrival: float | None = None
    times: list[tuple[float, float]] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


@dataclass
class PipelineRun:
    """Result of :meth:`PipelinedStream.run`.

    Attributes:
        outputs: The heads' output of each frame, in input order (cut to batch size 1 as
            :func:`~mmvideoeq.streaming.run_stream` cuts them); ``None`` for a skipped frame.
        records: The :class:`~mmvideoeq.streaming.FrameRecord` of each frame, in input order.
        states: The final state of each stream, keyed by slot.
        stage_times: Per frame, per stage, ``(start, end)`` in seconds of the run's clock.
        arrivals: Per frame, when it was offered to the pipeline (seconds of the same clock).
        stage_cpu_ms: Per frame, per stage, the CPU time (ms) of the stage's thread on it
            (``time.thread_time``: the work itself when each stage runs one intra-op thread,
            without the time the thread waited for a core or the GIL).
        stages: The stages' piece groups.
    """

    outputs: list[Any] = field(default_factory=list)
    records: list[FrameRecord] = field(default_factory=list)
    states: dict[Hashable, StreamState] = field(default_factory=dict)
    stage_times: list[list[tuple[float, float]]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    stage_cpu_ms: list[list[float]] = field(default_factory=list)
    stages: tuple[tuple[str, ...], ...] = DEFAULT_STAGES

    @property
    def latency_ms(self) -> list[float]:
        """Per frame: ms from its arrival (else its first stage's start) to its last stage's
        end, waits in the queues included."""
        starts = self.arrivals or [t[0][0] for t in self.stage_times]
        return [(t[-1][1] - a) * 1e3 for a, t in zip(starts, self.stage_times)]

    @property
    def stage_ms(self) -> list[list[float]]:
        """Per frame, per stage: ms the stage worked on the frame (waits excluded)."""
        return [[(b - a) * 1e3 for a, b in t] for t in self.stage_times]

    def throughput_fps(self, skip: int = 0) -> float:
        """Frames per second from the first stage's start of frame ``skip`` to the last stage's
        end of the last frame (``skip`` leaves out the frames that fill the pipeline)."""
        times = self.stage_times[skip:]
        if len(times) < 2:
            raise ValueError(f'throughput needs at least 2 frames after skip={skip}')
        # frames completed after the first counted frame's exit, over the time between exits
        span = times[-1][-1][1] - times[0][-1][1]
        return (len(times) - 1) / span if span > 0 else float('inf')


_STOP = object()


class _StageError:
    def __init__(self, stage: int, error: BaseException) -> None:
        self.stage, self.error = stage, error


class PipelinedStream:
    """Run a streamed model as a pipeline of concurrent stages over consecutive frames.

    Args:
        stages: The model's :class:`StreamStages` (``model.stream_stages()``).
        policy: The stream policy (budgets, resets), used by the solve stage exactly as
            :func:`~mmvideoeq.streaming.run_stream` uses it.
        groups: How the pieces :data:`PIECES` (``'preprocess'``, ``'stem'``, ``'solve'``,
            ``'heads'``) are grouped into stages, in order; default :data:`DEFAULT_STAGES`
            (three stages). One stage holding everything is the sequential stream.
        preprocess: ``preprocess(frame) -> frame``, run on every :class:`StreamFrame` in the
            ``'preprocess'`` piece (e.g. a model's data pre-processor); ``None``: frames are
            already model inputs.
        zeros_like_fn: The model's ``stream_zero_state`` (as for ``run_stream``).
        intra_op_threads: Intra-op threads of each stage on CPU (``None``: leave them).
        device: Where the stages run; a CUDA device gives every stage its own CUDA stream.
        queue_size: Frames that may wait between two stages.
        clock: Time source in seconds (with ``backend='process'`` a system-wide one:
            ``time.perf_counter``, ``time.monotonic`` or ``time.time``).
        backend: ``'thread'`` (one thread per stage, the default; CPU and CUDA) or
            ``'process'`` (one forked process per stage, CPU on Linux: no shared interpreter
            lock; see :mod:`.pipeline_process`). Both give the same outputs and records.
    """

    def __init__(
        self,
        stages: StreamStages,
        policy: StreamPolicy,
        *,
        groups: Sequence[Sequence[str]] = DEFAULT_STAGES,
        preprocess: Callable[[StreamFrame], StreamFrame] | None = None,
        zeros_like_fn: Callable[[Tensor], Sequence[Tensor]] | None = None,
        intra_op_threads: int | None = 1,
        device: torch.device | str | None = None,
        queue_size: int = 1,
        clock: Callable[[], float] = time.perf_counter,
        backend: str = 'thread',
    ) -> None:
        if not isinstance(stages, StreamStages):
            raise TypeError(
                'stages must be a StreamStages (model.stream_stages()), got '
                f'{type(stages).__name__}'
            )
        if not isinstance(policy, StreamPolicy):
            raise TypeError(f'policy must be a StreamPolicy, got {type(policy).__name__}')
        if preprocess is not None and not callable(preprocess):
            raise TypeError('preprocess must be callable as preprocess(frame) -> frame, or None')
        if intra_op_threads is not None and (
            isinstance(intra_op_threads, bool)
            or not isinstance(intra_op_threads, int)
            or intra_op_threads < 1
        ):
            raise ValueError(
                f'intra_op_threads must be an int >= 1 or None, got {intra_op_threads!r}'
            )
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f'queue_size must be an int >= 1, got {queue_size!r}')
        self.stages = stages
        self.policy = policy
        self.groups = _check_groups(groups)
        self.preprocess = preprocess
        self.zeros_like_fn = zeros_like_fn
        self.intra_op_threads = intra_op_threads
        self.device = None if device is None else torch.device(device)
        self.cuda = self.device is not None and self.device.type == 'cuda'
        if self.cuda and not torch.cuda.is_available():
            raise ValueError(f'device {self.device} requested but CUDA is not available')
        self.queue_size = queue_size
        self.clock = clock
        if backend not in ('thread', 'process'):
            raise ValueError(f"backend must be 'thread' or 'process', got {backend!r}")
        if backend == 'process':
            if self.cuda:
                raise ValueError(
                    "backend='process' runs on CPU only (CUDA does not survive a fork): use "
                    "backend='thread', which gives every stage its own CUDA stream"
                )
            if 'fork' not in multiprocessing.get_all_start_methods():
                raise ValueError(
                    "backend='process' needs the fork start method (Linux); use backend='thread'"
                )
            if clock not in SYSTEM_CLOCKS:
                raise ValueError(
                    "backend='process' needs a clock that all processes share "
                    '(time.perf_counter, time.monotonic or time.time)'
                )
        self.backend = backend

    # ------------------------------------------------------------------ pieces
    def _piece(self, name: str, job: _Job, states: dict) -> None:
        frame = job.frame
        if name == 'preprocess':
            if self.preprocess is not None and frame.skip is None:
                job.frame = self.preprocess(frame)
        elif name == 'stem':
            if frame.skip is None:
                job.stem = self.stages.stem(frame.x)
        elif name == 'solve':
            self._solve(job, states)
        elif job.record is not None and job.record.skipped is None:  # heads
            payloads = [frame.payload]
            job.output = split_outputs(self.stages.heads(job.features, payloads), 1)[0]

    def _solve(self, job: _Job, states: dict) -> None:
        """The solver steps of one frame through ``run_stream`` (policy, records, states)."""
        stem = job.stem

        def step_fn(x, z0, memory, budget, payloads):
            features, z, memory, stats = self.stages.solve(stem, z0, memory, budget)
            return StepOutput(features, z, memory, stats)

        run = run_stream(
            step_fn, [job.frame], self.policy, states=states, zeros_like_fn=self.zeros_like_fn
        )
        job.record = run.records[0]
        job.features = run.outputs[0]  # one frame: split_outputs hands it back whole

    @staticmethod
    def _release(job: _Job, group: tuple[str, ...]) -> None:
        """Drop what the stage's pieces consumed (after its CUDA stream is synchronised, so
        that no kernel still reads memory the allocator may hand out again)."""
        if 'solve' in group:
            job.stem = None
            job.frame = replace(job.frame, x=None)  # the policy has read its shape
        if 'heads' in group:
            job.features = None

    def _work(self, k: int, job: _Job, states: dict, stream=None) -> None:
        """Stage ``k``'s pieces on one frame, timed (on ``stream`` when it is a CUDA stream)."""
        t0, c0 = self.clock(), time.thread_time()
        if stream is not None:
            with torch.cuda.stream(stream):
                for name in self.groups[k]:
                    self._piece(name, job, states)
            # the next stage (on its own stream) may use the results only now
            stream.synchronize()
        else:
            for name in self.groups[k]:
                self._piece(name, job, states)
        self._release(job, self.groups[k])
        job.times.append((t0, self.clock()))
        job.cpu.append((time.thread_time() - c0) * 1e3)

    # ------------------------------------------------------------------ threads
    def _worker(
        self, k: int, q_in: queue.Queue, q_out: queue.Queue, states: dict, abort: threading.Event
    ) -> None:
        if self.intra_op_threads is not None and not self.cuda:
            torch.set_num_threads(self.intra_op_threads)  # this thread's OpenMP team
        stream = torch.cuda.Stream(self.device) if self.cuda else None
        with torch.no_grad():
            while True:
                job = q_in.get()
                if job is _STOP:
                    q_out.put(job)
                    return
                if isinstance(job, _StageError):  # pass an upstream failure on to the caller
                    q_out.put(job)
                    continue
                if abort.is_set():  # a stage failed: let the remaining frames through undone
                    continue
                try:
                    self._work(k, job, states, stream)
                except BaseException as err:  # raised in the caller's thread
                    abort.set()
                    q_out.put(_StageError(k, err))
                    continue
                q_out.put(job)

    @staticmethod
    def _jobs(frames: Iterable[Any]) -> Iterable[_Job]:
        """The frames as jobs, checked: one frame per time step, ``x`` of batch size 1."""
        for i, step in enumerate(frames):
            if _is_single(step):
                frame = _as_frame(step)
            else:
                batch = [_as_frame(f) for f in step]
                if len(batch) != 1:
                    raise ValueError(
                        f'time step {i} holds {len(batch)} frames; a pipelined stream takes one '
                        'frame per time step (it overlaps frames instead of batching them): give '
                        'streams one after the other or use run_stream'
                    )
                frame = batch[0]
            if frame.skip is None and (
                not isinstance(frame.x, Tensor) or frame.x.dim() == 0 or frame.x.shape[0] != 1
            ):
                raise ValueError(
                    f'frame {frame.frame_id} of video {frame.video_id!r}: x must be a tensor '
                    'with a leading batch dimension of 1, e.g. (1, 3, H, W)'
                )
            yield _Job(i, frame)

    def _feed(
        self,
        frames: Iterable[Any],
        put: Callable[[_Job], Any],
        end: Callable[[], Any],
        stopped: Callable[[], bool],
        errors: list,
        interval: float | None,
    ) -> None:
        """The feeder of either backend: every frame as a job through ``put`` (paced as a camera
        with ``interval``) until ``stopped()``, then ``end()``; an exception goes to ``errors``."""
        try:
            t0 = self.clock()
            for job in self._jobs(frames):
                if stopped():
                    break
                if interval is not None:  # a camera: frame i arrives at t0 + i * interval
                    wait = t0 + job.index * interval - self.clock()
                    if wait > 0:
                        time.sleep(wait)
                job.arrival = self.clock()
                put(job)
        except BaseException as err:
            errors.append(err)
        end()

    def run_sequential(
        self, frames: Iterable[Any], *, states: dict[Hashable, StreamState] | None = None
    ) -> PipelineRun:
        """The same work as :meth:`run`, every stage of every frame in the calling thread, one
        after the other (the sequential stream, timed stage by stage: the stage times of the
        bound ``sum / max``). Arguments and result as :meth:`run`."""
        states = {} if states is None else states
        saved_threads = torch.get_num_threads()
        if self.intra_op_threads is not None and not self.cuda:
            torch.set_num_threads(self.intra_op_threads)
        jobs: list[_Job] = []
        try:
            with torch.no_grad():
                for job in self._jobs(frames):
                    for k in range(len(self.groups)):
                        t0, c0 = self.clock(), time.thread_time()
                        for name in self.groups[k]:
                            self._piece(name, job, states)
                        if self.cuda:
                            torch.cuda.synchronize(self.device)
                        self._release(job, self.groups[k])
                        job.times.append((t0, self.clock()))
                        job.cpu.append((time.thread_time() - c0) * 1e3)
                    jobs.append(job)
        finally:
            torch.set_num_threads(saved_threads)
        return PipelineRun(
            outputs=[j.output for j in jobs],
            records=[j.record for j in jobs],
            states=states,
            stage_times=[j.times for j in jobs],
            stage_cpu_ms=[j.cpu for j in jobs],
            stages=self.groups,
        )

    def run(
        self,
        frames: Iterable[Any],
        *,
        states: dict[Hashable, StreamState] | None = None,
        interval: float | None = None,
    ) -> PipelineRun:
        """Run frames through the pipeline.

        Args:
            frames: Time steps of one frame each (a :class:`StreamFrame`, a dict of its fields
                or a tuple ``(video_id, frame_id, x[, stream])``, as for ``run_stream``).
            states: Stream states to continue from (updated in place by the solve stage).
            interval: Offer frame ``i`` no earlier than ``i * interval`` seconds after the start
                (a camera); ``None``: as fast as the pipeline takes them.

        Returns:
            PipelineRun: outputs and records in input order, the states, per-stage times.
        """
        if interval is not None and not (isinstance(interval, (int, float)) and interval > 0):
            raise ValueError(f'interval must be a positive number of seconds, got {interval!r}')
        states = {} if states is None else states
        if self.backend == 'process':
            return self._result(run_in_processes(self, frames, states, interval), states)
        n = len(self.groups)
        queues = [queue.Queue(maxsize=self.queue_size) for _ in range(n)]
        done: queue.Queue = queue.Queue()
        feed_errors: list[BaseException] = []
        abort = threading.Event()
        saved_threads = torch.get_num_threads()
        threads = [
            threading.Thread(
                target=self._feed,
                args=(
                    frames,
                    queues[0].put,
                    lambda: queues[0].put(_STOP),
                    abort.is_set,
                    feed_errors,
                    interval,
                ),
            )
        ]
        for k in range(n):
            q_out = queues[k + 1] if k + 1 < n else done
            threads.append(
                threading.Thread(
                    target=self._worker,
                    args=(k, queues[k], q_out, states, abort),
                    name=f'pipeline-stage{k}',
                )
            )
        for t in threads:
            t.daemon = True
            t.start()
        jobs: list[_Job] = []
        error: _StageError | None = None
        while (item := done.get()) is not _STOP:  # every thread ends with _STOP
            if isinstance(item, _StageError):
                error = error or item
            else:
                jobs.append(item)
        for t in threads:
            t.join()
        torch.set_num_threads(saved_threads)  # set_num_threads in a thread is the new default
        if error is not None:
            raise RuntimeError(
                f'pipeline stage {error.stage} {self.groups[error.stage]} failed: '
                f'{type(error.error).__name__}: {error.error}'
            ) from error.error
        if feed_errors:
            raise feed_errors[0]
        return self._result(jobs, states)

    def _result(self, jobs: list[_Job], states: dict) -> PipelineRun:
        jobs = sorted(jobs, key=lambda j: j.index)
        return PipelineRun(
            outputs=[j.output for j in jobs],
            records=[j.record for j in jobs],
            states=states,
            stage_times=[j.times for j in jobs],
            stage_cpu_ms=[j.cpu for j in jobs],
            arrivals=[j.arrival for j in jobs],
            stages=self.groups,
        )
