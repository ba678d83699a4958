"""Bad files lose nothing, in every dataset: in test mode a frame whose image or ground truth
cannot be read (truncated, corrupt, missing, not of its listed size) is a placeholder marked with
the skip reason (naming the file), the metrics leave it out and count it, and a streaming run
ends with its ``results.json``; in training another frame is drawn, with a warning naming the
file. Data: the tiny rendered benchmark (``benchgen``)."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from benchgen import generate_benchmark
from mmvideoeq.registry import DATASETS
from mmvideoeq.structures import SKIP_KEY

ROOT = Path(__file__).resolve().parents[2]
VIP = (
    ROOT / 'configs' / 'vip_deeplab' / 'vip-deeplab_mdeq-tiny-sur8_600it_bundled-cityscapes-dvps.py'
)
DVPS_TEST = [
    dict(type='mmseg.LoadImageFromFile'),
    dict(type='LoadPanopticAnnotation'),
    dict(type='LoadKittiDepthAnnotation'),
    dict(type='PackDVPSInputs'),
]


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    root = tmp_path_factory.mktemp('tiny_bad_files')
    formats = ('cityscapes_dvps', 'semkitti_dvps', 'kitti_depth', 'coco')
    generate_benchmark(root, preset='tiny', seed=0, formats=formats)
    return root


@pytest.fixture
def data(bench, tmp_path):
    """A private copy of the benchmark (the tests break its files)."""
    shutil.copytree(bench, tmp_path / 'data')
    return tmp_path / 'data'


@pytest.fixture
def warnings(monkeypatch):
    import mmvideoeq.datasets.safe_loading as module

    logged = []
    monkeypatch.setattr(module, 'print_log', lambda msg, **kw: logged.append(msg))
    return logged


def _truncate(path):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


def _reasons(ds):
    return [ds[i]['data_samples'].metainfo.get(SKIP_KEY) for i in range(len(ds))]


def _cityscapes_dvps(data, **kw):
    return DATASETS.build(
        dict(
            type='CityscapesDVPSDataset',
            data_root=str(data / 'cityscapes_dvps'),
            data_prefix=dict(img_path='video_sequence/val'),
            **kw,
        )
    )


def test_read_png_names_a_truncated_file(data):
    from mmvideoeq.datasets.dvps_io import read_depth_png

    path = next((data / 'cityscapes_dvps' / 'video_sequence' / 'val').glob('*_depth.png'))
    _truncate(path)
    with pytest.raises(ValueError, match=rf'{path}: cannot decode the PNG .*truncated'):
        read_depth_png(path)


def test_dvps_bad_ground_truth_and_image_are_skipped_in_test_mode(data, warnings):
    folder = data / 'cityscapes_dvps' / 'video_sequence' / 'val'
    pan = sorted(folder.glob('*_gtFine_instanceTrainIds.png'))[1]
    img = sorted(folder.glob('*_leftImg8bit.png'))[2]
    _truncate(pan)
    img.write_bytes(b'\x89PNG not an image')
    ds = _cityscapes_dvps(data, test_mode=True, pipeline=DVPS_TEST)
    reasons = _reasons(ds)
    assert reasons[0] is None and all(r is None for r in reasons[3:])
    assert str(pan) in reasons[1] and 'truncated' in reasons[1]
    assert str(img) in reasons[2]
    assert sum('frame skipped' in w for w in warnings) == 2
    sample = ds[1]['data_samples']
    assert 'gt_panoptic' not in sample and ds[1]['inputs'].shape[0] == 3


def test_dvps_bad_file_is_replaced_in_training(data, warnings):
    folder = data / 'cityscapes_dvps' / 'video_sequence' / 'val'
    depth = sorted(folder.glob('*_depth.png'))[0]
    _truncate(depth)
    pipeline = [
        dict(type='mmseg.LoadImageFromFile'),
        dict(type='LoadNextImageFromFile'),
        dict(type='LoadPanopticAnnotation', with_next=True),
        dict(type='LoadKittiDepthAnnotation'),
        dict(type='PackDVPSInputs'),
    ]
    ds = _cityscapes_dvps(data, with_next_frame=True, pipeline=pipeline)
    out = ds[0]  # frame 0's depth is broken: another frame is drawn
    assert out['data_samples'].img_path != ds.get_data_info(0)['img_path']
    assert any(str(depth) in w and 'another one is drawn' in w for w in warnings)


def test_semkitti_focal_suffix_error_names_the_file(data):
    folder = data / 'semkitti_dvps' / 'video_sequence' / 'val'
    depth = sorted(folder.glob('*_depth_*.png'))[0]
    bad = depth.with_name(depth.name.split('_depth_')[0] + '_depth_7.2.1.png')
    depth.rename(bad)
    with pytest.raises(ValueError, match=rf"{bad}: the focal length in the name \('7.2.1'\)"):
        DATASETS.build(
            dict(
                type='SemKITTIDVPSDataset',
                data_root=str(data / 'semkitti_dvps'),
                data_prefix=dict(img_path='video_sequence/val'),
                test_mode=True,
            )
        )


def test_kitti_depth_bad_ground_truth_is_skipped(data, warnings):
    root = data / 'kitti_depth' / 'depth_selection' / 'val_selection_cropped'
    gt = sorted((root / 'groundtruth_depth').glob('*.png'))[1]
    gt.write_bytes(b'')
    pipeline = [
        dict(type='mmseg.LoadImageFromFile'),
        dict(type='LoadKittiDepthAnnotation'),
        dict(type='PackDVPSInputs'),
    ]
    ds = DATASETS.build(
        dict(type='KittiDepthDataset', data_root=str(data / 'kitti_depth'), test_mode=True,
             pipeline=pipeline)
    )  # fmt: skip
    reasons = _reasons(ds)
    assert reasons[0] is None and str(gt) in reasons[1] and reasons[2] is None


COCO_TEST = [
    dict(type='mmdet.LoadImageFromFile'),
    dict(type='mmdet.LoadAnnotations', with_bbox=True),
    dict(
        type='mmdet.PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]


def _coco(data, **kw):
    return DATASETS.build(
        dict(
            type='CocoInstanceStuffDataset',
            data_root=str(data / 'coco'),
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'),
            pipeline=COCO_TEST,
            **kw,
        )
    )


def _break_coco(data):
    """Image 1 missing on disk, image 2 a 1x1 file listed as 96x64."""
    folder = data / 'coco' / 'train2017'
    (folder / '000000000001.jpg').unlink()
    cv2.imwrite(str(folder / '000000000002.jpg'), np.zeros((1, 1, 3), np.uint8))
    return folder / '000000000001.jpg', folder / '000000000002.jpg'


def test_coco_missing_and_wrong_size_images_are_skipped(data, warnings):
    missing, tiny = _break_coco(data)
    ds = _coco(data, test_mode=True)
    by_path = {
        ds.get_data_info(i)['img_path']: ds[i]['data_samples'].metainfo.get(SKIP_KEY)
        for i in range(len(ds))
    }
    assert str(missing) in by_path[str(missing)]
    assert f'{tiny} is 1x1 (WxH) but the annotation file lists 96x64' in by_path[str(tiny)]
    assert sum(r is None for r in by_path.values()) == len(ds) - 2
    train = _coco(data, filter_cfg=dict(filter_empty_gt=False))
    for i in range(len(train)):
        assert train[i]['data_samples'].img_path not in (str(missing), str(tiny))
    assert any(str(missing) in w for w in warnings) and any(str(tiny) in w for w in warnings)


def test_coco_metric_leaves_skipped_images_out(data):
    """Perfect predictions on the readable images give AP 1 although two listed images were
    skipped (mmdet's CocoMetric would count the objects of image 1 as missed)."""
    from mmvideoeq.evaluation.metrics import CocoMetricWithSkips

    _break_coco(data)
    ds = _coco(data, test_mode=True)
    ann = json.loads((data / 'coco' / 'annotations' / 'instances_train2017.json').read_text())
    assert {a['image_id'] for a in ann['annotations']} == {1, 4}  # 1 is skipped, 4 is not
    metric = CocoMetricWithSkips(
        ann_file=str(data / 'coco' / 'annotations' / 'instances_train2017.json'), metric='bbox'
    )
    metric.dataset_meta = ds.metainfo
    samples = []
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        gt = sample.gt_instances
        sample.pred_instances = gt.clone()
        sample.pred_instances.scores = torch.ones(len(gt))
        samples.append(sample.to_dict())
    metric.process({}, samples)
    out = metric.evaluate(len(samples))
    assert out['coco/num_skipped_images'] == 2
    assert out['coco/bbox_mAP'] == 1.0


def test_dvps_metrics_leave_skipped_frames_out():
    """STQ / depth over frames {0, 2} of three equal the same metric run on those two frames;
    DVPQ counts the skipped frame as one without labelled pixels (an all-void frame)."""
    from mmvideoeq.evaluation.metrics import DVPQMetric, KittiDepthMetric, STQMetric

    rng = np.random.default_rng(0)
    void = 32 * 1000

    def frame(t, skipped=False, all_void=False):
        gt = rng.choice([1000, 1001, 11000, 7000, void], size=(8, 8))
        pred = np.where(rng.random((8, 8)) < 0.8, gt, 7000)
        depth = rng.uniform(1, 10, (8, 8)).astype(np.float32)
        if all_void:
            gt, pred = np.full_like(gt, void), np.full_like(gt, void)
        s = dict(video_id='v', frame_id=t, img_path=f'f{t}.png', gt_panoptic=gt,
                 pred_panoptic=pred, gt_depth=depth, pred_depth=depth * 1.1)  # fmt: skip
        if skipped:
            s = dict(video_id='v', frame_id=t, img_path=f'f{t}.png')
            s[SKIP_KEY] = 'LoadPanopticAnnotation failed on f1.png'
        return s

    frames = [frame(0), frame(1), frame(2)]
    skipped = [frames[0], frame(1, skipped=True), frames[2]]
    void_mid = [frames[0], dict(frame(1, all_void=True)), frames[2]]
    stq = dict(num_classes=19, thing_ids=(11, 12), ignore_label=32, label_divisor=1000)
    for make, ref in (
        (lambda: STQMetric(**stq, depth_thresholds=None), [frames[0], frames[2]]),
        (lambda: KittiDepthMetric(), [frames[0], frames[2]]),
        (lambda: DVPQMetric(thresholds=()), void_mid),
    ):
        got, want = make(), make()
        got.process({}, skipped)
        want.process({}, ref)
        a, b = got.compute_metrics(got.results), want.compute_metrics(want.results)
        assert a.pop('num_skipped_frames') == 1 and b.pop('num_skipped_frames') == 0
        a.pop('num_frames'), b.pop('num_frames')
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float):
                assert a[k] == pytest.approx(b[k], nan_ok=True), k
    only = KittiDepthMetric()
    only.process({}, [frame(1, skipped=True)])
    assert only.compute_metrics(only.results) == dict(num_frames=0, num_skipped_frames=1)


def test_streaming_dvps_run_with_a_bad_ground_truth_writes_results(data, tmp_path):
    """The issue's case: a corrupt ground-truth PNG in a --streaming ViP-DeepLab run."""
    from mmvideoeq.testing import shrink_model_cfg, tiny_dvps_data_cfg

    folder = data / 'cityscapes_dvps' / 'video_sequence' / 'val'
    bad = sorted(folder.glob('*_gtFine_instanceTrainIds.png'))[1]
    _truncate(bad)
    cfg = Config.fromfile(str(VIP), format_python_code=False)
    cfg.model = shrink_model_cfg(cfg.model.to_dict(), iters=2)
    cfg = tiny_dvps_data_cfg(cfg, data)
    cfg.test_dataloader.dataset.indices = 3
    cfg.test_cfg = dict(
        type='StreamingTestLoop', iters=[2], baseline=False, full_solve=False, plot=False
    )
    cfg.work_dir = str(tmp_path / 'work')
    cfg.log_level = 'WARNING'
    metrics = Runner.from_cfg(cfg).test()
    report = json.loads((tmp_path / 'work' / 'streaming' / 'results.json').read_text())
    res = report['settings']['stream@2']
    assert report['status'] == 'done' and res['frames'] == 2
    assert len(res['skipped']) == 1 and str(bad) in res['skipped'][0]['reason']
    assert metrics['stream@2/dvps/num_skipped_frames'] == 1
    assert 'stream@2/dvps/VPQ' in metrics and 'stream@2/depth/image/silog' in metrics
