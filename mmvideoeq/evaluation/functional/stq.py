"""Segmentation and tracking quality (STQ) and its depth-aware version (DSTQ).

STQ (Weber et al., "STEP: Segmenting and Tracking Every Pixel", NeurIPS 2021 datasets track,
Eqs. 4-6) is the geometric mean of

* AQ, the association quality of the thing tubes of each sequence,
  ``AQ = 1 / sum_seq |gt tubes| * sum_seq sum_g 1/|g| sum_p TPA(p, g) * IoU_id(p, g)``, with
  ``IoU_id = TPA / (TPA + FPA + FNA)`` over all pixels of the tubes (crowd pixels, thing pixels
  with instance 0, left out), and
* SQ, the mean class IoU over the whole data set (classes whose union is not empty),

``STQ = sqrt(AQ * SQ)``. DSTQ (deeplab2; ViP-DeepLab's SemKITTI-DVPS ``eval_dstq.py``) adds the
depth quality ``DQ@t``, the share of pixels with ground-truth depth whose prediction satisfies
``max(d/d*, d*/d) <= t``, and ``DSTQ@t = (STQ^2 * DQ@t)^(1/3)``; ``DQ`` is the geometric mean of
``DQ@t`` over the thresholds (1.25 and 1.1) and ``DSTQ = (STQ^2 * DQ)^(1/3)``.

Conventions follow deeplab2 ``evaluation/numpy/segmentation_and_tracking_quality.py`` and
``evaluation/depth_aware_segmentation_and_tracking_quality.py`` (Apache-2.0; no code copied):
the ignore label maps to an extra confusion column when it is ``>= num_classes``, ground-truth
void rows are dropped, a predicted void on a labelled pixel counts as a miss of that class (and
makes the void column count as a class with IoU 0, as in deeplab2), the depth total counts every
valid ground-truth pixel (a non-positive predicted depth is an outlier). Counts are exact
integers here (deeplab2 accumulates float32 counts, exact below 2**24 pixels per segment).
Written by hand because no installed library has STQ.

Per-frame statistics (:meth:`STQuality.frame_stats`) are small and add up, so a metric can
keep them instead of the maps.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

import numpy as np

from .panoptic_quality import check_panoptic

__all__ = ['STQuality', 'DSTQuality']


def _count(ids: np.ndarray) -> dict:
    uniq, counts = np.unique(ids, return_counts=True)
    return dict(zip(uniq.tolist(), counts.tolist()))


def _add_counts(target: dict, counts: dict) -> None:
    for key, value in counts.items():
        target[key] = target.get(key, 0) + value


class STQuality:
    """Accumulates STQ over frames of one or more sequences.

    Args:
        num_classes (int): Evaluated classes.
        thing_ids (Sequence[int]): Thing classes (tracked).
        ignore_label (int): Void class of the ground truth.
        label_divisor (int): ``id = class * label_divisor + instance``.
        void_pixels (str): ``'keep'`` (deeplab2: predictions on ground-truth void still count
            in the predicted tubes' sizes) or ``'drop'`` (ViP-DeepLab's SemKITTI-DVPS
            ``eval_dstq.py``: only labelled pixels are evaluated; depth is not affected).

    Example:
        >>> stq = STQuality(2, [0], 255, 1000)
        >>> stq.update(np.array([[1, 1]]), np.array([[1, 2]]), sequence_id='a')
        >>> round(stq.result()['AQ'], 3)
        0.5
    """

    def __init__(
        self,
        num_classes: int,
        thing_ids: Sequence[int],
        ignore_label: int,
        label_divisor: int,
        void_pixels: str = 'keep',
    ) -> None:
        if void_pixels not in ('keep', 'drop'):
            raise ValueError(f"void_pixels must be 'keep' or 'drop', got {void_pixels!r}")
        self.void_pixels = void_pixels
        self.num_classes = int(num_classes)
        self.thing_ids = tuple(int(t) for t in thing_ids)
        self.ignore_label = int(ignore_label)
        self.label_divisor = int(label_divisor)
        if self.ignore_label >= self.num_classes:
            self._size = self.num_classes + 1
            self._void_index = self.num_classes
            self._rows = np.arange(self.num_classes)
        else:
            self._size = self.num_classes
            self._void_index = self.ignore_label
            self._rows = np.array([i for i in range(self.num_classes) if i != self.ignore_label])
        self.reset()

    def reset(self) -> None:
        """Forget every frame."""
        self._seq: OrderedDict = OrderedDict()

    def _semantic(self, ids: np.ndarray, is_prediction: bool) -> np.ndarray:
        sem = ids // self.label_divisor
        void = sem == self.ignore_label
        if is_prediction:
            void |= sem == self.num_classes
        return np.where(void, self._void_index, sem)

    def frame_stats(self, gt, pred) -> dict:
        """Statistics of one frame.

        Args:
            gt (array-like): ``(H, W)`` ground-truth ids (any shape, same as ``pred``).
            pred (array-like): Predicted ids; classes ``0 .. C``, ``C`` and ``ignore_label``
                meaning void.

        Returns:
            dict: ``confusion`` ``(S, S)`` int64 class confusion (rows ground truth),
            ``gt``/``pred`` thing-tube pixel counts ``{id: n}``, ``inter`` ``{(gt id, pred id):
            n}``.
        """
        gt = np.asarray(gt).astype(np.int64)
        pred = np.asarray(pred).astype(np.int64)
        if gt.shape != pred.shape:
            raise ValueError(f'ground truth {gt.shape} and prediction {pred.shape} differ in size')
        kw = dict(
            num_classes=self.num_classes,
            label_divisor=self.label_divisor,
            ignore_label=self.ignore_label,
        )
        check_panoptic(gt, name='gt', **kw)
        check_panoptic(pred, name='pred', is_prediction=True, **kw)
        if self.void_pixels == 'drop':
            labelled = gt // self.label_divisor != self.ignore_label
            gt, pred = gt[labelled], pred[labelled]
        gt_sem, pred_sem = self._semantic(gt, False), self._semantic(pred, True)
        confusion = np.bincount(
            (gt_sem * self._size + pred_sem).ravel(), minlength=self._size**2
        ).reshape(self._size, self._size)
        things = np.array(self.thing_ids, np.int64)
        gt_thing = np.isin(gt_sem, things)
        crowd = gt_thing & (gt % self.label_divisor == 0)
        gt_mask = gt_thing & ~crowd
        pred_mask = np.isin(pred_sem, things) & ~crowd
        both = gt_mask & pred_mask
        inter = _count(gt[both] * (2**31) + pred[both])
        return dict(
            confusion=confusion.astype(np.int64),
            gt=_count(gt[gt_mask]),
            pred=_count(pred[pred_mask]),
            inter={(k // 2**31, k % 2**31): v for k, v in inter.items()},
        )

    def add(self, stats: dict, sequence_id: Hashable = 0) -> None:
        """Add the statistics of a frame of ``sequence_id``.

        Args:
            stats (dict): From :meth:`frame_stats`.
            sequence_id (Hashable): The frame's sequence.
        """
        if sequence_id not in self._seq:
            self._seq[sequence_id] = dict(
                confusion=np.zeros((self._size, self._size), np.int64),
                gt={},
                pred={},
                inter={},
                length=0,
            )
        seq = self._seq[sequence_id]
        seq['confusion'] += stats['confusion']
        for key in ('gt', 'pred', 'inter'):
            _add_counts(seq[key], stats[key])
        seq['length'] += 1

    def update(self, gt, pred, sequence_id: Hashable = 0) -> None:
        """:meth:`frame_stats` then :meth:`add`."""
        self.add(self.frame_stats(gt, pred), sequence_id)

    def _mean_iou(self, confusion: np.ndarray) -> float:
        kept = np.zeros_like(confusion)
        kept[self._rows] = confusion[self._rows]
        tp = np.diag(kept).astype(np.float64)
        union = kept.sum(0) + kept.sum(1) - tp
        num = np.count_nonzero(union)
        return float(np.sum(tp / np.maximum(union, 1e-15)) / num) if num else float('nan')

    @staticmethod
    def _aq_sum(seq: dict) -> float:
        total = 0.0
        for (g, p), tpa in seq['inter'].items():
            union = seq['gt'][g] + seq['pred'][p] - tpa
            total += tpa * (tpa / union) / seq['gt'][g]
        return total

    def result(self) -> dict:
        """STQ, AQ and IoU, overall and per sequence.

        Returns:
            dict: ``STQ``, ``AQ``, ``IoU`` (floats), and ``STQ_per_seq``, ``AQ_per_seq``,
            ``IoU_per_seq``, ``ID_per_seq``, ``Length_per_seq`` (lists, sequences in the
            order first seen).
        """
        if not self._seq:
            raise ValueError('STQ saw no frame')
        seqs = list(self._seq.values())
        aq_sums = np.array([self._aq_sum(s) for s in seqs])
        tubes = np.array([len(s['gt']) for s in seqs], np.float64)
        aq = float(aq_sums.sum() / max(tubes.sum(), 1e-15))
        aq_per_seq = aq_sums / np.maximum(tubes, 1e-15)
        iou_per_seq = np.array([self._mean_iou(s['confusion']) for s in seqs])
        iou = self._mean_iou(sum(s['confusion'] for s in seqs))
        return dict(
            STQ=float(np.sqrt(aq * iou)),
            AQ=aq,
            IoU=iou,
            STQ_per_seq=np.sqrt(aq_per_seq * iou_per_seq).tolist(),
            AQ_per_seq=aq_per_seq.tolist(),
            IoU_per_seq=iou_per_seq.tolist(),
            ID_per_seq=list(self._seq),
            Length_per_seq=[s['length'] for s in seqs],
        )


class DSTQuality(STQuality):
    """STQ plus the depth inlier quality DQ (deeplab2's DSTQ).

    Args:
        num_classes (int): Evaluated classes.
        thing_ids (Sequence[int]): Thing classes.
        ignore_label (int): Void class.
        label_divisor (int): Label divisor.
        depth_thresholds (Sequence[float]): Inlier thresholds ``t`` (deeplab2: 1.25, 1.1).
        void_pixels (str): See :class:`STQuality`.
    """

    def __init__(
        self,
        num_classes: int,
        thing_ids: Sequence[int],
        ignore_label: int,
        label_divisor: int,
        depth_thresholds: Sequence[float] = (1.25, 1.1),
        void_pixels: str = 'keep',
    ) -> None:
        if not depth_thresholds:
            raise ValueError('depth_thresholds must not be empty')
        self.depth_thresholds = tuple(float(t) for t in depth_thresholds)
        super().__init__(num_classes, thing_ids, ignore_label, label_divisor, void_pixels)

    def frame_stats(self, gt, pred, gt_depth=None, pred_depth=None) -> dict:
        """STQ statistics plus ``depth_total`` and ``depth_inliers`` (one per threshold)."""
        if gt_depth is None or pred_depth is None:
            raise ValueError('DSTQ needs gt_depth and pred_depth')
        stats = super().frame_stats(gt, pred)
        gt_depth = np.asarray(gt_depth, np.float64)
        pred_depth = np.asarray(pred_depth, np.float64)
        if gt_depth.shape != pred_depth.shape:
            raise ValueError(
                f'ground-truth depth {gt_depth.shape} and predicted depth {pred_depth.shape} '
                'differ in size'
            )
        valid = gt_depth > 0
        both = valid & (pred_depth > 0)
        ratio = np.maximum(pred_depth[both] / gt_depth[both], gt_depth[both] / pred_depth[both])
        stats['depth_total'] = int(valid.sum())
        stats['depth_inliers'] = [int((ratio <= t).sum()) for t in self.depth_thresholds]
        return stats

    def add(self, stats: dict, sequence_id: Hashable = 0) -> None:
        """Add a frame's statistics (from :meth:`frame_stats`)."""
        super().add(stats, sequence_id)
        seq = self._seq[sequence_id]
        seq['depth_total'] = seq.get('depth_total', 0) + stats['depth_total']
        inliers = seq.setdefault('depth_inliers', [0] * len(self.depth_thresholds))
        for i, n in enumerate(stats['depth_inliers']):
            inliers[i] += n

    def update(self, gt, pred, gt_depth=None, pred_depth=None, sequence_id: Hashable = 0):
        """:meth:`frame_stats` then :meth:`add`."""
        self.add(self.frame_stats(gt, pred, gt_depth, pred_depth), sequence_id)

    def result(self) -> dict:
        """STQ's keys plus ``DQ``, ``DQ@t``, ``DSTQ``, ``DSTQ@t`` and their ``_per_seq`` lists."""
        out = super().result()
        seqs = list(self._seq.values())
        total = sum(s['depth_total'] for s in seqs)
        dq_all = []
        for i, t in enumerate(self.depth_thresholds):
            inliers = sum(s['depth_inliers'][i] for s in seqs)
            dq = inliers / total if total else 0.0
            dq_all.append(dq)
            per_seq = [
                s['depth_inliers'][i] / s['depth_total'] if s['depth_total'] else 0.0 for s in seqs
            ]
            out[f'DQ@{t:g}'] = dq
            out[f'DQ_per_seq@{t:g}'] = per_seq
            out[f'DSTQ@{t:g}'] = (out['STQ'] ** 2 * dq) ** (1 / 3)
            out[f'DSTQ_per_seq@{t:g}'] = [
                (stq**2 * d) ** (1 / 3) for stq, d in zip(out['STQ_per_seq'], per_seq)
            ]
        out['DQ'] = float(np.prod(dq_all) ** (1 / len(dq_all)))
        out['DSTQ'] = (out['STQ'] ** 2 * out['DQ']) ** (1 / 3)
        return out
