"""Tests of VIDMetric and the frame-offset helpers.

Every expected mAP is computed in the test itself with pycocotools (``COCO.loadRes`` +
``COCOeval``) on the same ground-truth file and detections, restricted to the frames each case
expects to be evaluated (the frame lists and offset buckets are written out by hand).
"""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmvideoeq.evaluation.metrics import (
    OffsetBuckets,
    VIDMetric,
    aggregate_by_offset,
    frame_offsets,
)
from mmvideoeq.registry import METRICS

CLASSES = ('airplane', 'bear', 'dog')
CAT_IDS = {'airplane': 1, 'bear': 3, 'dog': 9}  # deliberately not 0..K-1
W, H = 160, 120  # boxes of both COCO 'small' and 'medium' areas
# (video id, number of frames)
VIDEOS = ((10, 6), (20, 4))


def _make_data(seed=0):
    """A CocoVID ground truth and noisy detections (label index = position in CLASSES)."""
    rng = np.random.default_rng(seed)
    images, annotations, frames = [], [], []
    img_id = 0
    for video_id, length in VIDEOS:
        for frame_id in range(length):
            img_id += 1
            images.append(
                dict(
                    id=img_id,
                    video_id=video_id,
                    frame_id=frame_id,
                    width=W,
                    height=H,
                    file_name=f'{video_id}/{frame_id:06d}.JPEG',
                )
            )
            bboxes, scores, labels = [], [], []
            for _ in range(int(rng.integers(1, 4))):
                label = int(rng.integers(0, len(CLASSES)))
                x, y = rng.uniform(0, 80), rng.uniform(0, 50)
                w, h = rng.uniform(8, 70), rng.uniform(8, 60)
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=img_id,
                        video_id=video_id,
                        category_id=CAT_IDS[CLASSES[label]],
                        instance_id=label + 1,
                        bbox=[x, y, w, h],
                        area=w * h,
                        iscrowd=False,
                    )
                )
                # a detection of it, more or less accurate, sometimes with the wrong class
                jitter = rng.normal(0, 0.25 * min(w, h), 4)
                det_label = label if rng.uniform() < 0.8 else int(rng.integers(0, len(CLASSES)))
                bboxes.append([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]])
                scores.append(rng.uniform(0.3, 1.0))
                labels.append(det_label)
            for _ in range(int(rng.integers(0, 3))):  # false positives
                x, y = rng.uniform(0, 40), rng.uniform(0, 30)
                bboxes.append([x, y, x + rng.uniform(5, 20), y + rng.uniform(5, 15)])
                scores.append(rng.uniform(0.0, 0.9))
                labels.append(int(rng.integers(0, len(CLASSES))))
            frames.append(
                dict(
                    img_id=img_id,
                    video_id=video_id,
                    frame_id=frame_id,
                    bboxes=np.array(bboxes, dtype=np.float32),
                    scores=np.array(scores, dtype=np.float32),
                    labels=np.array(labels, dtype=np.int64),
                )
            )
    gt = dict(
        categories=[dict(id=i, name=n) for n, i in CAT_IDS.items()],
        videos=[dict(id=v, name=str(v)) for v, _ in VIDEOS],
        images=images,
        annotations=annotations,
    )
    return gt, frames


def _gt_file(tmp_path, gt):
    path = tmp_path / 'imagenet_vid_val.json'
    path.write_text(json.dumps(gt))
    return str(path)


def _sample(frame, **extra):
    sample = dict(
        img_id=frame['img_id'],
        video_id=frame['video_id'],
        frame_id=frame['frame_id'],
        ori_shape=(H, W),
        pred_instances=dict(
            bboxes=torch.from_numpy(frame['bboxes']),
            scores=torch.from_numpy(frame['scores']),
            labels=torch.from_numpy(frame['labels']),
        ),
    )
    sample.update(extra)
    return sample


def _reference_stats(gt_path, frames, img_ids):
    """pycocotools on its own: stats (AP@[.5:.95], AP@.5, ...) over ``img_ids``."""
    dets = []
    for frame in frames:
        if frame['img_id'] not in img_ids:
            continue
        for box, score, label in zip(frame['bboxes'], frame['scores'], frame['labels']):
            x1, y1, x2, y2 = (float(v) for v in box)
            dets.append(
                dict(
                    image_id=frame['img_id'],
                    category_id=CAT_IDS[CLASSES[label]],
                    bbox=[x1, y1, x2 - x1, y2 - y1],
                    score=float(score),
                )
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(gt_path)
        coco_eval = COCOeval(coco, coco.loadRes(dets), 'bbox')
        coco_eval.params.imgIds = sorted(img_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


def _run(metric, samples):
    metric.process(None, samples)
    return metric.evaluate(len(samples))


# ------------------------------------------------------------------------------------------------
# frame_offset helpers
# ------------------------------------------------------------------------------------------------
def test_offset_buckets():
    buckets = OffsetBuckets.build(3)
    assert buckets.labels == ['0', '1', '2', '3+']
    assert [buckets.label(o) for o in (0, 1, 2, 3, 50)] == ['0', '1', '2', '3+', '3+']
    custom = OffsetBuckets.build([0, 1, 5, 10])
    assert custom.labels == ['0', '1-4', '5-9', '10+']
    assert [custom.index(o) for o in (0, 1, 4, 5, 9, 10, 99)] == [0, 1, 1, 2, 2, 3, 3]
    for bad in (0, [1, 2], [0, 2, 2], 'x'):
        with pytest.raises(ValueError):
            OffsetBuckets.build(bad)
    with pytest.raises(ValueError, match='>= 0'):
        custom.index(-1)


def test_frame_offsets_and_aggregation():
    # video 7 evaluated from frame 3 on; video 8 from 0; the last frame has an explicit offset
    offsets = frame_offsets(
        [7, 7, 8, 7, 8, None], [3, 4, 0, 9, 2, None], [None, None, None, None, None, 12]
    )
    assert offsets == [0, 1, 0, 6, 2, 12]
    buckets = OffsetBuckets.build([0, 2, 10])
    assert aggregate_by_offset([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], offsets, buckets) == {
        '0-1': (1.0 + 2.0 + 3.0) / 3,
        '2-9': (4.0 + 5.0) / 2,
        '10+': 6.0,
    }
    assert aggregate_by_offset(list('abcdef'), offsets, buckets, reduce=''.join) == {
        '0-1': 'abc',
        '2-9': 'de',
        '10+': 'f',
    }
    with pytest.raises(KeyError, match='frame_offset'):
        frame_offsets([None], [None])
    with pytest.raises(ValueError, match='negative'):
        frame_offsets([1], [0], [-1])


# ------------------------------------------------------------------------------------------------
# VIDMetric
# ------------------------------------------------------------------------------------------------
def test_matches_pycocotools_with_offset_curve(tmp_path):
    gt, frames = _make_data()
    gt_path = _gt_file(tmp_path, gt)
    # evaluation starts mid-video for video 10 (frames 2..5) and at frame 0 for video 20
    evaluated = [f for f in frames if not (f['video_id'] == 10 and f['frame_id'] < 2)]
    metric = METRICS.build(dict(type='VIDMetric', ann_file=gt_path, offset_buckets=3))
    assert isinstance(metric, VIDMetric)
    metric.dataset_meta = dict(classes=CLASSES)
    out = _run(metric, [_sample(f) for f in evaluated])

    ids = {(f['video_id'], f['frame_id']): f['img_id'] for f in frames}
    stats = _reference_stats(gt_path, frames, {f['img_id'] for f in evaluated})
    assert out['vid/bbox_mAP_50'] == pytest.approx(stats[1], abs=5e-4)
    assert out['vid/bbox_mAP'] == pytest.approx(stats[0], abs=5e-4)
    assert out['vid/num_frames'] == 8 and out['vid/num_skipped_frames'] == 0
    # offsets: video 10 frames 2, 3, 4, 5 -> 0, 1, 2, 3; video 20 frames 0..3 -> 0..3
    buckets = {
        '0': {ids[10, 2], ids[20, 0]},
        '1': {ids[10, 3], ids[20, 1]},
        '2': {ids[10, 4], ids[20, 2]},
        '3+': {ids[10, 5], ids[20, 3]},
    }
    curve = out['vid/offset_curve/bbox_mAP_50']
    assert list(curve) == ['0', '1', '2', '3+']
    for label, img_ids in buckets.items():
        assert curve[label] == pytest.approx(
            _reference_stats(gt_path, frames, img_ids)[1], abs=5e-4
        ), label
    assert out['vid/offset_curve/num_frames'] == {'0': 2, '1': 2, '2': 2, '3+': 2}
    # the curve is not flat, so a wrong grouping could not pass by accident
    assert len({round(v, 3) for v in curve.values()}) > 1


def test_explicit_frame_offset_and_buckets(tmp_path):
    gt, frames = _make_data(seed=1)
    gt_path = _gt_file(tmp_path, gt)
    metric = VIDMetric(ann_file=gt_path, offset_buckets=[0, 2])
    metric.dataset_meta = dict(classes=CLASSES)
    # the streaming loop says video 20 started long before: offsets 5.. for all its frames
    samples = [
        _sample(f, frame_offset=5 + f['frame_id']) if f['video_id'] == 20 else _sample(f)
        for f in frames
    ]
    out = _run(metric, samples)
    ids = {(f['video_id'], f['frame_id']): f['img_id'] for f in frames}
    expected = {
        '0-1': {ids[10, 0], ids[10, 1]},
        '2+': {ids[10, k] for k in range(2, 6)} | {ids[20, k] for k in range(4)},
    }
    curve = out['vid/offset_curve/bbox_mAP_50']
    assert list(curve) == ['0-1', '2+']
    for label, img_ids in expected.items():
        assert curve[label] == pytest.approx(
            _reference_stats(gt_path, frames, img_ids)[1], abs=5e-4
        )


def test_skipped_frames_are_reported_not_evaluated(tmp_path):
    gt, frames = _make_data(seed=2)
    gt_path = _gt_file(tmp_path, gt)
    metric = VIDMetric(ann_file=gt_path, offset_buckets=2)
    metric.dataset_meta = dict(classes=CLASSES)
    samples = [_sample(f) for f in frames]
    del samples[0]['pred_instances']  # video 10 frame 0 failed (its offset stays the origin)
    samples[7]['eval_skip_reason'] = 'solver diverged'  # video 20 frame 1
    samples[8]['pred_instances']['scores'][0] = float('nan')  # video 20 frame 2
    out = _run(metric, samples)

    assert out['vid/num_skipped_frames'] == 3 and out['vid/num_frames'] == len(frames) - 3
    assert [(s['video_id'], s['frame_id'], s['reason']) for s in metric.skipped_frames] == [
        (10, 0, 'no pred_instances'),
        (20, 1, 'solver diverged'),
        (20, 2, 'non-finite pred_instances.scores'),
    ]
    kept = [f for i, f in enumerate(frames) if i not in (0, 7, 8)]
    stats = _reference_stats(gt_path, frames, {f['img_id'] for f in kept})
    assert out['vid/bbox_mAP_50'] == pytest.approx(stats[1], abs=5e-4)
    # offsets still count from the skipped first frame: video 10 frame 1 is offset 1
    ids = {(f['video_id'], f['frame_id']): f['img_id'] for f in frames}
    one = {ids[10, 1]}
    rest = {ids[10, k] for k in range(2, 6)} | {ids[20, 3]}
    zero = {ids[20, 0]}
    curve = out['vid/offset_curve/bbox_mAP_50']
    assert out['vid/offset_curve/num_frames'] == {'0': 1, '1': 1, '2+': 5}
    assert curve['0'] == pytest.approx(_reference_stats(gt_path, frames, zero)[1], abs=5e-4)
    assert curve['1'] == pytest.approx(_reference_stats(gt_path, frames, one)[1], abs=5e-4)
    assert curve['2+'] == pytest.approx(_reference_stats(gt_path, frames, rest)[1], abs=5e-4)


def test_ground_truth_from_samples(tmp_path):
    """Without ann_file, CocoMetric's conversion of the samples' instances is the ground truth."""
    gt, frames = _make_data(seed=3)
    gt_path = _gt_file(tmp_path, gt)
    coco = COCO(gt_path)
    label = {CAT_IDS[n]: i for i, n in enumerate(CLASSES)}
    samples = []
    for f in frames:
        instances = [
            dict(
                bbox=[
                    a['bbox'][0],
                    a['bbox'][1],
                    a['bbox'][0] + a['bbox'][2],
                    a['bbox'][1] + a['bbox'][3],
                ],
                bbox_label=label[a['category_id']],
                ignore_flag=0,
            )
            for a in coco.imgToAnns[f['img_id']]
        ]
        samples.append(_sample(f, instances=instances))
    metric = VIDMetric(offset_buckets=None)
    metric.dataset_meta = dict(classes=CLASSES)
    out = _run(metric, samples)
    stats = _reference_stats(gt_path, frames, {f['img_id'] for f in frames})
    assert out['vid/bbox_mAP_50'] == pytest.approx(stats[1], abs=5e-4)
    assert not any(k.startswith('vid/offset_curve') for k in out)

    with pytest.raises(KeyError, match="needs 'instances'"):
        VIDMetric().process(None, [_sample(frames[0])])


def test_track_data_samples_through_evaluator(tmp_path):
    """mmdet's TrackDataSample (video pipelines) and DetDataSample objects give the same mAP."""
    from mmdet.structures import DetDataSample, TrackDataSample
    from mmengine.evaluator import Evaluator
    from mmengine.structures import InstanceData

    gt, frames = _make_data(seed=4)
    gt_path = _gt_file(tmp_path, gt)

    lengths = {v: sum(f['video_id'] == v for f in frames) for v in (10, 20)}

    def det_sample(f):  # the metainfo mmdet's PackTrackInputs packs by default
        s = DetDataSample(
            metainfo=dict(
                img_id=f['img_id'],
                video_id=f['video_id'],
                frame_id=f['frame_id'],
                ori_shape=(H, W),
                ori_video_length=lengths[f['video_id']],
            )
        )
        s.pred_instances = InstanceData(
            bboxes=torch.from_numpy(f['bboxes']),
            scores=torch.from_numpy(f['scores']),
            labels=torch.from_numpy(f['labels']),
        )
        return s

    results = []
    for video_id in (10, 20):
        tracks = []
        for f in frames:
            if f['video_id'] == video_id:
                track = TrackDataSample()
                track.video_data_samples = [det_sample(f)]
                tracks.append(track)
        results.append(tracks)
    evaluator = Evaluator(VIDMetric(ann_file=gt_path, offset_buckets=2))
    evaluator.dataset_meta = dict(classes=CLASSES)
    for tracks in results:  # one frame per TrackDataSample, as TrackImgSampler yields
        evaluator.process(tracks)
    out = evaluator.evaluate(size=2)  # size = number of videos, as mmdet's loops pass it
    stats = _reference_stats(gt_path, frames, {f['img_id'] for f in frames})
    assert out['vid/num_frames'] == len(frames)
    assert out['vid/bbox_mAP_50'] == pytest.approx(stats[1], abs=5e-4)
    # the unrounded statistics next to mmdet's 3-decimal ones
    assert out['vid/exact/bbox_mAP_50'] == pytest.approx(stats[1], rel=1e-12)
    assert out['vid/exact/bbox_mAP'] == pytest.approx(stats[0], rel=1e-12)
    assert out['vid/bbox_mAP_50'] == round(stats[1], 3)
    for name in ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l'):  # mmdet's own rounding
        assert out[f'vid/bbox_{name}'] == float(f"{round(out[f'vid/exact/bbox_{name}'], 3)}")

    evaluator = Evaluator(VIDMetric(ann_file=gt_path, offset_buckets=2))
    evaluator.dataset_meta = dict(classes=CLASSES)
    evaluator.process([det_sample(f) for f in frames])
    assert evaluator.evaluate(size=len(frames))['vid/bbox_mAP_50'] == out['vid/bbox_mAP_50']


def test_no_detections_gives_zero(tmp_path):
    gt, frames = _make_data(seed=5)
    gt_path = _gt_file(tmp_path, gt)
    metric = VIDMetric(ann_file=gt_path, offset_buckets=1)
    metric.dataset_meta = dict(classes=CLASSES)
    empty = [
        dict(
            f,
            bboxes=np.zeros((0, 4), np.float32),
            scores=np.zeros(0, np.float32),
            labels=np.zeros(0, np.int64),
        )
        for f in frames
    ]
    out = _run(metric, [_sample(f) for f in empty])
    assert out['vid/bbox_mAP_50'] == 0.0
    assert out['vid/offset_curve/bbox_mAP_50'] == {'0': 0.0, '1+': 0.0}


def test_bad_input(tmp_path):
    gt, frames = _make_data()
    gt_path = _gt_file(tmp_path, gt)
    with pytest.raises(FileNotFoundError, match='missing.json does not exist'):
        VIDMetric(ann_file=str(tmp_path / 'missing.json'))

    metric = VIDMetric(ann_file=gt_path)
    metric.dataset_meta = dict(classes=('airplane', 'zebra'))
    with pytest.raises(ValueError, match=r"class list does not match: dataset classes \['zebra'\]"):
        _run(metric, [_sample(frames[0])])

    metric = VIDMetric(ann_file=gt_path)
    metric.dataset_meta = dict(classes=CLASSES)
    with pytest.raises(KeyError, match=r'image ids \[999\] .* not images of'):
        _run(metric, [_sample(dict(frames[0], img_id=999))])

    metric = VIDMetric(ann_file=gt_path)
    metric.dataset_meta = dict(classes=CLASSES)
    no_frame = _sample(frames[0])
    del no_frame['video_id'], no_frame['frame_id']
    with pytest.raises(KeyError, match='frame_offset'):
        _run(metric, [no_frame])
