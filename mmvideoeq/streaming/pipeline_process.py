"""The process backend of :class:`~.pipeline.PipelinedStream`: one process per stage.

Why processes: the stages of a thread pipeline share one interpreter lock. A streamed model of
many small operators (the tiny detector's heads are mostly mmdet's Python: proposals, RoI
sampling, box decoding) holds it for much of its time, so thread stages serialise on it and a
2-core CPU gave 0.59-0.86 of the stage bound. Stages in processes share nothing but the frames
they hand on.

How (Linux; the ``fork`` start method): the stage processes are forked from the caller when
:meth:`~.pipeline.PipelinedStream.run` starts, so they inherit the model, the stages and the
policy without pickling them. Frames travel between the processes (and back to the caller)
through pipes, pickled by value with CPU tensors as numpy arrays (about 0.2-0.3 ms to pickle and
0.15-0.25 ms to unpickle a frame of the tiny detector, 0.2-0.6 MB, against about 1 ms each with
torch's own tensor pickling; shared-memory tensors would need the sending process to stay alive
and one file descriptor per tensor). The solve stage owns the stream states and the policy during
the run and sends both back when it ends: the caller's ``states`` dict and policy object are
updated with them (e.g. what a time budget learned). Each stage process sets its own number of
intra-op threads. The clock must be system-wide (``time.perf_counter`` and ``time.monotonic``
are, on Linux), so that the stages' timestamps compare.

Errors: an exception in a stage is sent to the caller with its traceback and re-raised there as
a ``RuntimeError`` naming the stage; a stage process that dies without reporting (killed, out of
memory) is detected by its exit code.
"""

from __future__ import annotations

import io
import multiprocessing
import pickle
import queue
import threading
import time
import traceback
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from .pipeline import PipelinedStream, _Job
    from .state import StreamState

__all__ = ['run_in_processes', 'SYSTEM_CLOCKS']

#: Clocks that give the same time in every process of the machine.
SYSTEM_CLOCKS = (time.perf_counter, time.monotonic, time.time)

_POLL_S = 0.5  # how often the caller checks that the stage processes are alive


class _Final:
    """What the solve stage sends after the last frame: its states and policy."""

    def __init__(self, states: dict, policy: Any) -> None:
        self.states, self.policy = states, policy


class _Failure:
    """An exception of stage ``stage`` (pickled if possible) and its formatted traceback."""

    def __init__(self, stage: int, error: BaseException) -> None:
        self.stage = stage
        self.text = ''.join(traceback.format_exception(error))
        try:
            pickle.dumps(error)
            self.error: BaseException | None = error
        except Exception:
            self.error = None
        self.summary = f'{type(error).__name__}: {error}'


def _from_numpy(array: np.ndarray) -> Tensor:
    return torch.from_numpy(array)


class _Pickler(pickle.Pickler):
    """Pickles plain CPU tensors by value as numpy arrays: a few microseconds each, where
    torch's own tensor pickling serialises every storage with ``torch.save`` (about 0.1 ms each,
    and a frame carries dozens of small tensors). Other tensors (autograd leaves, bfloat16,
    other devices) keep torch's pickling."""

    def reducer_override(self, obj: Any) -> Any:
        if (
            type(obj) is Tensor
            and obj.device.type == 'cpu'
            and obj.layout == torch.strided
            and not obj.requires_grad
            and obj.dtype != torch.bfloat16
        ):
            try:
                return _from_numpy, (obj.numpy(),)
            except (RuntimeError, TypeError):  # conjugate or negative views, odd dtypes
                return NotImplemented
        return NotImplemented


def _dumps(obj: Any) -> bytes:
    """Pickled by value (tensors' data included): nothing is left to fetch from the sender."""
    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return out.getvalue()


# Messages on the queues are (kind, body): ('job', bytes of a _Job), ('final', bytes of a
# _Final), ('fail', _Failure), ('stop', None).


def _stage_main(pipe: PipelinedStream, k: int, q_in, q_out, states: dict, abort) -> None:
    """Body of stage process ``k``: the thread backend's worker loop over process queues."""
    if pipe.intra_op_threads is not None:
        torch.set_num_threads(pipe.intra_op_threads)
    group = pipe.groups[k]
    with torch.no_grad():
        while True:
            kind, body = q_in.get()
            if kind == 'stop':
                if 'solve' in group:
                    q_out.put(('final', _dumps(_Final(states, pipe.policy))))
                q_out.put((kind, body))
                return
            if kind != 'job':  # a failure or the solve stage's final message: pass it on
                q_out.put((kind, body))
                continue
            if abort.is_set():  # a stage failed: let the remaining frames through undone
                continue
            try:
                job = pickle.loads(body)
                pipe._work(k, job, states)
                q_out.put(('job', _dumps(job)))
            except BaseException as err:
                abort.set()
                q_out.put(('fail', _Failure(k, err)))


def run_in_processes(
    pipe: PipelinedStream,
    frames: Iterable[Any],
    states: dict[Hashable, StreamState],
    interval: float | None,
) -> list[_Job]:
    """Run ``frames`` through ``pipe``'s stages, one forked process per stage.

    Args:
        pipe: The pipeline (its stages, policy, groups, pre-processing, clock).
        frames: Time steps of one frame each, as :meth:`PipelinedStream.run` takes them.
        states: Stream states to continue from; updated in place with the solve stage's final
            states when the run ends.
        interval: Offer frame ``i`` no earlier than ``i * interval`` s after the start.

    Returns:
        The finished jobs, in the order they left the last stage.

    Raises:
        RuntimeError: A stage failed (its traceback in the message) or a stage process died.
    """
    ctx = multiprocessing.get_context('fork')
    n = len(pipe.groups)
    queues = [_widened(ctx.Queue(maxsize=pipe.queue_size)) for _ in range(n)]
    done = _widened(ctx.Queue())
    abort = ctx.Event()
    procs = []
    for k in range(n):
        q_out = queues[k + 1] if k + 1 < n else done
        p = ctx.Process(
            target=_stage_main,
            args=(pipe, k, queues[k], q_out, states, abort),
            name=f'pipeline-stage{k}',
            daemon=True,
        )
        p.start()
        procs.append(p)
    feed_errors: list[BaseException] = []
    stop = threading.Event()
    q0 = queues[0]
    feeder = threading.Thread(
        target=pipe._feed,
        args=(
            frames,
            lambda job: _put(q0, ('job', _dumps(job)), stop),
            lambda: _put(q0, ('stop', None), stop),
            stop.is_set,
            feed_errors,
            interval,
        ),
        daemon=True,
    )
    feeder.start()
    jobs: list[_Job] = []
    failure: _Failure | None = None
    final: _Final | None = None
    ok = False
    try:
        while True:
            try:
                item = done.get(timeout=_POLL_S)
            except queue.Empty:
                dead = [(k, p.exitcode) for k, p in enumerate(procs) if p.exitcode not in (None, 0)]
                if dead:
                    k, code = dead[0]
                    raise RuntimeError(
                        f'pipeline stage {k} {pipe.groups[k]} (a process) died with exit code '
                        f'{code} without reporting an error (killed, or out of memory?)'
                    ) from None
                continue
            kind, body = item
            if kind == 'stop':
                break
            if kind == 'fail':
                failure = failure or body
            elif kind == 'final':
                final = pickle.loads(body)
            else:
                jobs.append(pickle.loads(body))
        ok = True
    finally:
        stop.set()
        feeder.join()
        for p in procs:
            if ok:
                p.join(timeout=30)
            if p.is_alive():
                p.terminate()
            p.join()
    if failure is not None:
        msg = (
            f'pipeline stage {failure.stage} {pipe.groups[failure.stage]} failed: '
            f'{failure.summary}\n--- traceback in the stage process ---\n{failure.text}'
        )
        raise RuntimeError(msg) from failure.error
    if feed_errors:
        raise feed_errors[0]
    if final is not None:
        states.clear()
        states.update(final.states)
        pipe.policy.__dict__.update(final.policy.__dict__)
    return jobs


#: Pipe capacity asked for on Linux (the default 64 KiB makes a sender of a 0.6 MB frame wait
#: for the receiver chunk by chunk, i.e. for the receiving process to be scheduled ~10 times).
PIPE_BYTES = 1 << 20


def _widened(q):
    """``q`` with its pipe's capacity raised to :data:`PIPE_BYTES` where the system allows it
    (Linux ``F_SETPIPE_SZ``; elsewhere, or above ``/proc/sys/fs/pipe-max-size``, unchanged)."""
    try:
        import fcntl

        fcntl.fcntl(q._writer.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass
    return q


def _put(q, item: Any, stop: threading.Event) -> bool:
    """``q.put(item)``, given up when ``stop`` is set while the queue is full."""
    while True:
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            if stop.is_set():
                return False
