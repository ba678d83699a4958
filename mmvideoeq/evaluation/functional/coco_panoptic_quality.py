"""Panoptic quality with COCO's rules (panopticapi ``pq_compute``), on segment maps + segment lists.

COCO panoptic annotations are a map of segment ids (``rgb2id`` of the PNG; 0 = VOID, unlabelled)
and a list of segments (``segments_info``: ``id``, ``category_id``, ``iscrowd``, ``area``). The
rules of panopticapi's ``evaluation.py`` (``pq_compute_single_core``, cocodataset/panopticapi,
BSD-2; no code copied) differ from deeplab2's id-map convention of :mod:`.panoptic_quality` in how
crowd regions count:

* the IoU union of a (ground truth, prediction) pair leaves out the prediction's pixels on VOID
  (id 0) only; pixels on a crowd segment stay in the union;
* crowd segments are never matched and never false negatives;
* an unmatched prediction is not a false positive when more than half of its pixels lie on VOID
  plus the crowd segment *of its own category* (panopticapi keeps one crowd segment per category
  and image, the last one listed in ``segments_info``; so does this module);
* the ground-truth area is the ``area`` of ``segments_info`` (its pixel count when absent); a
  listed segment without pixels is a false negative; a ground-truth id of the PNG that is not
  listed is neither matched nor void.

:func:`coco_pq_stats` returns the per-category sums as :class:`~.panoptic_quality.PQStats`;
:func:`~.panoptic_quality.pq_summary` with ``average='valid'`` then gives panopticapi's
``pq_average`` (mean over the categories with ``TP + FP + FN > 0``; ``SQ`` 0 without TP).

Written here because mmdet's port of these rules (``mmdet.evaluation.functional.panoptic_utils``)
imports ``PQStat`` and ``rgb2id`` from the ``panopticapi`` package, which is installed from its
repository only (it is not on the package index), and reads both sides from PNG files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .panoptic_quality import PairCounts, PQStats, panoptic_pairs

__all__ = ['coco_pq_stats', 'coco_pq_stats_from_pairs', 'COCO_VOID']

#: Segment id of unlabelled pixels in COCO panoptic PNGs (panopticapi ``VOID``).
COCO_VOID = 0


def _gt_table(segments: Sequence[Mapping], cat_index: Mapping[int, int], pixels: dict):
    """Ids, category indices, crowd flags and areas of the listed ground-truth segments."""
    table = {int(s['id']): s for s in segments}  # a repeated id: the last entry (as panopticapi)
    ids = np.array(list(table), np.int64)
    cls = np.empty(len(ids), np.int64)
    crowd = np.zeros(len(ids), bool)
    area = np.empty(len(ids), np.int64)
    for k, (seg_id, s) in enumerate(table.items()):
        if int(s['category_id']) not in cat_index:
            raise ValueError(
                f'ground-truth segment {seg_id} has category_id {s["category_id"]}, which is not '
                'among the categories of the annotation file'
            )
        cls[k] = cat_index[int(s['category_id'])]
        crowd[k] = bool(s.get('iscrowd', 0))
        area[k] = int(s['area']) if 'area' in s else pixels.get(seg_id, 0)
    return ids, cls, crowd, area


def _pred_table(segments: Sequence[Mapping], cat_index: Mapping[int, int], pixels: dict):
    """Ids, category indices and pixel areas of the predicted segments, checked against the map."""
    ids = np.array([int(s['id']) for s in segments], np.int64)
    if len(set(ids.tolist())) != len(ids):
        raise ValueError(f'predicted segment ids repeat: {sorted(ids.tolist())}')
    if COCO_VOID in ids.tolist():
        raise ValueError(f'predicted segment id {COCO_VOID} is VOID; number segments from 1')
    unlisted = sorted(set(pixels) - set(ids.tolist()) - {COCO_VOID})
    if unlisted:
        raise ValueError(f'predicted segment ids {unlisted} are in the map but not in the list')
    empty = [int(i) for i in ids if pixels.get(int(i), 0) == 0]
    if empty:
        raise ValueError(f'predicted segments {empty} are listed but have no pixel in the map')
    unknown = [int(s['category_id']) for s in segments if int(s['category_id']) not in cat_index]
    if unknown:
        raise ValueError(f'predicted category ids {sorted(set(unknown))} are not categories')
    cls = np.array([cat_index[int(s['category_id'])] for s in segments], np.int64)
    area = np.array([pixels[int(i)] for i in ids], np.int64)
    return ids, cls, area


def _index(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each of ``values`` in ``ids`` (unsorted, unique), -1 where absent."""
    if not len(ids):
        return np.full(len(values), -1, np.int64)
    order = np.argsort(ids)
    pos = np.clip(np.searchsorted(ids, values, sorter=order), 0, len(ids) - 1)
    found = order[pos]
    return np.where(ids[found] == values, found, -1)


def _pixels(ids: np.ndarray, counts: np.ndarray) -> dict:
    uniq, inverse = np.unique(ids, return_inverse=True)
    total = np.zeros(len(uniq), np.int64)
    np.add.at(total, inverse, counts)
    return dict(zip(uniq.tolist(), total.tolist()))


def coco_pq_stats_from_pairs(
    pairs: PairCounts,
    *,
    gt_segments: Sequence[Mapping],
    pred_segments: Sequence[Mapping],
    categories: Sequence[int],
) -> PQStats:
    """Per-category PQ sums of one image by panopticapi's rules (see the module docstring).

    Args:
        pairs (PairCounts): Pixel counts of the (ground-truth segment id, predicted segment id)
            pairs of the image (:func:`~.panoptic_quality.panoptic_pairs`).
        gt_segments (Sequence[Mapping]): ``segments_info`` of the ground truth: ``id``,
            ``category_id``, ``iscrowd`` (default 0), ``area`` (default: its pixels).
        pred_segments (Sequence[Mapping]): ``id`` (not 0) and ``category_id`` of every
            predicted segment in the map.
        categories (Sequence[int]): Category ids; statistic ``i`` belongs to ``categories[i]``.

    Returns:
        PQStats: Sums over ``len(categories)`` categories.

    Raises:
        ValueError: A predicted id of the map is not listed (or the reverse), a listed
            prediction has no pixel, or a category is unknown.
    """
    cat_index = {int(c): i for i, c in enumerate(categories)}
    num = len(cat_index)
    g_ids, g_cls, g_crowd, g_area = _gt_table(
        gt_segments, cat_index, _pixels(pairs.gt, pairs.count)
    )
    p_ids, p_cls, p_area = _pred_table(pred_segments, cat_index, _pixels(pairs.pred, pairs.count))
    gi = _index(g_ids, pairs.gt)
    pi = _index(p_ids, pairs.pred)
    stats = PQStats.zeros(num)

    void = np.zeros(len(p_ids), np.int64)
    on_void = (pairs.gt == COCO_VOID) & (pi >= 0)
    np.add.at(void, pi[on_void], pairs.count[on_void])

    both = (gi >= 0) & (pi >= 0)
    g, p, inter = gi[both], pi[both], pairs.count[both]
    cand = ~g_crowd[g] & (g_cls[g] == p_cls[p])
    g, p, inter = g[cand], p[cand], inter[cand]
    iou = inter / (p_area[p] + g_area[g] - inter - void[p])
    match = iou > 0.5
    np.add.at(stats.tp, g_cls[g[match]], 1)
    np.add.at(stats.iou, g_cls[g[match]], iou[match])  # (gt, pred) order, as panopticapi sums
    g_matched = np.zeros(len(g_ids), bool)
    g_matched[g[match]] = True
    p_matched = np.zeros(len(p_ids), bool)
    p_matched[p[match]] = True

    fn = ~g_matched & ~g_crowd
    np.add.at(stats.fn, g_cls[fn], 1)

    crowd_of = np.full(num, -1, np.int64)  # category -> its (last listed) crowd segment
    for k in np.flatnonzero(g_crowd):
        crowd_of[g_cls[k]] = k
    ignored = void.copy()
    g, p = gi[both], pi[both]
    on_crowd = g == crowd_of[p_cls[p]]
    np.add.at(ignored, p[on_crowd], pairs.count[both][on_crowd])
    fp = ~p_matched & ~(ignored / np.maximum(p_area, 1) > 0.5)
    np.add.at(stats.fp, p_cls[fp], 1)
    return stats


def coco_pq_stats(
    gt_ids,
    pred_ids,
    *,
    gt_segments: Sequence[Mapping],
    pred_segments: Sequence[Mapping],
    categories: Sequence[int],
) -> PQStats:
    """Per-category PQ sums of one image by panopticapi's rules.

    Args:
        gt_ids (array-like): ``(H, W)`` integer ground-truth segment ids (``rgb2id`` of the PNG,
            0 = VOID).
        pred_ids (array-like): ``(H, W)`` integer predicted segment ids (0 = no segment).
        gt_segments, pred_segments, categories: See :func:`coco_pq_stats_from_pairs`.

    Returns:
        PQStats: Sums over ``len(categories)`` categories.
    """
    return coco_pq_stats_from_pairs(
        panoptic_pairs(gt_ids, pred_ids),
        gt_segments=gt_segments,
        pred_segments=pred_segments,
        categories=categories,
    )
