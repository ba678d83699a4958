"""mmdet's COCO box / mask AP with skipped images left out, as the VID metric leaves out frames.

mmdet's :class:`~mmdet.evaluation.CocoMetric` evaluates every image id of the annotation file: an
image the dataset could not read (missing, corrupt, not of its listed size; marked with
:data:`mmvideoeq.structures.SKIP_KEY` by the datasets' safe loading) would count with its
placeholder's predictions, i.e. as missed objects, without a word. This subclass leaves such
images out of the evaluation (their ids are removed from ``imgIds``), counts them
(``num_skipped_images``) and lists them in the log; everything else is mmdet's.
"""

from __future__ import annotations

from typing import Any, Sequence

from mmdet.evaluation import CocoMetric
from mmengine.logging import MMLogger

from mmvideoeq.registry import METRICS
from mmvideoeq.structures import skip_reason

__all__ = ['CocoMetricWithSkips']


@METRICS.register_module()
class CocoMetricWithSkips(CocoMetric):
    """``mmdet.CocoMetric`` that leaves out the images marked skipped.

    Args:
        **kwargs: :class:`~mmdet.evaluation.CocoMetric` arguments.

    Returns (``compute_metrics``): mmdet's keys and ``num_skipped_images``; only that count
    when every image was skipped.
    """

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Keep each skipped image's id and reason; pass the others to mmdet."""
        kept = []
        for sample in data_samples:
            reason = skip_reason(sample)
            if reason is None:
                kept.append(sample)
            else:
                skipped = dict(img_id=sample['img_id'], img_path=sample.get('img_path'))
                self.results.append((dict(skipped, reason=reason), None))
        super().process(data_batch, kept)

    def compute_metrics(self, results: list) -> dict:
        """mmdet's metrics over the images that were not skipped."""
        skipped = [gt for gt, pred in results if pred is None]
        done = [r for r in results if r[1] is not None]
        if skipped:
            shown = '; '.join(f"{s['img_path']} ({s['reason']})" for s in skipped[:10])
            MMLogger.get_current_instance().warning(
                f'CocoMetricWithSkips: {len(skipped)} image(s) skipped, not evaluated: {shown}'
                + (' ...' if len(skipped) > 10 else '')
            )
        if not done:
            return dict(num_skipped_images=len(skipped))
        if self._coco_api is not None:
            gone = {s['img_id'] for s in skipped}
            self.img_ids = [i for i in self._coco_api.get_img_ids() if i not in gone]
        metrics = super().compute_metrics(done)
        metrics['num_skipped_images'] = len(skipped)
        return metrics
