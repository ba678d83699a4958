"""The registered DVPQMetric / STQMetric / KittiDepthMetric on SegDataSample dicts, offset curves.

Expected values are worked out by hand in the comments (the toy of ``_two_sequence_samples`` is
the global-window case of ``test_dvps_reference_parity.py``).
"""

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmvideoeq.registry import METRICS


def _sample(gt, pred, gt_depth=None, pred_depth=None, **meta):
    s = SegDataSample(metainfo=meta)
    s.gt_panoptic = PixelData(data=torch.as_tensor(np.asarray(gt))[None])
    s.pred_panoptic = PixelData(data=torch.as_tensor(np.asarray(pred))[None])
    if gt_depth is not None:
        s.gt_depth = PixelData(data=torch.as_tensor(np.asarray(gt_depth, np.float32))[None])
        s.pred_depth = PixelData(data=torch.as_tensor(np.asarray(pred_depth, np.float32))[None])
    return s.to_dict()


def _two_sequence_samples(offsets=False):
    # 2x4 frames, left half class 1 (thing), right half class 0. Sequence A: gt 101, pred 101;
    # sequence B: gt 102, pred 101. Depth: gt 10 m; pred 10 m, except frame B1 where the right
    # half is predicted at 13 m (error 0.3).
    out = []
    for seq, gt_id in (('A', 101), ('B', 102)):
        for t in range(2):
            gt = np.zeros((2, 4), int)
            gt[:, :2] = gt_id
            pred = np.zeros((2, 4), int)
            pred[:, :2] = 101
            pd = np.full((2, 4), 10.0)
            if seq == 'B' and t == 1:
                pd[:, 2:] = 13.0
            meta = dict(video_id=seq, frame_id=t + 10, img_path=f'{seq}{t}.png')
            if offsets:
                meta['frame_offset'] = t
            out.append(_sample(gt, pred, np.full((2, 4), 10.0), pd, **meta))
    return out


def _dvpq(**kw):
    cfg = dict(
        type='DVPQMetric', protocol=None, num_classes=2, label_divisor=100, ignore_label=9,
        thing_ids=[1], windows=[1, 2], thresholds=[0.25], window_scope='sequence',
        average='all', epsilon=0.0, fp_void='ignore_class',
    )  # fmt: skip
    cfg.update(kw)
    metric = METRICS.build(cfg)
    metric.dataset_meta = dict(classes=('stuff', 'thing'))
    return metric


def test_dvpq_metric_values_and_offset_curve():
    metric = _dvpq()
    samples = _two_sequence_samples()
    metric.process({}, samples[::-1])  # order of arrival does not matter
    out = metric.compute_metrics(metric.results)
    # no depth: every frame and every in-sequence window is perfect
    assert out['PQ'] == out['VPQ'] == 100.0
    # lambda = 0.25: in B1 the right half (error 0.3) becomes void. Stuff in B1: gt 4 px,
    # pred 0 px -> FN; the void pred segment (class 2) is neither matched nor FP.
    # k = 1: class 0: 3 TP (IoU 1), 1 FN -> PQ_0 = 3 / 3.5; class 1: 4 TP -> 1.
    assert out['DVPQ_k1_l0.25'] == pytest.approx(100 * (3 / 3.5 + 1) / 2, abs=1e-12)
    # k = 2: windows (A0,A1), (B0,B1). Class 0 in (B0,B1): gt tube 8 px, pred 4 px, inter 4,
    # IoU 4/8 = 0.5 -> no match: FN 1, FP 1. Class 0: 1 TP, 1 FN, 1 FP -> PQ_0 = 1 / 2.
    assert out['DVPQ_k2_l0.25'] == pytest.approx(100 * (0.5 + 1) / 2, abs=1e-12)
    assert out['DVPQ'] == pytest.approx((out['DVPQ_k1_l0.25'] + out['DVPQ_k2_l0.25']) / 2)
    assert out['per_class/PQ'] == {'stuff': 100.0, 'thing': 100.0}
    # offsets from frame_id - first frame_id: windows start at offset 0 (A0, B0; k=1 and k=2)
    # or 1 (A1, B1; k=1 only). Curves average over the classes present (average='valid').
    # offset 0, lambda 0.25: all perfect (B0 has no outlier; (B0,B1) is not in this bucket
    # for k=1, but k=2 windows start at offset 0: (B0,B1) gives PQ_0 = 1/2 as above).
    curve = out['offset_curve/DVPQ']
    assert list(curve) == ['0', '1']
    assert curve['0'] == pytest.approx(100 * ((1 + 1) / 2 + (0.5 + 1) / 2) / 2, abs=1e-12)
    # offset 1: k=1 windows A1, B1: class 0 1 TP 1 FN -> 1/1.5, class 1 perfect; no k=2
    # window starts there, so the mean is over k=1 only
    assert curve['1'] == pytest.approx(100 * (1 / 1.5 + 1) / 2, abs=1e-12)
    assert out['offset_curve/num_frames'] == {'0': 2, '1': 2}


def test_dvpq_metric_explicit_offsets_and_global_windows():
    metric = _dvpq(window_scope='global', thresholds=[])
    metric.process({}, _two_sequence_samples(offsets=True))
    out = metric.compute_metrics(metric.results)
    # the cross-sequence window (A1,B0): see test_trap_global_windows -> VPQ^2 = (1 + 4/7) / 2
    assert out['VPQ_k2'] == pytest.approx(100 * (1 + 4 / 7) / 2, abs=1e-12)
    assert 'DVPQ' not in out and 'offset_curve/VPQ' in out


def test_dvpq_metric_cityscapes_protocol_defaults():
    metric = METRICS.build(dict(type='DVPQMetric'))
    p = metric.protocol
    assert (p.windows, p.thresholds, p.epsilon, p.window_scope) == (
        (1, 2, 3, 4), (0.5, 0.25, 0.1), 0.0, 'sequence',
    )  # fmt: skip
    p = METRICS.build(dict(type='DVPQMetric', protocol='semkitti_dvps')).protocol
    assert (p.windows, p.epsilon, p.window_scope, p.label_divisor) == (
        (1, 5, 10, 20), 1e-10, 'global', 65536,
    )  # fmt: skip
    with pytest.raises(ValueError, match='protocol must be one of'):
        METRICS.build(dict(type='DVPQMetric', protocol='coco'))


def test_dvpq_metric_bad_samples():
    metric = _dvpq()
    good = _two_sequence_samples()[0]
    with pytest.raises(KeyError, match="need 'video_id'"):
        metric.process({}, [{k: v for k, v in good.items() if k != 'video_id'}])
    bad = dict(good, pred_depth=dict(data=torch.ones(1, 2, 5)))
    with pytest.raises(ValueError, match=r'A0\.png: maps of different sizes'):
        metric.process({}, [bad])
    bad = dict(good, pred_panoptic=dict(data=torch.full((1, 2, 4), 500)))
    with pytest.raises(ValueError, match=r'A0\.png \(prediction\): predicted class id\(s\) \[5\]'):
        metric.process({}, [bad])
    metric.process({}, [good, good])
    with pytest.raises(ValueError, match='frame 10 of video A was evaluated twice'):
        metric.compute_metrics(metric.results)


def test_stq_metric_deeplab2_example():
    # deeplab2 STQ basic example 1 (things [0]): gt [1,1,1,1,1], pred [1,1,2,2,2]:
    # STQ 0.72111026, AQ 0.52, IoU 1.
    metric = METRICS.build(
        dict(type='STQMetric', num_classes=2, thing_ids=[0], ignore_label=255,
             label_divisor=2**16, depth_thresholds=None)
    )  # fmt: skip
    gt, pred = np.array([[1, 1, 1, 1, 1]]), np.array([[1, 1, 2, 2, 2]])
    metric.process({}, [_sample(gt, pred, video_id='v', frame_id=0)])
    out = metric.compute_metrics(metric.results)
    assert out['STQ'] == pytest.approx(72.111026, abs=1e-6)
    assert out['AQ'] == pytest.approx(52.0) and out['IoU'] == 100.0
    assert out['offset_curve/STQ'] == {'0': pytest.approx(72.111026, abs=1e-6)}


def test_stq_metric_with_depth():
    metric = METRICS.build(
        dict(type='STQMetric', num_classes=2, thing_ids=[1], ignore_label=9, label_divisor=100)
    )
    metric.process({}, _two_sequence_samples())
    out = metric.compute_metrics(metric.results)
    # segmentation perfect within each sequence (tubes per sequence): STQ 100. Depth: 32 valid
    # pixels, 4 at ratio 1.3 (> 1.25 and > 1.1): DQ@t = 28/32 for both thresholds.
    assert out['STQ'] == 100.0
    assert out['DQ@1.25'] == out['DQ@1.1'] == pytest.approx(100 * 28 / 32)
    assert out['DSTQ'] == pytest.approx(100 * (28 / 32) ** (1 / 3), abs=1e-10)


def test_depth_metric_reductions_and_curve():
    metric = METRICS.build(dict(type='KittiDepthMetric', offset_buckets=[0, 1]))
    metric.process({}, _two_sequence_samples())
    out = metric.compute_metrics(metric.results)
    # pixel: 32 pixels, 4 with |13 - 10| / 10 = 0.3 -> abs_rel 1.2 / 32; per image: frame B1
    # 4/8 * 0.3 = 0.15, the others 0 -> mean 0.0375 = 1.2 / 32 as well (equal pixel counts).
    assert out['pixel/abs_rel'] == pytest.approx(1.2 / 32)
    assert out['image/abs_rel'] == pytest.approx(0.0375)
    # rmse: pixel sqrt(4 * 9 / 32); image mean of sqrt(4 * 9 / 8) and three zeros
    assert out['pixel/rmse'] == pytest.approx(np.sqrt(36 / 32))
    assert out['image/rmse'] == pytest.approx(np.sqrt(36 / 8) / 4)
    assert out['offset_curve/image/abs_rel'] == {'0': 0.0, '1+': pytest.approx(0.075)}
    with pytest.raises(ValueError, match="reductions must be 'image' and/or 'pixel'"):
        METRICS.build(dict(type='KittiDepthMetric', reductions=['median']))
