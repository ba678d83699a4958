"""Write rendered images in the layout of COCO 2017 with COCO-stuff maps and COCO panoptic.

The layout is what mmdet's COCO configs (and the DetectoRS ones, ``configs/detectors/``) read,
with the real category ids of COCO, COCO-stuff and COCO panoptic (``classes.TO_COCO``)::

    coco/
      {train,val}2017/000000000001.jpg
      annotations/instances_{train,val}2017.json      boxes + masks (uncompressed RLE)
      stuffthingmaps/{train,val}2017/000000000001.png COCO-stuff: category id - 1, 255 unlabeled
      annotations/panoptic_{train,val}2017.json       segments_info per image
      annotations/panoptic_{train,val}2017/000000000001.png  id = R + 256 G + 256^2 B, 0 = void

Every image is one rendered frame (a real-photograph scene of ``scene.HANDHELD``). Conventions:

* instances: one annotation per visible object with at least ``min_area`` pixels; ``bbox`` is the
  tight box ``[x, y, w, h]`` of its visible pixels, ``area`` its pixel count, ``iscrowd`` 0, the
  mask as COCO's uncompressed RLE (column-major run lengths starting with a background run;
  ``pycocotools.mask.frPyObjects`` reads it). RLE rather than polygons: a polygon traced through
  the pixel centres of a small mask loses its border pixels when pycocotools rasterises it back.
* stuffthingmaps: every labelled pixel, things included (COCO-stuff's ``stuffthingmaps``);
* panoptic: stuff segments per class, one segment per annotated object; objects too small to be
  annotated and unlabelled pixels are void (0), as COCO panoptic leaves unannotated pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image

from mmvideoeq.class_names import coco_categories

from .classes import CLASSES, TO_COCO
from .scene import RenderedVideo
from .writers import _dump_json, _save_png, visible_boxes

__all__ = ['CocoWriter', 'rle_encode', 'panoptic_categories', 'coco_lookup']

#: Offset of the thing segment ids of an image above the category id (``id = cat * 1000 + k``).
_SEGMENT_STRIDE = 1000


def rle_encode(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a binary mask.

    Args:
        mask (np.ndarray): ``(H, W)`` bool.

    Returns:
        dict: ``{'size': [H, W], 'counts': [...]}``: run lengths over the column-major pixel
        order, the first run counting zeros (0 if the first pixel is set).
    """
    flat = np.asarray(mask, bool).flatten(order='F')
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0] + runs
    return dict(size=[int(mask.shape[0]), int(mask.shape[1])], counts=[int(r) for r in runs])


def coco_lookup() -> tuple:
    """Lookup tables from internal class ids to COCO values.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(stuffthing, panoptic)``: the ``stuffthingmaps`` value
        (uint8, 255 unlabeled) and the panoptic category id (int, 0 unlabeled) of each internal id.
    """
    stuffthing = np.full(len(CLASSES), 255, np.uint8)
    panoptic = np.zeros(len(CLASSES), np.int64)
    for i, name in enumerate(CLASSES):
        label = TO_COCO[name]
        if label is not None:
            stuffthing[i] = label.id - 1
            panoptic[i] = label.panoptic_id
    return stuffthing, panoptic


def panoptic_categories() -> List[dict]:
    """``categories`` of the panoptic file: the 80 things and the stuff classes written here."""
    things = [dict(c, isthing=1) for c in coco_categories()]
    stuff = sorted(
        {
            (lab.panoptic_id, lab.panoptic_name)
            for lab in TO_COCO.values()
            if lab and not lab.isthing
        }
    )
    return things + [dict(id=i, name=n, isthing=0) for i, n in stuff]


def _id_to_rgb(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def _bbox(mask: np.ndarray) -> List[int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


class CocoWriter:
    """COCO 2017 instances + COCO-stuff maps + COCO panoptic for one split.

    Args:
        root (Path): The ``coco`` folder.
        split (str): ``'train'`` or ``'val'`` (folders ``train2017``/``val2017``).
        jpeg_quality (int): JPEG quality of the images.
        min_area (int): Objects with fewer visible pixels get no instance annotation (and are
            void in the panoptic map).
    """

    def __init__(
        self, root: Path, split: str, *, jpeg_quality: int = 90, min_area: int = 16
    ) -> None:
        if split not in ('train', 'val'):
            raise ValueError(f"COCO split must be 'train' or 'val', got {split!r}")
        self.root, self.split = Path(root), split
        self.folder = f'{split}2017'
        self.jpeg_quality, self.min_area = jpeg_quality, min_area
        self.stuffthing, self.panoptic_ids = coco_lookup()
        self.instances: dict = dict(images=[], annotations=[], categories=coco_categories())
        self.panoptic: dict = dict(images=[], annotations=[], categories=panoptic_categories())

    def add(self, video: RenderedVideo, frame: int = 0) -> dict:
        """Write one frame of a rendered video as a COCO image.

        Args:
            video (RenderedVideo): The rendered video.
            frame (int): Which frame.

        Returns:
            dict: Its entry in the benchmark's metadata (id, file name, objects).
        """
        img_id = len(self.instances['images']) + 1
        stem = f'{img_id:012d}'
        height, width = video.frames.shape[1:3]
        image = dict(id=img_id, file_name=f'{stem}.jpg', height=int(height), width=int(width))
        self.instances['images'].append(dict(image))
        self.panoptic['images'].append(dict(image))
        path = self.root / self.folder / f'{stem}.jpg'
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(video.frames[frame]).save(path, format='JPEG', quality=self.jpeg_quality)
        semantic, instance = video.semantic[frame], video.instance[frame]
        _save_png(
            self.root / 'stuffthingmaps' / self.folder / f'{stem}.png', self.stuffthing[semantic]
        )
        pan_ids = np.zeros(semantic.shape, np.int64)
        segments = self._stuff_segments(semantic, instance, pan_ids)
        objects = []
        for k, (tid, (x, y, w, h, area)) in enumerate(
            visible_boxes(instance, self.min_area).items(), start=1
        ):
            label = TO_COCO[video.track_classes[tid]]
            mask = instance == tid
            self.instances['annotations'].append(
                dict(
                    id=len(self.instances['annotations']) + 1,
                    image_id=img_id,
                    category_id=label.id,
                    bbox=[x, y, w, h],
                    area=int(area),
                    iscrowd=0,
                    segmentation=rle_encode(mask),
                )
            )
            seg_id = label.panoptic_id * _SEGMENT_STRIDE + k
            pan_ids[mask] = seg_id
            segments.append(
                dict(
                    id=seg_id,
                    category_id=label.panoptic_id,
                    area=int(area),
                    bbox=[x, y, w, h],
                    iscrowd=0,
                )
            )
            objects.append(dict(track=int(tid), category=label.name, bbox=[x, y, w, h]))
        pan_name = f'{stem}.png'
        _save_png(
            self.root / 'annotations' / f'panoptic_{self.folder}' / pan_name, _id_to_rgb(pan_ids)
        )
        self.panoptic['annotations'].append(
            dict(image_id=img_id, file_name=pan_name, segments_info=segments)
        )
        # num_frames/shot_changes: every image is a one-frame video of the benchmark
        return dict(
            id=img_id,
            file_name=image['file_name'],
            num_frames=1,
            shot_changes=[],
            objects=objects,
        )

    def _stuff_segments(
        self, semantic: np.ndarray, instance: np.ndarray, pan_ids: np.ndarray
    ) -> List[dict]:
        """Stuff segments (one per class present; object pixels excluded) into ``pan_ids``."""
        segments = []
        stuff_cat = np.where(instance == 0, self.panoptic_ids[semantic], 0)
        things = {lab.panoptic_id for lab in TO_COCO.values() if lab and lab.isthing}
        for cat in np.unique(stuff_cat).tolist():
            if cat == 0 or cat in things:
                continue
            mask = stuff_cat == cat
            seg_id = cat * _SEGMENT_STRIDE
            pan_ids[mask] = seg_id
            segments.append(
                dict(
                    id=seg_id,
                    category_id=int(cat),
                    area=int(mask.sum()),
                    bbox=_bbox(mask),
                    iscrowd=0,
                )
            )
        return segments

    def finish(self) -> Dict[str, int]:
        """Write ``instances_*.json`` and ``panoptic_*.json``; return image/annotation counts."""
        ann = self.root / 'annotations'
        _dump_json(ann / f'instances_{self.folder}.json', self.instances)
        _dump_json(ann / f'panoptic_{self.folder}.json', self.panoptic)
        return dict(
            images=len(self.instances['images']), annotations=len(self.instances['annotations'])
        )
