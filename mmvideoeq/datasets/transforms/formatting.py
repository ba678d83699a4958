"""Pack a DVPS / depth sample: mmseg's ``PackSegInputs`` plus the panoptic and depth fields."""

from __future__ import annotations

import numpy as np
import torch
from mmengine.structures import PixelData
from mmseg.datasets.transforms import PackSegInputs

from mmvideoeq.registry import TRANSFORMS

__all__ = ['PackDVPSInputs']

_META_KEYS = (
    'img_path',
    'ori_shape',
    'img_shape',
    'pad_shape',
    'scale_factor',
    'flip',
    'flip_direction',
    'video_id',
    'frame_id',
    'frame_offset',
    'frame_name',
    'focal',
    'label_divisor',
    'ignore_label',
    'num_frames',
    'next_img_path',
    'next_frame_id',
)


@TRANSFORMS.register_module()
class PackDVPSInputs(PackSegInputs):
    """Pack ``inputs`` and a ``SegDataSample`` with the DVPS ground truth.

    mmseg's :class:`PackSegInputs` packs ``img`` -> ``inputs`` ``(C, H, W)`` (C = 6 after
    :class:`LoadNextImageFromFile`), ``gt_seg_map`` -> ``gt_sem_seg`` and the meta keys present;
    this adds, as ``PixelData`` of shape ``(1, H, W)``: ``gt_panoptic`` (int64),
    ``next_gt_panoptic`` (int64) and ``gt_depth`` (float32 metres), when loaded.

    Args:
        meta_keys (Sequence[str]): Metainfo keys copied when present (default: image and
            geometry keys plus ``video_id``, ``frame_id``, ``frame_offset``, ``frame_name``,
            ``focal``, ``label_divisor``, ``ignore_label``, ``num_frames``, ``next_img_path``,
            ``next_frame_id``).
    """

    def __init__(self, meta_keys=_META_KEYS) -> None:
        super().__init__(meta_keys=meta_keys)

    def transform(self, results: dict) -> dict:
        """Pack the sample."""
        packed = super().transform(results)
        sample = packed['data_samples']
        for key, dtype in (
            ('gt_panoptic', np.int64),
            ('next_gt_panoptic', np.int64),
            ('gt_depth', np.float32),
        ):
            if key in results:
                data = torch.from_numpy(np.ascontiguousarray(results[key][None].astype(dtype)))
                sample.set_field(PixelData(data=data), key)
        return packed
