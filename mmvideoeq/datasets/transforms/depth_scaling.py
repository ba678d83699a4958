"""Keep metric depth consistent with a random rescaling of the image."""

from __future__ import annotations

import math

from mmcv.transforms import BaseTransform

from mmvideoeq.registry import TRANSFORMS

__all__ = ['ScaleDepthWithImage']


@TRANSFORMS.register_module()
class ScaleDepthWithImage(BaseTransform):
    """Divide ``gt_depth`` by the image's resize factor.

    Enlarging a frame by ``s`` shows the scene as if the camera were ``s`` times closer, so
    metric depth is divided by ``s`` - deeplab2's ``input_preprocessing.preprocess_image_and_label``
    does this after its random scaling ("the larger, the closer"); mmseg's ``RandomResize``
    does not touch the values. Place it right after the resize. The factor is the geometric
    mean of ``scale_factor = (w_scale, h_scale)`` (equal with ``keep_ratio``); 0 (invalid) stays
    0.

    Required keys: ``gt_depth``, ``scale_factor``. Modified: ``gt_depth``.
    """

    def transform(self, results: dict) -> dict:
        if 'scale_factor' not in results:
            raise KeyError('ScaleDepthWithImage must follow a Resize/RandomResize transform')
        w_scale, h_scale = results['scale_factor']
        s = math.sqrt(float(w_scale) * float(h_scale))
        if 'gt_depth' in results and s != 1.0:
            results['gt_depth'] = (results['gt_depth'] / s).astype(results['gt_depth'].dtype)
        return results
