"""Reference scores for the tests of the real-time simulation: ordinary metric runs on frames
paired explicitly (the definition the streaming scores are checked against)."""

from __future__ import annotations

import numpy as np


def dvpq_of_pairs(protocol, paired: dict) -> dict:
    """``DVPQMetric`` of an ordinary run on explicitly paired frames.

    Args:
        protocol (DVPQProtocol): The metric's protocol.
        paired: Video id -> per frame ``(ground truth, prediction)``, both
            :class:`~mmvideoeq.evaluation.metrics.PanopticFrame`; a prediction ``None`` is the
            documented empty prediction, built here by hand: every id the void id
            ``ignore_label * label_divisor``, depth 0.

    Returns:
        dict: The metric's results.
    """
    from mmvideoeq.evaluation.metrics import DVPQMetric, PanopticFrame

    metric = DVPQMetric(protocol=None, **protocol.__dict__, offset_buckets=None, ci_resamples=0)
    void = protocol.ignore_label * protocol.label_divisor
    for vid, frames in paired.items():
        for fid, (gt, pred) in enumerate(frames):
            if pred is None:
                shape = gt.panoptic.shape
                pred = PanopticFrame(np.full(shape, void), np.zeros(shape, np.float32))
            sample = dict(
                gt_panoptic=gt.panoptic, pred_panoptic=pred.panoptic, gt_depth=gt.depth,
                pred_depth=pred.depth, video_id=vid, frame_id=fid,
            )  # fmt: skip
            metric.process({}, [sample])
    return metric.compute_metrics(metric.results)
