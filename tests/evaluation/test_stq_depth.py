"""STQ / DSTQ and the depth errors against deeplab2's golden numbers and hand computations.

STQ expectations are those of deeplab2's ``evaluation/numpy/segmentation_and_tracking_quality_
test.py`` (label bit shift 16 = divisor 65536); depth expectations of deeplab2's
``evaluation/depth_metrics_test.py`` ("manually computed") and hand arithmetic in the comments.
"""

import numpy as np
import pytest

from mmvideoeq.evaluation.functional import (
    DEPTH_METRICS,
    DSTQuality,
    STQuality,
    depth_metrics,
    depth_sums,
)

S = 2**16


def _rows(text):
    return np.array([[int(c) for c in row] for row in text.split()])


# deeplab2 test_complex_example: 3 frames of 8x8, classes sky 0, vegetation 1, cars 2 (thing).
GT_SEM = [
    '00000000 00000000 00020111 02222111 22222211 22222221 22222221 22222211',
    '00000000 00000000 02001100 22211110 22221111 22222111 22222111 22221111',
    '00000000 00000000 00000000 20111000 22111100 22211110 22211111 22211111',
]
GT_INS = [
    '00000000 00000000 00020000 02222000 22222200 22222220 22222220 22222200',
    '00000000 00000000 02000000 22200000 22220000 22222000 22222000 22220000',
    '00000000 00000000 00000000 20000000 22000000 22200000 22200000 22200000',
]
PRED_SEM = [
    '00000000 00000000 00000100 00022111 02222211 22222221 22222221 22222221',
    '00000000 00000000 00001100 02221111 22221111 22222111 22222211 22222111',
    '00000000 00000000 00001000 00111100 22211100 22211111 22221111 22221111',
]
PRED_INS = [
    '00000000 00000000 00000000 00022000 02222100 22222110 22221110 22221110',
    '00000000 00000000 00000000 02220000 22220000 22222000 22221100 22221000',
    '00000000 00000000 00000000 00000000 22200000 22200000 22220000 22220000',
]


def test_stq_complex_example_deeplab2():
    stq = STQuality(3, [2], 255, S)
    for i in range(3):
        gt = _rows(GT_SEM[i]) * S + _rows(GT_INS[i])
        pred = _rows(PRED_SEM[i]) * S + _rows(PRED_INS[i])
        stq.update(gt, pred, sequence_id=1)
    res = stq.result()
    assert res['STQ'] == pytest.approx(0.66841773352, abs=1e-10)
    assert res['AQ'] == pytest.approx(0.55366581415, abs=1e-10)
    assert res['IoU'] == pytest.approx(0.8069529580309542, abs=1e-12)
    assert res['ID_per_seq'] == [1] and res['Length_per_seq'] == [3]


@pytest.mark.parametrize(
    'gt, pred, expected',
    [
        # deeplab2 test_basic_examples: things [0], 2 classes (cars 0, sky 1)
        ([[1, 1, 1, 1, 1]], [[1, 1, 2, 2, 2]], (0.72111026, 0.52, 1.0)),
        ([[1, 1, 1, 1, 1]], [[1, 2, 3, 4, 5]], (0.447213596, 0.2, 1.0)),
        ([[1, 1, 1, 1, 1]], [[S, 1, 1, 1, 1]], (0.50596443, 0.64, 0.4)),
        ([[0, 1, 1, 1, 1, 1]], [[2, 2, 2, 2, 1, 1]], (0.72111026, 0.52, 1.0)),  # crowd first
        ([[0, 1, 1, 1, 1, 1]], [[2, 2, S, 1, 1, 1]], (0.40824829, 0.4, 5 / 12)),
        ([[S, 1, 1, 1, 1]], [[2, 2, 2, 1, 1]], (0.42426407, 0.45, 0.4)),
        ([[S, 1, 1, 1, 1]], [[2, 2, S, 1, 1]], (0.3, 0.3, 0.3)),
    ],
)
def test_stq_basic_examples_deeplab2(gt, pred, expected):
    stq = STQuality(2, [0], 255, S)
    stq.update(np.array(gt), np.array(pred), sequence_id=1)
    res = stq.result()
    assert (res['STQ'], res['AQ'], res['IoU']) == pytest.approx(expected, abs=1e-8)


def test_stq_sequences_are_separate_tubes_and_void_pixels():
    # The same id in two sequences is two tubes: each sequence alone is perfect.
    stq = STQuality(2, [0], 255, S)
    stq.update(np.array([[1, 1]]), np.array([[5, 5]]), 'a')
    stq.update(np.array([[1, 1]]), np.array([[7, 7]]), 'b')
    assert stq.result()['AQ'] == 1.0 and stq.result()['STQ_per_seq'] == [1.0, 1.0]
    # void ground truth: 'keep' counts the prediction on it in the tube size, 'drop' does not.
    # gt [1, 1, void], pred [1, 1, 1]: keep -> AQ = (1/2) * 2 * (2 / 3) = 2/3; drop -> 1.
    gt, pred = np.array([[1, 1, 255 * S]]), np.array([[1, 1, 1]])
    for mode, aq in (('keep', 2 / 3), ('drop', 1.0)):
        stq = STQuality(2, [0], 255, S, void_pixels=mode)
        stq.update(gt, pred)
        assert stq.result()['AQ'] == pytest.approx(aq, abs=1e-15)


def test_dstq_hand_example():
    # Perfect segmentation (STQ 1); depth: 4 valid pixels with ratios 1.0, 1.05, 1.2, 1.5, one
    # pixel without ground truth. DQ@1.25 = 3/4, DQ@1.1 = 2/4, DQ = sqrt(3/8),
    # DSTQ = (1 * DQ)^(1/3).
    ids = np.array([[1, 1, S, S, S]])
    dstq = DSTQuality(2, [0], 255, S, depth_thresholds=(1.25, 1.1))
    gt_d = np.array([[10.0, 10.0, 10.0, 10.0, 0.0]])
    pred_d = np.array([[10.0, 10.5, 12.0, 15.0, 3.0]])
    dstq.update(ids, ids, gt_d, pred_d, sequence_id=0)
    res = dstq.result()
    assert res['STQ'] == 1.0
    assert (res['DQ@1.25'], res['DQ@1.1']) == (0.75, 0.5)
    assert res['DQ'] == pytest.approx(np.sqrt(3 / 8), abs=1e-15)
    assert res['DSTQ'] == pytest.approx(np.sqrt(3 / 8) ** (1 / 3), abs=1e-15)
    assert res['DSTQ@1.1'] == pytest.approx(0.5 ** (1 / 3), abs=1e-15)


def test_dstq_without_valid_depth_is_zero():
    # deeplab2 DSTQ test "No valid depth labels": STQ unchanged, DSTQ 0
    dstq = DSTQuality(2, [0], 255, S)
    ids = np.array([[1, 1]])
    dstq.update(ids, ids, np.zeros((1, 2)), np.ones((1, 2)))
    res = dstq.result()
    assert res['STQ'] == 1.0 and res['DSTQ'] == 0.0 and res['DSTQ@1.1'] == 0.0


GT1 = [[5.44108091, 53.30197697, 61.06181767, 14.36723114], [0, 39.68081126, 58.77974067, 0],
       [40.57883826, 22.15134852, 31.46813478, 13.52603324]]  # fmt: skip
PRED1 = [[4.87694111, 50.09085582, 55.74533641, 10.13579195],
         [13.76178147, 41.62431592, 56.97362032, 81.48369608],
         [43.12005689, 15.54622258, 24.1993478, 12.14451783]]  # fmt: skip
GT2 = [[79.56192404, 25.68145225, 0, 39.88486608, 68.91602466],
       [79.53460057, 2.55741031, 36.05057241, 68.04747416, 3.7783227],
       [0, 0, 72.47336778, 59.02611644, 66.07499008],
       [25.88578395, 58.2202574, 27.39066477, 29.83094038, 37.99239669]]  # fmt: skip
PRED2 = [[83.80952145, 27.23367361, 72.52687468, 35.28400183, 72.41126444],
         [77.62373864, 0.87004049, 32.1619225, 66.91361903, 2.60688436],
         [15.30294603, 9.76419241, 68.61650198, 57.14559324, 66.88452603],
         [24.54818109, 61.60855251, 31.50312052, 26.02325866, 36.4019569]]  # fmt: skip
GT3 = [[50.80100791, 0.41130084, 58.85031668], [29.44932853, 23.48806627, 30.17890056]]
PRED3 = [[49.66563966, 0.62070026, 58.84231026], [32.26735775, 28.07405648, 33.7131882]]


def test_depth_deeplab2_golden():
    # deeplab2 depth_metrics_test.py: SILog, SqErrorRel, AbsErrorRel, DepthInlier(1.25)
    one = depth_metrics([GT1], [PRED1])
    assert one['silog'] == pytest.approx(14.154233, abs=1e-5)
    assert one['sq_rel_kitti'] == pytest.approx(0.0268667, abs=1e-6)
    assert one['abs_rel'] == pytest.approx(0.13191505, abs=1e-7)
    assert one['delta1'] == pytest.approx(0.7, abs=1e-12)
    three = depth_metrics([GT1, GT2, GT3], [PRED1, PRED2, PRED3], reduction='image')
    expected = (18.442057, 0.0388692, 0.13392223, 0.8052287)
    got = tuple(three[k] for k in ('silog', 'sq_rel_kitti', 'abs_rel', 'delta1'))
    assert got == pytest.approx(expected, abs=1e-5)


def _pooled(gts, preds):
    """Every error over the pooled pixels, written out pixel by pixel."""
    g = np.concatenate([np.ravel(x) for x in gts])
    d = np.concatenate([np.ravel(x) for x in preds])
    d, g = d[g > 0], g[g > 0]
    e = [np.log(a) - np.log(b) for a, b in zip(d, g)]
    n = len(g)
    ratio = [max(a / b, b / a) for a, b in zip(d, g)]
    return dict(
        silog=100 * np.sqrt(sum(x * x for x in e) / n - (sum(e) / n) ** 2),
        abs_rel=sum(abs(a - b) / b for a, b in zip(d, g)) / n,
        sq_rel_kitti=sum(((a - b) / b) ** 2 for a, b in zip(d, g)) / n,
        sq_rel_eigen=sum((a - b) ** 2 / b for a, b in zip(d, g)) / n,
        rmse=np.sqrt(sum((a - b) ** 2 for a, b in zip(d, g)) / n),
        rmse_log=np.sqrt(sum(x * x for x in e) / n),
        irmse=1000 * np.sqrt(sum((1 / a - 1 / b) ** 2 for a, b in zip(d, g)) / n),
        delta1=sum(r < 1.25 for r in ratio) / n,
        delta2=sum(r < 1.25**2 for r in ratio) / n,
        delta3=sum(r < 1.25**3 for r in ratio) / n,
    )


def test_depth_pixel_pooling_and_units():
    got = depth_metrics([GT1, GT2, GT3], [PRED1, PRED2, PRED3], reduction='pixel')
    expected = _pooled([GT1, GT2, GT3], [PRED1, PRED2, PRED3])
    for key in DEPTH_METRICS:
        assert got[key] == pytest.approx(expected[key], rel=1e-12), key
    # one pixel, gt 10 m, predicted 20 m: |1/10 - 1/20| = 0.05 /m = 50 /km; Eigen's Sq Rel
    # (20 - 10)^2 / 10 = 10 m; KITTI's ((20 - 10) / 10)^2 = 1; log error log 2; delta 2 > 1.25^3
    one = depth_metrics([[[10.0]]], [[[20.0]]])
    assert one['irmse'] == pytest.approx(50.0) and one['sq_rel_eigen'] == pytest.approx(10.0)
    assert one['sq_rel_kitti'] == 1.0 and one['abs_rel'] == 1.0 and one['rmse'] == 10.0
    assert one['rmse_log'] == pytest.approx(np.log(2)) and one['silog'] == 0.0
    assert (one['delta1'], one['delta2'], one['delta3']) == (0.0, 0.0, 0.0)


def test_depth_bad_input():
    with pytest.raises(ValueError, match='differ in size'):
        depth_sums(np.ones((2, 2)), np.ones((2, 3)), name='x.png')
    with pytest.raises(ValueError, match=r'x\.png: 1 pixel\(s\) with ground-truth depth'):
        depth_sums(np.ones((2, 2)), np.array([[1.0, 0.0], [1.0, 1.0]]), name='x.png')
    with pytest.raises(ValueError, match="reduction must be 'image' or 'pixel'"):
        depth_metrics([GT1], [PRED1], reduction='mean')
