"""Bootstrap intervals of the by-offset curves: the helper with hand-computed values, and each
metric's ``offset_curve_ci`` with every video drawn once (must equal the curve) and with a video
drawn twice (expected values worked out by hand or by pycocotools on a ground truth in which
the video's images really are duplicated)."""

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmvideoeq.evaluation.metrics import dvps_metric, seg_metric, vid_metric
from mmvideoeq.evaluation.metrics.frame_offset import OffsetBuckets, bootstrap_by_offset
from mmvideoeq.registry import METRICS


def _force_draws(monkeypatch, module, draws, seen=None):
    """Make ``module``'s metric bootstrap over the given draws (and record its videos)."""

    def forced(items, offsets, videos, buckets, reduce, **kwargs):
        if seen is not None:
            seen.append(list(videos))
        return bootstrap_by_offset(items, offsets, videos, buckets, reduce, draws=draws)

    monkeypatch.setattr(module, 'bootstrap_by_offset', forced)


# ------------------------------------------------------------------------------------------------
# the helper
# ------------------------------------------------------------------------------------------------
def test_percentile_interval_over_explicit_draws():
    buckets = OffsetBuckets.build(1)  # '0', '1+'
    # video a: frames at offsets 0, 1 (values 1, 10); video b: offset 0 only (value 3)
    items, offsets, videos = [1.0, 10.0, 3.0], [0, 1, 0], ['a', 'a', 'b']
    draws = [['a', 'a'], ['a', 'b'], ['b', 'b']]
    ci = bootstrap_by_offset(items, offsets, videos, buckets, draws=draws)
    # bucket '0': means 1, 2, 3; quantiles 2.5 % / 97.5 % with linear interpolation over 3
    # sorted values: positions 0.05 and 1.95 -> 1.05 and 2.95
    assert ci['0'] == pytest.approx([1.05, 2.95])
    # bucket '1+': only the draws with a hold a frame there: values 10 and 10
    assert ci['1+'] == [10.0, 10.0]
    # a video drawn twice brings its frames twice
    counts = bootstrap_by_offset(items, offsets, videos, buckets, len, draws=[['a', 'a', 'b']])
    assert counts == {'0': [3.0, 3.0], '1+': [2.0, 2.0]}
    # every video once = the by-offset value itself
    once = bootstrap_by_offset(items, offsets, videos, buckets, draws=[['a', 'b']])
    assert once == {'0': [2.0, 2.0], '1+': [10.0, 10.0]}


def test_random_draws_are_seeded_and_cover_the_resample_values():
    buckets = OffsetBuckets.build(1)
    items, offsets, videos = [1.0, 3.0], [0, 0], ['a', 'b']
    # resamples aa, ab, ba, bb with probability 1/4 each: means 1, 2, 2, 3; with 2000
    # resamples both tails (probability 1/4 each) reach past the 2.5 % quantiles
    ci = bootstrap_by_offset(items, offsets, videos, buckets, n=2000)
    assert ci == {'0': [1.0, 3.0]}
    again = bootstrap_by_offset(items, offsets, videos, buckets, n=7, seed=3)
    assert again == bootstrap_by_offset(items, offsets, videos, buckets, n=7, seed=3)
    narrow = bootstrap_by_offset(items, offsets, videos, buckets, n=2000, level=0.4)
    assert narrow == {'0': [2.0, 2.0]}  # the 30 % and 70 % quantiles both fall on mean 2


def test_mapping_values_and_undefined_resamples():
    buckets = OffsetBuckets.build(1)

    def reduce(values):
        return dict(mean=sum(values) / len(values), undefined=float('nan') if 0 in values else 1)

    ci = bootstrap_by_offset(
        [0.0, 4.0], [0, 0], ['a', 'b'], buckets, reduce, draws=[['a', 'a'], ['b', 'b']]
    )
    assert ci['mean'] == {'0': pytest.approx([0.1, 3.9])}
    assert ci['undefined'] == {'0': [1.0, 1.0]}  # the NaN of draw aa is left out
    only_nan = bootstrap_by_offset([0.0], [0], ['a'], buckets, reduce, draws=[['a']])
    assert math.isnan(only_nan['undefined']['0'][0])


def test_bad_arguments():
    buckets = OffsetBuckets.build(1)
    with pytest.raises(ValueError, match='one of each per frame'):
        bootstrap_by_offset([1.0], [0, 0], ['a'], buckets)
    with pytest.raises(ValueError, match='resamples must be an int >= 1'):
        bootstrap_by_offset([1.0], [0], ['a'], buckets, n=0)
    with pytest.raises(ValueError, match='level'):
        bootstrap_by_offset([1.0], [0], ['a'], buckets, level=1.0)
    with pytest.raises(ValueError, match=r"draws name videos \['z'\]"):
        bootstrap_by_offset([1.0], [0], ['a'], buckets, draws=[['z']])
    with pytest.raises(ValueError, match='ci_resamples'):
        METRICS.build(dict(type='VIDMetric', ci_resamples=-1))


# ------------------------------------------------------------------------------------------------
# VIDMetric: COCOeval.accumulate over a list of images with repeats
# ------------------------------------------------------------------------------------------------
def _vid_case(tmp_path):
    """One class; image 1 (video 1): one box, detected (score 0.9, IoU 1); image 2 (video 2):
    one box, missed, and a false positive (score 0.95) elsewhere."""
    gt = dict(
        categories=[dict(id=1, name='airplane')],
        videos=[dict(id=1, name='1'), dict(id=2, name='2')],
        images=[
            dict(id=i, video_id=i, frame_id=0, width=100, height=100, file_name=f'{i}.JPEG')
            for i in (1, 2)
        ],
        annotations=[
            dict(id=1, image_id=1, category_id=1, bbox=[10, 10, 20, 20], area=400, iscrowd=0),
            dict(id=2, image_id=2, category_id=1, bbox=[50, 50, 20, 20], area=400, iscrowd=0),
        ],
    )
    path = tmp_path / 'vid.json'
    path.write_text(json.dumps(gt))
    dets = {1: ([10, 10, 30, 30], 0.9), 2: ([0, 0, 10, 10], 0.95)}
    samples = [
        dict(
            img_id=i,
            video_id=i,
            frame_id=0,
            ori_shape=(100, 100),
            pred_instances=dict(
                bboxes=torch.tensor([box], dtype=torch.float32),
                scores=torch.tensor([score]),
                labels=torch.tensor([0]),
            ),
        )
        for i, (box, score) in dets.items()
    ]
    return str(path), samples


@pytest.mark.parametrize(
    'draw, expected',
    [
        # detections by score: FP (0.95), TP (0.9); 2 boxes. Recall 0.5 at precision 0.5: the
        # interpolated precision is 0.5 at the 51 recall thresholds 0, 0.01, ..., 0.5
        ([1, 2], 51 * 0.5 / 101),
        # image 1 twice: FP, TP, TP of 3 boxes: recall 1/3 at precision 1/2, 2/3 at 2/3; the
        # interpolated precision is 2/3 up to recall 2/3 (thresholds 0 .. 0.66, 67 of them)
        ([1, 1, 2], 67 * (2 / 3) / 101),
        ([2, 2], 0.0),
    ],
)
def test_vid_duplicates_counted_by_hand(tmp_path, monkeypatch, draw, expected):
    path, samples = _vid_case(tmp_path)
    _force_draws(monkeypatch, vid_metric, [draw])
    metric = METRICS.build(dict(type='VIDMetric', ann_file=path, offset_buckets=1))
    metric.dataset_meta = dict(classes=('airplane',))
    metric.process(None, samples)
    out = metric.evaluate(2)
    assert out['vid/offset_curve/bbox_mAP_50'] == {'0': round(51 * 0.5 / 101, 3)}
    assert out['vid/offset_curve_ci/bbox_mAP_50'] == {'0': [round(expected, 3)] * 2}


def _vid_random_case(seed=0):
    """Two videos of four frames, three classes, noisy detections and false positives."""
    rng = np.random.default_rng(seed)
    images, annotations, samples = [], [], []
    for video in (10, 20):
        for frame in range(4):
            img_id = len(images) + 1
            images.append(
                dict(id=img_id, video_id=video, frame_id=frame, width=160, height=120,
                     file_name=f'{video}/{frame}.JPEG')
            )  # fmt: skip
            boxes, scores, labels = [], [], []
            for _ in range(int(rng.integers(1, 4))):
                label = int(rng.integers(0, 3))
                x, y, w, h = rng.uniform(0, 80), rng.uniform(0, 50), *rng.uniform(8, 60, 2)
                annotations.append(
                    dict(id=len(annotations) + 1, image_id=img_id, category_id=label + 1,
                         bbox=[x, y, w, h], area=w * h, iscrowd=0)
                )  # fmt: skip
                jitter = rng.normal(0, 0.3 * min(w, h), 4)
                boxes.append([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]])
                scores.append(rng.uniform(0.2, 1.0))
                labels.append(label if rng.uniform() < 0.8 else int(rng.integers(0, 3)))
            samples.append(
                dict(img_id=img_id, video_id=video, frame_id=frame, ori_shape=(120, 160),
                     pred_instances=dict(bboxes=torch.tensor(boxes, dtype=torch.float32),
                                         scores=torch.tensor(scores, dtype=torch.float32),
                                         labels=torch.tensor(labels)))
            )  # fmt: skip
    gt = dict(
        categories=[dict(id=i + 1, name=n) for i, n in enumerate(('airplane', 'bear', 'dog'))],
        videos=[dict(id=10, name='10'), dict(id=20, name='20')],
        images=images,
        annotations=annotations,
    )
    return gt, samples


def _pycocotools_ap50(gt: dict, samples: list, copies: dict) -> float:
    """AP@0.5 by pycocotools alone, on a ground truth in which image ``i`` appears
    ``copies[i]`` times (new ids for the copies, with their boxes and detections)."""
    copied = dict(gt, images=[], annotations=[])
    dets, source = [], {s['img_id']: s for s in samples}
    for img_id, n in copies.items():
        image = next(im for im in gt['images'] if im['id'] == img_id)
        for c in range(n):
            new_id = img_id + 1000 * c
            copied['images'].append(dict(image, id=new_id))
            for a in gt['annotations']:
                if a['image_id'] == img_id:
                    copied['annotations'].append(
                        dict(a, id=len(copied['annotations']) + 1, image_id=new_id)
                    )
            p = source[img_id]['pred_instances']
            for box, score, label in zip(p['bboxes'].tolist(), p['scores'].tolist(), p['labels']):
                x1, y1, x2, y2 = box
                dets.append(dict(image_id=new_id, category_id=int(label) + 1,
                                 bbox=[x1, y1, x2 - x1, y2 - y1], score=score))  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copied
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), 'bbox')
        ev.params.iouThrs = np.array([0.5])
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval['precision'][0, :, :, 0, -1]
    return float(precision[precision > -1].mean())


def test_vid_every_video_once_equals_the_curve_and_repeats_match_pycocotools(tmp_path, monkeypatch):
    gt, samples = _vid_random_case()
    path = tmp_path / 'vid.json'
    path.write_text(json.dumps(gt))

    def run(draws):
        _force_draws(monkeypatch, vid_metric, draws)
        metric = METRICS.build(dict(type='VIDMetric', ann_file=str(path), offset_buckets=[0, 2]))
        metric.dataset_meta = dict(classes=('airplane', 'bear', 'dog'))
        metric.process(None, samples)
        return metric.evaluate(len(samples))

    out = run([[10, 20]])
    curve, ci = out['vid/offset_curve/bbox_mAP_50'], out['vid/offset_curve_ci/bbox_mAP_50']
    assert list(ci) == list(curve) == ['0-1', '2+']
    assert len(set(curve.values())) == 2  # not flat: a wrong grouping could not pass
    for label, value in curve.items():
        assert ci[label] == [value, value], label
    # video 10 drawn twice, 20 once; frames 0-1 are images 1, 2 (video 10) and 5, 6 (video 20)
    ci = run([[10, 20, 10]])['vid/offset_curve_ci/bbox_mAP_50']
    expected = _pycocotools_ap50(gt, samples, {1: 2, 2: 2, 5: 1, 6: 1})
    assert ci['0-1'] == [round(expected, 3)] * 2
    assert expected != pytest.approx(curve['0-1'], abs=1e-3)  # the repeat changes the value
    expected = _pycocotools_ap50(gt, samples, {3: 2, 4: 2, 7: 1, 8: 1})
    assert ci['2+'] == [round(expected, 3)] * 2


# ------------------------------------------------------------------------------------------------
# StreamingIoUMetric: summed areas, clips of one annotated frame drawn together
# ------------------------------------------------------------------------------------------------
def _seg_sample(pred, label, **meta):
    s = SegDataSample(metainfo=dict(img_path='f.png', **meta))
    s.pred_sem_seg = PixelData(data=torch.as_tensor(pred, dtype=torch.int64)[None])
    s.gt_sem_seg = PixelData(data=torch.as_tensor(label, dtype=torch.int64)[None])
    return s.to_dict()


def test_seg_units_and_repeats(monkeypatch):
    label = np.array([[0, 0, 1, 1]])
    perfect, half = np.array([[0, 0, 1, 1]]), np.array([[0, 0, 0, 1]])
    # annotated frames x (perfect) and y (class 1 half missed), each reached by clips of length
    # 1 and 2 (offsets 0 and 1)
    samples = [
        _seg_sample(perfect, label, video_id='x_len1', frame_id=0),
        _seg_sample(perfect, label, video_id='x_len2', frame_id=1),
        _seg_sample(half, label, video_id='y_len1', frame_id=0),
        _seg_sample(half, label, video_id='y_len2', frame_id=1),
    ]
    seen = []
    _force_draws(monkeypatch, seg_metric, [['x', 'y', 'y']], seen)
    metric = METRICS.build(dict(type='StreamingIoUMetric', offset_buckets=2))
    metric.dataset_meta = dict(classes=('a', 'b'))
    metric.process(None, samples)
    out = metric.evaluate(4)
    assert seen == [['x', 'x', 'y', 'y']]
    # x + y: class 0: inter 2 + 2, union 2 + 3 -> 4/5; class 1: inter 2 + 1, union 2 + 2 -> 3/4
    assert out['offset_curve/mIoU']['0'] == pytest.approx(100 * (4 / 5 + 3 / 4) / 2, abs=0.005)
    # x + 2 y: class 0: 6 / 8; class 1: 4 / 6
    assert out['offset_curve_ci/mIoU'] == {
        b: [round(100 * (6 / 8 + 4 / 6) / 2, 2)] * 2 for b in ('0', '1')
    }
    # aAcc: x + 2 y: 4 + 6 correct of 12 pixels
    assert out['offset_curve_ci/aAcc']['0'] == [round(100 * 10 / 12, 2)] * 2


# ------------------------------------------------------------------------------------------------
# DVPS metrics (the toy of test_dvps_metric.py: sequences A, B of two frames)
# ------------------------------------------------------------------------------------------------
def _dvps_samples():
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
            s = SegDataSample(metainfo=dict(video_id=seq, frame_id=t + 10, img_path=f'{seq}{t}'))
            s.gt_panoptic = PixelData(data=torch.as_tensor(gt)[None])
            s.pred_panoptic = PixelData(data=torch.as_tensor(pred)[None])
            s.gt_depth = PixelData(data=torch.full((1, 2, 4), 10.0))
            s.pred_depth = PixelData(data=torch.as_tensor(pd, dtype=torch.float32)[None])
            out.append(s.to_dict())
    return out


def _dvpq_out(monkeypatch, draws):
    _force_draws(monkeypatch, dvps_metric, draws)
    metric = METRICS.build(
        dict(type='DVPQMetric', protocol=None, num_classes=2, label_divisor=100, ignore_label=9,
             thing_ids=[1], windows=[1, 2], thresholds=[0.25], window_scope='sequence',
             average='all', epsilon=0.0, fp_void='ignore_class')
    )  # fmt: skip
    metric.dataset_meta = dict(classes=('stuff', 'thing'))
    metric.process({}, _dvps_samples())
    return metric.compute_metrics(metric.results)


def test_dvpq_every_video_once_equals_the_curves(monkeypatch):
    out = _dvpq_out(monkeypatch, [['A', 'B']])
    for key in ('DVPQ', 'PQ'):
        curve, ci = out[f'offset_curve/{key}'], out[f'offset_curve_ci/{key}']
        assert list(ci) == list(curve) == ['0', '1']
        assert all(ci[b] == [curve[b], curve[b]] for b in curve), key


def test_dvpq_video_drawn_twice_by_hand(monkeypatch):
    ci = _dvpq_out(monkeypatch, [['A', 'B', 'B']])['offset_curve_ci/DVPQ']
    # lambda 0.25 (B1's right half becomes void). Offset 0: k = 1 windows A0, B0, B0 are
    # perfect (1); k = 2 windows (A0,A1) perfect, (B0,B1) twice: class 0 FN 1 + FP 1 each ->
    # class 0: 1 TP, 2 FN, 2 FP -> 1 / 3; class 1: 3 TP -> 1; k = 2: (1/3 + 1) / 2
    assert ci['0'] == pytest.approx([100 * (1 + (1 / 3 + 1) / 2) / 2] * 2, abs=1e-12)
    # offset 1: k = 1 windows A1, B1, B1: class 0: 1 TP, 2 FN -> 1 / 2; class 1 -> 1
    assert ci['1'] == pytest.approx([100 * (1 / 2 + 1) / 2] * 2, abs=1e-12)


def test_depth_and_stq_repeats(monkeypatch):
    _force_draws(monkeypatch, dvps_metric, [['A', 'B', 'B']])
    depth = METRICS.build(dict(type='KittiDepthMetric', offset_buckets=[0, 1]))
    depth.process({}, _dvps_samples())
    out = depth.compute_metrics(depth.results)
    # offset 1: image abs_rel A1 0, B1 0.15 twice -> 0.1 (the curve, every video once: 0.075)
    assert out['offset_curve_ci/image/abs_rel']['1+'] == pytest.approx([0.1, 0.1])
    assert out['offset_curve/image/abs_rel']['1+'] == pytest.approx(0.075)

    # STQ, deeplab2's example 1 as video B (AQ 0.52 on one tube) next to a perfect video A
    # (AQ 1): a video drawn twice is two sequences, two tubes: AQ (1 + 2 * 0.52) / 3; IoU 1
    stq = METRICS.build(
        dict(type='STQMetric', num_classes=2, thing_ids=[0], ignore_label=255,
             label_divisor=2**16, depth_thresholds=None)
    )  # fmt: skip
    gt = np.array([[1, 1, 1, 1, 1]])
    stq.process(
        {},
        [
            _stq_sample(gt, gt, 'A'),
            _stq_sample(gt, np.array([[1, 1, 2, 2, 2]]), 'B'),
        ],
    )
    out = stq.compute_metrics(stq.results)
    assert out['offset_curve/STQ']['0'] == pytest.approx(100 * math.sqrt((1 + 0.52) / 2))
    assert out['offset_curve_ci/STQ']['0'] == pytest.approx(
        [100 * math.sqrt((1 + 2 * 0.52) / 3)] * 2
    )


def _stq_sample(gt, pred, video):
    s = SegDataSample(metainfo=dict(video_id=video, frame_id=0, img_path=video))
    s.gt_panoptic = PixelData(data=torch.as_tensor(gt)[None])
    s.pred_panoptic = PixelData(data=torch.as_tensor(pred)[None])
    return s.to_dict()
