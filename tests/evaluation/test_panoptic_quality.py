"""Image PQ: deeplab2's golden numbers, hand-computed cases, and a plain re-implementation.

Expected values come from (a) deeplab2's own tests (``evaluation/panoptic_quality_test.py``, on
the real fixtures in ``../shared`` beside the repository, and its hand-made 3x3 case typed
here), (b) arithmetic done by hand in the comments, (c) ``_plain_pq`` below: a direct,
loop-by-loop transcription of Kirillov et al.'s definition with the two void rules,
independent of the vectorised pair histograms.
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmvideoeq.evaluation.functional import (
    PairCounts,
    PQStats,
    check_panoptic,
    panoptic_pairs,
    pq_stats,
    pq_summary,
)

SHARED = (
    Path(__file__).resolve().parents[2].parent
    / 'shared'
    / 'data'
    / 'deeplab2_pq'
    / 'evaluation'
    / 'testdata'
)
COLORS = {
    (0, 0, 0): 0,
    (0, 0, 255): 1,
    (255, 0, 0): 2,
    (0, 255, 0): 3,
    (255, 0, 255): 4,
    (0, 255, 255): 5,
    (255, 255, 0): 6,
}
TEAM = {0: 0, 47: 1, 97: 1, 133: 1, 150: 1, 174: 1, 198: 2, 215: 1, 244: 1, 255: 1}


def _plain_pq(gt, pred, num_classes, div, ignore, fp_void):
    """Per-class (iou, tp, fn, fp) by explicit loops over segments."""
    gt, pred = gt.ravel().tolist(), pred.ravel().tolist()
    gt_ids, pred_ids = sorted(set(gt)), sorted(set(pred))
    area = lambda ids, s: sum(1 for x in ids if x == s)  # noqa: E731
    inter = lambda g, p: sum(1 for a, b in zip(gt, pred) if a == g and b == p)  # noqa: E731
    iou, tp = [0.0] * num_classes, [0] * num_classes
    fn, fp = [0] * num_classes, [0] * num_classes
    matched_g, matched_p = set(), set()
    for g in gt_ids:
        for p in pred_ids:
            c = g // div
            if c != p // div or c == ignore or c >= num_classes:
                continue
            i = inter(g, p)
            if i == 0:
                continue
            u = area(gt, g) + area(pred, p) - i - inter(ignore * div, p)
            if i / u > 0.5:
                iou[c] += i / u
                tp[c] += 1
                matched_g.add(g)
                matched_p.add(p)
    for g in gt_ids:
        if g not in matched_g and g // div != ignore:
            fn[g // div] += 1
    for p in pred_ids:
        c = p // div
        if p in matched_p or c in (ignore, num_classes):
            continue
        if fp_void == 'void_id':
            on_void = inter(ignore * div, p)
        else:
            on_void = sum(1 for a, b in zip(gt, pred) if b == p and a // div == ignore)
        if on_void / area(pred, p) > 0.5:
            continue
        fp[c] += 1
    return np.array(iou), np.array(tp), np.array(fn), np.array(fp)


def test_hand_computed_iou_and_void_union():
    # gt: 4x4, class 1 instance 1 on the left 2 columns (8 px), stuff class 0 elsewhere except
    # 2 void pixels (class 9) at the top right. pred: the thing grows one column into the stuff
    # (12 px), stuff covers the rest including the void pixels.
    div = 100
    gt = np.zeros((4, 4), int)
    gt[:, :2] = 101
    gt[0, 2:] = 900
    pred = np.zeros((4, 4), int)
    pred[:, :3] = 101
    stats = pq_stats(gt, pred, num_classes=2, label_divisor=div, ignore_label=9)
    # thing: inter 8, union 8 + 12 - 8 - 1 (pred 101 on void at (0,2)) = 11 -> IoU 8/11
    # stuff: gt 0 has 6 px, pred 0 has 4 px (1 on void at (0,3)), inter 3 -> 3/(6+4-3-1) = 0.5
    #   -> not a match (IoU must exceed 0.5): FN and FP for class 0
    assert stats.tp.tolist() == [0, 1] and stats.fn.tolist() == [1, 0]
    assert stats.fp.tolist() == [1, 0]
    assert stats.iou[1] == pytest.approx(8 / 11, abs=1e-15)
    summary = pq_summary(stats)
    # valid classes 0 and 1: PQ_0 = 0, PQ_1 = (8/11) / 1
    assert summary['PQ'] == pytest.approx((8 / 11) / 2, abs=1e-15)
    assert summary['per_class']['rq'][0] == 0.0


@pytest.mark.parametrize('fp_void', ['void_id', 'ignore_class'])
def test_random_maps_match_plain_definition(fp_void):
    rng = np.random.default_rng(3)
    for _ in range(6):
        classes = rng.integers(0, 4, (10, 12))
        gt = classes * 10 + rng.integers(0, 3, (10, 12)) * (classes >= 2)
        gt[rng.random((10, 12)) < 0.15] = 70 + rng.integers(0, 2)  # void id and a void "crowd"
        pred = np.where(rng.random((10, 12)) < 0.7, gt, rng.integers(0, 4, (10, 12)) * 10 + 1)
        pred = np.where(pred // 10 == 7, 11, pred)
        got = pq_stats(gt, pred, num_classes=4, label_divisor=10, ignore_label=7, fp_void=fp_void)
        iou, tp, fn, fp = _plain_pq(gt, pred, 4, 10, 7, fp_void)
        assert got.tp.tolist() == tp.tolist() and got.fn.tolist() == fn.tolist()
        assert got.fp.tolist() == fp.tolist()
        np.testing.assert_allclose(got.iou, iou, rtol=0, atol=1e-12)


def test_deeplab2_non_contiguous_ignore_label():
    # deeplab2 evaluation/panoptic_quality_test.py::test_predicted_non_contiguous_ignore_label
    # (numbers of that test: pq 2/9, sq 1/3, rq 2/9, mean tp 1/3, fn 2/3, fp 2/3).
    gt_class = np.array([[0, 9, 9], [1, 2, 2], [1, 9, 9]])
    gt_inst = np.array([[0, 2, 2], [1, 0, 0], [1, 0, 0]])
    pred_class = np.array([[0, 0, 9], [1, 1, 1], [1, 9, 9]])
    pred_inst = np.array([[0, 0, 0], [0, 1, 1], [0, 1, 1]])
    stats = pq_stats(
        gt_class * 256 + gt_inst, pred_class * 256 + pred_inst,
        num_classes=3, label_divisor=256, ignore_label=9,
    )  # fmt: skip
    out = pq_summary(stats)
    assert (out['PQ'], out['SQ'], out['RQ']) == pytest.approx((2 / 9, 1 / 3, 2 / 9), abs=1e-12)
    assert stats.tp.mean() == pytest.approx(1 / 3) and stats.fn.mean() == pytest.approx(2 / 3)
    assert stats.fp.mean() == pytest.approx(2 / 3)


def _class_map(path):
    rgb = np.array(Image.open(path).convert('RGB'))
    out = np.full(rgb.shape[:2], -1)
    for color, cls in COLORS.items():
        out[(rgb == color).all(-1)] = cls
    assert (out >= 0).all()
    return out


def _gt(path, mapping):
    inst = np.array(Image.open(path).convert('L')).astype(int)
    return np.vectorize(mapping.__getitem__)(inst), inst


def _pred(name):
    cls = _class_map(SHARED / f'{name}_pred_class.png')
    return cls, np.array(Image.open(SHARED / f'{name}_pred_instance.png').convert('L')).astype(int)


@pytest.mark.skipif(not SHARED.is_dir(), reason='deeplab2 fixtures (../shared) not available')
def test_deeplab2_golden_single_image():
    # deeplab2 panoptic_quality_test.py::test_streaming_metric_on_single_image
    gt_cls, gt_inst = _gt(SHARED / 'team_gt_instance.png', TEAM)
    pred_cls, pred_inst = _pred('team')
    stats = pq_stats(
        gt_cls * 1000 + gt_inst, pred_cls * 1000 + pred_inst,
        num_classes=3, label_divisor=1000, ignore_label=0,
    )  # fmt: skip
    out = pq_summary(stats)
    assert out['PQ'] == pytest.approx(0.62156284, abs=1e-7)
    assert out['SQ'] == pytest.approx(0.64664984, abs=1e-7)
    assert out['RQ'] == pytest.approx(0.9666667, abs=1e-7)
    valid = (stats.tp + stats.fn + stats.fp) > 0
    assert stats.tp[valid].mean() == 4 and stats.fn[valid].mean() == 0.5
    assert stats.fp[valid].mean() == 0


@pytest.mark.skipif(not SHARED.is_dir(), reason='deeplab2 fixtures (../shared) not available')
def test_deeplab2_golden_three_images():
    # deeplab2 panoptic_quality_test.py::test_streaming_metric_on_multiple_images
    images = [
        ('bird', 'bird_gt.png', {92: 5, 176: 3, 255: 4}),
        ('cat', 'cat_gt.png', {0: 0, 255: 6}),
        ('team', 'team_gt_instance.png', TEAM),
    ]
    total = PQStats.zeros(7)
    for name, gt_file, mapping in images:
        gt_cls, gt_inst = _gt(SHARED / gt_file, mapping)
        pred_cls, pred_inst = _pred(name)
        total = total + pq_stats(
            gt_cls * 256 + gt_inst, pred_cls * 256 + pred_inst,
            num_classes=7, label_divisor=256, ignore_label=0,
        )  # fmt: skip
    out = pq_summary(total)
    assert out['PQ'] == pytest.approx(0.76855499, abs=1e-7)
    assert out['SQ'] == pytest.approx(0.7769174, abs=1e-7)
    assert out['RQ'] == pytest.approx(0.98888892, abs=1e-7)


def test_pair_histograms_add_up_to_the_concatenation():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, (2, 3, 4)), rng.integers(0, 5, (2, 3, 4))
    joined = panoptic_pairs(np.concatenate([a[0], b[0]], 1), np.concatenate([a[1], b[1]], 1))
    merged = PairCounts.concat([panoptic_pairs(a[0], a[1]), panoptic_pairs(b[0], b[1])])
    for field in ('gt', 'pred', 'count'):
        assert getattr(merged, field).tolist() == getattr(joined, field).tolist()
    assert merged.num_pixels == 24


def test_bad_input_errors():
    gt = np.zeros((2, 2), int)
    with pytest.raises(ValueError, match='differ in size'):
        pq_stats(gt, np.zeros((2, 3), int), num_classes=2, label_divisor=10, ignore_label=5)
    with pytest.raises(ValueError, match=r'predicted class id\(s\) \[7\] out of range'):
        pq_stats(gt, gt + 70, num_classes=2, label_divisor=10, ignore_label=5)
    with pytest.raises(ValueError, match=r'ground-truth class id\(s\) \[3\]'):
        check_panoptic(gt + 30, num_classes=2, label_divisor=10, ignore_label=5, name='a.png')
    with pytest.raises(TypeError, match='integer panoptic id map'):
        pq_stats(gt.astype(float), gt, num_classes=2, label_divisor=10, ignore_label=5)
    with pytest.raises(ValueError, match='average must be one of'):
        pq_summary(PQStats.zeros(2), average='mean')
