"""Real-time simulation of a streaming worker, and latency tables.

Streaming perception (Li, Wang, Ramanan, *Towards Streaming Perception*, ECCV 2020, Sec. 3 and
4.2) plays a video back at its frame rate: frame ``i`` arrives at ``i / fps`` seconds; one worker
processes one frame at a time and, whenever it is free, takes the **latest frame that has
arrived**, so a slow model skips frames. This module replays that schedule from a latency trace,
with the rule of the reference simulator (github ``mtli/sAP``, ``det/srt_det.py``, single-GPU
model, ``--det-stride 1``, no dynamic schedule), step by step:

* time ``t`` starts at 0 (frame 0 arrives as the sequence starts) and is kept in float seconds,
  accumulated as the reference does (``t += latency``), so finish times that land within
  rounding of a frame arrival behave exactly as the reference's;
* the worker, free at ``t``, takes frame ``floor(t * fps)``: a frame arriving exactly when the
  worker frees is taken;
* if that is the frame it took last (it finished before the next frame arrived), it waits for
  the next frame, ``i + 1`` at ``t = (i + 1) / fps`` (none left: the sequence is over);
* an output finishing at or after ``num_frames / fps`` (the end of the sequence) is dropped and
  the sequence ends (the reference's break; with a pipelined model the worker may still accept
  frames, whose outputs are dropped the same way).

What a frame costs comes from a :class:`LatencyModel`: for each frame it is given, when it is
given it, the finish time of its output and the time the worker accepts its next frame.
:class:`SequentialLatency` is the reference's single worker (both are start + latency, from a
per-frame trace in ms or a constant); a pipelined runner plugs in a model whose throughput is
not ``1 / latency`` (accepts the next frame before this one's output is ready).

:class:`LatencyTable` reads and writes a small JSON table of ms per frame per model/setting,
measured on a named device (the reference keeps such profiles in a "runtime zoo" of pickles;
here it is JSON, and the simulation uses a constant latency per setting).

Plain Python: no OpenMMLab import.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    'FrameTiming',
    'LatencyModel',
    'SequentialLatency',
    'RealtimeTrace',
    'simulate_realtime',
    'LatencyTable',
    'LATENCY_TABLE_FORMAT',
]

LATENCY_TABLE_FORMAT = 'mmvideoeq/latency_table'
_LATENCY_TABLE_VERSION = 1


def _check_ms(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f'{what} must be a number of milliseconds, got {value!r}')
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f'{what} must be a finite latency >= 0 ms, got {value!r}')
    return value


@dataclass(frozen=True)
class FrameTiming:
    """When a frame's output is ready and when the worker can take the next frame.

    Attributes:
        finish (float): Seconds (from the sequence start) at which the output is ready.
        ready (float): Seconds at which the worker accepts its next frame (``>= start``).
            ``ready == finish`` for one sequential worker; a pipeline is ready before its
            output is.
    """

    finish: float
    ready: float


class LatencyModel:
    """How long frames take: the hook between a runtime and the real-time simulation.

    :func:`simulate_realtime` calls :meth:`begin` at the start of every sequence, then
    :meth:`schedule` once per processed frame, in processing order with non-decreasing
    ``start``. A model may keep state between calls (e.g. per-stage busy times of a pipeline)
    and must reset it in :meth:`begin`. Subclasses implement :meth:`schedule` and
    :meth:`describe`.
    """

    def begin(self, sequence: int, num_frames: int) -> None:
        """Start a sequence.

        Args:
            sequence (int): Index of the sequence among those simulated (0-based).
            num_frames (int): Its number of frames.
        """

    def schedule(self, frame_index: int, start: float) -> FrameTiming:
        """Process frame ``frame_index`` of the current sequence, accepted at ``start`` s.

        Args:
            frame_index (int): 0-based index of the input frame in its sequence.
            start (float): Seconds from the sequence start at which the worker took it.

        Returns:
            FrameTiming: Its output's finish time and when the worker takes the next frame.
        """
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description, recorded next to the trace."""
        raise NotImplementedError


class SequentialLatency(LatencyModel):
    """One worker that processes one frame at a time (the reference's single-GPU model).

    A frame accepted at ``start`` finishes at ``start + latency / 1000`` and the worker is free
    then. The latency is a constant, or a per-frame trace (ms of each input frame, indexed by
    its frame index: the ms the model took on that frame), one trace per sequence.

    Args:
        latency_ms (float | Sequence[float] | Sequence[Sequence[float]]): A constant in ms; or
            one trace of ms per frame (used for every sequence); or, with ``per_sequence``,
            one entry per sequence, each a constant or a trace of ms per frame.
        per_sequence (bool): ``latency_ms`` holds one entry per sequence. Defaults to False.
        name (str, optional): What the latency is (e.g. a latency-table key), for the record.
    """

    def __init__(
        self,
        latency_ms: float | Sequence[float] | Sequence[float | Sequence[float]],
        *,
        per_sequence: bool = False,
        name: str | None = None,
    ) -> None:
        if per_sequence:
            if isinstance(latency_ms, (int, float)) or not isinstance(latency_ms, Sequence):
                raise TypeError(
                    'SequentialLatency(per_sequence=True) needs one entry per sequence, '
                    f'got {type(latency_ms).__name__}'
                )
            self._entries = [self._entry(v, f'latency_ms[{i}]') for i, v in enumerate(latency_ms)]
        else:
            self._entries = [self._entry(latency_ms, 'latency_ms')]
        self.per_sequence = per_sequence
        self.name = name
        self._current: float | list[float] = self._entries[0]
        self._sequence = 0

    @staticmethod
    def _entry(value: Any, what: str) -> float | list[float]:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _check_ms(value, what)
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f'{what} must be ms (a number) or a list of ms per frame')
        return [_check_ms(v, f'{what}[{i}]') for i, v in enumerate(value)]

    def begin(self, sequence: int, num_frames: int) -> None:
        if self.per_sequence:
            if sequence >= len(self._entries):
                raise ValueError(
                    f'SequentialLatency has latencies for {len(self._entries)} sequences; '
                    f'sequence {sequence} has none (give one entry per sequence)'
                )
            self._current = self._entries[sequence]
        if isinstance(self._current, list) and len(self._current) < num_frames:
            raise ValueError(
                f'the latency trace of sequence {sequence} has {len(self._current)} entries '
                f'but the sequence has {num_frames} frames (give the ms of every frame)'
            )
        self._sequence = sequence

    def latency_ms(self, frame_index: int) -> float:
        """The latency of frame ``frame_index`` of the current sequence in ms."""
        if isinstance(self._current, list):
            return self._current[frame_index]
        return self._current

    def schedule(self, frame_index: int, start: float) -> FrameTiming:
        finish = start + self.latency_ms(frame_index) / 1000.0
        return FrameTiming(finish=finish, ready=finish)

    def describe(self) -> dict[str, Any]:
        entries = [e if isinstance(e, float) else 'per-frame' for e in self._entries]
        return dict(
            type='sequential',
            name=self.name,
            latency_ms=entries if self.per_sequence else entries[0],
        )


@dataclass
class RealtimeTrace:
    """The outputs of one simulated sequence, in finish order.

    Attributes:
        num_frames (int): Frames of the sequence.
        fps (float): Frame rate it was played at.
        input_index (list[int]): Input frame index of each output (the reference's
            ``input_fidx``).
        start (list[float]): Seconds at which the worker took each of those frames.
        finish (list[float]): Seconds at which each output was ready (the reference's
            ``timestamps``), non-decreasing.
        latency (dict): :meth:`LatencyModel.describe` of the model used.
    """

    num_frames: int
    fps: float
    input_index: list[int] = field(default_factory=list)
    start: list[float] = field(default_factory=list)
    finish: list[float] = field(default_factory=list)
    latency: dict[str, Any] = field(default_factory=dict)

    @property
    def num_processed(self) -> int:
        """Frames whose output finished within the sequence."""
        return len(self.input_index)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (what ``results.json`` records)."""
        return dict(
            num_frames=self.num_frames,
            fps=self.fps,
            input_index=list(self.input_index),
            start=list(self.start),
            finish=list(self.finish),
            latency=dict(self.latency),
        )


def _check_fps(fps: Any) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)):
        raise TypeError(f'fps must be a number of frames per second, got {fps!r}')
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f'fps must be a finite frame rate > 0, got {fps!r}')
    return fps


def simulate_realtime(
    num_frames: int, fps: float, latency: LatencyModel, *, sequence: int = 0
) -> RealtimeTrace:
    """Replay one sequence in real time: which frames the worker takes and when outputs finish.

    Follows the reference simulator's schedule exactly (see the module docstring); the result
    is a deterministic function of ``num_frames``, ``fps`` and the latency model.

    Args:
        num_frames (int): Frames of the sequence (frame ``i`` arrives at ``i / fps`` s).
        fps (float): Frame rate, > 0.
        latency (LatencyModel): Gives each processed frame's finish time and when the worker
            takes the next one. :meth:`LatencyModel.begin` is called first.
        sequence (int): Index of the sequence, passed to ``latency.begin``. Defaults to 0.

    Returns:
        RealtimeTrace: The outputs in finish order (input frame, start, finish).
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral):
        raise TypeError(f'num_frames must be an integer, got {num_frames!r}')
    num_frames = int(num_frames)
    if num_frames < 0:
        raise ValueError(f'num_frames must be >= 0, got {num_frames}')
    fps = _check_fps(fps)
    if not isinstance(latency, LatencyModel):
        raise TypeError(
            f'latency must be a LatencyModel (e.g. SequentialLatency(ms)), got '
            f'{type(latency).__name__}'
        )
    latency.begin(sequence, num_frames)
    outputs: list[tuple[float, int, float]] = []
    t_total = num_frames / fps
    t = 0.0
    last = None
    while t < t_total:
        frame = int(math.floor(t * fps))
        if frame == last:  # finished before the next frame arrived: wait for it
            frame += 1
            if frame == num_frames:
                break
            t = frame / fps
        if frame >= num_frames:  # t * fps rounded up to num_frames (the reference would fail)
            break
        last = frame
        timing = latency.schedule(frame, t)
        if not (timing.finish >= t and timing.ready >= t):
            raise ValueError(
                f'{type(latency).__name__}.schedule({frame}, {t}) returned {timing}: finish and '
                'ready must not be earlier than the start'
            )
        if timing.finish < t_total:
            outputs.append((timing.finish, frame, t))
        t = timing.ready
    outputs.sort(key=lambda o: o[0])  # stable: a pipeline's outputs are in finish order
    return RealtimeTrace(
        num_frames=num_frames,
        fps=float(fps),
        input_index=[o[1] for o in outputs],
        start=[o[2] for o in outputs],
        finish=[o[0] for o in outputs],
        latency=latency.describe(),
    )


@dataclass
class LatencyTable:
    """Milliseconds per frame of models/settings measured on one device, as a JSON file.

    File layout::

        {
          "format": "mmvideoeq/latency_table",
          "version": 1,
          "device": "NVIDIA H100 80GB HBM3",
          "measured": "how: the command, batch size, warm-up, statistic (e.g. median)",
          "latency_ms": {"vid_mdeq/stream@4": 12.5, "vid_mdeq/full": 61.0}
        }

    Args:
        device (str): The device the latencies were measured on.
        measured (str): How they were measured (command, batch, warm-up, statistic).
        latency_ms (dict[str, float]): Model/setting name -> ms per frame (>= 0).
    """

    device: str
    measured: str
    latency_ms: dict[str, float]

    def __post_init__(self) -> None:
        for key in ('device', 'measured'):
            if not isinstance(getattr(self, key), str):
                raise TypeError(f'LatencyTable.{key} must be a string')
        if not isinstance(self.latency_ms, dict):
            raise TypeError('LatencyTable.latency_ms must be a dict of name -> ms per frame')
        self.latency_ms = {
            str(k): _check_ms(v, f'latency_ms[{k!r}]') for k, v in self.latency_ms.items()
        }

    def get(self, name: str) -> float:
        """The ms per frame of ``name``.

        Raises:
            KeyError: ``name`` is not in the table (the message lists the names it has).
        """
        if name not in self.latency_ms:
            raise KeyError(
                f'latency table ({self.device}) has no entry {name!r}; it has '
                f'{sorted(self.latency_ms)}'
            )
        return self.latency_ms[name]

    def model(self, name: str) -> SequentialLatency:
        """A constant :class:`SequentialLatency` of entry ``name``."""
        return SequentialLatency(self.get(name), name=f'{name} ({self.device})')

    def to_dict(self) -> dict[str, Any]:
        return dict(
            format=LATENCY_TABLE_FORMAT,
            version=_LATENCY_TABLE_VERSION,
            device=self.device,
            measured=self.measured,
            latency_ms=dict(self.latency_ms),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the table as JSON to ``path``."""
        with open(path, 'w') as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        """Read a table written by :meth:`save` (or by hand in that layout).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: The file is not JSON or not a latency table (the message names it).
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'latency table {path} does not exist')
        try:
            with open(path) as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f'latency table {path} is not valid JSON: {err}') from None
        if not isinstance(data, dict) or data.get('format') != LATENCY_TABLE_FORMAT:
            raise ValueError(
                f'{path} is not a latency table: expected a JSON object with '
                f'"format": "{LATENCY_TABLE_FORMAT}" (see LatencyTable)'
            )
        if data.get('version') != _LATENCY_TABLE_VERSION:
            raise ValueError(
                f'latency table {path} has version {data.get("version")!r}; this version of '
                f'mmvideoeq reads version {_LATENCY_TABLE_VERSION}'
            )
        missing = [k for k in ('device', 'measured', 'latency_ms') if k not in data]
        if missing:
            raise ValueError(f'latency table {path} lacks {missing}')
        try:
            return cls(
                device=data['device'], measured=data['measured'], latency_ms=data['latency_ms']
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f'latency table {path}: {err}') from None
