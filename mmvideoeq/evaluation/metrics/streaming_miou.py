"""Streaming mIoU: mmseg's mIoU of the label maps available when each frame must be answered.

The streaming protocol of Li, Wang, Ramanan, *Towards Streaming Perception* (ECCV 2020), Sec. 3,
applied to semantic segmentation: every ground-truth frame ``i`` of a sequence is paired with the
latest output finished by ``t_i = (i - eta) / fps``, by exactly the rule of the reference's
streaming AP (:func:`~mmvideoeq.evaluation.functional.pair_stream`), and the pairs are scored
the way mmseg's :class:`~mmseg.evaluation.IoUMetric` scores a test set: per frame its
``intersect_and_union`` (pixels whose ground truth is ``ignore_index`` dropped; histograms over
``0 .. num_classes - 1``), areas summed over all frames, then ``total_area_to_metrics`` and the
percentages rounded to 2 decimals, a class absent from both ground truth and predictions being
NaN and left out of the mean (``np.nanmean``). Both mmseg functions are called, not rewritten.

**Missing outputs.** As the reference scores a frame without an output with an empty set of
detections, a frame with no output finished yet (or whose paired output is ``None``) is scored
with an *empty* label map: every pixel :data:`EMPTY_LABEL` (``-1``, no class). mmseg's
histograms only count ``0 .. num_classes - 1``, so such a frame adds nothing to the
intersection and the predicted area, and every valid ground-truth pixel to the union of its
class: all of them count as missed.

The prediction of input frame ``j`` is compared with the ground truth of frame ``i`` pixel by
pixel, at the ground truth's resolution (mmseg's ``pred_sem_seg`` is already at the original
size); maps of different sizes raise ``ValueError``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from mmseg.evaluation import IoUMetric

from mmvideoeq.evaluation.functional.streaming_pairs import StreamCounts, pair_outputs

__all__ = ['EMPTY_LABEL', 'IoUScoring', 'StreamingIoUResult', 'streaming_miou']

#: The label of every pixel of an empty prediction (no output yet): no class.
EMPTY_LABEL = -1


@dataclass(frozen=True)
class IoUScoring:
    """The arguments of mmseg's ``IoUMetric`` that the scoring needs.

    Attributes:
        num_classes (int): Classes (``len(dataset_meta['classes'])``).
        ignore_index (int): Ground-truth label left out. Defaults to 255.
        iou_metrics (tuple[str, ...]): ``'mIoU'``, ``'mDice'``, ``'mFscore'``.
        nan_to_num (int | None): Replace NaN class scores by this value (mmseg's option).
        beta (int): Weight of recall in the F-score.
    """

    num_classes: int
    ignore_index: int = 255
    iou_metrics: tuple[str, ...] = ('mIoU',)
    nan_to_num: int | None = None
    beta: int = 1

    @classmethod
    def of(cls, metric: IoUMetric) -> IoUScoring:
        """The scoring of an (mmseg or subclassed) ``IoUMetric`` with its ``dataset_meta``."""
        meta = metric.dataset_meta or {}
        if 'classes' not in meta:
            raise ValueError(
                f'{type(metric).__name__} has no dataset_meta classes: the streaming mIoU needs '
                'the number of classes; set the dataset metainfo classes'
            )
        return cls(
            num_classes=len(meta['classes']),
            ignore_index=int(metric.ignore_index),
            iou_metrics=tuple(metric.metrics),
            nan_to_num=metric.nan_to_num,
            beta=metric.beta,
        )


@dataclass
class StreamingIoUResult:
    """Streaming mIoU and the association counts.

    Attributes:
        metrics (dict[str, float]): mmseg's summary in percent (``aAcc``, ``mIoU``, ``mAcc``,
            ...) over the paired ground-truth frames.
        class_iou (list[float]): Per class IoU in percent (NaN: class absent from both).
        counts (StreamCounts): Over the ground-truth frames of all sequences.
        per_sequence (dict[str, StreamCounts]): Per sequence name.
        fps (float): Frame rate used.
        eta (float): ``eta`` used.
    """

    metrics: dict[str, float]
    class_iou: list[float]
    counts: StreamCounts
    per_sequence: dict[str, StreamCounts] = field(default_factory=dict)
    fps: float = 0.0
    eta: float = 0.0

    @property
    def miou(self) -> float:
        return self.metrics['mIoU']

    def as_dict(self, traces: bool = True) -> dict[str, Any]:
        """JSON-serialisable: the summary keys, class IoUs, counts, per-sequence counts.
        (``traces`` for the interface of :class:`~..functional.StreamingAPResult`; there are
        none.)"""
        out: dict[str, Any] = dict(self.metrics)
        out.update(
            class_IoU=[None if np.isnan(v) else v for v in self.class_iou],
            fps=self.fps,
            eta=self.eta,
            counts=self.counts.as_dict(),
            per_sequence={k: v.as_dict() for k, v in self.per_sequence.items()},
        )
        return out


def _label_map(value: Any, what: str) -> np.ndarray:
    arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, 'detach') else value)
    arr = arr.squeeze(0) if arr.ndim == 3 and arr.shape[0] == 1 else arr
    if arr.ndim != 2:
        raise ValueError(f'{what} must be a label map (H, W) or (1, H, W), got shape {arr.shape}')
    return arr


def streaming_miou(
    sequences: Mapping[str, tuple[Sequence[Any], Sequence[tuple[float, int, Any]]]],
    scoring: IoUScoring,
    *,
    fps: float,
    eta: float = 0.0,
) -> StreamingIoUResult:
    """Streaming mIoU of timestamped label maps (see the module docstring).

    Args:
        sequences: Sequence name -> (per frame in frame order its ground-truth label map
            ``(H, W)`` or ``None`` for a frame without ground truth, not scored; the outputs in
            finish order, each ``(finish time in s from the first frame's arrival, input frame
            index, label map (H, W) or None)``). Label maps are numpy arrays or tensors.
        scoring (IoUScoring): Classes, ignore index and mmseg's metric options.
        fps (float): Frame rate of the evaluation.
        eta (float): See :func:`~mmvideoeq.evaluation.functional.pair_stream`. Defaults to 0.

    Returns:
        StreamingIoUResult: mmseg's summary of the paired frames, and the counts (over the
        frames with ground truth).

    Raises:
        ValueError: Malformed outputs or maps of different sizes (the message names the
            sequence and frames), or no frame with ground truth at all.
    """
    areas = []
    per_sequence: dict[str, StreamCounts] = {}
    for name, (gts, outputs) in sequences.items():
        pairing = pair_outputs(name, outputs, len(gts), fps=fps, eta=eta)
        for i, (gt, k, j) in enumerate(zip(gts, pairing.output_index, pairing.input_index)):
            if gt is None:
                continue
            gt = _label_map(gt, f'sequence {name!r}: the ground truth of frame {i}')
            pred = None if k is None else outputs[k][2]
            if pred is None:
                pred = np.full(gt.shape, EMPTY_LABEL, dtype=np.int64)
            else:
                pred = _label_map(pred, f'sequence {name!r}: the prediction of frame {j}')
            if pred.shape != gt.shape:
                raise ValueError(
                    f'sequence {name!r}: the prediction of frame {j} is {pred.shape} but the '
                    f'ground truth of frame {i} is {gt.shape}; streaming mIoU compares them '
                    'pixel by pixel, so every frame of a sequence must have one size'
                )
            pred_t = torch.from_numpy(pred.astype(np.int64))
            gt_t = torch.from_numpy(gt.astype(np.int64))
            areas.append(
                IoUMetric.intersect_and_union(
                    pred_t, gt_t, scoring.num_classes, scoring.ignore_index
                )
            )
        per_sequence[name] = pairing.counts_of(i for i, gt in enumerate(gts) if gt is not None)
    if not areas:
        raise ValueError(
            'streaming mIoU: no frame has ground truth (every ground-truth map is None)'
        )
    totals = [sum(column) for column in zip(*areas)]
    ret = IoUMetric.total_area_to_metrics(
        *totals, list(scoring.iou_metrics), scoring.nan_to_num, scoring.beta
    )
    metrics = OrderedDict()
    for key, value in ret.items():  # mmseg's summary (IoUMetric.compute_metrics)
        metrics[key if key == 'aAcc' else 'm' + key] = float(np.round(np.nanmean(value) * 100, 2))
    class_iou = [float(v) for v in np.round(ret['IoU'] * 100, 2)] if 'IoU' in ret else []
    return StreamingIoUResult(
        metrics=dict(metrics),
        class_iou=class_iou,
        counts=sum(per_sequence.values(), StreamCounts()),
        per_sequence=per_sequence,
        fps=float(fps),
        eta=float(eta),
    )
