"""Monocular depth errors: the KITTI benchmark's and Eigen et al.'s, per image or pixel-pooled.

On the pixels with ground truth (``d* > 0``), with prediction ``d``, ``e = log d - log d*`` and
``n`` pixels:

* ``silog`` = ``100 * sqrt(mean(e^2) - mean(e)^2)``: KITTI devkit ``evaluate_depth.cpp``
  "scale invariant log" (the server reports it x100), Eigen et al. NeurIPS 2014 Eq. 1,
  deeplab2 ``DepthMetrics``;
* ``abs_rel`` = ``mean(|d - d*| / d*)``: devkit "abs relative", Eigen "Abs Rel";
* ``sq_rel_kitti`` = ``mean(((d - d*) / d*)^2)``: devkit "squared relative" (the leaderboard's
  sqErrorRel is this x100), deeplab2 ``SqErrorRel``;
* ``sq_rel_eigen`` = ``mean((d - d*)^2 / d*)`` (metres): Eigen et al. "Sq Rel" (monodepth2's
  ``compute_errors``);
* ``rmse`` = ``sqrt(mean((d - d*)^2))`` (metres), ``rmse_log`` = ``sqrt(mean(e^2))``: both;
* ``irmse`` = ``1000 * sqrt(mean((1/d - 1/d*)^2))`` (1/km): devkit "inverse rmse";
* ``delta1..3`` = ``mean(max(d/d*, d*/d) < 1.25^i)``: Eigen et al.; deeplab2 ``DepthInlier``
  (1.25).

Two reductions: ``'image'`` computes every error per image and averages over images (the KITTI
devkit's ``statMean`` over images, and deeplab2's ``DepthMetrics.result``); ``'pixel'`` pools
the pixels of all images first (one big image; how deeplab2's DSTQ counts its depth inliers).
Both come from the same per-image sums (:class:`DepthSums`), so a metric keeps a dozen numbers
per frame.

Depths are metres in float64 (the devkit uses float32). ``silog`` clamps the variance at 0
(a constant-ratio prediction gives ``sqrt(-1e-17)`` = NaN in the references, 0 here). Written by
hand: mmseg's ``DepthMetric`` has another ``silog`` (variance weight 0.5, not x100), Eigen's
``sq_rel`` only, no ``irmse`` and no pooled reduction; mmdet has no depth metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

__all__ = [
    'DEPTH_METRICS',
    'DepthSums',
    'depth_sums',
    'depth_metrics_from_sums',
    'reduce_depth_sums',
    'depth_metrics',
]

#: Keys returned by :func:`depth_metrics_from_sums`, in report order.
DEPTH_METRICS = (
    'silog',
    'abs_rel',
    'sq_rel_kitti',
    'sq_rel_eigen',
    'rmse',
    'rmse_log',
    'irmse',
    'delta1',
    'delta2',
    'delta3',
)


@dataclass
class DepthSums:
    """Sums over the valid pixels of one image (or of several, pooled).

    Attributes: ``n`` pixels; sums of ``e``, ``e^2``, ``|d - d*|/d*``, ``((d - d*)/d*)^2``,
    ``(d - d*)^2/d*``, ``(d - d*)^2``, ``(1/d - 1/d*)^2`` and the counts of
    ``max(d/d*, d*/d) < 1.25, 1.25^2, 1.25^3``.
    """

    n: int = 0
    log_err: float = 0.0
    log_err_sq: float = 0.0
    abs_rel: float = 0.0
    sq_rel_kitti: float = 0.0
    sq_rel_eigen: float = 0.0
    sq_err: float = 0.0
    inv_sq_err: float = 0.0
    delta1: int = 0
    delta2: int = 0
    delta3: int = 0

    def __add__(self, other: DepthSums) -> DepthSums:
        return DepthSums(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def as_dict(self) -> dict:
        """Plain dict (for storage in a metric's results)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def depth_sums(gt, pred, name: str = 'prediction') -> DepthSums:
    """Sums of one image.

    Args:
        gt (array-like): ``(H, W)`` ground-truth depth in metres, ``0`` where invalid.
        pred (array-like): ``(H, W)`` predicted depth in metres, ``> 0`` wherever ``gt > 0``.
        name (str): What to call the prediction (a file name) in errors.

    Returns:
        DepthSums: The sums (``n = 0`` if no pixel has ground truth).

    Raises:
        ValueError: Sizes differ, a value is not finite, or the prediction is ``<= 0`` on a
            pixel with ground truth (log and ratios are undefined there: clamp the prediction,
            e.g. to 1e-3 m).
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if gt.shape != pred.shape:
        raise ValueError(
            f'{name}: predicted depth {pred.shape} and ground truth {gt.shape} differ in size'
        )
    if not (np.isfinite(gt).all() and np.isfinite(pred).all()):
        raise ValueError(f'{name}: depth maps must be finite')
    valid = gt > 0
    g, d = gt[valid], pred[valid]
    if (d <= 0).any():
        raise ValueError(
            f'{name}: {int((d <= 0).sum())} pixel(s) with ground-truth depth have a predicted '
            'depth <= 0; clamp predictions to a positive minimum (e.g. 1e-3 m)'
        )
    e = np.log(d) - np.log(g)
    diff = d - g
    ratio = np.maximum(d / g, g / d)
    return DepthSums(
        n=int(g.size),
        log_err=float(e.sum()),
        log_err_sq=float((e**2).sum()),
        abs_rel=float((np.abs(diff) / g).sum()),
        sq_rel_kitti=float(((diff / g) ** 2).sum()),
        sq_rel_eigen=float((diff**2 / g).sum()),
        sq_err=float((diff**2).sum()),
        inv_sq_err=float(((1.0 / d - 1.0 / g) ** 2).sum()),
        delta1=int((ratio < 1.25).sum()),
        delta2=int((ratio < 1.25**2).sum()),
        delta3=int((ratio < 1.25**3).sum()),
    )


def depth_metrics_from_sums(sums: DepthSums) -> dict:
    """The errors of the module table from sums.

    Args:
        sums (DepthSums): Sums of one image or pooled over images.

    Returns:
        dict: ``{key: float}`` for every key of :data:`DEPTH_METRICS` (NaN if ``n == 0``).
    """
    n = sums.n
    if n == 0:
        return {key: float('nan') for key in DEPTH_METRICS}
    mean_e = sums.log_err / n
    return dict(
        silog=100.0 * float(np.sqrt(max(sums.log_err_sq / n - mean_e**2, 0.0))),
        abs_rel=sums.abs_rel / n,
        sq_rel_kitti=sums.sq_rel_kitti / n,
        sq_rel_eigen=sums.sq_rel_eigen / n,
        rmse=float(np.sqrt(sums.sq_err / n)),
        rmse_log=float(np.sqrt(sums.log_err_sq / n)),
        irmse=1000.0 * float(np.sqrt(sums.inv_sq_err / n)),
        delta1=sums.delta1 / n,
        delta2=sums.delta2 / n,
        delta3=sums.delta3 / n,
    )


def reduce_depth_sums(per_image: Sequence[DepthSums], reduction: str) -> dict:
    """Errors of a set of images from their sums.

    Args:
        per_image (Sequence[DepthSums]): One entry per image.
        reduction (str): ``'image'`` (mean of per-image errors over images with ground truth)
            or ``'pixel'`` (errors of the pooled pixels).

    Returns:
        dict: ``{key: float}`` for :data:`DEPTH_METRICS`.
    """
    if reduction == 'pixel':
        pooled = DepthSums()
        for sums in per_image:
            pooled = pooled + sums
        return depth_metrics_from_sums(pooled)
    if reduction != 'image':
        raise ValueError(f"reduction must be 'image' or 'pixel', got {reduction!r}")
    rows = [depth_metrics_from_sums(s) for s in per_image if s.n > 0]
    if not rows:
        return {key: float('nan') for key in DEPTH_METRICS}
    return {key: float(np.mean([r[key] for r in rows])) for key in DEPTH_METRICS}


def depth_metrics(gts: Sequence, preds: Sequence, reduction: str = 'image') -> dict:
    """Depth errors of a list of images.

    Args:
        gts (Sequence[array-like]): Ground-truth depth maps (metres, 0 invalid).
        preds (Sequence[array-like]): Predicted depth maps, same sizes.
        reduction (str): ``'image'`` or ``'pixel'`` (see the module docstring).

    Returns:
        dict: ``{key: float}`` for :data:`DEPTH_METRICS`.
    """
    if len(gts) != len(preds):
        raise ValueError(f'{len(gts)} ground-truth maps but {len(preds)} predictions')
    return reduce_depth_sums([depth_sums(g, p) for g, p in zip(gts, preds)], reduction)
