"""Timestamped outputs of a real-time run: the record, its JSON files and a live recorder.

The layout is the reference's (github ``mtli/sAP``: ``det/rt_det.py`` writes one pickle per
sequence with ``timestamps``, ``input_fidx`` and the parsed boxes, scores and labels of every
output), stored as JSON. A sequence record holds, per output in finish order:

* ``timestamps``: seconds from the arrival of the sequence's first frame at which the output
  was ready (non-decreasing);
* ``input_fidx``: the 0-based index, within the sequence, of the frame it was computed from;
* ``bboxes`` (``[x1, y1, x2, y2]`` per box, pixels), ``scores`` and ``labels`` (the category
  ids of the annotation file, as the reference writes them);
* optionally ``runtime``: seconds the output took.

A record file is ``{"format": "mmvideoeq/streaming_record", "version": 1, "meta": {...},
"sequences": {name: sequence record}}``; a record directory holds one ``<name>.json`` sequence
record per sequence (the reference's one-file-per-sequence layout). ``docs/streaming.md``
("Streaming AP") gives the schema and the evaluation (``eval_streaming_record.py``).

Plain Python and numpy: no OpenMMLab import.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    'RECORD_FORMAT',
    'SequenceRecord',
    'StreamRecorder',
    'load_record',
    'save_record',
]

RECORD_FORMAT = 'mmvideoeq/streaming_record'
_RECORD_VERSION = 1
_PER_OUTPUT = ('timestamps', 'input_fidx', 'bboxes', 'scores', 'labels')


def _as_float(value: Any, where: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f'{where}: expected numbers, got {value!r:.80}') from None


def _as_boxes(value: Any, where: str) -> np.ndarray:
    boxes = _as_float(value, where)
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f'{where}: boxes must be a list of [x1, y1, x2, y2], got {boxes.shape}')
    if not np.isfinite(boxes).all():
        raise ValueError(f'{where}: boxes must be finite')
    return boxes


def _as_vector(value: Any, n: int, dtype: type, where: str) -> np.ndarray:
    vec = _as_float(value, where).reshape(-1)
    if vec.size != n:
        raise ValueError(f'{where}: {vec.size} values for {n} boxes')
    if not np.isfinite(vec).all():
        raise ValueError(f'{where}: values must be finite')
    if dtype is int:
        if not (vec == np.round(vec)).all():
            raise ValueError(f'{where}: labels must be integers (category ids)')
        return vec.astype(np.int64)
    return vec


@dataclass
class SequenceRecord:
    """The outputs of one sequence of a real-time run, in finish order.

    Attributes:
        timestamps (list[float]): Seconds from the first frame's arrival at which each output
            was ready (non-decreasing).
        input_fidx (list[int]): 0-based index of each output's input frame in the sequence.
        bboxes (list[np.ndarray]): Per output, ``(N, 4)`` boxes ``x1, y1, x2, y2``.
        scores (list[np.ndarray]): Per output, ``(N,)`` scores.
        labels (list[np.ndarray]): Per output, ``(N,)`` integer category ids.
        runtime (list[float], optional): Seconds each output took.
    """

    timestamps: list[float] = field(default_factory=list)
    input_fidx: list[int] = field(default_factory=list)
    bboxes: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    runtime: list[float] | None = None

    def __len__(self) -> int:
        return len(self.timestamps)

    def append(
        self,
        timestamp: float,
        input_fidx: int,
        bboxes: Any,
        scores: Any,
        labels: Any,
        runtime: float | None = None,
        *,
        where: str = 'output',
    ) -> None:
        """Append one output (checked: ``where`` names it in error messages).

        Args:
            timestamp (float): Seconds from the first frame's arrival; not before the last.
            input_fidx (int): Index of the input frame in the sequence (>= 0).
            bboxes: ``(N, 4)`` boxes ``x1, y1, x2, y2`` (array, tensor or nested lists).
            scores: ``(N,)`` scores.
            labels: ``(N,)`` integer category ids.
            runtime (float, optional): Seconds the output took.
        """
        if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float, np.floating)):
            raise TypeError(f'{where}: timestamp must be seconds (a number), got {timestamp!r}')
        timestamp = float(timestamp)
        if not math.isfinite(timestamp):
            raise ValueError(f'{where}: timestamp must be finite, got {timestamp}')
        if self.timestamps and timestamp < self.timestamps[-1]:
            raise ValueError(
                f'{where}: timestamp {timestamp} is earlier than the previous output '
                f'({self.timestamps[-1]}); outputs must be in finish order'
            )
        if isinstance(input_fidx, (bool, float)) or not isinstance(input_fidx, (int, np.integer)):
            raise TypeError(f'{where}: input_fidx must be an integer, got {input_fidx!r}')
        if input_fidx < 0:
            raise ValueError(f'{where}: input_fidx must be >= 0, got {input_fidx}')
        boxes = _as_boxes(_to_numpy(bboxes), f'{where} bboxes')
        n = len(boxes)
        score = _as_vector(_to_numpy(scores), n, float, f'{where} scores')
        label = _as_vector(_to_numpy(labels), n, int, f'{where} labels')
        if runtime is not None:
            if self.runtime is None:
                if self.timestamps:
                    raise ValueError(f'{where}: runtime given for some outputs only')
                self.runtime = []
            self.runtime.append(float(runtime))
        elif self.runtime is not None:
            raise ValueError(f'{where}: runtime given for some outputs only')
        self.timestamps.append(timestamp)
        self.input_fidx.append(int(input_fidx))
        self.bboxes.append(boxes)
        self.scores.append(score)
        self.labels.append(label)

    def to_json(self) -> dict[str, Any]:
        """The JSON form (lists of numbers)."""
        out: dict[str, Any] = dict(
            timestamps=list(self.timestamps),
            input_fidx=list(self.input_fidx),
            bboxes=[b.tolist() for b in self.bboxes],
            scores=[s.tolist() for s in self.scores],
            labels=[lab.tolist() for lab in self.labels],
        )
        if self.runtime is not None:
            out['runtime'] = list(self.runtime)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> SequenceRecord:
        """Parse and check the JSON form; ``where`` (file and sequence) names errors."""
        if not isinstance(data, Mapping):
            raise ValueError(f'{where}: a sequence record must be a JSON object')
        missing = [k for k in _PER_OUTPUT if k not in data]
        if missing:
            raise ValueError(
                f'{where}: missing {missing}; a sequence record has {list(_PER_OUTPUT)} '
                '(and optionally runtime), one entry per output'
            )
        keys = _PER_OUTPUT + (('runtime',) if data.get('runtime') is not None else ())
        for key in keys:
            if not isinstance(data[key], list):
                raise ValueError(f'{where}: {key} must be a list (one entry per output)')
        lengths = {k: len(data[k]) for k in keys}
        if len(set(lengths.values())) > 1:
            raise ValueError(f'{where}: per-output lists differ in length: {lengths}')
        record = cls()
        runtime = data.get('runtime')
        for i in range(lengths['timestamps']):
            try:
                record.append(
                    data['timestamps'][i],
                    data['input_fidx'][i],
                    data['bboxes'][i],
                    data['scores'][i],
                    data['labels'][i],
                    None if runtime is None else runtime[i],
                    where=f'{where}, output {i}',
                )
            except TypeError as err:  # a wrongly typed value in a file is malformed content
                raise ValueError(str(err)) from None
        return record


def _to_numpy(value: Any) -> Any:
    if hasattr(value, 'detach'):  # a torch tensor, without importing torch
        return value.detach().cpu().numpy()
    return value


class StreamRecorder:
    """Collects the outputs of a live stream with wall-clock timestamps and saves the record.

    Usage::

        rec = StreamRecorder(meta=dict(model='...', device='...', fps=30))
        rec.start_sequence('video_0')            # when its first frame arrives
        ...                                      # when the output of frame i is ready:
        rec.add(i, bboxes, scores, labels)       # timestamped now, relative to the start
        rec.save('record.json')                  # or rec.save_dir('record/')

    Args:
        clock (Callable[[], float]): Seconds of a monotonic clock. Defaults to
            ``time.perf_counter`` (as the reference's real-time runner).
        meta (dict, optional): Free JSON-serialisable information saved with the record
            (model, setting, device, fps).
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.perf_counter, meta: dict | None = None
    ) -> None:
        self.clock = clock
        self.meta = dict(meta or {})
        self.sequences: dict[str, SequenceRecord] = {}
        self._current: str | None = None
        self._t0 = 0.0

    def start_sequence(self, name: str, t0: float | None = None) -> None:
        """Start sequence ``name``; its first frame arrived at clock time ``t0`` (now if None)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f'a sequence name must be a non-empty string, got {name!r}')
        if name in self.sequences:
            raise ValueError(f'sequence {name!r} was already recorded')
        self.sequences[name] = SequenceRecord()
        self._current = name
        self._t0 = self.clock() if t0 is None else float(t0)

    def add(
        self,
        input_fidx: int,
        bboxes: Any,
        scores: Any,
        labels: Any,
        *,
        timestamp: float | None = None,
        runtime: float | None = None,
    ) -> float:
        """Record an output of the current sequence.

        Args:
            input_fidx (int): Index of its input frame in the sequence.
            bboxes: ``(N, 4)`` boxes ``x1, y1, x2, y2`` (array or tensor).
            scores: ``(N,)`` scores.
            labels: ``(N,)`` category ids of the annotation file.
            timestamp (float, optional): Seconds from the sequence start; None: now.
            runtime (float, optional): Seconds the output took.

        Returns:
            float: The timestamp recorded.
        """
        if self._current is None:
            raise RuntimeError('StreamRecorder.add before start_sequence')
        if timestamp is None:
            timestamp = self.clock() - self._t0
        record = self.sequences[self._current]
        record.append(
            timestamp,
            input_fidx,
            bboxes,
            scores,
            labels,
            runtime,
            where=f'sequence {self._current!r}, output {len(record)}',
        )
        return float(timestamp)

    def save(self, path: str | os.PathLike) -> None:
        """Write all sequences to one record file (JSON)."""
        save_record(path, self.sequences, meta=self.meta)

    def save_dir(self, directory: str | os.PathLike) -> None:
        """Write one ``<name>.json`` sequence record per sequence (the reference's layout)."""
        os.makedirs(directory, exist_ok=True)
        for name, record in self.sequences.items():
            with open(os.path.join(directory, f'{name}.json'), 'w') as f:
                json.dump(record.to_json(), f)


def save_record(
    path: str | os.PathLike, sequences: Mapping[str, SequenceRecord], *, meta: dict | None = None
) -> None:
    """Write a record file: ``{"format", "version", "meta", "sequences": {name: record}}``."""
    data = dict(
        format=RECORD_FORMAT,
        version=_RECORD_VERSION,
        meta=dict(meta or {}),
        sequences={name: rec.to_json() for name, rec in sequences.items()},
    )
    with open(path, 'w') as f:
        json.dump(data, f)


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f'{what} {path} is not valid JSON: {err}') from None


def load_record(
    path: str | os.PathLike, names: Sequence[str] | None = None
) -> dict[str, SequenceRecord]:
    """Read a record file, or a directory of ``<name>.json`` sequence records.

    Args:
        path (str | PathLike): A record file written by :func:`save_record` /
            :meth:`StreamRecorder.save`, or a directory written by
            :meth:`StreamRecorder.save_dir`.
        names (Sequence[str], optional): The sequences to read from a directory (default: every
            ``*.json`` in it). Ignored for a file.

    Returns:
        dict[str, SequenceRecord]: Sequence name -> record.

    Raises:
        FileNotFoundError: ``path`` (or a named sequence's file) does not exist.
        ValueError: Malformed content; the message names the file, sequence and output.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        if names is None:
            names = sorted(f[:-5] for f in os.listdir(path) if f.endswith('.json'))
        out = {}
        for name in names:
            file = os.path.join(path, f'{name}.json')
            if not os.path.isfile(file):
                raise FileNotFoundError(
                    f'record directory {path} has no {name}.json (the record of sequence '
                    f'{name!r}); every sequence of the annotation file needs one'
                )
            out[name] = SequenceRecord.from_json(_read_json(file, 'sequence record'), file)
        return out
    if not os.path.isfile(path):
        raise FileNotFoundError(f'streaming record {path} does not exist')
    data = _read_json(path, 'streaming record')
    if not isinstance(data, dict) or data.get('format') != RECORD_FORMAT:
        raise ValueError(
            f'{path} is not a streaming record: expected a JSON object with "format": '
            f'"{RECORD_FORMAT}" and "sequences" (or give a directory of <sequence>.json files)'
        )
    if data.get('version') != _RECORD_VERSION:
        raise ValueError(
            f'streaming record {path} has version {data.get("version")!r}; this version of '
            f'mmvideoeq reads version {_RECORD_VERSION}'
        )
    sequences = data.get('sequences')
    if not isinstance(sequences, dict):
        raise ValueError(f'streaming record {path}: "sequences" must be an object name -> record')
    return {
        name: SequenceRecord.from_json(rec, f'{path}, sequence {name!r}')
        for name, rec in sequences.items()
    }
