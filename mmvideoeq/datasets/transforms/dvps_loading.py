"""Loading transforms of Cityscapes-DVPS, SemKITTI-DVPS and KITTI depth.

They read what :mod:`mmvideoeq.datasets.dvps` and :mod:`mmvideoeq.datasets.kitti_depth` list:

* :class:`LoadPanopticAnnotation`: ``gt_panoptic`` (H, W) int32 ``class * label_divisor +
  instance`` and ``gt_seg_map`` (H, W) uint8 classes with void -> 255 (mmseg's key and ignore
  value, so mmseg heads and transforms use it as is); ``next_gt_panoptic`` with ``with_next``;
* :class:`LoadKittiDepthAnnotation`: ``gt_depth`` (H, W) float32 metres, 0 = invalid;
* :class:`LoadNextImageFromFile`: the next frame, stacked after the frame's channels
  (``img`` (H, W, 6)), so that geometric transforms move both frames alike.

The label maps are added to ``seg_fields``: mmseg's geometric transforms (``RandomFlip``,
``Resize``, ``RandomCrop``) then treat them like ``gt_seg_map`` (nearest neighbour), which is
right for ids and for sparse depth. Photometric transforms assume 3 channels: put them before
:class:`LoadNextImageFromFile`.

Written here (rather than with mmseg's ``LoadAnnotations``/``LoadDepthAnnotation``) because
those neither decode two-file SemKITTI labels nor check a file's bit depth; a wrong file gets a
clear error naming it.
"""

from __future__ import annotations

import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile

from mmvideoeq.registry import TRANSFORMS

from ..dvps_io import (
    read_cityscapes_dvps_panoptic,
    read_depth_png,
    read_semkitti_dvps_panoptic,
)

__all__ = ['LoadPanopticAnnotation', 'LoadKittiDepthAnnotation', 'LoadNextImageFromFile']


def _add_seg_field(results: dict, key: str) -> None:
    fields = results.setdefault('seg_fields', [])
    if key not in fields:
        fields.append(key)


def _require(results: dict, key: str, what: str):
    value = results.get(key)
    if value is None:
        hint = (
            'build the dataset with with_next_frame=True'
            if key.startswith('next_')
            else 'use a labelled split of an mmvideoeq DVPS/KITTI dataset (require_labels=True)'
        )
        raise KeyError(
            f"{what} needs '{key}' in the data info of {results.get('img_path', '?')}; {hint}"
        )
    return value


@TRANSFORMS.register_module()
class LoadPanopticAnnotation(BaseTransform):
    """Read the panoptic label of a frame (and of the next frame).

    Required keys: ``panoptic_format``, ``label_divisor``, ``ignore_label`` and
    ``panoptic_path`` (Cityscapes-DVPS) or ``class_path`` + ``instance_path`` (SemKITTI-DVPS);
    with ``with_next`` the same keys prefixed ``next_``.

    Added keys: ``gt_panoptic``, ``gt_seg_map``, ``next_gt_panoptic`` (``with_next``),
    ``seg_fields``.

    Args:
        with_next (bool): Also read the next frame's label (``next_gt_panoptic``).
        seg_ignore_index (int): Value of void pixels in ``gt_seg_map``.
    """

    def __init__(self, with_next: bool = False, seg_ignore_index: int = 255) -> None:
        self.with_next = with_next
        self.seg_ignore_index = seg_ignore_index

    @staticmethod
    def _read(results: dict, prefix: str) -> np.ndarray:
        fmt = _require(results, 'panoptic_format', 'LoadPanopticAnnotation')
        if fmt == 'cityscapes_dvps':
            path = _require(results, f'{prefix}panoptic_path', 'LoadPanopticAnnotation')
            return read_cityscapes_dvps_panoptic(path)
        if fmt == 'semkitti_dvps':
            return read_semkitti_dvps_panoptic(
                _require(results, f'{prefix}class_path', 'LoadPanopticAnnotation'),
                _require(results, f'{prefix}instance_path', 'LoadPanopticAnnotation'),
                int(results['label_divisor']),
            )
        raise ValueError(f"unknown panoptic_format {fmt!r}; 'cityscapes_dvps' or 'semkitti_dvps'")

    def transform(self, results: dict) -> dict:
        """Add the label maps (see the class docstring)."""
        panoptic = self._read(results, '')
        classes = panoptic // int(results['label_divisor'])
        void = classes == int(results['ignore_label'])
        results['gt_panoptic'] = panoptic
        results['gt_seg_map'] = np.where(void, self.seg_ignore_index, classes).astype(np.uint8)
        _add_seg_field(results, 'gt_panoptic')
        _add_seg_field(results, 'gt_seg_map')
        if self.with_next:
            results['next_gt_panoptic'] = self._read(results, 'next_')
            _add_seg_field(results, 'next_gt_panoptic')
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(with_next={self.with_next})'


@TRANSFORMS.register_module()
class LoadKittiDepthAnnotation(BaseTransform):
    """Read a depth PNG in KITTI's format (16-bit, metres * 256; Cityscapes-DVPS and SemKITTI-DVPS
    use it too) as metres.

    Required keys: ``depth_path``, ``depth_scale`` (default 256). Added: ``gt_depth`` (H, W)
    float32 metres (0 = invalid), ``seg_fields``.

    Not mmseg's ``LoadDepthAnnotation`` (a different transform under the name this project used
    to register): that one reads ``depth_map_path`` into ``gt_depth_map`` with any bit depth and a
    multiplicative ``depth_rescale_factor``, so an 8-bit file or a wrong scale loads silently and
    the DVPS heads, metrics and ``PackDVPSInputs`` (``gt_depth``) do not see it; here the file
    must be a 16-bit PNG and an error names it.
    """

    def transform(self, results: dict) -> dict:
        """Add ``gt_depth``."""
        path = _require(results, 'depth_path', 'LoadKittiDepthAnnotation')
        results['gt_depth'] = read_depth_png(path, float(results.get('depth_scale', 256.0)))
        _add_seg_field(results, 'gt_depth')
        return results


@TRANSFORMS.register_module()
class LoadNextImageFromFile(LoadImageFromFile):
    """Read ``next_img_path`` and stack it after ``img``'s channels: ``img`` (H, W, 6).

    Takes mmcv :class:`~mmcv.transforms.LoadImageFromFile`'s arguments; must follow the loading
    of the frame itself. Added/updated keys: ``img``, ``num_frames`` (2).
    """

    def transform(self, results: dict) -> dict:
        """Stack the next frame onto ``img``."""
        if 'img' not in results:
            raise KeyError('LoadNextImageFromFile must come after LoadImageFromFile')
        path = _require(results, 'next_img_path', 'LoadNextImageFromFile')
        loaded = super().transform(dict(img_path=path))
        if loaded is None:  # ignore_empty
            return None
        if loaded['img'].shape != results['img'].shape:
            raise ValueError(
                f"{path} {loaded['img'].shape} and {results['img_path']} "
                f"{results['img'].shape} differ in size"
            )
        results['img'] = np.concatenate([results['img'], loaded['img']], axis=2)
        results['num_frames'] = 2
        return results
