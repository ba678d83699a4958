"""Panoptic track colours and depth colouring (``mmvideoeq.visualization``)."""

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmvideoeq.visualization import DVPSLocalVisualizer, depth_to_color, panoptic_to_color
from mmvideoeq.visualization.dvps_visualizer import CITYSCAPES_PALETTE

DIV = 1000


def test_track_colours_are_stable_and_distinct():
    f0 = np.array([[13001, 13002, 0, 32000]])
    f1 = np.array([[32000, 13002, 13001, 13001]])  # the two cars moved; a void pixel
    c0, c1 = panoptic_to_color(f0, DIV), panoptic_to_color(f1, DIV)
    assert (c0[0, 0] == c1[0, 2]).all() and (c0[0, 1] == c1[0, 1]).all()  # same id, same colour
    assert not (c0[0, 0] == c0[0, 1]).all()  # two cars of one class differ
    assert (c0[0, 2] == CITYSCAPES_PALETTE[0]).all()  # stuff: its class colour (road)
    assert (c0[0, 3] == 0).all()  # void (class 32 is outside the palette): black
    # a car stays near the car colour (shift of at most 60 per channel)
    assert np.abs(c0[0, 0].astype(int) - CITYSCAPES_PALETTE[13]).max() <= 60


def test_depth_colours():
    d = np.array([[0.0, 10.0, 80.0, 200.0]])
    rgb = depth_to_color(d, max_depth=80)
    assert (rgb[0, 0] == 0).all()  # invalid
    assert (rgb[0, 2] == rgb[0, 3]).all()  # clipped at max_depth
    assert not (rgb[0, 1] == rgb[0, 2]).all()


@pytest.mark.parametrize('with_gt', [False, True])
def test_visualizer_writes_an_image(tmp_path, with_gt):
    vis = DVPSLocalVisualizer(name=f'vip_vis_{with_gt}', save_dir=str(tmp_path))
    s = SegDataSample()
    pan = np.zeros((1, 8, 12), np.int64)
    pan[0, 2:6, 2:6] = 13001
    s.pred_panoptic = PixelData(data=torch.from_numpy(pan))
    s.pred_depth = PixelData(data=torch.rand(1, 8, 12) * 50)
    if with_gt:
        s.gt_panoptic = PixelData(data=torch.from_numpy(pan))
    out = tmp_path / 'x.png'
    vis.add_datasample('x', np.zeros((8, 12, 3), np.uint8), s, out_file=str(out))
    import mmcv

    img = mmcv.imread(str(out))
    assert img.shape == ((16 if with_gt else 8), 36, 3)
