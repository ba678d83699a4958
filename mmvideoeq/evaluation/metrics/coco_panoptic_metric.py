"""Panoptic quality of "things from the detector + stuff from a semantic head" (thesis Table 6-VI).

DetectoRS reports COCO panoptic quality by combining its instance masks with a separate stuff
prediction through panopticapi's ``combine_semantic_and_instance_predictions.py`` "without tuning
any hyper-parameters" (Sec. 6.5.3). :func:`combine_things_and_stuff` is that procedure
(Kirillov et al., "Panoptic Segmentation", CVPR 2019, Sec. 7, plus panopticapi's small-stuff
filter), with panopticapi's defaults: instances of score >= 0.5 in decreasing score order, an
instance dropped when more than half of it is already covered, overlapping pixels kept by the
higher-scored one, then each stuff class on the still-free pixels unless fewer than 64 x 64
pixels are left. It follows panopticapi's code path (BSD-2; no code copied) on decoded masks
instead of RLE.

:class:`CocoPanopticPQMetric` combines the predictions of a model that outputs ``pred_instances``
(with masks) and ``pred_sem_seg`` (COCO-stuff ``stuffthingmaps`` labels, e.g.
:class:`~mmvideoeq.models.detectors.DetectoRSHTC`), reads the COCO panoptic ground truth (PNG +
JSON) and scores it with the project's generic PQ
(``mmvideoeq.evaluation.functional.panoptic_quality``: ``pq_stats`` / ``pq_summary``, checked
against deeplab2's golden numbers). mmdet's ``CocoPanopticMetric`` needs the ``panopticapi``
package (not installable here) and a ``pred_panoptic_seg`` the model would have to produce.

Differences from panopticapi's ``pq_compute``: ground-truth ``iscrowd`` segments are void for
every class here (panopticapi: only for predictions of the crowd's own category); the class
average over categories with TP + FP + FN > 0 is the same (``average='valid'``).
"""

from __future__ import annotations

import json
import os.path as osp
from collections.abc import Sequence

import mmcv
import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.fileio import get
from mmengine.logging import MMLogger

from mmvideoeq.registry import METRICS

__all__ = ['CocoPanopticPQMetric', 'combine_things_and_stuff', 'COCO_STUFF_TO_PANOPTIC']

#: COCO panoptic stuff category -> the COCO-stuff categories merged into it (Caesar et al.'s 91
#: stuff classes, ids 92-182, to the 53 stuff categories of COCO panoptic, ids 92-200). Stuff
#: classes absent from panoptic (cloth, clothes, furniture-other, ground-other, metal,
#: plant-other, plastic, solid-other, structural-other, textile-other, waterdrops, wood) are void.
_PANOPTIC_STUFF_SOURCES = {
    **{i: (i,) for i in (92, 93, 95, 100, 107, 109, 112, 118, 119, 122, 125, 128, 130, 133)},
    **{i: (i,) for i in (138, 141, 144, 145, 147, 148, 149, 151, 154, 155, 156, 159, 161, 166)},
    **{i: (i,) for i in (168, 171, 175, 176, 177, 178, 180, 181)},
    184: (94, 97, 129, 169),  # tree-merged: branch, bush, leaves, tree
    185: (99, 113, 146),  # fence-merged: cage, fence, railing
    186: (102, 103),  # ceiling-merged
    187: (106, 120, 157),  # sky-other-merged: clouds, fog, sky-other
    188: (98, 108),  # cabinet-merged: cabinet, cupboard
    189: (110, 165),  # table-merged: desk-stuff, table
    190: (114, 115, 117),  # floor-other-merged: floor-marble, floor-other, floor-tile
    191: (116, 140),  # pavement-merged: floor-stone, pavement
    192: (127, 135),  # mountain-merged: hill, mountain
    193: (124, 134, 163),  # grass-merged: grass, moss, straw
    194: (111, 136),  # dirt-merged: dirt, mud
    195: (137, 139),  # paper-merged: napkin, paper
    196: (121, 153, 170),  # food-other-merged: food-other, salad, vegetable
    197: (96, 158),  # building-other-merged: building-other, skyscraper
    198: (150, 162),  # rock-merged: rock, stone
    199: (172, 173, 174),  # wall-other-merged: wall-concrete, wall-other, wall-panel
    200: (101, 131, 152),  # rug-merged: carpet, mat, rug
}
#: ``stuffthingmaps`` label (COCO-stuff category id - 1) -> COCO panoptic stuff category id.
COCO_STUFF_TO_PANOPTIC = {
    src - 1: pan for pan, sources in _PANOPTIC_STUFF_SOURCES.items() for src in sources
}


def combine_things_and_stuff(
    masks: np.ndarray,
    scores: np.ndarray,
    categories: np.ndarray,
    stuff: np.ndarray,
    *,
    score_thr: float = 0.5,
    overlap_thr: float = 0.5,
    stuff_area_limit: int = 64 * 64,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """panopticapi's combination of instance and semantic predictions on one image.

    Args:
        masks: ``(N, H, W)`` bool instance masks.
        scores: ``(N,)`` instance scores.
        categories: ``(N,)`` category id of each instance.
        stuff: ``(H, W)`` stuff category id per pixel (0: none / not stuff).
        score_thr: Instances below it are dropped (``--confidence_thr``).
        overlap_thr: An instance more than this fraction covered by higher-scored kept ones is
            dropped (``--segmentations_overlap_thr``).
        stuff_area_limit: A stuff class with fewer free pixels is dropped (``--stuff_area_limit``).

    Returns:
        tuple: ``(segment_map, segments)``: ``(H, W)`` int64 map of segment indices (0 = void,
        ``k`` = ``segments[k - 1]``) and the ``(category_id, is_thing)`` of each segment.
    """
    seg = np.zeros(stuff.shape, np.int64)
    segments: list[tuple[int, int]] = []
    used = np.zeros(stuff.shape, bool)
    order = np.argsort(-np.asarray(scores, np.float64), kind='stable')
    for i in order:
        if scores[i] < score_thr:
            continue
        mask = masks[i]
        area = int(mask.sum())
        if area == 0:
            continue
        inter = int(np.logical_and(used, mask).sum())
        if inter / area > overlap_thr:
            continue
        used |= mask
        if inter:
            mask = mask & (seg == 0)
        segments.append((int(categories[i]), 1))
        seg[mask] = len(segments)
    for cat in np.unique(stuff).tolist():
        if cat == 0:
            continue
        free = (stuff == cat) & (seg == 0)
        if free.sum() < stuff_area_limit:
            continue
        segments.append((int(cat), 0))
        seg[free] = len(segments)
    return seg, segments


def _rgb2id(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def _pq_functions():
    try:
        from mmvideoeq.evaluation.functional.panoptic_quality import pq_stats, pq_summary
    except ImportError as e:  # pragma: no cover - depends on the installed tree
        raise ImportError(
            'CocoPanopticPQMetric scores with mmvideoeq.evaluation.functional.panoptic_quality '
            '(pq_stats / pq_summary), which this installation lacks'
        ) from e
    return pq_stats, pq_summary


@METRICS.register_module()
class CocoPanopticPQMetric(BaseMetric):
    """COCO panoptic quality of combined instance + stuff predictions (see the module docstring).

    Args:
        ann_file: COCO panoptic JSON (``images``, ``annotations`` with ``segments_info``,
            ``categories`` with ``isthing``).
        seg_prefix: Folder of the ground-truth panoptic PNGs (``file_name`` of each annotation).
        stuff_map: ``stuffthingmaps`` label -> panoptic stuff category id; labels not in it are
            not stuff. ``None``: COCO-stuff to COCO panoptic (:data:`COCO_STUFF_TO_PANOPTIC`).
        score_thr, overlap_thr, stuff_area_limit: Of :func:`combine_things_and_stuff`
            (panopticapi's defaults).
        label_divisor: ``id = class * label_divisor + instance`` of the id maps scored.
        collect_device, prefix: As in mmengine's ``BaseMetric`` (prefix ``coco_panoptic``).

    Returned keys: ``PQ``, ``SQ``, ``RQ`` and their ``_th`` (things) / ``_st`` (stuff) parts, as
    fractions, and ``num_images``.
    """

    default_prefix = 'coco_panoptic'

    def __init__(
        self,
        *,
        ann_file: str,
        seg_prefix: str,
        stuff_map: dict | None = None,
        score_thr: float = 0.5,
        overlap_thr: float = 0.5,
        stuff_area_limit: int = 64 * 64,
        label_divisor: int = 1000,
        collect_device: str = 'cpu',
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not osp.isfile(ann_file):
            raise FileNotFoundError(
                f'panoptic annotation file {ann_file} not found (COCO: '
                'annotations/panoptic_val2017.json from panoptic_annotations_trainval2017.zip)'
            )
        if not osp.isdir(seg_prefix):
            raise FileNotFoundError(f'panoptic PNG folder {seg_prefix} not found')
        with open(ann_file) as f:
            data = json.load(f)
        self.seg_prefix = seg_prefix
        self.categories = sorted(data['categories'], key=lambda c: c['id'])
        self.cat_index = {c['id']: i for i, c in enumerate(self.categories)}
        self.thing_index = [i for i, c in enumerate(self.categories) if c.get('isthing')]
        self.gt = {a['image_id']: a for a in data['annotations']}
        raw = COCO_STUFF_TO_PANOPTIC if stuff_map is None else stuff_map
        self.stuff_map = {int(k): int(v) for k, v in raw.items() if int(v) in self.cat_index}
        self.combine_cfg = dict(
            score_thr=score_thr, overlap_thr=overlap_thr, stuff_area_limit=stuff_area_limit
        )
        self.label_divisor = label_divisor

    def _thing_categories(self) -> np.ndarray:
        names = {c['name']: c['id'] for c in self.categories if c.get('isthing')}
        classes = (self.dataset_meta or {}).get('classes')
        if not classes:
            raise ValueError(
                'CocoPanopticPQMetric needs dataset_meta["classes"] (set by the runner)'
            )
        missing = [n for n in classes if n not in names]
        if missing:
            raise ValueError(f'classes {missing} are not thing categories of the panoptic file')
        return np.array([names[n] for n in classes], np.int64)

    def _to_ids(self, seg: np.ndarray, segments: Sequence[tuple[int, int, int]]) -> np.ndarray:
        """Segment index map -> ``class * divisor + instance``; void -> ``C * divisor``."""
        void = len(self.categories) * self.label_divisor
        lut = np.full(len(segments) + 1, void, np.int64)
        for k, (cat, inst, crowd) in enumerate(segments, start=1):
            if not crowd and cat in self.cat_index:
                lut[k] = self.cat_index[cat] * self.label_divisor + inst
        return lut[seg]

    def _ground_truth(self, img_id: int) -> np.ndarray:
        ann = self.gt.get(img_id)
        if ann is None:
            raise ValueError(f'image {img_id} has no panoptic annotation in the ann_file')
        png = mmcv.imfrombytes(
            get(osp.join(self.seg_prefix, ann['file_name'])), channel_order='rgb'
        )
        ids = _rgb2id(png)
        seg = np.zeros(ids.shape, np.int64)
        segments = []
        for k, s in enumerate(ann['segments_info'], start=1):
            seg[ids == s['id']] = k
            segments.append((s['category_id'], k, s.get('iscrowd', 0)))
        return self._to_ids(seg, segments)

    def _prediction(self, sample: dict, things: np.ndarray) -> np.ndarray:
        inst = sample['pred_instances']
        masks = inst['masks'].cpu().numpy().astype(bool)
        sem = sample['pred_sem_seg']['sem_seg'].cpu().numpy()[0]
        stuff = np.zeros(sem.shape, np.int64)
        for label, cat in self.stuff_map.items():
            stuff[sem == label] = cat
        seg, segs = combine_things_and_stuff(
            masks,
            inst['scores'].cpu().numpy(),
            things[inst['labels'].cpu().numpy()],
            stuff,
            **self.combine_cfg,
        )
        return self._to_ids(seg, [(cat, k if th else 0, 0) for k, (cat, th) in enumerate(segs, 1)])

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        pq_stats, _ = _pq_functions()
        things = self._thing_categories()
        for sample in data_samples:
            if 'pred_sem_seg' not in sample or 'masks' not in sample.get('pred_instances', {}):
                raise ValueError(
                    'CocoPanopticPQMetric needs pred_instances.masks and pred_sem_seg; use a model '
                    'with a mask head and a semantic head that outputs pred_sem_seg (DetectoRSHTC)'
                )
            gt = self._ground_truth(sample['img_id'])
            pred = self._prediction(sample, things)
            stats = pq_stats(
                gt,
                pred,
                num_classes=len(self.categories),
                label_divisor=self.label_divisor,
                ignore_label=len(self.categories),
            )
            self.results.append(stats)

    def compute_metrics(self, results: list) -> dict:
        _, pq_summary = _pq_functions()
        total = results[0]
        for r in results[1:]:
            total = total + r
        summary = pq_summary(total, thing_ids=self.thing_index, average='valid')
        out = {k: v for k, v in summary.items() if k != 'per_class'}
        out['num_images'] = len(results)
        MMLogger.get_current_instance().info(
            'panoptic: ' + ', '.join(f'{k} {v:.4f}' for k, v in out.items() if k != 'num_images')
        )
        return out
