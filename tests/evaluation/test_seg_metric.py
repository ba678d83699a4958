"""StreamingIoUMetric against a confusion matrix computed here with numpy."""

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmvideoeq.evaluation.metrics import StreamingIoUMetric
from mmvideoeq.registry import METRICS

NUM_CLASSES = 19
H, W = 6, 8
CLASSES = tuple(f'c{i}' for i in range(NUM_CLASSES))


def _sample(pred, label=None, **meta) -> dict:
    sample = SegDataSample(metainfo=dict(img_path=f"f{meta.get('frame_id', 0)}.png", **meta))
    sample.pred_sem_seg = PixelData(data=torch.from_numpy(pred[None].astype(np.int64)))
    if label is not None:
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(label[None].astype(np.int64)))
    return sample.to_dict()


def _confusion(preds, labels) -> np.ndarray:
    """Rows: ground truth, columns: prediction; pixels labelled 255 are ignored."""
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for pred, label in zip(preds, labels):
        keep = label != 255
        index = NUM_CLASSES * label[keep].astype(np.int64) + pred[keep].astype(np.int64)
        cm += np.bincount(index, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)
    return cm


def _scores(cm: np.ndarray) -> dict:
    tp = np.diag(cm).astype(float)
    gt, pred = cm.sum(1), cm.sum(0)
    with np.errstate(divide='ignore', invalid='ignore'):
        return dict(
            aAcc=100 * tp.sum() / gt.sum(),
            mIoU=100 * np.nanmean(tp / (gt + pred - tp)),
            mAcc=100 * np.nanmean(tp / gt),
            mDice=100 * np.nanmean(2 * tp / (gt + pred)),
        )


def _random_frame(rng):
    # Classes 0..11 in the labels, predictions up to 13 (12, 13: false positives only, IoU 0);
    # classes 14..18 appear nowhere (NaN, left out of the mean). Some pixels are ignored.
    label = rng.integers(0, 12, size=(H, W))
    label[rng.random((H, W)) < 0.15] = 255
    pred = np.where(rng.random((H, W)) < 0.6, label, rng.integers(0, 14, size=(H, W)))
    pred[pred == 255] = 0
    return pred, label


def _metric(**kwargs) -> StreamingIoUMetric:
    metric = StreamingIoUMetric(**kwargs)
    metric.dataset_meta = dict(classes=CLASSES)
    return metric


def _close(got: float, expected: float) -> bool:
    return abs(got - expected) <= 0.005 + 1e-9  # the metric rounds to 2 decimals, as mmseg


def test_overall_and_offset_curve_match_confusion_matrix():
    rng = np.random.default_rng(0)
    metric = _metric(iou_metrics=['mIoU', 'mDice'])
    by_offset = {}
    num_samples = 0
    # Clips of lengths 1, 2, 5, 5, 2, 5, 1: only the last frame of each clip is annotated.
    for length in (1, 2, 5, 5, 2, 5, 1):
        batch = []
        for frame_id in range(length):
            pred, label = _random_frame(rng)
            annotated = frame_id == length - 1
            batch.append(
                _sample(
                    pred,
                    label if annotated else None,
                    frame_id=frame_id,
                    video_length=length,
                    is_annotated=annotated,
                    video_id=f'clip{num_samples}',
                )
            )
            if annotated:
                by_offset.setdefault(length - 1, []).append((pred, label))
        # An unannotated frame that nevertheless carries a label must be skipped too.
        pred, label = _random_frame(rng)
        batch.insert(0, _sample(pred, label, frame_id=-1, is_annotated=False, is_init_frame=True))
        metric.process({}, batch)
        num_samples += len(batch)
    assert len(metric.results) == num_samples  # one entry per sample keeps ranks aligned

    results = metric.evaluate(size=num_samples)

    everything = [frame for frames in by_offset.values() for frame in frames]
    expected = _scores(_confusion(*zip(*everything)))
    for key in ('aAcc', 'mIoU', 'mAcc', 'mDice'):
        assert _close(results[key], expected[key]), key
    assert list(results['offset_curve/mIoU']) == ['0', '1', '4']
    assert results['offset_curve/num_frames'] == {'0': 2, '1': 2, '4': 3}
    # mIoU is the first curve: the one the streaming loop plots.
    assert [k for k in results if k.startswith('offset_curve/')][0] == 'offset_curve/mIoU'
    for offset, frames in by_offset.items():
        expected = _scores(_confusion(*zip(*frames)))
        for key in ('aAcc', 'mIoU', 'mAcc', 'mDice'):
            got = results[f'offset_curve/{key}'][str(offset)]
            assert _close(got, expected[key]), (offset, key)
    # The curve really differs by offset (the grouping is not a copy of the overall number).
    assert len(set(results['offset_curve/mIoU'].values())) > 1


def test_frame_offset_overrides_frame_id_and_missing_offset_counts_overall_only():
    rng = np.random.default_rng(1)
    frames = [_random_frame(rng) for _ in range(3)]
    metric = _metric()
    metric.process(
        {},
        [
            _sample(*frames[0], frame_id=4, frame_offset=7, is_annotated=True),
            _sample(*frames[1], frame_id=4, is_annotated=True),
            _sample(*frames[2]),  # a plain mmseg sample: no streaming keys
        ],
    )
    results = metric.evaluate(size=3)
    assert results['offset_curve/num_frames'] == {'4': 1, '7': 1}
    curve = results['offset_curve/mIoU']
    assert _close(curve['7'], _scores(_confusion(*zip(frames[0])))['mIoU'])
    assert _close(curve['4'], _scores(_confusion(*zip(frames[1])))['mIoU'])
    assert _close(results['mIoU'], _scores(_confusion(*zip(*frames)))['mIoU'])


def test_perfect_prediction_is_100_and_registered():
    metric = METRICS.build(dict(type='StreamingIoUMetric'))
    metric.dataset_meta = dict(classes=CLASSES)
    label = np.arange(H * W).reshape(H, W) % NUM_CLASSES
    metric.process({}, [_sample(label, label, frame_id=0, is_annotated=True)])
    results = metric.evaluate(size=1)
    assert results['mIoU'] == 100.0 and results['offset_curve/mIoU'] == {'0': 100.0}


def test_offset_buckets_pool_the_areas_of_their_frames():
    rng = np.random.default_rng(5)
    frames = {offset: _random_frame(rng) for offset in (0, 1, 2, 3, 6, 25)}
    metric = _metric(offset_buckets=[0, 1, 4])
    metric.process(
        {},
        [_sample(*frame, frame_id=offset, is_annotated=True) for offset, frame in frames.items()],
    )
    results = metric.evaluate(size=len(frames))
    assert results['offset_curve/num_frames'] == {'0': 1, '1-3': 3, '4+': 2}
    for label, offsets in (('0', [0]), ('1-3', [1, 2, 3]), ('4+', [6, 25])):
        # A bucket's mIoU comes from its summed confusion matrix, not a mean of per-frame mIoUs.
        expected = _scores(_confusion(*zip(*[frames[o] for o in offsets])))['mIoU']
        assert _close(results['offset_curve/mIoU'][label], expected), label
    metric = _metric(offset_buckets=None)
    metric.process({}, [_sample(*frames[0], frame_id=0, is_annotated=True)])
    assert not any(k.startswith('offset_curve') for k in metric.evaluate(size=1))


def test_annotated_frame_without_label_raises():
    metric = _metric()
    pred, _ = _random_frame(np.random.default_rng(2))
    with pytest.raises(ValueError, match='LoadAnnotations'):
        metric.process({}, [_sample(pred, None, frame_id=0, is_annotated=True)])


def test_no_annotated_frame_raises():
    metric = _metric()
    pred, label = _random_frame(np.random.default_rng(3))
    metric.process({}, [_sample(pred, None, frame_id=0, is_annotated=False)])
    with pytest.raises(ValueError, match='no annotated frame'):
        metric.evaluate(size=1)


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(iou_metrics=['mAP']), 'iou_metrics'),
        (dict(format_only=True), 'output_dir'),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StreamingIoUMetric(**kwargs)


def test_format_only_writes_annotated_predictions(tmp_path):
    metric = _metric(format_only=True, output_dir=str(tmp_path))
    pred, label = _random_frame(np.random.default_rng(4))
    metric.process(
        {},
        [
            _sample(pred, None, frame_id=0, is_annotated=False),
            _sample(pred, None, frame_id=1, is_annotated=True),
        ],
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ['f1.png']
