"""Streaming PQ / DVPQ (streaming_dvpq): the reference pairing and the project's DVPQ on 1x4
panoptic maps whose PQ statistics are worked out by hand below, and on the same sequences paired
explicitly and scored by DVPQMetric as an ordinary run (the definition of the streaming value)."""

from __future__ import annotations

import numpy as np
import pytest

from mmvideoeq.evaluation.functional import DVPQProtocol
from mmvideoeq.evaluation.metrics import (
    EMPTY_DEPTH,
    DVPQMetric,
    DVPQScoring,
    PanopticFrame,
    empty_prediction,
    streaming_dvpq,
)
from mmvideoeq.testing import dvpq_of_pairs

# classes 0 (stuff) and 1 (thing), ids class * 10 + instance, void class 5 (id 50)
PROTOCOL = DVPQProtocol(
    num_classes=2, label_divisor=10, ignore_label=5, thing_ids=(1,), windows=(1, 2),
    thresholds=(0.5,), average='valid',
)  # fmt: skip
SCORING = DVPQScoring(PROTOCOL)
ONES = np.ones((1, 4), np.float32)
GT = [
    PanopticFrame(np.array([[0, 0, 11, 11]]), ONES),
    PanopticFrame(np.array([[0, 0, 11, 11]]), ONES),
    PanopticFrame(np.array([[0, 0, 0, 12]]), ONES),
]
PRED = [
    PanopticFrame(np.array([[0, 0, 11, 11]]), np.array([[1, 1, 1, 3]], np.float32)),  # px 3 off
    PanopticFrame(np.array([[0, 0, 11, 11]]), ONES),
    PanopticFrame(np.array([[0, 0, 13, 13]]), ONES),
]
# the worker took frames 0 and 2: frame 0's output at 0.5 s, frame 2's at 2.0 s (fps 1)
OUTPUTS = [(0.5, 0, PRED[0]), (2.0, 2, PRED[2])]


def _same_as_metric(res, expected):
    for key, value in res.metrics.items():
        assert value == pytest.approx(expected[key], abs=1e-9, nan_ok=True), key
    assert set(res.metrics) == {
        k for k in expected if not k.startswith(('num_', 'per_class', 'offset_curve'))
    }


def test_late_output_and_no_output_yet_eta_0():
    # eta 0: frame i at t = i. Frame 0: nothing yet (empty), frame 1: frame 0's output, frame 2
    # its own (the tie counts). k = 1 without depth:
    #   f0 empty vs [0 0 11 11]: FN stuff, FN thing.
    #   f1 [0 0 11 11] vs [0 0 11 11]: TP stuff (IoU 1), TP thing (IoU 1).
    #   f2 [0 0 13 13] vs [0 0 0 12]: stuff IoU 2/3 TP; 13 vs 12 IoU 1/2 (not > 0.5): FN, FP.
    #   stuff PQ = (1 + 2/3) / (2 + 1/2) = 2/3; thing PQ = 1 / (1 + 2/2 + 1/2) = 0.4.
    # k = 2 (windows 0-1 and 1-2, side by side):
    #   w0: stuff 0: I 2, U 4 (0.5) FN + FP; thing 11: I 2, U 4: FN + FP.
    #   w1: stuff I 4, U 5 (0.8) TP; 11 IoU 1 TP; 12 / 13 I 1, U 2: FN + FP.
    #   stuff 0.8 / (1 + 1) = 0.4; thing 1 / (1 + 2) = 1/3.
    res = streaming_dvpq({'v': (GT, OUTPUTS)}, SCORING, fps=1.0, eta=0.0)
    assert res.metrics['PQ'] == pytest.approx(100 * (2 / 3 + 0.4) / 2)
    assert res.metrics['PQ_th'] == pytest.approx(40.0)
    assert res.metrics['PQ_st'] == pytest.approx(100 * 2 / 3)
    assert res.metrics['VPQ_k2'] == pytest.approx(100 * (0.4 + 1 / 3) / 2)
    assert res.metrics['VPQ'] == pytest.approx(45.0)
    # lambda 0.5: the empty depth 0 and frame 0's pixel 3 (3 m against 1 m) are outliers, so
    # frame 1 is answered by [0 0 11 void]: 11 I 1, U 2: FN + FP; the thing class has no TP:
    # k = 1 stuff 2/3, thing 0; k = 2 stuff 0.4 as above, thing 0.
    assert res.metrics['DVPQ_k1_l0.5'] == pytest.approx(100 / 3)
    assert res.metrics['DVPQ_k2_l0.5'] == pytest.approx(20.0)
    assert res.metrics['DVPQ'] == pytest.approx(100 * (1 / 3 + 0.2) / 2)
    assert list(res.metrics)[:3] == ['DVPQ', 'VPQ', 'PQ']
    assert res.num_windows == dict(num_windows_k1=3, num_windows_k2=2)
    assert res.counts.as_dict() == dict(num_frames=3, in_time=1, miss=1, mismatch=1)
    _same_as_metric(res, dvpq_of_pairs(PROTOCOL, {'v': list(zip(GT, [None, PRED[0], PRED[2]]))}))


def test_eta_minus_1_repeats_a_stale_output_with_its_ids():
    # eta -1: frame i at t = i + 1: frames 0, 1, 2 answered by outputs of 0, 2, 2.
    # k = 1: f0 perfect (2 TP); f1 [0 0 13 13] vs [0 0 11 11]: stuff TP, 13 vs 11 IoU 1 TP (ids
    # need not agree within a frame); f2 as before (stuff 2/3, thing FN + FP).
    #   stuff (1 + 1 + 2/3) / 3 = 8/9; thing 2 / (2 + 1/2 + 1/2) = 2/3.
    # k = 2: w0 [0 0 11 11 | 0 0 13 13] vs [0 0 11 11 | 0 0 11 11]: stuff IoU 1 TP; gt 11 (4 px)
    #   against 11 and 13 (2 px each): IoU 1/2, FN 11, FP 11, FP 13. w1 (frame 2's ids twice)
    #   [0 0 13 13 | 0 0 13 13] vs [0 0 11 11 | 0 0 0 12]: stuff I 4, U 5 TP; 13 (4 px) vs 11:
    #   IoU 1/2, vs 12: 1/4: FN 11, FN 12, FP 13. stuff 1.8 / 2 = 0.9, thing 0.
    res = streaming_dvpq({'v': (GT, OUTPUTS)}, SCORING, fps=1.0, eta=-1.0)
    assert res.metrics['PQ'] == pytest.approx(100 * (8 / 9 + 2 / 3) / 2)
    assert res.metrics['VPQ_k2'] == pytest.approx(45.0)
    assert res.metrics['VPQ'] == pytest.approx(100 * ((8 / 9 + 2 / 3) / 2 + 0.45) / 2)
    assert res.counts.as_dict() == dict(num_frames=3, in_time=2, miss=0, mismatch=-1)
    _same_as_metric(res, dvpq_of_pairs(PROTOCOL, {'v': list(zip(GT, [PRED[0], PRED[2], PRED[2]]))}))


def test_every_frame_answered_by_its_own_output_equals_dvpq_metric():
    rng = np.random.default_rng(0)
    seqs, paired = {}, {}
    for name, n in (('b', 4), ('a', 3)):
        gts, preds = [], []
        for _ in range(n):
            gt = rng.choice(np.array([0, 10, 11, 12, 50]), size=(6, 8))
            noise = rng.choice(np.array([0, 10, 11, 13, 20]), size=(6, 8))
            pred = np.where(rng.random((6, 8)) < 0.7, gt, noise)
            gts.append(PanopticFrame(gt, rng.uniform(0.0, 3.0, (6, 8)).astype(np.float32)))
            preds.append(PanopticFrame(pred, rng.uniform(0.5, 3.0, (6, 8)).astype(np.float32)))
        seqs[name] = (gts, [(float(i), i, p) for i, p in enumerate(preds)])
        paired[name] = list(zip(gts, preds))
    res = streaming_dvpq(seqs, SCORING, fps=1.0, eta=0.0)
    assert res.counts.as_dict() == dict(num_frames=7, in_time=7, miss=0, mismatch=0)
    expected = dvpq_of_pairs(PROTOCOL, paired)
    assert 0 < expected['DVPQ'] < expected['PQ']
    _same_as_metric(res, expected)


def test_missing_outputs_and_frames_without_ground_truth():
    # no output at all: every ground-truth segment missed, nothing predicted
    res = streaming_dvpq({'v': (GT, [])}, SCORING, fps=1.0)
    assert res.metrics['PQ'] == res.metrics['VPQ'] == res.metrics['DVPQ'] == 0.0
    assert res.counts.miss == 3
    # an output None (a frame the worker could not process) is the empty prediction too
    res = streaming_dvpq({'v': (GT[:1], [(0.0, 0, None)])}, SCORING, fps=1.0)
    assert res.metrics['PQ'] == 0.0 and res.counts.as_dict()['in_time'] == 1
    # a frame without ground truth is not scored but keeps its place in the windows: frames 0
    # and 2 scored, no window of 2 frames without it -> VPQ_k2 from windows with pixels on
    # one side only (as DVPQMetric scores a skipped frame)
    gts = [GT[0], None, GT[2]]
    res = streaming_dvpq({'v': (gts, [(0.0, 0, PRED[0]), (0.0, 2, PRED[2])])}, SCORING, fps=1.0)
    assert res.counts.num_frames == 2 and res.num_windows['num_windows_k2'] == 2
    # eta 0, both outputs at 0 s: frames 0 and 2 answered by frame 2's output
    metric = DVPQMetric(protocol=None, **PROTOCOL.__dict__, offset_buckets=None, ci_resamples=0)
    for fid, gt in ((0, GT[0]), (2, GT[2])):
        metric.process({}, [dict(gt_panoptic=gt.panoptic, pred_panoptic=PRED[2].panoptic,
                                 gt_depth=gt.depth, pred_depth=PRED[2].depth, video_id='v',
                                 frame_id=fid)])  # fmt: skip
    metric.results.append(dict(video_id='v', frame_id=1, name='v/1', skipped='no ground truth'))
    _same_as_metric(res, metric.compute_metrics(metric.results))


def test_empty_prediction_is_void_ids_and_zero_depth():
    empty = empty_prediction(GT[0], PROTOCOL)
    assert empty.panoptic.tolist() == [[50, 50, 50, 50]] and EMPTY_DEPTH == 0.0
    assert empty.depth.tolist() == [[0.0] * 4]
    assert empty_prediction(PanopticFrame(GT[0].panoptic), PROTOCOL).depth is None
    # scored alone by DVPQMetric: no TP, no FP, one FN per ground-truth segment
    full = dvpq_of_pairs(PROTOCOL, {'v': [(GT[0], None)]})
    assert full['PQ'] == full['DVPQ'] == 0.0


def test_scoring_of_a_metric_and_bad_input():
    metric = DVPQMetric('cityscapes_dvps', average='valid')
    scoring = DVPQScoring.of(metric)
    assert scoring.protocol == metric.protocol and scoring.keys == ('DVPQ', 'PQ')
    assert DVPQScoring(DVPQProtocol(**{**PROTOCOL.__dict__, 'thresholds': ()})).keys == (
        'VPQ', 'PQ',
    )  # fmt: skip
    big = PanopticFrame(np.zeros((1, 5), np.int64), np.ones((1, 5)))
    with pytest.raises(ValueError, match=r"sequence 'v', ground truth of frame 0, prediction "
                       'of frame 0.*different sizes'):  # fmt: skip
        streaming_dvpq({'v': (GT, [(0.0, 0, big)])}, SCORING, fps=1.0)
    with pytest.raises(ValueError, match="sequence 'v'.*non-decreasing"):
        streaming_dvpq({'v': (GT, [(1.0, 0, PRED[0]), (0.5, 1, PRED[1])])}, SCORING, fps=1.0)
    with pytest.raises(ValueError, match='no frame has ground truth'):
        streaming_dvpq({'v': ([None], [])}, SCORING, fps=1.0)
    no_depth = PanopticFrame(PRED[0].panoptic)
    with pytest.raises(KeyError, match='needs gt_depth and pred_depth'):
        streaming_dvpq({'v': (GT[:1], [(0.0, 0, no_depth)])}, SCORING, fps=1.0)
