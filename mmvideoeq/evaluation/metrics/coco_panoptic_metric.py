"""Panoptic quality of "things from the detector + stuff from a semantic head" (thesis Table 6-VI).

DetectoRS reports COCO panoptic quality by combining its instance masks with a separate stuff
prediction through panopticapi's ``combine_semantic_and_instance_predictions.py`` "without tuning
any hyper-parameters" (Sec. 6.5.3). :func:`combine_things_and_stuff` runs that procedure
(Kirillov et al., "Panoptic Segmentation", CVPR 2019, Sec. 7, plus panopticapi's small-stuff
filter) through mmdet's ``HeuristicFusionHead``, with panopticapi's defaults: instances of score
>= 0.5 in decreasing score order, an instance dropped when more than half of it is already
covered, overlapping pixels kept by the higher-scored one, then each stuff class on the
still-free pixels unless fewer than 64 x 64 pixels are left.

:class:`CocoPanopticPQMetric` combines the predictions of a model that outputs ``pred_instances``
(with masks) and ``pred_sem_seg`` (COCO-stuff ``stuffthingmaps`` labels, e.g.
:class:`~mmvideoeq.models.detectors.DetectoRSHTC`), reads the COCO panoptic ground truth (PNG +
JSON) and scores it by panopticapi's ``pq_compute`` rules
(:func:`~mmvideoeq.evaluation.functional.coco_pq_stats`: crowd regions count only for
predictions of their own category; class average over the categories with TP + FP + FN > 0).
mmdet's ``CocoPanopticMetric`` needs the ``panopticapi`` package (installed from its repository
only, not from the package index) and a ``pred_panoptic_seg`` the model would have to produce.
"""

from __future__ import annotations

import json
import os.path as osp
from collections.abc import Sequence

import mmcv
import numpy as np
import torch
from mmdet.models.seg_heads.panoptic_fusion_heads import HeuristicFusionHead
from mmengine.config import ConfigDict
from mmengine.evaluator import BaseMetric
from mmengine.fileio import get
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData

from mmvideoeq.registry import METRICS

from ..functional import coco_pq_stats, pq_summary

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


#: mmdet's panoptic id encoding in ``HeuristicFusionHead``'s output (``class + instance * 1000``).
_INSTANCE_OFFSET = 1000


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

    The fusion itself is mmdet's ``HeuristicFusionHead`` (``_lay_masks``: instances by
    decreasing score, dropped when more than ``overlap_thr`` of them is covered, pasted on the
    free pixels; then every stuff class on the pixels no instance took, void below
    ``stuff_area_limit``), which is panopticapi's procedure (mmdet adds 1e-5 to the denominator
    of the covered fraction; at panopticapi's 0.5 that changes no decision, since a fraction of
    integers above 1/2 exceeds it by at least ``1 / (2 * area)``). This function adds what the head
    leaves to its caller: panopticapi's ``--confidence_thr`` filter, a stable order for equal
    scores (panopticapi sorts with Python's stable ``sorted``; the head's ``torch.argsort`` is not
    stable, so it gets the ranks instead of the scores), the stuff map as the head's one-hot
    ``seg_preds``, and the result as panopticapi's segment map + segment list.

    Args:
        masks (np.ndarray): ``(N, H, W)`` bool instance masks.
        scores (np.ndarray): ``(N,)`` instance scores.
        categories (np.ndarray): ``(N,)`` category id of each instance.
        stuff (np.ndarray): ``(H, W)`` stuff category id per pixel (0: none / not stuff).
        score_thr (float): Instances below it are dropped (``--confidence_thr``).
        overlap_thr (float): An instance more than this fraction covered by higher-scored kept
            ones is dropped (``--segmentations_overlap_thr``).
        stuff_area_limit (int): A stuff class with fewer free pixels is dropped
            (``--stuff_area_limit``).

    Returns:
        tuple: ``(segment_map, segments)``: ``(H, W)`` int64 map of segment indices (0 = void,
        ``k`` = ``segments[k - 1]``) and the ``(category_id, is_thing)`` of each segment, things
        in the order they were laid, then stuff by category id.
    """
    scores = np.asarray(scores, np.float64)
    masks = np.asarray(masks, bool).reshape(-1, *stuff.shape)
    categories = np.asarray(categories, np.int64)
    keep = np.flatnonzero(scores >= score_thr)
    keep = keep[np.argsort(-scores[keep], kind='stable')]
    thing_cats, thing_labels = np.unique(categories[keep], return_inverse=True)
    stuff_cats = np.unique(stuff[stuff != 0])
    num_things, num_stuff = len(thing_cats), len(stuff_cats)
    if num_things + num_stuff >= _INSTANCE_OFFSET:
        raise ValueError(
            f"{num_things} thing and {num_stuff} stuff categories in one image: mmdet's fusion "
            f'encodes classes below {_INSTANCE_OFFSET}'
        )
    head = HeuristicFusionHead(
        num_things_classes=num_things,
        num_stuff_classes=num_stuff,
        test_cfg=ConfigDict(mask_overlap=overlap_thr, stuff_area_limit=stuff_area_limit),
    )
    instances = InstanceData(
        bboxes=torch.zeros(len(keep), 4),
        scores=-torch.arange(len(keep), dtype=torch.float32),  # ranks: panopticapi's order
        labels=torch.as_tensor(thing_labels.reshape(-1), dtype=torch.long),
        masks=torch.from_numpy(masks[keep]),
    )
    channel = np.searchsorted(stuff_cats, stuff)  # stuff index; num_stuff = none
    channel[stuff == 0] = num_stuff
    one_hot = torch.from_numpy(channel[None] == np.arange(num_stuff + 1)[:, None, None])
    pan = head.predict([instances], [one_hot.to(torch.uint8)])[0].sem_seg[0].numpy()

    seg = np.zeros(stuff.shape, np.int64)
    segments: list[tuple[int, int]] = []
    ids = np.unique(pan)
    cls = ids % _INSTANCE_OFFSET
    things = ids[cls < num_things]
    for value in things[np.argsort(things // _INSTANCE_OFFSET, kind='stable')]:
        segments.append((int(thing_cats[value % _INSTANCE_OFFSET]), 1))
        seg[pan == value] = len(segments)
    for value in ids[(cls >= num_things) & (ids < num_things + num_stuff)]:
        segments.append((int(stuff_cats[value - num_things]), 0))
        seg[pan == value] = len(segments)
    return seg, segments


def _rgb2id(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


@METRICS.register_module()
class CocoPanopticPQMetric(BaseMetric):
    """COCO panoptic quality of combined instance + stuff predictions (see the module docstring).

    Args:
        ann_file (str): COCO panoptic JSON (``images``, ``annotations`` with ``segments_info``,
            ``categories`` with ``isthing``).
        seg_prefix (str): Folder of the ground-truth panoptic PNGs (``file_name`` of each
            annotation).
        stuff_map (dict, optional): ``stuffthingmaps`` label -> panoptic stuff category id;
            labels not in it are not stuff. ``None``: COCO-stuff to COCO panoptic
            (:data:`COCO_STUFF_TO_PANOPTIC`).
        score_thr, overlap_thr, stuff_area_limit: Of :func:`combine_things_and_stuff`
            (panopticapi's defaults).
        collect_device (str): As in mmengine's ``BaseMetric``.
        prefix (str, optional): Key prefix (default ``coco_panoptic``).

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
        self.category_ids = [c['id'] for c in self.categories]
        self.thing_index = [i for i, c in enumerate(self.categories) if c.get('isthing')]
        self.gt = {a['image_id']: a for a in data['annotations']}
        raw = COCO_STUFF_TO_PANOPTIC if stuff_map is None else stuff_map
        self.stuff_map = {int(k): int(v) for k, v in raw.items() if int(v) in self.category_ids}
        self.combine_cfg = dict(
            score_thr=score_thr, overlap_thr=overlap_thr, stuff_area_limit=stuff_area_limit
        )

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

    def _ground_truth(self, img_id: int) -> tuple[np.ndarray, list]:
        """``(H, W)`` segment ids of the panoptic PNG and its ``segments_info``."""
        ann = self.gt.get(img_id)
        if ann is None:
            raise ValueError(f'image {img_id} has no panoptic annotation in the ann_file')
        png = mmcv.imfrombytes(
            get(osp.join(self.seg_prefix, ann['file_name'])), channel_order='rgb'
        )
        return _rgb2id(png), ann['segments_info']

    def _prediction(self, sample: dict, things: np.ndarray) -> tuple[np.ndarray, list]:
        """Combined segment map (0 = void) and its segment list (``id``, ``category_id``)."""
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
        return seg, [dict(id=k, category_id=cat) for k, (cat, _) in enumerate(segs, start=1)]

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Combine each image's prediction and keep its per-category PQ sums."""
        things = self._thing_categories()
        for sample in data_samples:
            if 'pred_sem_seg' not in sample or 'masks' not in sample.get('pred_instances', {}):
                raise ValueError(
                    'CocoPanopticPQMetric needs pred_instances.masks and pred_sem_seg; use a model '
                    'with a mask head and a semantic head that outputs pred_sem_seg (DetectoRSHTC)'
                )
            gt, gt_segments = self._ground_truth(sample['img_id'])
            pred, pred_segments = self._prediction(sample, things)
            if gt.shape != pred.shape:
                raise ValueError(
                    f'image {sample["img_id"]}: prediction {pred.shape} and panoptic ground truth '
                    f'{gt.shape} differ in size; predict at the original image size'
                )
            stats = coco_pq_stats(
                gt,
                pred,
                gt_segments=gt_segments,
                pred_segments=pred_segments,
                categories=self.category_ids,
            )
            self.results.append(stats)

    def compute_metrics(self, results: list) -> dict:
        """PQ / SQ / RQ over categories with TP + FP + FN > 0 (panopticapi ``pq_average``)."""
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
