"""Panoptic quality (PQ) of panoptic id maps, with the deeplab2 and ViP-DeepLab conventions.

PQ (Kirillov et al., "Panoptic Segmentation", CVPR 2019, Eq. 1) per class ``c``::

    PQ_c = sum_{(g, p) in TP_c} IoU(g, p) / (|TP_c| + |FP_c| / 2 + |FN_c| / 2)
         = SQ_c * RQ_c,   SQ_c = sum IoU / |TP_c|,   RQ_c = |TP_c| / (|TP_c| + |FP_c|/2 + |FN_c|/2)

A segment is an id of a panoptic map ``class * label_divisor + instance``; a ground-truth and a
predicted segment of the same class match when their IoU exceeds 0.5. The union leaves out the
predicted segment's pixels on ground-truth *void* (id ``ignore_label * label_divisor``); an
unmatched prediction lying more than half on void is not a false positive.

Everything is computed from the *pair histogram* of a frame (:class:`PairCounts`: the pixel count
of every (ground-truth id, predicted id) pair). Pair histograms add up, so the statistics of a
window of frames concatenated side by side (VPQ, thesis Eq. 7.2) are those of the summed
histograms, and a metric only has to keep a few hundred numbers per frame.

Conventions (the reference code path each one follows):

* ``fp_void='void_id'`` (deeplab2 ``evaluation/panoptic_quality.py``,
  ``prediction_ignored_overlap``): the false-positive rule counts overlap with the void id only;
  ``fp_void='ignore_class'`` (ViP-DeepLab ``cityscapes-dvps/eval_dvpq.py`` and
  ``semkitti-dvps/eval_dvpq.py``, ``prediction_ignored_overlap``): overlap with every ground-truth
  segment of the ignored class (void crowd ids included). The union always subtracts the void id
  only (both references).
* Predicted segments of the ignored class or of class ``num_classes`` (the "void" class DVPQ
  relabels depth outliers to) are never matched and never false positives: deeplab2 skips the
  ignored class; ViP-DeepLab counts class 19 in a 20th slot that it drops before averaging.
* :func:`pq_summary` ``average='valid'`` (deeplab2 ``PanopticQuality.result``): ``0/0 -> 0`` and
  the mean over classes with ``TP + FP + FN > 0``; ``average='all'`` with ``epsilon``
  (ViP-DeepLab ``main``): ``SQ = IoU / (TP + eps)``, ``RQ = TP / (TP + FN/2 + FP/2 + eps)``, mean
  over all classes (``eps=0``, the Cityscapes-DVPS script, gives NaN when a class has no TP;
  ``eps=1e-10``, the SemKITTI-DVPS script, gives 0).

Written by hand (no code copied; deeplab2 and ViP-DeepLab are Apache-2.0 / unlicensed reference
scripts) because mmdet's panopticapi port works on COCO segment lists, not on id maps, and has
neither convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    'PairCounts',
    'PQStats',
    'panoptic_pairs',
    'check_panoptic',
    'pq_stats',
    'pq_stats_from_pairs',
    'pq_summary',
]

#: Ids must be below this for the pair encoding ``gt * _PAIR_OFFSET + pred`` (int64).
_PAIR_OFFSET = 2**31
_FP_VOID = ('void_id', 'ignore_class')
_AVERAGES = ('valid', 'all')


@dataclass(frozen=True)
class PairCounts:
    """Pixel counts of the (ground-truth id, predicted id) pairs of one or more frames.

    Attributes:
        gt (np.ndarray): ``(N,)`` int64 ground-truth segment ids, pairs sorted by ``(gt, pred)``.
        pred (np.ndarray): ``(N,)`` int64 predicted segment ids.
        count (np.ndarray): ``(N,)`` int64 pixels of each pair.
    """

    gt: np.ndarray
    pred: np.ndarray
    count: np.ndarray

    @classmethod
    def concat(cls, items: Sequence[PairCounts]) -> PairCounts:
        """The histogram of frames put side by side (the sum of their histograms).

        Args:
            items (Sequence[PairCounts]): Histograms of the frames.

        Returns:
            PairCounts: Their sum, sorted by ``(gt, pred)``.
        """
        if not items:
            raise ValueError('PairCounts.concat needs at least one histogram')
        if len(items) == 1:
            return items[0]
        keys = np.concatenate([p.gt * _PAIR_OFFSET + p.pred for p in items])
        counts = np.concatenate([p.count for p in items])
        uniq, inverse = np.unique(keys, return_inverse=True)
        summed = np.zeros(len(uniq), np.int64)
        np.add.at(summed, inverse, counts)
        return cls(uniq // _PAIR_OFFSET, uniq % _PAIR_OFFSET, summed)

    @property
    def num_pixels(self) -> int:
        """int: Pixels counted."""
        return int(self.count.sum())


@dataclass
class PQStats:
    """Per-class sums of a PQ evaluation.

    Attributes:
        iou (np.ndarray): ``(C,)`` float64 sum of the IoUs of the true positives.
        tp (np.ndarray): ``(C,)`` int64 true positives.
        fn (np.ndarray): ``(C,)`` int64 false negatives.
        fp (np.ndarray): ``(C,)`` int64 false positives.
    """

    iou: np.ndarray
    tp: np.ndarray
    fn: np.ndarray
    fp: np.ndarray

    @classmethod
    def zeros(cls, num_classes: int) -> PQStats:
        """Empty sums for ``num_classes`` classes."""
        return cls(
            np.zeros(num_classes, np.float64),
            np.zeros(num_classes, np.int64),
            np.zeros(num_classes, np.int64),
            np.zeros(num_classes, np.int64),
        )

    def __add__(self, other: PQStats) -> PQStats:
        return PQStats(
            self.iou + other.iou, self.tp + other.tp, self.fn + other.fn, self.fp + other.fp
        )


def _as_id_map(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f'{name} must be an integer panoptic id map (class * label_divisor + instance), '
            f'got dtype {array.dtype}'
        )
    return array.astype(np.int64, copy=False)


def panoptic_pairs(gt, pred) -> PairCounts:
    """Pair histogram of one frame.

    Args:
        gt (array-like): ``(H, W)`` integer ground-truth id map.
        pred (array-like): ``(H, W)`` integer predicted id map, same shape.

    Returns:
        PairCounts: Pixel count of each (gt id, pred id) pair present.

    Raises:
        TypeError: A map is not integer.
        ValueError: Shapes differ, or an id is negative or ``>= 2**31``.
    """
    gt = _as_id_map(gt, 'gt')
    pred = _as_id_map(pred, 'pred')
    if gt.shape != pred.shape:
        raise ValueError(
            f'ground truth and prediction differ in size: {gt.shape} vs {pred.shape}; resize the '
            'prediction to the ground-truth size (nearest neighbour) before evaluating'
        )
    for name, array in (('gt', gt), ('pred', pred)):
        if array.size and (array.min() < 0 or array.max() >= _PAIR_OFFSET):
            raise ValueError(f'{name} ids must lie in [0, 2**31), got {array.min()}..{array.max()}')
    uniq, counts = np.unique(gt.ravel() * _PAIR_OFFSET + pred.ravel(), return_counts=True)
    return PairCounts(uniq // _PAIR_OFFSET, uniq % _PAIR_OFFSET, counts.astype(np.int64))


def check_panoptic(
    array,
    *,
    num_classes: int,
    label_divisor: int,
    ignore_label: int,
    is_prediction: bool = False,
    name: str = 'panoptic map',
) -> None:
    """Check that every class id of a panoptic map is one the evaluation knows.

    Ground truth may hold classes ``0 .. num_classes - 1`` and ``ignore_label``; a prediction
    may also hold ``num_classes`` (the void class).

    Args:
        array (array-like): Integer id map.
        num_classes (int): Number of evaluated classes.
        label_divisor (int): ``id = class * label_divisor + instance``.
        ignore_label (int): The void class.
        is_prediction (bool): Allow the void class ``num_classes``.
        name (str): What to call the map (a file name) in the error.

    Raises:
        ValueError: An id is negative or its class is out of range.
    """
    array = _as_id_map(array, name)
    classes = np.unique(array // label_divisor)
    allowed = set(range(num_classes)) | {ignore_label}
    if is_prediction:
        allowed.add(num_classes)
    bad = [int(c) for c in classes if int(c) not in allowed]
    if bad or (array.size and array.min() < 0):
        kind = 'predicted' if is_prediction else 'ground-truth'
        raise ValueError(
            f'{name}: {kind} class id(s) {bad or "negative"} out of range; expected 0..'
            f'{num_classes - 1}, {ignore_label} (void)'
            + (f' or {num_classes} (void)' if is_prediction else '')
            + f' with ids = class * {label_divisor} + instance'
        )


def _segment_areas(ids: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inverse = np.unique(ids, return_inverse=True)
    areas = np.zeros(len(uniq), np.int64)
    np.add.at(areas, inverse, counts)
    return uniq, areas


def _overlap_by_pred(pairs: PairCounts, gt_mask: np.ndarray, pred_ids: np.ndarray) -> np.ndarray:
    """Pixels of each predicted segment (``pred_ids``, sorted) on the gt pairs in ``gt_mask``."""
    out = np.zeros(len(pred_ids), np.int64)
    np.add.at(out, np.searchsorted(pred_ids, pairs.pred[gt_mask]), pairs.count[gt_mask])
    return out


def pq_stats_from_pairs(
    pairs: PairCounts,
    *,
    num_classes: int,
    label_divisor: int,
    ignore_label: int,
    fp_void: str = 'void_id',
) -> PQStats:
    """Per-class TP / FN / FP counts and IoU sums of a pair histogram.

    Args:
        pairs (PairCounts): Histogram of one frame or of a window of frames side by side.
        num_classes (int): Number of evaluated classes ``C``.
        label_divisor (int): ``id = class * label_divisor + instance``.
        ignore_label (int): The void class (may be ``>= C``).
        fp_void (str): Which ground truth makes an unmatched prediction "mostly void" (not a
            false positive): ``'void_id'`` (deeplab2) or ``'ignore_class'`` (ViP-DeepLab).

    Returns:
        PQStats: Sums over ``C`` classes.
    """
    if fp_void not in _FP_VOID:
        raise ValueError(f'fp_void must be one of {_FP_VOID}, got {fp_void!r}')
    void_id = ignore_label * label_divisor
    gt_ids, gt_areas = _segment_areas(pairs.gt, pairs.count)
    pred_ids, pred_areas = _segment_areas(pairs.pred, pairs.count)
    gt_cls, pred_cls = gt_ids // label_divisor, pred_ids // label_divisor
    void_overlap = _overlap_by_pred(pairs, pairs.gt == void_id, pred_ids)
    if fp_void == 'void_id':
        ignored_overlap = void_overlap
    else:
        ignored_overlap = _overlap_by_pred(
            pairs, pairs.gt // label_divisor == ignore_label, pred_ids
        )

    stats = PQStats.zeros(num_classes)
    pair_cls = pairs.gt // label_divisor
    candidate = (pair_cls == pairs.pred // label_divisor) & (pair_cls < num_classes)
    candidate &= pair_cls != ignore_label
    g = np.searchsorted(gt_ids, pairs.gt[candidate])
    p = np.searchsorted(pred_ids, pairs.pred[candidate])
    inter = pairs.count[candidate]
    union = gt_areas[g] + pred_areas[p] - inter - void_overlap[p]
    iou = inter / union
    match = iou > 0.5
    cls = pair_cls[candidate][match]
    np.add.at(stats.tp, cls, 1)
    np.add.at(stats.iou, cls, iou[match])  # pair order (gt, pred), as the references sum
    gt_matched = np.zeros(len(gt_ids), bool)
    gt_matched[g[match]] = True
    pred_matched = np.zeros(len(pred_ids), bool)
    pred_matched[p[match]] = True

    fn = ~gt_matched & (gt_cls != ignore_label)
    np.add.at(stats.fn, gt_cls[fn], 1)
    mostly_void = ignored_overlap / pred_areas > 0.5
    fp = ~pred_matched & ~mostly_void & (pred_cls != ignore_label) & (pred_cls < num_classes)
    np.add.at(stats.fp, pred_cls[fp], 1)
    return stats


def pq_stats(
    gt,
    pred,
    *,
    num_classes: int,
    label_divisor: int,
    ignore_label: int,
    fp_void: str = 'void_id',
) -> PQStats:
    """Per-class PQ sums of one frame; see :func:`pq_stats_from_pairs` for the arguments.

    Args:
        gt (array-like): ``(H, W)`` ground-truth ids ``class * label_divisor + instance``.
        pred (array-like): ``(H, W)`` predicted ids, same encoding and shape.
        num_classes (int): Number of evaluated classes.
        label_divisor (int): Label divisor of both maps.
        ignore_label (int): The void class.
        fp_void (str): ``'void_id'`` (deeplab2) or ``'ignore_class'`` (ViP-DeepLab).

    Returns:
        PQStats: Per-class sums.
    """
    check_panoptic(
        gt,
        num_classes=num_classes,
        label_divisor=label_divisor,
        ignore_label=ignore_label,
        name='gt',
    )
    check_panoptic(
        pred,
        num_classes=num_classes,
        label_divisor=label_divisor,
        ignore_label=ignore_label,
        is_prediction=True,
        name='pred',
    )
    return pq_stats_from_pairs(
        panoptic_pairs(gt, pred),
        num_classes=num_classes,
        label_divisor=label_divisor,
        ignore_label=ignore_label,
        fp_void=fp_void,
    )


def _qualities(stats: PQStats, average: str, epsilon: float):
    iou, tp = stats.iou, stats.tp.astype(np.float64)
    fn, fp = stats.fn.astype(np.float64), stats.fp.astype(np.float64)
    denom = tp + 0.5 * fn + 0.5 * fp
    with np.errstate(divide='ignore', invalid='ignore'):
        if average == 'all':
            sq = iou / (tp + epsilon)
            rq = tp / (denom + epsilon)
        else:  # tf.math.divide_no_nan
            sq = np.where(tp > 0, iou / np.where(tp > 0, tp, 1.0), 0.0)
            rq = np.where(denom > 0, tp / np.where(denom > 0, denom, 1.0), 0.0)
    return sq * rq, sq, rq


def pq_summary(
    stats: PQStats,
    *,
    thing_ids: Sequence[int] | None = None,
    average: str = 'valid',
    epsilon: float = 0.0,
) -> dict:
    """PQ, SQ, RQ over classes, with Things / Stuff splits.

    Args:
        stats (PQStats): Summed per-class statistics.
        thing_ids (Sequence[int], optional): Thing classes; the others are Stuff. ``None``: no
            split.
        average (str): ``'valid'`` (deeplab2: ``0/0 -> 0``, mean over classes with
            ``TP + FP + FN > 0``) or ``'all'`` (ViP-DeepLab: mean over all classes, divisions
            with ``epsilon``).
        epsilon (float): Added to the denominators with ``average='all'`` (0 in the
            Cityscapes-DVPS script, 1e-10 in the SemKITTI-DVPS one).

    Returns:
        dict: ``PQ``, ``SQ``, ``RQ`` (fractions; NaN when no class counts), ``PQ_th`` ...
        ``RQ_st`` when ``thing_ids`` is given, and ``per_class``: a dict of ``(C,)`` arrays
        ``pq``, ``sq``, ``rq``, ``iou``, ``tp``, ``fn``, ``fp``.
    """
    if average not in _AVERAGES:
        raise ValueError(f'average must be one of {_AVERAGES}, got {average!r}')
    num_classes = len(stats.tp)
    pq, sq, rq = _qualities(stats, average, epsilon)
    counted = (
        np.ones(num_classes, bool) if average == 'all' else (stats.tp + stats.fn + stats.fp) > 0
    )
    groups = {'': np.arange(num_classes)}
    if thing_ids is not None:
        things = np.array(sorted(set(int(t) for t in thing_ids)), np.int64)
        if things.size and (things.min() < 0 or things.max() >= num_classes):
            raise ValueError(f'thing_ids must lie in 0..{num_classes - 1}, got {list(thing_ids)}')
        groups['_th'] = things
        groups['_st'] = np.setdiff1d(np.arange(num_classes), things)
    out: dict = {}
    for suffix, index in groups.items():
        index = index[counted[index]]
        for name, values in (('PQ', pq), ('SQ', sq), ('RQ', rq)):
            out[name + suffix] = float(values[index].mean()) if index.size else float('nan')
    out['per_class'] = dict(
        pq=pq,
        sq=sq,
        rq=rq,
        iou=stats.iou.copy(),
        tp=stats.tp.copy(),
        fn=stats.fn.copy(),
        fp=stats.fp.copy(),
    )
    return out
