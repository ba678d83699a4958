"""Panoptic track colours and depth colouring (``mmvideoeq.visualization``)."""

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmvideoeq.class_names import CITYSCAPES_DVPS_CLASSES
from mmvideoeq.visualization import (
    DVPSLocalVisualizer,
    depth_to_color,
    draw_dvps_row,
    panoptic_to_color,
)
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


def _light(img):
    """Grey pixels brighter than 120 (white text after anti-aliasing)."""
    return int(((img.min(axis=2) > 120) & (img.max(axis=2) - img.min(axis=2) < 8)).sum())


def _sample(h, w, gt=False):
    s = SegDataSample()
    pan = np.full((1, h, w), 0, np.int64)  # road
    pan[0, : h // 4] = 10000  # sky
    pan[0, h // 2 :, w // 4 : w // 2] = 13001  # a car
    s.pred_panoptic = PixelData(data=torch.from_numpy(pan))
    s.pred_depth = PixelData(data=torch.linspace(1.0, 50.0, w).repeat(1, h, 1))
    if gt:
        s.gt_panoptic = PixelData(data=torch.from_numpy(pan))
    return s


@pytest.mark.parametrize('with_gt', [False, True])
def test_visualizer_writes_rows_with_legend_and_colour_bar(tmp_path, with_gt):
    h, w = 64, 128
    vis = DVPSLocalVisualizer(name=f'vip_vis_{with_gt}', save_dir=str(tmp_path), max_depth=80.0)
    vis.dataset_meta = dict(classes=CITYSCAPES_DVPS_CLASSES, label_divisor=DIV)
    out = tmp_path / 'x.png'
    image = np.zeros((h, w, 3), np.uint8)
    vis.add_datasample('x', image, _sample(h, w, with_gt), out_file=str(out))
    img = cv2.imread(str(out))[..., ::-1].astype(int)  # RGB
    rows = 2 if with_gt else 1
    assert img.shape[1] == 3 * w and img.shape[0] % rows == 0
    row_h = img.shape[0] // rows
    assert row_h > h  # a footer under the tiles
    foot = img[h:row_h]
    # legend: one swatch per class present (road, sky, car in class-id order), then the name in
    # white; no swatch of an absent class (e.g. person)
    swatch_rows = np.flatnonzero((foot[:, 2:6] == CITYSCAPES_PALETTE[0]).all(axis=(1, 2)))
    assert swatch_rows.size >= 4
    y = int(swatch_rows[len(swatch_rows) // 2])
    line = foot[y, : 2 * w]
    found = [c for c in (0, 10, 13, 11) if (line == CITYSCAPES_PALETTE[c]).all(axis=1).sum() >= 4]
    assert found == [0, 10, 13]
    assert _light(foot[:, : 2 * w]) > 30  # the names (white, anti-aliased)
    # colour bar under the depth tile: depth_to_color of a 0..80 m ramp, left to right
    bar = foot[:, 2 * w :]
    bar_rows = np.flatnonzero((bar.max(axis=2) > 0).sum(axis=1) > w // 2)
    ramp = bar[bar_rows[0], :]
    cols = np.flatnonzero(ramp.max(axis=1) > 0)
    expected = depth_to_color(np.linspace(0.0, 80.0, cols.size)[None] + 1e-6, max_depth=80.0)[0]
    np.testing.assert_allclose(ramp[cols], expected, atol=1)
    assert _light(bar[bar_rows[-1] + 1 :]) > 10  # its labels (0, 80 m) under it
    if with_gt:  # the ground-truth row repeats the drawing of the same map
        assert (img[row_h : row_h + h, w : 2 * w] == img[:h, w : 2 * w]).all()


def test_footer_height_is_fixed_per_frame_size():
    """A video needs one frame size: the footer does not depend on the classes present."""
    img = np.zeros((64, 128, 3), np.uint8)
    one = draw_dvps_row(img, np.zeros((64, 128), int), None, label_divisor=DIV)
    many = draw_dvps_row(
        img, np.arange(64 * 128).reshape(64, 128) % 19 * DIV, np.ones((64, 128)), label_divisor=DIV
    )
    assert one.shape[0] == many.shape[0] > 64
    bare = draw_dvps_row(img, np.zeros((64, 128), int), None, label_divisor=DIV, annotate=False)
    assert bare.shape == (64, 256, 3)
