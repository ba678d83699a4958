"""Registered STQ / DSTQ metric (deeplab2's segmentation-and-tracking quality), by frame offset.

Shares the DVPS metrics' sample reading, skipping and offset buckets (:mod:`.dvps_metric`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmvideoeq.registry import METRICS

from ..functional import DSTQuality, STQuality
from .dvps_metric import _check_same_size, _DVPSBase, _frame_meta, _ordered, sample_array

__all__ = ['STQMetric']


@METRICS.register_module()
class STQMetric(_DVPSBase):
    """STQ (Weber et al. 2021) and, with depth thresholds, DSTQ (deeplab2), by frame offset.

    Args:
        num_classes (int): Evaluated classes.
        thing_ids (Sequence[int]): Thing classes.
        ignore_label (int): Void class.
        label_divisor (int): Label divisor.
        depth_thresholds (Sequence[float], optional): DSTQ's inlier thresholds (deeplab2:
            1.25, 1.1; ViP-DeepLab's SemKITTI-DVPS ``eval_dstq.py``: 1.25); ``None``: STQ only.
        void_pixels (str): ``'keep'`` (deeplab2) or ``'drop'`` (evaluate labelled pixels only,
            ViP-DeepLab's ``eval_dstq.py``), see :class:`STQuality`.
        offset_buckets (int | Sequence[int], optional): Buckets of the by-offset curves.
        collect_device (str): ``'cpu'`` or ``'gpu'``.
        prefix (str, optional): Key prefix (default ``'stq'``).
        ci_resamples (int): Bootstrap resamples of the curve's interval; 0: none. A video drawn
            twice is two sequences.

    Returns: ``STQ``, ``AQ``, ``IoU`` (and ``DSTQ``, ``DQ``, ``DSTQ@t``, ``DQ@t``), percent;
    ``offset_curve/STQ`` (or ``DSTQ``), ``offset_curve/num_frames``, ``offset_curve_ci/STQ``
    (or ``DSTQ``).
    """

    default_prefix = 'stq'

    def __init__(
        self,
        num_classes: int,
        thing_ids: Sequence[int],
        ignore_label: int,
        label_divisor: int,
        depth_thresholds: Sequence[float] | None = (1.25, 1.1),
        void_pixels: str = 'keep',
        offset_buckets: int | Sequence[int] | None = 20,
        collect_device: str = 'cpu',
        prefix: str | None = None,
        ci_resamples: int = 200,
    ) -> None:
        super().__init__(offset_buckets, collect_device, prefix, ci_resamples)
        self._kwargs = dict(
            num_classes=num_classes,
            thing_ids=tuple(thing_ids),
            ignore_label=ignore_label,
            label_divisor=label_divisor,
            void_pixels=void_pixels,
        )
        self.depth_thresholds = None if depth_thresholds is None else tuple(depth_thresholds)
        self._new()  # validates the arguments

    def _new(self) -> STQuality:
        if self.depth_thresholds is None:
            return STQuality(**self._kwargs)
        return DSTQuality(**self._kwargs, depth_thresholds=self.depth_thresholds)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Store each frame's STQ statistics."""
        acc = self._new()
        for sample in data_samples:
            if self._skipped(sample):
                continue
            meta = _frame_meta(sample)
            gt, pred = sample_array(sample, 'gt_panoptic'), sample_array(sample, 'pred_panoptic')
            if gt is None or pred is None:
                raise KeyError(f"{meta['name']}: STQMetric needs gt_panoptic and pred_panoptic")
            args = [gt, pred]
            if self.depth_thresholds is not None:
                args += [sample_array(sample, 'gt_depth'), sample_array(sample, 'pred_depth')]
                if args[2] is None or args[3] is None:
                    raise KeyError(f"{meta['name']}: DSTQ needs gt_depth and pred_depth")
            _check_same_size(
                meta['name'], **dict(zip(('gt', 'pred', 'gt_depth', 'pred_depth'), args))
            )
            try:
                stats = acc.frame_stats(*args)
            except ValueError as err:
                raise ValueError(f"{meta['name']}: {err}") from None
            self.results.append(dict(meta, stats=stats))

    def _evaluate(self, records: list[dict]) -> dict:
        """STQ of the records; the n-th repeat of a frame (a bootstrap resample that drew its
        video n times) goes to the n-th copy of its sequence."""
        acc = self._new()
        seen: dict = {}
        for r in records:
            key = (str(r['video_id']), r['frame_id'])
            seen[key] = seen.get(key, -1) + 1
            acc.add(r['stats'], f'{key[0]}#{seen[key]}' if seen[key] else key[0])
        return acc.result()

    def compute_metrics(self, results: list) -> dict:
        """See the class docstring."""
        done, counts = self._split(results)
        if not done:
            return counts
        records = _ordered(done)
        res = self._evaluate(records)
        keys = ['STQ', 'AQ', 'IoU']
        if self.depth_thresholds is not None:
            keys += ['DSTQ', 'DQ'] + [
                f'{m}@{t:g}' for t in self.depth_thresholds for m in ('DSTQ', 'DQ')
            ]
        out = {k: 100 * float(res[k]) for k in keys}
        out.update(counts)
        curves = self._by_offset(
            records, lambda pos, _: (self._evaluate([records[i] for i in pos]), len(pos))
        )
        if curves:
            main = 'STQ' if self.depth_thresholds is None else 'DSTQ'
            out[f'offset_curve/{main}'] = {b: 100 * float(r[main]) for b, (r, _) in curves.items()}
            out['offset_curve/num_frames'] = {b: n for b, (_, n) in curves.items()}
            ci = self._ci(
                records, records, lambda items: {main: 100 * float(self._evaluate(items)[main])}
            )
            if ci:
                out[f'offset_curve_ci/{main}'] = ci[main]
        return out
