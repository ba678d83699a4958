"""The streaming pairing: which timestamped output each ground-truth frame is scored with.

Li, Wang, Ramanan, *Towards Streaming Perception* (ECCV 2020), Sec. 3: ground-truth frame ``i``
of a sequence is evaluated at time ``t_i = (i - eta) / fps`` against the **latest output that
finished at or before** ``t_i``; when no output has finished yet, the prediction is empty. The
rules are those of the reference evaluation (github ``mtli/sAP``, ``det/streaming_eval.py``):

* ``t_i`` is computed as ``(i - eta) / fps`` in float, and an output counts when its timestamp
  ``<= t_i`` (a tie counts); of several outputs with the same timestamp the last one listed is
  taken; outputs with timestamps before the first frame (``<= -eta / fps``) pair with frame 0;
* every sequence is paired on its own (its own frames, its own outputs);
* counts over all ground-truth frames: ``miss`` (no output yet), ``in_time`` (the paired output
  was computed from frame ``i`` itself) and ``mismatch`` (the sum of ``i - input frame`` over
  the paired frames, signed as in the reference).

:func:`pair_stream` is the pairing alone, for any per-frame metric (streaming AP in
:mod:`.streaming_ap`, streaming mIoU, streaming PQ); :func:`simulate_pairs` adds the real-time
simulation (:mod:`mmvideoeq.streaming.realtime`) for per-frame predictions and a latency trace.
Outputs not in finish order, or input frames outside the sequence, raise ``ValueError`` (the
reference assumes neither happens).

Plain Python (no OpenMMLab import).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmvideoeq.streaming.realtime import (
    LatencyModel,
    RealtimeTrace,
    SequentialLatency,
    simulate_realtime,
)

__all__ = ['StreamCounts', 'StreamPairing', 'pair_stream', 'pair_outputs', 'simulate_pairs']


@dataclass
class StreamCounts:
    """The reference's association counts over ground-truth frames.

    Attributes:
        num_frames (int): Ground-truth frames paired.
        in_time (int): Frames paired with an output of that very frame.
        miss (int): Frames with no output finished yet (empty prediction).
        mismatch (int): Sum over the paired frames of ``frame index - input frame index``.
    """

    num_frames: int = 0
    in_time: int = 0
    miss: int = 0
    mismatch: int = 0

    def __add__(self, other: StreamCounts) -> StreamCounts:
        return StreamCounts(
            self.num_frames + other.num_frames,
            self.in_time + other.in_time,
            self.miss + other.miss,
            self.mismatch + other.mismatch,
        )

    def as_dict(self) -> dict[str, int]:
        return dict(
            num_frames=self.num_frames, in_time=self.in_time, miss=self.miss, mismatch=self.mismatch
        )


@dataclass
class StreamPairing:
    """Which output each ground-truth frame of one sequence is evaluated with.

    Attributes:
        output_index (list[int | None]): Per ground-truth frame, the index of the paired output
            in the output list (None: no output yet, an empty prediction).
        input_index (list[int | None]): Per ground-truth frame, the input frame of that output.
        counts (StreamCounts): ``in_time``, ``miss``, ``mismatch`` of this sequence.
    """

    output_index: list[int | None]
    input_index: list[int | None]
    counts: StreamCounts

    def take(self, per_frame: Sequence[Any], empty: Any = None) -> list[Any]:
        """Per ground-truth frame, the prediction of its paired input frame.

        Args:
            per_frame (Sequence): One prediction per *input* frame of the sequence.
            empty: What a frame without output gets (e.g. an empty prediction).

        Returns:
            list: One entry per ground-truth frame.
        """
        return [empty if j is None else per_frame[j] for j in self.input_index]

    def counts_of(self, frames: Iterable[int]) -> StreamCounts:
        """``in_time``, ``miss``, ``mismatch`` over some ground-truth frames only (e.g. those
        with labels), counted as :func:`pair_stream` counts them over all frames."""
        counts = StreamCounts()
        for i in frames:
            j = self.input_index[i]
            counts.num_frames += 1
            counts.miss += int(j is None)
            if j is not None:
                counts.in_time += int(i == j)
                counts.mismatch += i - j
        return counts


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f'{name} must be a number, got {value!r}')
    if not np.isfinite(value):
        raise ValueError(f'{name} must be finite, got {value!r}')
    return value


def pair_stream(
    timestamps: Sequence[float],
    input_fidx: Sequence[int],
    num_frames: int,
    *,
    fps: float,
    eta: float = 0.0,
) -> StreamPairing:
    """Pair every ground-truth frame of a sequence with the latest output finished by then.

    Frame ``i`` (0-based position in the sequence) is compared at ``t_i = (i - eta) / fps``
    with the last output whose timestamp is ``<= t_i`` (the reference's rule, see the module
    docstring).

    Args:
        timestamps (Sequence[float]): Seconds from the first frame's arrival at which each
            output finished; non-decreasing.
        input_fidx (Sequence[int]): The input frame of each output (``0 .. num_frames - 1``).
        num_frames (int): Ground-truth frames of the sequence.
        fps (float): Frame rate (> 0).
        eta (float): The paper's ``eta``: 0 evaluates frame ``i`` when it arrives, -1 when the
            next frame arrives. Defaults to 0.

    Returns:
        StreamPairing: The paired output and input frame per ground-truth frame, and counts.

    Raises:
        ValueError: Lists of different lengths, timestamps out of order, input frames outside
            the sequence, ``fps <= 0``.
    """
    fps = _number(fps, 'fps')
    eta = _number(eta, 'eta')
    if fps <= 0:
        raise ValueError(f'fps must be > 0, got {fps}')
    if len(timestamps) != len(input_fidx):
        raise ValueError(
            f'{len(timestamps)} timestamps but {len(input_fidx)} input frame indices; '
            'give one of each per output'
        )
    for k in range(1, len(timestamps)):
        if timestamps[k] < timestamps[k - 1]:
            raise ValueError(
                f'output timestamps must be non-decreasing (finish order); output {k} '
                f'({timestamps[k]}) is earlier than output {k - 1} ({timestamps[k - 1]})'
            )
    bad = [j for j in input_fidx if not 0 <= j < num_frames]
    if bad:
        raise ValueError(
            f'input frame indices {bad[:5]} are outside the sequence of {num_frames} frames'
        )
    output_index: list[int | None] = []
    input_index: list[int | None] = []
    counts = StreamCounts(num_frames=num_frames)
    next_out = 0  # the reference's tidx_p1: outputs [0, next_out) finished by t
    for i in range(num_frames):
        t = (i - eta) / fps
        while next_out < len(timestamps) and timestamps[next_out] <= t:
            next_out += 1
        if next_out == 0:
            counts.miss += 1
            output_index.append(None)
            input_index.append(None)
            continue
        j = int(input_fidx[next_out - 1])
        counts.in_time += int(i == j)
        counts.mismatch += i - j
        output_index.append(next_out - 1)
        input_index.append(j)
    return StreamPairing(output_index=output_index, input_index=input_index, counts=counts)


def pair_outputs(
    name: Any, outputs: Sequence[tuple[float, int, Any]], num_frames: int, *, fps: float, eta: float
) -> StreamPairing:
    """:func:`pair_stream` of outputs given as ``(finish time, input frame, prediction)``
    tuples; an error names the sequence ``name``."""
    try:
        return pair_stream(
            [o[0] for o in outputs], [o[1] for o in outputs], num_frames, fps=fps, eta=eta
        )
    except ValueError as err:
        raise ValueError(f'sequence {name!r}: {err}') from None


def _latency_model(latency: Any, num_sequences: int) -> LatencyModel:
    if isinstance(latency, LatencyModel):
        return latency
    if isinstance(latency, (int, float)) and not isinstance(latency, bool):
        return SequentialLatency(float(latency))
    if isinstance(latency, Sequence) and not isinstance(latency, (str, bytes)):
        if len(latency) != num_sequences:
            raise ValueError(
                f'latency has {len(latency)} entries for {num_sequences} sequences; give one '
                'entry (ms, or a list of ms per frame) per sequence, or one number for all'
            )
        return SequentialLatency(latency, per_sequence=True)
    raise TypeError(
        'latency must be ms per frame (a number), one entry per sequence (ms or a list of ms '
        f'per frame), or a LatencyModel; got {type(latency).__name__}'
    )


def simulate_pairs(
    num_frames: Sequence[int],
    latency: float | Sequence[float | Sequence[float]] | LatencyModel,
    *,
    fps: float,
    eta: float = 0.0,
) -> list[tuple[RealtimeTrace, StreamPairing]]:
    """Simulate real-time processing of sequences and pair their ground-truth frames.

    The generic streaming protocol for any per-frame metric: ground-truth frame ``i`` of
    sequence ``s`` is scored with the prediction of input frame
    ``pairs[s][1].input_index[i]`` (None: an empty prediction), e.g.
    ``pairs[s][1].take(predictions[s], empty)``.

    Args:
        num_frames (Sequence[int]): Frames of each sequence.
        latency: ms per frame for every frame of every sequence (a number); one entry per
            sequence, each ms or a list of ms per frame (the measured trace); or a
            :class:`~mmvideoeq.streaming.realtime.LatencyModel`.
        fps (float): Frame rate of the playback and of the evaluation.
        eta (float): See :func:`pair_stream`. Defaults to 0.

    Returns:
        list[tuple[RealtimeTrace, StreamPairing]]: Per sequence, the simulated outputs and the
        pairing.
    """
    model = _latency_model(latency, len(num_frames))
    out = []
    for s, n in enumerate(num_frames):
        trace = simulate_realtime(n, fps, model, sequence=s)
        out.append((trace, pair_stream(trace.finish, trace.input_index, n, fps=fps, eta=eta)))
    return out
