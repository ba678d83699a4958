"""Registered KITTI depth-error metric (devkit conventions), by frame offset.

Shares the DVPS metrics' sample reading, skipping and offset buckets (:mod:`.dvps_metric`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mmvideoeq.registry import METRICS

from ..functional import (
    DEPTH_METRICS,
    DepthSums,
    depth_sums,
    reduce_depth_sums,
)
from .dvps_metric import _DVPSBase, _frame_meta, _ordered, sample_array

__all__ = ['KittiDepthMetric']


@METRICS.register_module()
class KittiDepthMetric(_DVPSBase):
    """Depth errors (KITTI devkit and Eigen et al., see :mod:`.depth_metrics`) by frame offset.

    Not mmseg's ``DepthMetric`` (a different metric under the name this project used to
    register): mmseg's reads ``gt_depth_map`` / ``pred_depth_map``, keeps every valid pixel of
    every image until the end, and computes another ``silog`` (``sqrt(mean(e^2) -
    0.5 mean(e)^2)``, not the KITTI devkit's x100 value) and Eigen's ``sq_rel`` only; it has no
    ``irmse``, no pooled-pixel reduction (deeplab2's DSTQ inliers) and no frame offsets.

    Args:
        reductions (Sequence[str]): ``'image'`` (per image, then the mean over images: the KITTI
            devkit) and/or ``'pixel'`` (pooled pixels).
        gt_max_depth (float, optional): Ground truth beyond this depth (m) is ignored.
        offset_buckets (int | Sequence[int], optional): Buckets of the by-offset curves.
        collect_device (str): ``'cpu'`` or ``'gpu'``.
        prefix (str, optional): Key prefix (default ``'depth'``).
        ci_resamples (int): Bootstrap resamples of the curves' intervals; 0: none.

    Returns: ``{reduction}/{error}`` for every error of :data:`DEPTH_METRICS` (``silog`` x100,
    ``abs_rel``, ``sq_rel_kitti``, ``sq_rel_eigen``, ``rmse`` m, ``rmse_log``, ``irmse`` 1/km,
    ``delta1..3``), ``offset_curve/{reduction}/{error}``, ``offset_curve/num_frames`` and
    ``offset_curve_ci/{reduction}/{error}``.
    """

    default_prefix = 'depth'

    def __init__(
        self,
        reductions: Sequence[str] = ('image', 'pixel'),
        gt_max_depth: float | None = None,
        offset_buckets: int | Sequence[int] | None = 20,
        collect_device: str = 'cpu',
        prefix: str | None = None,
        ci_resamples: int = 200,
    ) -> None:
        super().__init__(offset_buckets, collect_device, prefix, ci_resamples)
        reductions = (reductions,) if isinstance(reductions, str) else tuple(reductions)
        if not reductions or any(r not in ('image', 'pixel') for r in reductions):
            raise ValueError(f"reductions must be 'image' and/or 'pixel', got {reductions}")
        self.reductions = reductions
        self.gt_max_depth = gt_max_depth

    def frame_record(self, gt_depth, pred_depth, **meta) -> dict:
        """Check one frame and keep its :class:`DepthSums` (as a dict)."""
        name = meta.get('name', '?')
        if gt_depth is None or pred_depth is None:
            raise KeyError(f'{name}: KittiDepthMetric needs gt_depth and pred_depth')
        if self.gt_max_depth is not None:
            gt_depth = np.where(gt_depth > self.gt_max_depth, 0, gt_depth)
        return dict(meta, sums=depth_sums(gt_depth, pred_depth, name=name).as_dict())

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Store each frame's depth sums; errors name ``pred_depth_path`` when the sample has
        it (a prediction folder), else the frame."""
        for sample in data_samples:
            if self._skipped(sample):
                continue
            meta = _frame_meta(sample)
            if sample.get('pred_depth_path'):
                meta['name'] = str(sample['pred_depth_path'])
            self.results.append(
                self.frame_record(
                    sample_array(sample, 'gt_depth'), sample_array(sample, 'pred_depth'), **meta
                )
            )

    def _evaluate(self, records: list[dict]) -> dict:
        sums = [DepthSums(**r['sums']) for r in records]
        return {
            f'{red}/{k}': v
            for red in self.reductions
            for k, v in reduce_depth_sums(sums, red).items()
        }

    def compute_metrics(self, results: list) -> dict:
        """See the class docstring."""
        done, counts = self._split(results)
        if not done:
            return counts
        records = _ordered(done)
        out = dict(self._evaluate(records), **counts)
        curves = self._by_offset(
            records, lambda pos, _: (self._evaluate([records[i] for i in pos]), len(pos))
        )
        if curves:
            for red in self.reductions:
                for key in DEPTH_METRICS:
                    out[f'offset_curve/{red}/{key}'] = {
                        b: r[f'{red}/{key}'] for b, (r, _) in curves.items()
                    }
            out['offset_curve/num_frames'] = {b: n for b, (_, n) in curves.items()}
            for key, interval in self._ci(records, records, self._evaluate).items():
                out[f'offset_curve_ci/{key}'] = interval
        return out
