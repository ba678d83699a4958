"""Video panoptic quality (VPQ) and depth-aware VPQ (DVPQ) over windows of frames.

VPQ^k (Kim et al., "Video Panoptic Segmentation", CVPR 2020; thesis Eqs. 7.1, 7.2) is PQ of the
windows of ``k`` consecutive frames put side by side, so that a segment is a tube through the
window and a true positive needs tube IoU > 0.5; the statistics of all windows (of all sequences)
are summed per class before PQ is taken. PQ is VPQ^1.

DVPQ^k_lambda (thesis Eq. 7.5) is VPQ^k after relabelling, in every frame, the predicted pixels
whose absolute relative depth error exceeds ``lambda`` (``|d_pred - d_gt| > lambda * d_gt`` on
pixels with ground-truth depth) to void. The final DVPQ is the mean over the ``k`` and ``lambda``
of the protocol (thesis section 7.3.3).

Conventions follow the ViP-DeepLab reference scripts (``cityscapes-dvps/eval_dvpq.py`` and
``semkitti-dvps/eval_dvpq.py`` of joe-siyuan-qiao/ViP-DeepLab; no code copied):

* outliers become class ``num_classes`` instance 0 (``19 * max_ins``), a class that is never
  matched and never a false positive (:mod:`.panoptic_quality`);
* the depth error is computed in float64 from the depth values (the reference computes it on the
  PNG integers; with Pillow >= 10.3 those are uint16 and ``pred - gt`` wraps around, so that
  every under-estimate becomes an outlier; here the difference is always signed);
* windows: Cityscapes-DVPS slides them inside each sequence (``window_scope='sequence'``);
  SemKITTI-DVPS slides them over the globally sorted frame list, across sequence boundaries
  (``window_scope='global'``);
* per-class averaging: :func:`.pq_summary` ``average='all'`` with ``epsilon`` 0 (Cityscapes-DVPS)
  or 1e-10 (SemKITTI-DVPS); the false-positive void rule over the whole ignored class
  (``fp_void='ignore_class'``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mmvideoeq.class_names import (
    CITYSCAPES_DVPS_IGNORE_LABEL,
    CITYSCAPES_DVPS_LABEL_DIVISOR,
    CITYSCAPES_DVPS_THING_IDS,
    SEMKITTI_DVPS_IGNORE_LABEL,
    SEMKITTI_DVPS_LABEL_DIVISOR,
    SEMKITTI_DVPS_THING_IDS,
)

from .panoptic_quality import PairCounts, PQStats, panoptic_pairs, pq_stats_from_pairs, pq_summary

__all__ = [
    'DVPQProtocol',
    'DVPQ_PROTOCOLS',
    'depth_outlier_void',
    'frame_pairs',
    'window_starts',
    'vpq_stats',
    'dvpq_from_pairs',
]


@dataclass(frozen=True)
class DVPQProtocol:
    """Everything that defines a DVPQ evaluation.

    Attributes:
        num_classes (int): Evaluated classes.
        label_divisor (int): ``id = class * label_divisor + instance``.
        ignore_label (int): Void class of the ground truth.
        thing_ids (tuple[int, ...]): Thing classes (the rest are Stuff).
        windows (tuple[int, ...]): Window lengths ``k``.
        thresholds (tuple[float, ...]): Depth thresholds ``lambda``.
        window_scope (str): ``'sequence'`` or ``'global'`` (see the module docstring).
        average (str): ``'all'`` or ``'valid'`` (:func:`.pq_summary`).
        epsilon (float): Denominator epsilon with ``average='all'``.
        fp_void (str): ``'ignore_class'`` or ``'void_id'`` (:func:`.pq_stats_from_pairs`).
    """

    num_classes: int
    label_divisor: int
    ignore_label: int
    thing_ids: tuple[int, ...]
    windows: tuple[int, ...]
    thresholds: tuple[float, ...] = (0.5, 0.25, 0.1)
    window_scope: str = 'sequence'
    average: str = 'all'
    epsilon: float = 0.0
    fp_void: str = 'ignore_class'

    def __post_init__(self) -> None:
        if self.window_scope not in ('sequence', 'global'):
            raise ValueError(
                f"window_scope must be 'sequence' or 'global', got {self.window_scope!r}"
            )
        if not self.windows or any(int(k) < 1 for k in self.windows):
            raise ValueError(f'windows must be positive ints, got {self.windows}')
        if any(not t > 0 for t in self.thresholds):
            raise ValueError(f'depth thresholds must be > 0, got {self.thresholds}')

    @property
    def void_id(self) -> int:
        """int: Predicted id of a depth outlier (class ``num_classes``, instance 0)."""
        return self.num_classes * self.label_divisor


#: The two reference protocols (thesis section 7.5.1; ViP-DeepLab ``eval_dvpq.py`` scripts).
DVPQ_PROTOCOLS: Mapping[str, DVPQProtocol] = {
    'cityscapes_dvps': DVPQProtocol(
        num_classes=19,
        label_divisor=CITYSCAPES_DVPS_LABEL_DIVISOR,
        ignore_label=CITYSCAPES_DVPS_IGNORE_LABEL,
        thing_ids=CITYSCAPES_DVPS_THING_IDS,
        windows=(1, 2, 3, 4),
        window_scope='sequence',
        epsilon=0.0,
    ),
    'semkitti_dvps': DVPQProtocol(
        num_classes=19,
        label_divisor=SEMKITTI_DVPS_LABEL_DIVISOR,
        ignore_label=SEMKITTI_DVPS_IGNORE_LABEL,
        thing_ids=SEMKITTI_DVPS_THING_IDS,
        windows=(1, 5, 10, 20),
        window_scope='global',
        epsilon=1e-10,
    ),
}


def depth_outlier_void(pred, gt_depth, pred_depth, threshold: float, void_id: int) -> np.ndarray:
    """The DVPQ relabelling of thesis Eq. 7.5.

    Args:
        pred (array-like): ``(H, W)`` predicted panoptic ids.
        gt_depth (array-like): ``(H, W)`` ground-truth depth, ``<= 0`` where invalid.
        pred_depth (array-like): ``(H, W)`` predicted depth, same unit as ``gt_depth``.
        threshold (float): ``lambda``.
        void_id (int): Id given to the outliers.

    Returns:
        np.ndarray: ``(H, W)`` int64 copy of ``pred`` with ``void_id`` where
        ``gt_depth > 0`` and ``|pred_depth - gt_depth| / gt_depth > threshold``.
    """
    pred = np.array(pred, dtype=np.int64)
    gt_depth = np.asarray(gt_depth, dtype=np.float64)
    pred_depth = np.asarray(pred_depth, dtype=np.float64)
    if not pred.shape == gt_depth.shape == pred_depth.shape:
        raise ValueError(
            f'panoptic prediction {pred.shape}, ground-truth depth {gt_depth.shape} and predicted '
            f'depth {pred_depth.shape} must have the same size'
        )
    valid = gt_depth > 0
    error = np.abs(pred_depth[valid] - gt_depth[valid]) / gt_depth[valid]
    relabelled = pred[valid]
    relabelled[error > threshold] = void_id
    pred[valid] = relabelled
    return pred


def frame_pairs(
    gt, pred, gt_depth=None, pred_depth=None, *, thresholds: Sequence[float] = (), void_id: int
) -> dict:
    """Pair histograms of one frame: plain (key ``None``) and after each depth relabelling.

    Args:
        gt (array-like): ``(H, W)`` ground-truth ids.
        pred (array-like): ``(H, W)`` predicted ids.
        gt_depth (array-like, optional): ``(H, W)`` ground-truth depth (needed for thresholds).
        pred_depth (array-like, optional): ``(H, W)`` predicted depth.
        thresholds (Sequence[float]): Depth thresholds ``lambda``.
        void_id (int): Id of the relabelled outliers.

    Returns:
        dict: ``{None: PairCounts, lambda: PairCounts, ...}``.
    """
    out = {None: panoptic_pairs(gt, pred)}
    if thresholds and (gt_depth is None or pred_depth is None):
        raise ValueError('DVPQ thresholds need both a ground-truth and a predicted depth map')
    for threshold in thresholds:
        relabelled = depth_outlier_void(pred, gt_depth, pred_depth, threshold, void_id)
        out[float(threshold)] = panoptic_pairs(gt, relabelled)
    return out


def window_starts(sequence_ids: Sequence, window: int, scope: str) -> list[int]:
    """Start positions of the windows of ``window`` frames over an ordered frame list.

    Args:
        sequence_ids (Sequence): Sequence id of each frame, frames grouped by sequence and in
            order.
        window (int): ``k``.
        scope (str): ``'sequence'`` (windows stay inside a sequence) or ``'global'`` (windows
            slide over the whole list, the SemKITTI-DVPS reference).

    Returns:
        list[int]: Positions ``i`` such that frames ``i .. i + k - 1`` form a window.
    """
    n = len(sequence_ids)
    if scope == 'global':
        return list(range(n - window + 1))
    starts = []
    for i in range(n - window + 1):
        if all(sequence_ids[j] == sequence_ids[i] for j in range(i, i + window)):
            starts.append(i)
    return starts


def vpq_stats(
    frames: Sequence[PairCounts],
    window: int,
    *,
    starts: Sequence[int] | None = None,
    num_classes: int,
    label_divisor: int,
    ignore_label: int,
    fp_void: str = 'ignore_class',
) -> PQStats:
    """Summed PQ statistics of the windows of ``window`` frames of one frame list.

    Args:
        frames (Sequence[PairCounts]): Per-frame pair histograms, in order.
        window (int): ``k``.
        starts (Sequence[int], optional): Window starts (default: every position of one
            sequence, ``0 .. len(frames) - k``).
        num_classes (int): Evaluated classes.
        label_divisor (int): Label divisor.
        ignore_label (int): Void class.
        fp_void (str): See :func:`.pq_stats_from_pairs`.

    Returns:
        PQStats: Sum over the windows, in window order.
    """
    if starts is None:
        starts = range(len(frames) - window + 1)
    total = PQStats.zeros(num_classes)
    for i in starts:
        pairs = PairCounts.concat(frames[i : i + window])
        total = total + pq_stats_from_pairs(
            pairs,
            num_classes=num_classes,
            label_divisor=label_divisor,
            ignore_label=ignore_label,
            fp_void=fp_void,
        )
    return total


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else float('nan')


def _means(cells: dict, protocol: DVPQProtocol, present: list) -> dict:
    """Per-cell PQ keys and the VPQ / DVPQ means over the window lengths ``present``."""
    out: dict = {}
    for suffix in ('', '_th', '_st'):
        if 1 in protocol.windows:
            out['PQ' + suffix] = cells[1, None]['PQ' + suffix]
        for k in protocol.windows:
            out[f'VPQ_k{k}{suffix}'] = cells[k, None]['PQ' + suffix]
            for lam in protocol.thresholds:
                out[f'DVPQ_k{k}_l{lam:g}{suffix}'] = cells[k, float(lam)]['PQ' + suffix]
        out['VPQ' + suffix] = _mean([out[f'VPQ_k{k}{suffix}'] for k in present])
        if protocol.thresholds:
            out['DVPQ' + suffix] = _mean(
                [out[f'DVPQ_k{k}_l{lam:g}{suffix}'] for k in present for lam in protocol.thresholds]
            )
    return out


def dvpq_from_pairs(
    frames: Sequence[dict],
    sequence_ids: Sequence,
    protocol: DVPQProtocol,
    start_filter=None,
) -> dict:
    """PQ, VPQ^k, DVPQ^k_lambda and their means from per-frame pair histograms.

    Args:
        frames (Sequence[dict]): Per frame, the output of :func:`frame_pairs` (with every
            threshold of the protocol), grouped by sequence and in frame order.
        sequence_ids (Sequence): Sequence id of each frame.
        protocol (DVPQProtocol): The evaluation.
        start_filter (callable, optional): ``start position -> bool``; keeps only the windows
            whose first frame passes (used for by-frame-offset curves).

    Returns:
        dict: ``PQ``, ``PQ_th``, ``PQ_st`` (k = 1 without depth), ``VPQ`` (mean over k),
        ``VPQ_k{k}`` (+ ``_th`` / ``_st``), ``DVPQ`` (mean over k and lambda; both means leave
        out a ``k`` without any window, e.g. in a frame-offset bucket),
        ``DVPQ_k{k}_l{lambda}`` (+ ``_th`` / ``_st``) and ``num_windows_k{k}``; fractions.
        ``stats``: ``{(k, lambda): PQStats}`` (lambda ``None`` = no depth).
    """
    if len(frames) != len(sequence_ids):
        raise ValueError(f'{len(frames)} frames but {len(sequence_ids)} sequence ids')
    out: dict = {}
    stats: dict = {}
    cells: dict = {}
    for k in protocol.windows:
        starts = window_starts(sequence_ids, k, protocol.window_scope)
        if start_filter is not None:
            starts = [s for s in starts if start_filter(s)]
        out[f'num_windows_k{k}'] = len(starts)
        for lam in (None, *protocol.thresholds):
            key = None if lam is None else float(lam)
            stats[k, key] = vpq_stats(
                [f[key] for f in frames],
                k,
                starts=starts,
                num_classes=protocol.num_classes,
                label_divisor=protocol.label_divisor,
                ignore_label=protocol.ignore_label,
                fp_void=protocol.fp_void,
            )
            cells[k, key] = pq_summary(
                stats[k, key],
                thing_ids=protocol.thing_ids,
                average=protocol.average,
                epsilon=protocol.epsilon,
            )
    out.update(_means(cells, protocol, [k for k in protocol.windows if out[f'num_windows_k{k}']]))
    out['stats'] = stats
    return out
