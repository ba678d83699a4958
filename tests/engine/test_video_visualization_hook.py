"""--show-dir: frames are drawn per setting and video, for detectors, segmentors and DVPS models."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import InstanceData, PixelData
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer

from mmvideoeq.engine.hooks import VideoVisualizationHook
from mmvideoeq.visualization import DVPSLocalVisualizer


def _image(path):
    cv2.imwrite(str(path), np.full((24, 32, 3), 120, np.uint8))
    return str(path)


@pytest.mark.parametrize('task', ['det', 'seg', 'dvps'])
def test_frames_are_named_per_setting_and_video(tmp_path, task):
    name = f'vis_{task}'
    if task == 'det':
        DetLocalVisualizer.get_instance(name, vis_backends=None)
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
    for setting in ('stream@2', 'full'):
        runner._test_loop.current_setting = setting
        hook.after_test_iter(runner, 0, {}, samples + [skipped])
    for setting in ('stream@2', 'full'):
        for video in ('v1', 'v2'):
            assert (tmp_path / 'show' / setting / video / '000000.JPEG').is_file()
        assert not (tmp_path / 'show' / setting / 'v3').exists()  # not evaluated: not drawn
    if task == 'dvps':  # image | panoptic (track colours) | depth, side by side
        drawn = cv2.imread(str(tmp_path / 'show' / 'full' / 'v1' / '000000.JPEG'))
        assert drawn.shape == (24, 3 * 32, 3)
        assert (drawn[8, 32 + 10] != drawn[20, 32 + 28]).any()  # the car is drawn
