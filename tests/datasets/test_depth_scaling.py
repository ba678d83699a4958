"""ScaleDepthWithImage: metric depth follows the image's random rescaling (deeplab2)."""

import numpy as np
import pytest

from mmvideoeq.datasets.transforms import ScaleDepthWithImage


def test_depth_divided_by_the_scale_factor():
    depth = np.array([[0.0, 10.0], [20.0, 40.0]], np.float32)
    out = ScaleDepthWithImage()(dict(gt_depth=depth.copy(), scale_factor=(2.0, 2.0)))
    # enlarging 2x brings the scene 2x closer; invalid (0) stays 0
    np.testing.assert_array_equal(out['gt_depth'], [[0.0, 5.0], [10.0, 20.0]])
    assert out['gt_depth'].dtype == np.float32


def test_needs_a_resize_first():
    with pytest.raises(KeyError, match='must follow a Resize'):
        ScaleDepthWithImage()(dict(gt_depth=np.ones((2, 2), np.float32)))
