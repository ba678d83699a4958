"""COCO instances (+ COCO-stuff ``stuffthingmaps``) for the DetectoRS configs.

mmdet's :class:`~mmdet.datasets.CocoDataset` reads everything the DetectoRS detectors train on
(boxes, polygon/RLE masks through ``LoadAnnotations(with_mask=True)``, and HTC's semantic labels
from ``data_prefix['seg']``, the COCO-stuff ``stuffthingmaps`` PNGs). It does not check that the
annotations match what the pipeline loads: an instance without ``segmentation`` is silently kept
without a mask and fails later inside ``LoadAnnotations`` with ``KeyError: 'mask'``, and a missing
``stuffthingmaps`` folder fails on the first image with a bare file-not-found from the image
decoder. This subclass checks both when the dataset is built and says what to do.
"""

from __future__ import annotations

import os.path as osp

from mmdet.datasets import CocoDataset

from mmvideoeq.registry import DATASETS

from .safe_loading import SkipUnreadableFramesMixin

__all__ = ['CocoInstanceStuffDataset']

STUFF_HELP = (
    "HTC's semantic head trains on the COCO-stuff maps (stuffthingmaps_trainval2017.zip from "
    'the COCO-stuff release, extracted to <data_root>/stuffthingmaps/{train,val}2017/). Without '
    'them use configs/detectors/cascade-rcnn_r50-detectors_1x_coco.py, which needs no stuff maps'
)


def _pipeline_loads(pipeline, flag: str) -> bool:
    return any(getattr(t, flag, False) for t in getattr(pipeline, 'transforms', ()))


@DATASETS.register_module()
class CocoInstanceStuffDataset(SkipUnreadableFramesMixin, CocoDataset):
    """mmdet's ``CocoDataset`` that checks masks and stuff maps against the pipeline.

    When a ``LoadAnnotations`` of the pipeline has ``with_mask=True``, every non-crowd annotation
    the dataset keeps must have a ``segmentation`` (polygons or RLE); with ``with_seg=True``,
    ``data_prefix['seg']`` must be set and hold a map for every image.

    An image that is missing, unreadable or not of the size the annotation file lists is skipped
    and reported in test mode (the metric, ``CocoMetricWithSkips``, leaves it out) and replaced
    by another image, with a warning naming the file, in training (:mod:`.safe_loading`).

    Args:
        **kwargs: ``CocoDataset`` arguments.

    Raises:
        ValueError: An annotation without ``segmentation`` while masks are loaded, or
            ``with_seg`` without ``data_prefix['seg']``.
        FileNotFoundError: The stuff-map folder or an image's stuff map is missing.
    """

    def parse_data_info(self, raw_data_info: dict) -> dict:
        data_info = super().parse_data_info(raw_data_info)
        if _pipeline_loads(self.pipeline, 'with_mask'):
            self._check_masks(raw_data_info)
        if _pipeline_loads(self.pipeline, 'with_seg'):
            self._check_seg(data_info)
        return data_info

    def _check_masks(self, raw_data_info: dict) -> None:
        img = raw_data_info['raw_img_info']
        for ann in raw_data_info['raw_ann_info']:
            kept = (
                not ann.get('ignore', False)
                and not ann.get('iscrowd', False)
                and ann.get('area', 0) > 0
                and ann['category_id'] in self.cat_ids
            )
            if kept and not ann.get('segmentation'):
                raise ValueError(
                    f'{self.ann_file}: annotation {ann.get("id")} of image {img.get("file_name")} '
                    'has no "segmentation", but the pipeline loads masks (LoadAnnotations '
                    'with_mask=True) for a mask head. Use an instances file with polygon/RLE '
                    'masks, or a box-only config (e.g. the Cascade R-CNN one) with with_mask=False'
                )

    def _check_seg(self, data_info: dict) -> None:
        seg_prefix = self.data_prefix.get('seg')
        if not seg_prefix:
            raise ValueError(
                'the pipeline loads semantic maps (LoadAnnotations with_seg=True) but the dataset '
                f"has no data_prefix['seg']; set it to the stuffthingmaps folder. {STUFF_HELP}"
            )
        if not getattr(self, '_seg_dir_checked', False):
            if not osp.isdir(seg_prefix):
                raise FileNotFoundError(
                    f'stuff maps folder {seg_prefix} does not exist. {STUFF_HELP}'
                )
            self._seg_dir_checked = True
        if not osp.isfile(data_info['seg_map_path']):
            raise FileNotFoundError(
                f'stuff map {data_info["seg_map_path"]} of image {data_info["img_path"]} is '
                f'missing. {STUFF_HELP}'
            )
