"""Streaming PQ / DVPQ: the project's DVPQ of the panoptic outputs available when each frame must
be answered.

The streaming protocol of Li, Wang, Ramanan, *Towards Streaming Perception* (ECCV 2020), Sec. 3,
applied to depth-aware video panoptic segmentation: every ground-truth frame ``i`` of a sequence
is paired with the latest output finished by ``t_i = (i - eta) / fps``, by exactly the rule of
the reference's streaming AP (:func:`~mmvideoeq.evaluation.functional.pair_stream`). The paired
sequence (ground truth of frame ``i``, panoptic ids and depth of input frame ``j``) is then
scored exactly as :class:`~mmvideoeq.evaluation.metrics.DVPQMetric` scores an ordinary run: each
frame's pair histograms by the metric's own :meth:`~.DVPQMetric.frame_record` (its checks and the
depth relabelling of thesis Eq. 7.5), frames ordered by ``(video, frame)``, then
:func:`~mmvideoeq.evaluation.functional.dvpq_from_pairs` with the metric's protocol (windows
``k``, depth thresholds ``lambda``, window scope, class averaging, epsilon, false-positive void
rule) and the metric's keys in percent: ``PQ`` (k = 1), ``VPQ``, ``DVPQ``, ``VPQ_k{k}``,
``DVPQ_k{k}_l{lambda}`` and their ``_th`` / ``_st``.

**Missing outputs.** As the reference scores a frame without an output with an empty set of
detections, a ground-truth frame with no output finished yet (or whose paired output is
``None``: a frame the worker could not process) is answered with an *empty* prediction
(:func:`empty_prediction`): every pixel the id ``ignore_label * label_divisor`` (the void class,
a segment the metric never matches and never counts as a false positive) and depth 0. Depth 0
is an outlier wherever the ground truth has depth (``|0 - d| / d = 1 > lambda`` for every
protocol threshold below 1), which relabels it to the void class ``num_classes``: neither id
predicts a segment, so with or without depth every ground-truth segment of that frame (or of
each window through it) is a false negative and nothing is a false positive.

**Stale outputs keep their ids.** When output ``j`` answers several ground-truth frames (the
worker was busy), its panoptic ids are repeated in each of them. That is the intended meaning
of "the latest available answer" for video panoptic windows: a tube through a window with a
repeated answer is matched with the same ids, and it scores well only as far as the scene has
not moved.

**Frames without ground truth.** A ground-truth entry ``None`` (a frame the accuracy pass
skipped, which :class:`~.DVPQMetric` leaves out) is not scored and, as in the metric, stays in
its sequence as a frame without labelled pixels, so its neighbours still form windows.

Plain numpy over the functional DVPQ; written by hand only for the pairing and the empty
prediction, which the metric has no notion of.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmvideoeq.evaluation.functional import DVPQProtocol, PairCounts, dvpq_from_pairs
from mmvideoeq.evaluation.functional.streaming_pairs import StreamCounts, pair_outputs

from .dvps_metric import DVPQMetric

__all__ = [
    'EMPTY_DEPTH',
    'PanopticFrame',
    'DVPQScoring',
    'StreamingDVPQResult',
    'empty_prediction',
    'streaming_dvpq',
]

#: The depth of every pixel of an empty prediction (no output yet): no depth.
EMPTY_DEPTH = 0.0


@dataclass
class PanopticFrame:
    """The panoptic ids and depth of one frame (a prediction or a ground truth).

    Attributes:
        panoptic (np.ndarray): ``(H, W)`` integer ids ``class * label_divisor + instance``.
        depth (np.ndarray | None): ``(H, W)`` depth (metres; ground truth 0 where invalid), or
            None (no depth: evaluable only with ``thresholds=()``).
    """

    panoptic: np.ndarray
    depth: np.ndarray | None = None


@dataclass(frozen=True)
class DVPQScoring:
    """What the streaming DVPQ needs of a :class:`~.DVPQMetric`: its protocol.

    Attributes:
        protocol (DVPQProtocol): Classes, label divisor, ignore label, windows, depth
            thresholds, window scope, averaging, epsilon and false-positive void rule.
    """

    protocol: DVPQProtocol

    @classmethod
    def of(cls, metric: DVPQMetric) -> DVPQScoring:
        """The scoring of a ``DVPQMetric`` (its ``protocol``)."""
        return cls(protocol=metric.protocol)

    @property
    def keys(self) -> tuple[str, str]:
        """The headline key (``DVPQ``, or ``VPQ`` without depth thresholds) and the second one
        (``PQ``, or ``VPQ`` when the windows lack ``k = 1``)."""
        main = 'DVPQ' if self.protocol.thresholds else 'VPQ'
        second = 'PQ' if 1 in self.protocol.windows else 'VPQ'
        return main, second

    def metric(self) -> DVPQMetric:
        """A ``DVPQMetric`` of this protocol (its :meth:`~.DVPQMetric.frame_record` scores each
        frame)."""
        return DVPQMetric(
            protocol=None, **self.protocol.__dict__, offset_buckets=None, ci_resamples=0
        )


@dataclass
class StreamingDVPQResult:
    """Streaming PQ / VPQ / DVPQ and the association counts.

    Attributes:
        metrics (dict[str, float]): ``DVPQMetric``'s keys in percent (``DVPQ``, ``VPQ``, ``PQ``
            first, then ``_th`` / ``_st`` and per window and threshold) of the paired frames.
        num_windows (dict[str, int]): ``num_windows_k{k}``: windows evaluated per ``k``.
        counts (StreamCounts): Over the ground-truth frames of all sequences.
        per_sequence (dict[str, StreamCounts]): Per sequence name.
        fps (float): Frame rate used.
        eta (float): ``eta`` used.
    """

    metrics: dict[str, float]
    num_windows: dict[str, int] = field(default_factory=dict)
    counts: StreamCounts = field(default_factory=StreamCounts)
    per_sequence: dict[str, StreamCounts] = field(default_factory=dict)
    fps: float = 0.0
    eta: float = 0.0

    def as_dict(self, traces: bool = True) -> dict[str, Any]:
        """JSON-serialisable: the metric keys, window counts, counts, per-sequence counts
        (``traces`` for the interface of :class:`~..functional.StreamingAPResult`; there are
        none)."""
        out: dict[str, Any] = dict(self.metrics)
        out.update(
            self.num_windows,
            fps=self.fps,
            eta=self.eta,
            counts=self.counts.as_dict(),
            per_sequence={k: v.as_dict() for k, v in self.per_sequence.items()},
        )
        return out


def empty_prediction(gt: PanopticFrame, protocol: DVPQProtocol) -> PanopticFrame:
    """The prediction of a frame without output (see the module docstring).

    Args:
        gt (PanopticFrame): The ground truth it answers (for the size; depth only if the ground
            truth has depth).
        protocol (DVPQProtocol): Gives ``ignore_label * label_divisor``.

    Returns:
        PanopticFrame: ``(H, W)`` ids all ``ignore_label * label_divisor``, depth all
        :data:`EMPTY_DEPTH` (None when ``gt.depth`` is None).
    """
    shape = np.shape(gt.panoptic)
    void = protocol.ignore_label * protocol.label_divisor
    depth = None if gt.depth is None else np.full(shape, EMPTY_DEPTH, np.float32)
    return PanopticFrame(np.full(shape, void, np.int64), depth)


def _array(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, 'detach') else value)
    return arr[0] if arr.ndim == 3 and arr.shape[0] == 1 else arr


def _no_pixels(protocol: DVPQProtocol) -> dict:
    """The pair histograms of a frame without labelled pixels (``DVPQMetric``'s skipped
    frame)."""
    empty = PairCounts(*(np.zeros(0, np.int64) for _ in range(3)))
    return {key: empty for key in (None, *map(float, protocol.thresholds))}


def streaming_dvpq(
    sequences: Mapping[str, tuple[Sequence[Any], Sequence[tuple[float, int, Any]]]],
    scoring: DVPQScoring,
    *,
    fps: float,
    eta: float = 0.0,
) -> StreamingDVPQResult:
    """Streaming PQ / VPQ / DVPQ of timestamped panoptic outputs (see the module docstring).

    Args:
        sequences: Sequence name -> (per frame in frame order its ground truth, a
            :class:`PanopticFrame` or ``None`` for a frame without ground truth, not scored;
            the outputs in finish order, each ``(finish time in s from the first frame's
            arrival, input frame index, PanopticFrame or None)``). Arrays are numpy arrays or
            tensors, ``(H, W)`` or ``(1, H, W)``. Sequences are ordered by name, as
            ``DVPQMetric`` orders videos (it matters for ``window_scope='global'``).
        scoring (DVPQScoring): The protocol.
        fps (float): Frame rate of the evaluation.
        eta (float): See :func:`~mmvideoeq.evaluation.functional.pair_stream`. Defaults to 0.

    Returns:
        StreamingDVPQResult: ``DVPQMetric``'s keys of the paired frames, and the counts (over
        the frames with ground truth).

    Raises:
        ValueError: Malformed outputs (the message names the sequence), maps of different
            sizes or ids out of range (``DVPQMetric``'s checks, naming the frames), or no frame
            with ground truth at all.
        KeyError: Depth thresholds without a ground-truth or predicted depth.
    """
    protocol = scoring.protocol
    metric = scoring.metric()
    frames, seqs = [], []
    per_sequence: dict[str, StreamCounts] = {}
    for name in sorted(sequences, key=str):
        gts, outputs = sequences[name]
        pairing = pair_outputs(name, outputs, len(gts), fps=fps, eta=eta)
        for i, (gt, k, j) in enumerate(zip(gts, pairing.output_index, pairing.input_index)):
            seqs.append(str(name))
            if gt is None:
                frames.append(_no_pixels(protocol))
                continue
            pred = None if k is None else outputs[k][2]
            if pred is None:
                pred = empty_prediction(gt, protocol)
            what = f'sequence {name!r}, ground truth of frame {i}, ' + (
                'no output (empty prediction)' if j is None else f'prediction of frame {j}'
            )
            record = metric.frame_record(
                _array(gt.panoptic), _array(pred.panoptic), _array(gt.depth),
                _array(pred.depth), name=what,
            )  # fmt: skip
            frames.append(record['pairs'])
        scored = (i for i, gt in enumerate(gts) if gt is not None)
        per_sequence[str(name)] = pairing.counts_of(scored)
    total = sum(per_sequence.values(), StreamCounts())
    if not total.num_frames:
        raise ValueError('streaming DVPQ: no frame has ground truth (every ground truth is None)')
    full = dvpq_from_pairs(frames, seqs, protocol)
    # DVPQMetric.compute_metrics' scalars: percent, the headline keys first
    scalars = {k: 100 * v for k, v in full.items() if k != 'stats' and not k.startswith('num_')}
    main = [k for k in ('DVPQ', 'VPQ', 'PQ') if k in scalars]
    metrics = {k: float(scalars[k]) for k in main + [k for k in scalars if k not in main]}
    return StreamingDVPQResult(
        metrics=metrics,
        num_windows={k: int(v) for k, v in full.items() if k.startswith('num_windows')},
        counts=total,
        per_sequence=per_sequence,
        fps=float(fps),
        eta=float(eta),
    )
