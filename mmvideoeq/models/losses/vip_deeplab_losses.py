"""Losses of Panoptic-DeepLab and ViP-DeepLab.

* :class:`TopKCrossEntropyLoss`: bootstrapped (hard-pixel) cross-entropy of the semantic head
  (Panoptic-DeepLab Sec. 3.3; deeplab2 ``TopKCrossEntropyLoss``).
* :class:`WeightedPixelLoss`: per-pixel MSE (centre heatmap) or L1 (centre offsets, next-frame
  offsets) with per-pixel weights (deeplab2 ``TopKGeneralLoss`` with ``top_k_percent=1``).
* :class:`ViPDepthLoss`: the depth loss of ViP-DeepLab (thesis Eq. 7.4): scale-invariant
  logarithmic error plus root relative squared error (deeplab2 ``SILogPlusRelativeSquaredLoss``),
  with an optional absolute-relative term.

Reduction follows deeplab2's ``compute_average_top_k_loss`` (``model/loss/base_loss.py``,
Apache-2.0; no code copied): per sample, the weighted per-pixel losses (the top ``top_k_percent``
of them for the cross-entropy) are summed and divided by the number of *non-zero* ones; the batch
mean of the per-sample values is then scaled by ``loss_weight``. mmseg's ``CrossEntropyLoss`` and
``OHEMPixelSampler`` average differently (over all non-ignored pixels / a probability threshold),
hence these small classes.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor, nn

from mmvideoeq.registry import MODELS

__all__ = ['average_top_k', 'TopKCrossEntropyLoss', 'WeightedPixelLoss', 'ViPDepthLoss']


def average_top_k(loss: Tensor, top_k_percent: float = 1.0) -> Tensor:
    """Per-sample mean of the largest ``top_k_percent`` losses, over the non-zero ones.

    Args:
        loss: ``(B, ...)`` non-negative per-element losses (weights already applied).
        top_k_percent: Fraction of elements kept per sample, in ``(0, 1]``; the count is
            ``round(top_k_percent * N)``.

    Returns:
        ``(B,)`` per-sample losses (0 for a sample whose kept losses are all zero).
    """
    flat = loss.reshape(loss.shape[0], -1)
    if top_k_percent != 1.0:
        k = int(round(top_k_percent * flat.shape[1]))
        flat = torch.topk(flat, max(k, 1), dim=1, sorted=False).values
    nonzero = (flat != 0).sum(1).to(flat.dtype)
    total = flat.sum(1)
    return torch.where(nonzero > 0, total / nonzero.clamp(min=1), torch.zeros_like(total))


def _check_fraction(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f'top_k_percent must be in (0, 1], got {value!r}')
    return float(value)


@MODELS.register_module()
class TopKCrossEntropyLoss(nn.Module):
    """Bootstrapped softmax cross-entropy on the hardest ``top_k_percent`` of pixels.

    Args:
        top_k_percent: Fraction of pixels per image that contribute (Panoptic-DeepLab: 0.2).
        ignore_index: Target value that contributes nothing.
        loss_weight: Scale of the loss.
        loss_name: Key of the loss in the loss dict.
    """

    def __init__(
        self,
        top_k_percent: float = 0.2,
        ignore_index: int = 255,
        loss_weight: float = 1.0,
        loss_name: str = 'loss_sem',
    ) -> None:
        super().__init__()
        self.top_k_percent = _check_fraction(top_k_percent)
        self.ignore_index = int(ignore_index)
        self.loss_weight = float(loss_weight)
        self._loss_name = loss_name

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """Args: ``logits`` ``(B, C, H, W)``, ``target`` ``(B, H, W)`` class ids, ``weight``
        ``(B, H, W)`` per-pixel weights (default 1). Returns the scalar loss."""
        keep = target != self.ignore_index
        safe = torch.where(keep, target, torch.zeros_like(target)).long()
        bad = (safe < 0) | (safe >= logits.shape[1])
        if bool(bad.any()):
            raise ValueError(
                f'semantic targets must lie in [0, {logits.shape[1]}) or be {self.ignore_index}; '
                f'got {sorted(safe[bad].unique().tolist())[:8]}: the class set of the dataset '
                'does not match num_classes of the model'
            )
        ce = F.cross_entropy(logits, safe, reduction='none')
        w = keep.to(ce.dtype) if weight is None else weight.to(ce.dtype) * keep
        return self.loss_weight * average_top_k(ce * w, self.top_k_percent).mean()

    @property
    def loss_name(self) -> str:
        return self._loss_name


@MODELS.register_module()
class WeightedPixelLoss(nn.Module):
    """Per-pixel MSE or L1 (averaged over channels) times per-pixel weights.

    Args:
        mode: ``'mse'`` (centre heatmap) or ``'l1'`` (offsets).
        loss_weight: Scale of the loss (ViP-DeepLab: 200 for the heatmap, 0.01 for offsets).
        loss_name: Key of the loss in the loss dict.
    """

    def __init__(self, mode: str = 'mse', loss_weight: float = 1.0, loss_name: str = 'loss_pix'):
        super().__init__()
        if mode not in ('mse', 'l1'):
            raise ValueError(f"mode must be 'mse' or 'l1', got {mode!r}")
        self.mode = mode
        self.loss_weight = float(loss_weight)
        self._loss_name = loss_name

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
        """Args: ``pred``/``target`` ``(B, C, H, W)``, ``weight`` ``(B, H, W)``."""
        diff = pred - target
        per_px = diff.pow(2) if self.mode == 'mse' else diff.abs()
        return self.loss_weight * average_top_k(per_px.mean(1) * weight).mean()

    @property
    def loss_name(self) -> str:
        return self._loss_name


@MODELS.register_module()
class ViPDepthLoss(nn.Module):
    """Depth loss of ViP-DeepLab (thesis Eq. 7.4) over the valid (``gt > 0``) pixels of an image.

    ``L = mean((log d - log p)^2) - mean(log d - log p)^2 + sqrt(mean(((d - p) / d)^2))``
    (``silog_weight`` and ``rel_sq_weight`` scale the two terms, 1 each as in the chapter and in
    deeplab2), plus ``abs_rel_weight * mean(|d - p| / d)`` (0 by default: neither the chapter
    nor deeplab2 uses it). Per-image values are averaged over the batch.

    Where it departs from deeplab2's ``SILogPlusRelativeSquaredLoss``, so that training never
    stops on a NaN: ``1e-12`` is added under the square root (deeplab2's gradient of
    ``sqrt(0)`` is infinite for an exact prediction); predictions are clamped to at least
    ``min_pred`` before the logarithm (deeplab2 takes the log of the raw output); an image
    without any valid depth pixel contributes no loss (deeplab2's per-image mean of nothing is
    NaN): the batch mean runs over the images that have depth (0 if none has), and the log says
    so once per loss module.

    Args:
        silog_weight, rel_sq_weight, abs_rel_weight: Weights of the three terms.
        min_pred: Predictions are clamped to at least this before the logarithm, so that a
            sigmoid output of exactly 0 stays finite.
        loss_weight: Scale of the loss (ViP-DeepLab: 0.1).
        loss_name: Key of the loss in the loss dict.
    """

    def __init__(
        self,
        silog_weight: float = 1.0,
        rel_sq_weight: float = 1.0,
        abs_rel_weight: float = 0.0,
        min_pred: float = 1e-3,
        loss_weight: float = 1.0,
        loss_name: str = 'loss_depth',
    ) -> None:
        super().__init__()
        self.silog_weight = float(silog_weight)
        self.rel_sq_weight = float(rel_sq_weight)
        self.abs_rel_weight = float(abs_rel_weight)
        self.min_pred = float(min_pred)
        self.loss_weight = float(loss_weight)
        self._loss_name = loss_name
        self._reported_empty = False

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """The loss of a batch.

        Args:
            pred (Tensor): ``(B, 1, H, W)`` or ``(B, H, W)`` predicted depth, metres.
            target (Tensor): The same shape; 0 (or any value ``<= 0``, or non-finite) marks
                invalid pixels.

        Returns:
            Tensor: Scalar loss, the mean over the images with valid depth (0, still attached
            to ``pred``'s graph, when no image has any).

        Raises:
            ValueError: If the shapes differ.
        """
        pred = pred.reshape(pred.shape[0], -1)
        target = target.reshape(target.shape[0], -1).to(pred.dtype)
        if pred.shape != target.shape:
            raise ValueError(
                f'depth prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ'
            )
        valid = torch.isfinite(target) & (target > 0)
        n = valid.sum(1)
        has_depth = n > 0
        if not bool(has_depth.all()):
            self._report_empty([int(i) for i in torch.nonzero(~has_depth).flatten()], len(n))
            if not bool(has_depth.any()):
                return pred.sum() * 0.0
        d = torch.where(valid, target, torch.ones_like(target))
        p = torch.where(valid, pred.clamp(min=self.min_pred), torch.ones_like(pred))
        nf = n.clamp(min=1).to(pred.dtype)
        diff = torch.where(valid, torch.log(d) - torch.log(p), torch.zeros_like(d))
        silog = diff.pow(2).sum(1) / nf - (diff.sum(1) / nf).pow(2)
        rel = torch.where(valid, (d - p) / d, torch.zeros_like(d))
        rel_sq = torch.sqrt(rel.pow(2).sum(1) / nf + 1e-12)
        loss = self.silog_weight * silog + self.rel_sq_weight * rel_sq
        if self.abs_rel_weight:
            loss = loss + self.abs_rel_weight * rel.abs().sum(1) / nf
        return self.loss_weight * loss[has_depth].mean()

    def _report_empty(self, empty: list[int], batch: int) -> None:
        """Log, once per module, that images without valid depth were left out."""
        if self._reported_empty:
            return
        self._reported_empty = True
        print_log(
            f'{type(self).__name__}: batch sample(s) {empty} of {batch} have no valid depth '
            'pixel (ground truth all 0, e.g. a crop outside the LiDAR points or an empty depth '
            'file); such images contribute no depth loss (reported once, not again).',
            logger='current',
            level=logging.WARNING,
        )

    @property
    def loss_name(self) -> str:
        return self._loss_name
