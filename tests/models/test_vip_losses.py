"""ViP-DeepLab losses against direct computations of their definitions.

Expected values come from numpy transcriptions of the formulas (top-k bootstrapped cross-entropy
averaged over the non-zero kept pixels, deeplab2 ``compute_average_top_k_loss``; thesis Eq. 7.4
for depth) and from a case worked out by hand (a prediction at twice the true depth has zero
scale-invariant error and a relative squared error of exactly 1).
"""

import logging

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger

from mmvideoeq.models.losses import TopKCrossEntropyLoss, ViPDepthLoss, WeightedPixelLoss


def _np_topk_mean(x, frac):
    out = []
    for row in x.reshape(x.shape[0], -1):
        k = int(round(frac * row.size))
        kept = np.sort(row)[::-1][:k]
        nz = kept[kept != 0]
        out.append(nz.sum() / len(nz) if len(nz) else 0.0)
    return float(np.mean(out))


def test_topk_cross_entropy_matches_numpy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=g)
    target = torch.randint(0, 4, (2, 5, 6), generator=g)
    target[0, 0, :3] = 255
    weight = torch.ones(2, 5, 6)
    weight[1, 2:4, 2:4] = 3.0
    loss = TopKCrossEntropyLoss(top_k_percent=0.2, ignore_index=255, loss_weight=2.0)
    got = loss(logits, target, weight)
    lg = logits.double().numpy()
    logp = lg - np.log(np.exp(lg).sum(1, keepdims=True))
    t = target.numpy()
    ce = np.zeros(t.shape)
    for b in range(2):
        for y in range(5):
            for x in range(6):
                if t[b, y, x] != 255:
                    ce[b, y, x] = -logp[b, t[b, y, x], y, x] * weight[b, y, x].item()
    assert got.item() == pytest.approx(2.0 * _np_topk_mean(ce, 0.2), rel=1e-5)


def test_weighted_pixel_losses_match_numpy():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(2, 2, 4, 4, generator=g), torch.randn(2, 2, 4, 4, generator=g)
    weight = (torch.rand(2, 4, 4, generator=g) > 0.5).float()
    weight[1] = 0  # a sample without weighted pixels contributes 0
    d = (pred - target).numpy()
    w = weight.numpy()
    l1 = WeightedPixelLoss('l1', loss_weight=0.01)(pred, target, weight)
    mse = WeightedPixelLoss('mse', loss_weight=200.0)(pred, target, weight)
    assert l1.item() == pytest.approx(0.01 * _np_topk_mean(np.abs(d).mean(1) * w, 1.0), rel=1e-5)
    assert mse.item() == pytest.approx(200 * _np_topk_mean((d**2).mean(1) * w, 1.0), rel=1e-5)


def test_depth_loss_hand_case_and_formula():
    gt = torch.tensor([[[1.0, 2.0], [4.0, 0.0]]])  # one invalid pixel
    # twice the true depth: log error constant -> SILog 0; |(d - 2d) / d| = 1 -> RelSq 1
    assert ViPDepthLoss()(2 * gt, gt).item() == pytest.approx(1.0, abs=1e-5)
    g = torch.Generator().manual_seed(2)
    d = torch.rand(2, 1, 3, 4, generator=g) * 50 + 1
    d[0, 0, 0, :2] = 0
    p = torch.rand(2, 1, 3, 4, generator=g) * 50 + 1
    got = ViPDepthLoss(abs_rel_weight=0.5, loss_weight=0.1)(p, d).item()
    exp = []
    for b in range(2):
        dv, pv = d[b].numpy().ravel(), p[b].numpy().ravel()
        m = dv > 0
        dv, pv = dv[m].astype(np.float64), pv[m].astype(np.float64)
        e = np.log(dv) - np.log(pv)
        rel = (dv - pv) / dv
        exp.append(
            np.mean(e**2) - np.mean(e) ** 2 + np.sqrt(np.mean(rel**2)) + 0.5 * np.mean(np.abs(rel))
        )
    assert got == pytest.approx(0.1 * np.mean(exp), rel=1e-5)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_depth_image_without_valid_pixel_contributes_nothing_and_is_logged_once():
    g = torch.Generator().manual_seed(3)
    gt = torch.rand(3, 1, 3, 3, generator=g) * 20 + 1
    gt[1] = 0  # an image without depth
    pred = (torch.rand(3, 1, 3, 3, generator=g) * 20 + 1).requires_grad_()
    loss_fn = ViPDepthLoss(loss_weight=0.1)
    logger = MMLogger.get_current_instance()
    records = _Records()
    logger.addHandler(records)
    try:
        got = loss_fn(pred, gt)
        # the same as the batch of the two images with depth
        alone = ViPDepthLoss(loss_weight=0.1)(pred[[0, 2]], gt[[0, 2]])
        assert torch.isfinite(got) and got.item() == pytest.approx(alone.item(), rel=1e-6)
        got.backward()
        assert torch.all(pred.grad[1] == 0) and torch.all(pred.grad[0] != 0)
        # no image with depth: 0, still differentiable, and no second log line
        none = loss_fn(pred, torch.zeros_like(gt))
        assert none.item() == 0.0 and none.requires_grad
        loss_fn(pred, gt)
    finally:
        logger.removeHandler(records)
    said = [m for m in records.messages if 'no valid depth' in m]
    assert len(said) == 1 and 'sample(s) [1] of 3' in said[0]
    assert 'contribute no depth loss' in said[0]


def test_cross_entropy_with_unknown_class_is_an_error():
    with pytest.raises(ValueError, match='does not match num_classes'):
        TopKCrossEntropyLoss(ignore_index=255)(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 5))


def test_bad_arguments():
    with pytest.raises(ValueError, match='top_k_percent must be in'):
        TopKCrossEntropyLoss(top_k_percent=0)
    with pytest.raises(ValueError, match="mode must be 'mse' or 'l1'"):
        WeightedPixelLoss('huber')
