"""Streaming mIoU (streaming_miou): the reference pairing and mmseg's mIoU on 2x2 label maps whose
areas, IoUs and counts are worked out by hand below; at every frame answered by its own
prediction it equals mmseg's IoUMetric on the same predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmseg.evaluation import IoUMetric

from mmvideoeq.evaluation.metrics import EMPTY_LABEL, IoUScoring, streaming_miou

# 3 classes, ignore 255; three frames of one sequence
GT = [
    np.array([[0, 0], [1, 255]]),
    np.array([[0, 1], [1, 1]]),
    np.array([[2, 2], [1, 0]]),
]
PRED = [
    np.array([[0, 1], [1, 1]]),
    np.array([[0, 1], [1, 2]]),
    np.array([[2, 2], [0, 0]]),
]
# the worker took frames 0 and 2: frame 0's output at 0.5 s, frame 2's at 2.0 s (fps 1)
OUTPUTS = [(0.5, 0, PRED[0]), (2.0, 2, PRED[2])]
SCORING = IoUScoring(num_classes=3)


def test_late_output_and_no_output_yet_eta_0():
    # eta 0: frame i at t = i. Frame 0 (t 0): no output yet -> empty, its 3 valid pixels
    # (class 0: 2, class 1: 1) missed. Frame 1 (t 1): frame 0's output, equal to GT[1]:
    # I = U = [1, 3, 0]. Frame 2 (t 2, the tie counts): its own output:
    # I = [1, 0, 2], pred area [2, 0, 2], GT area [1, 1, 2], U = [2, 1, 2].
    # Totals: I = [2, 3, 2], U = [2+1+2, 1+3+1, 0+0+2] = [5, 5, 2], GT = [4, 5, 2].
    res = streaming_miou({'v': (GT, OUTPUTS)}, SCORING, fps=1.0, eta=0.0)
    assert res.metrics['mIoU'] == round((2 / 5 + 3 / 5 + 2 / 2) / 3 * 100, 2) == 66.67
    assert res.metrics['aAcc'] == round(7 / 11 * 100, 2)
    assert res.metrics['mAcc'] == round((2 / 4 + 3 / 5 + 2 / 2) / 3 * 100, 2)
    assert res.class_iou == [40.0, 60.0, 100.0]
    assert res.counts.as_dict() == dict(num_frames=3, in_time=1, miss=1, mismatch=1)
    assert res.per_sequence['v'] == res.counts
    assert res.as_dict()['mIoU'] == 66.67 and res.as_dict()['counts']['miss'] == 1


def test_eta_minus_1_answers_each_frame_when_the_next_arrives():
    # eta -1: frame i at t = i + 1. Frame 0: PRED[0] vs GT[0]: I = [1, 1, 0], pred [1, 2, 0],
    # GT [2, 1, 0], U = [2, 2, 0]. Frame 1 (t 2): PRED[2] vs GT[1]: no match, pred [2, 0, 2],
    # GT [1, 3, 0], U = [3, 3, 2]. Frame 2: as above, I = [1, 0, 2], U = [2, 1, 2].
    # Totals: I = [2, 1, 2], U = [7, 6, 4], GT = [4, 5, 2].
    res = streaming_miou({'v': (GT, OUTPUTS)}, SCORING, fps=1.0, eta=-1.0)
    assert res.metrics['mIoU'] == round((2 / 7 + 1 / 6 + 2 / 4) / 3 * 100, 2) == 31.75
    assert res.metrics['aAcc'] == round(5 / 11 * 100, 2)
    # in time: frames 0 and 2; mismatch 0 + (1 - 2) + 0
    assert res.counts.as_dict() == dict(num_frames=3, in_time=2, miss=0, mismatch=-1)


def test_classes_absent_from_gt_and_predictions_are_nan_and_left_out():
    res = streaming_miou({'v': (GT, OUTPUTS)}, IoUScoring(num_classes=5), fps=1.0, eta=0.0)
    assert res.metrics['mIoU'] == 66.67  # the mean over classes 0-2 only
    assert res.class_iou[:3] == [40.0, 60.0, 100.0]
    assert math.isnan(res.class_iou[3]) and math.isnan(res.class_iou[4])
    assert res.as_dict()['class_IoU'][3] is None  # JSON-safe
    # mmseg's nan_to_num turns them into 0, which then counts in the mean
    zero = IoUScoring(num_classes=4, nan_to_num=0)
    res = streaming_miou({'v': (GT, OUTPUTS)}, zero, fps=1.0, eta=0.0)
    assert res.metrics['mIoU'] == round((0.4 + 0.6 + 1.0 + 0.0) / 4 * 100, 2)


def test_frames_without_ground_truth_are_not_scored_and_nothing_yet_is_empty():
    # frame 0 has no annotation: frames 1 and 2 alone, I = [2, 3, 2], U = [3, 4, 2]
    res = streaming_miou({'v': ([None, GT[1], GT[2]], OUTPUTS)}, SCORING, fps=1.0)
    assert res.metrics['mIoU'] == round((2 / 3 + 3 / 4 + 1) / 3 * 100, 2)
    assert res.counts.as_dict() == dict(num_frames=2, in_time=1, miss=0, mismatch=1)
    # no output at all: every valid pixel missed, IoU 0 for the classes in the GT
    res = streaming_miou({'v': (GT, [])}, SCORING, fps=1.0)
    assert res.metrics == dict(aAcc=0.0, mIoU=0.0, mAcc=0.0)
    assert res.counts.miss == 3
    # an output of None (a frame the worker could not process) is empty too
    res = streaming_miou({'v': (GT[:1], [(0.0, 0, None)])}, SCORING, fps=1.0)
    assert res.metrics['mIoU'] == 0.0 and res.counts.miss == 0


def test_empty_label_is_no_class_for_mmseg():
    gt = torch.tensor([[0, 1], [2, 255]])
    inter, union, pred, label = IoUMetric.intersect_and_union(
        torch.full((2, 2), EMPTY_LABEL), gt, 3, 255
    )
    assert inter.tolist() == [0, 0, 0] and pred.tolist() == [0, 0, 0]
    assert union.tolist() == label.tolist() == [1, 1, 1]


def test_sequences_are_paired_on_their_own():
    # sequence 'w' is frame 1 alone with its own prediction (a perfect match); 'v' as above
    seqs = {'v': (GT, OUTPUTS), 'w': ([GT[1]], [(0.0, 0, PRED[0])])}
    res = streaming_miou(seqs, SCORING, fps=1.0, eta=0.0)
    # adds I = U = [1, 3, 0] to the eta-0 totals: I = [3, 6, 2], U = [6, 8, 2]
    assert res.metrics['mIoU'] == round((3 / 6 + 6 / 8 + 1) / 3 * 100, 2)
    assert res.per_sequence['w'].as_dict() == dict(num_frames=1, in_time=1, miss=0, mismatch=0)


def _iou_metric(pairs, num_classes):
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=[f'c{k}' for k in range(num_classes)])
    for pred, gt in pairs:
        metric.process(
            {},
            [
                dict(
                    pred_sem_seg=dict(data=torch.from_numpy(pred)[None]),
                    gt_sem_seg=dict(data=torch.from_numpy(gt)[None]),
                )
            ],
        )
    return metric.compute_metrics(metric.results)


def test_every_frame_answered_by_its_own_prediction_equals_mmseg_iou_metric():
    rng = np.random.default_rng(0)
    n_cls, seqs, pairs = 6, {}, []
    for name, n in (('a', 5), ('b', 3)):
        gts = [rng.integers(0, n_cls, (8, 12)) for _ in range(n)]
        for g in gts:
            g[rng.random(g.shape) < 0.1] = 255
        preds = [rng.integers(0, n_cls - 1, (8, 12)) for _ in range(n)]  # class 5 never
        seqs[name] = (gts, [(float(i), i, p) for i, p in enumerate(preds)])
        pairs += list(zip(preds, gts))
    expected = _iou_metric(pairs, n_cls)
    res = streaming_miou(seqs, IoUScoring(num_classes=n_cls), fps=1.0, eta=0.0)
    assert res.counts.as_dict() == dict(num_frames=8, in_time=8, miss=0, mismatch=0)
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert res.metrics[key] == pytest.approx(float(expected[key]), abs=0)


def test_scoring_of_a_metric_and_bad_input():
    metric = IoUMetric(ignore_index=7, iou_metrics=['mIoU', 'mDice'])
    with pytest.raises(ValueError, match='no dataset_meta classes'):
        IoUScoring.of(metric)
    metric.dataset_meta = dict(classes=('a', 'b'))
    assert IoUScoring.of(metric) == IoUScoring(
        num_classes=2, ignore_index=7, iou_metrics=('mIoU', 'mDice')
    )
    with pytest.raises(ValueError, match=r"sequence 'v'.*prediction of frame 0 is \(2, 3\).*"
                       r'ground truth of frame 1 is \(2, 2\)'):  # fmt: skip
        streaming_miou({'v': (GT, [(0.5, 0, np.zeros((2, 3)))])}, SCORING, fps=1.0)
    with pytest.raises(ValueError, match="sequence 'v'.*non-decreasing"):
        streaming_miou({'v': (GT, [(1.0, 0, PRED[0]), (0.5, 1, PRED[1])])}, SCORING, fps=1.0)
    with pytest.raises(ValueError, match='no frame has ground truth'):
        streaming_miou({'v': ([None], [])}, SCORING, fps=1.0)
    with pytest.raises(ValueError, match='label map'):
        streaming_miou({'v': ([np.zeros((2, 2, 2))], [])}, SCORING, fps=1.0)
