"""--show-dir: frames are drawn per setting and video, for detectors, segmentors and DVPS models."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData, PixelData
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer

from mmvideoeq.engine.hooks import VideoVisualizationHook
from mmvideoeq.structures import STREAM_SETTING_KEY
from mmvideoeq.visualization import DetStuffLocalVisualizer, DVPSLocalVisualizer


def _image(path):
    cv2.imwrite(str(path), np.full((24, 32, 3), 120, np.uint8))
    return str(path)


@pytest.mark.parametrize('task', ['det', 'seg', 'dvps'])
def test_frames_are_named_per_setting_and_video(tmp_path, task):
    name = f'vis_{task}'
    if task == 'det':
        DetStuffLocalVisualizer.get_instance(name, vis_backends=None)
    elif task == 'seg':
        SegLocalVisualizer.get_instance(name, vis_backends=None)
    else:
        DVPSLocalVisualizer.get_instance(name, vis_backends=None)
    runner = SimpleNamespace(work_dir=str(tmp_path), _test_loop=SimpleNamespace())
    hook = VideoVisualizationHook(draw=True, test_out_dir='show')
    samples = []
    for video in ('v1', 'v2'):  # both videos have a frame called 000000.JPEG
        (tmp_path / video).mkdir()
        img = _image(tmp_path / video / '000000.JPEG')
        if task == 'det':
            s = DetDataSample(metainfo=dict(img_path=img, video_id=video, ori_shape=(24, 32)))
            s.pred_instances = InstanceData(
                bboxes=torch.tensor([[2.0, 2.0, 20.0, 15.0]]),
                scores=torch.tensor([0.9]),
                labels=torch.tensor([0]),
            )
        elif task == 'seg':
            s = SegDataSample(metainfo=dict(img_path=img, video_id=video, ori_shape=(24, 32)))
            s.pred_sem_seg = PixelData(data=torch.zeros(1, 24, 32, dtype=torch.long))
        else:
            s = SegDataSample(metainfo=dict(img_path=img, video_id=video, ori_shape=(24, 32)))
            pan = torch.zeros(1, 24, 32, dtype=torch.long)
            pan[0, 4:12, 6:20] = 13001  # a car
            s.pred_panoptic = PixelData(data=pan)
            s.pred_depth = PixelData(data=torch.full((1, 24, 32), 12.5))
        samples.append(s)
    skipped = samples[0].clone()
    skipped.set_metainfo(dict(eval_skip_reason='decode error', video_id='v3'))
    for setting in ('stream@2', 'full'):  # the streaming loop writes the setting on each sample
        batch = [s.clone() for s in samples + [skipped]]
        for s in batch:
            s.set_metainfo({STREAM_SETTING_KEY: setting})
        hook.after_test_iter(runner, 0, {}, batch)
    for setting in ('stream@2', 'full'):
        for video in ('v1', 'v2'):
            assert (tmp_path / 'show' / setting / video / '000000.JPEG').is_file()
        assert not (tmp_path / 'show' / setting / 'v3').exists()  # not evaluated: not drawn
    if task == 'dvps':  # image | panoptic (track colours) | depth, side by side
        drawn = cv2.imread(str(tmp_path / 'show' / 'full' / 'v1' / '000000.JPEG'))
        assert drawn.shape[1] == 3 * 32 and drawn.shape[0] > 24  # tiles over a legend footer
        assert (drawn[8, 32 + 10] != drawn[20, 32 + 28]).any()  # the car is drawn


def _det_sample(img, video, label=0):
    s = DetDataSample(metainfo=dict(img_path=img, video_id=video, ori_shape=(48, 64)))
    s.pred_instances = InstanceData(
        bboxes=torch.tensor([[4.0, 4.0, 60.0, 44.0]]),
        scores=torch.tensor([0.9]),
        labels=torch.tensor([label]),
    )
    s.gt_instances = InstanceData(
        bboxes=torch.tensor([[8.0, 8.0, 40.0, 40.0]]), labels=torch.tensor([label])
    )
    return s


def _png(path):
    cv2.imwrite(str(path), np.full((48, 64, 3), 120, np.uint8))
    return str(path)


def test_class_names_come_from_the_dataset_and_gt_on_request(tmp_path):
    """The streaming loop leaves the visualizer without classes: the hook gives it the dataset's
    (else mmdet draws 'class 1'); draw_gt=True puts the ground truth beside the prediction."""
    vis = DetStuffLocalVisualizer.get_instance('vis_names', vis_backends=None)
    vis.dataset_meta = {}
    meta = dict(classes=('horse', 'zebra'), palette=[(0, 200, 0), (200, 0, 200)])
    loop = SimpleNamespace(dataloader=SimpleNamespace(dataset=SimpleNamespace(metainfo=meta)))
    runner = SimpleNamespace(work_dir=str(tmp_path), _test_loop=loop)
    (tmp_path / 'v1').mkdir()
    img = _png(tmp_path / 'v1' / '000000.png')
    hook = VideoVisualizationHook(draw=True, test_out_dir='show')
    hook.before_test(runner)
    assert vis.dataset_meta['classes'] == ('horse', 'zebra')
    hook.after_test_iter(runner, 0, {}, [_det_sample(img, 'v1', label=1)])
    drawn = cv2.imread(str(tmp_path / 'show' / 'v1' / '000000.png'))
    assert drawn.shape == (48, 64, 3)  # prediction only, and no setting folder outside streaming
    # the same drawing made with the names given by hand: 'zebra: 90.0', not 'class 1: 90.0'
    ref = DetStuffLocalVisualizer(name='vis_names_ref')
    ref.dataset_meta = meta
    ref.add_datasample(
        'x',
        cv2.imread(img)[..., ::-1],
        _det_sample(img, 'v1', 1),
        draw_gt=False,
        out_file=str(tmp_path / 'ref.png'),
    )
    assert (cv2.imread(str(tmp_path / 'ref.png')) == drawn).all()
    nameless = DetStuffLocalVisualizer(name='vis_names_none')
    nameless.dataset_meta = dict(palette=meta['palette'])
    nameless.add_datasample(
        'x',
        cv2.imread(img)[..., ::-1],
        _det_sample(img, 'v1', 1),
        draw_gt=False,
        out_file=str(tmp_path / 'none.png'),
    )
    assert (cv2.imread(str(tmp_path / 'none.png')) != drawn).any()

    gt_hook = VideoVisualizationHook(draw=True, draw_gt=True, test_out_dir='show_gt')
    gt_hook.after_test_iter(runner, 0, {}, [_det_sample(img, 'v1', label=1)])
    both = cv2.imread(str(tmp_path / 'show_gt' / 'v1' / '000000.png'))
    assert both.shape == (48, 2 * 64, 3)  # ground truth | prediction
    assert (both[:, 64:] == drawn).all() and (both[:, :64] != drawn).any()


def test_dvps_ground_truth_row_on_request(tmp_path):
    DVPSLocalVisualizer.get_instance('vis_dvps_gt', vis_backends=None)
    runner = SimpleNamespace(work_dir=str(tmp_path), _test_loop=None)
    (tmp_path / 'v1').mkdir()
    img = _png(tmp_path / 'v1' / 'f0.png')
    s = SegDataSample(metainfo=dict(img_path=img, video_id='v1', ori_shape=(48, 64)))
    pan = torch.full((1, 48, 64), 0, dtype=torch.long)
    pan[0, 10:30, 10:30] = 13001
    s.pred_panoptic = PixelData(data=pan)
    s.gt_panoptic = PixelData(data=torch.zeros_like(pan))
    for draw_gt, folder in ((False, 'a'), (True, 'b')):
        VideoVisualizationHook(draw=True, draw_gt=draw_gt, test_out_dir=folder).after_test_iter(
            runner, 0, {}, [s]
        )
    pred = cv2.imread(str(tmp_path / 'a' / 'v1' / 'f0.png'))
    both = cv2.imread(str(tmp_path / 'b' / 'v1' / 'f0.png'))
    assert both.shape == (2 * pred.shape[0], pred.shape[1], 3)  # a ground-truth row below
    assert (both[: pred.shape[0]] == pred).all()
    assert (both[20, 64 + 20] != both[pred.shape[0] + 20, 64 + 20]).any()  # car vs road
