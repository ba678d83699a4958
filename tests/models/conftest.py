"""Shared helpers of the model tests."""

import pytest
import torch

H, W = 12, 24


def _frame_maps(objects, prev_objects=None):
    """Raw maps of a perfect model for one frame.

    Args:
        objects: ``{name: (class, y0, x0, y1, x1)}`` boxes of the frame.
        prev_objects: The previous frame's boxes (for the next-frame offsets).
    """
    sem = torch.zeros(1, H, W, dtype=torch.long)
    heat = torch.zeros(1, 1, H, W)
    off = torch.zeros(1, 2, H, W)
    nxt = torch.zeros(1, 2, H, W)
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing='ij')

    def centre(box):
        return (box[1] + box[3] - 1) // 2, (box[2] + box[4] - 1) // 2

    for name, box in objects.items():
        cls, y0, x0, y1, x1 = box
        sem[0, y0:y1, x0:x1] = cls
        cy, cx = centre(box)
        heat[0, 0, cy, cx] = 1.0
        m = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
        off[0, 0][m], off[0, 1][m] = (cy - ys[m]).float(), (cx - xs[m]).float()
        if prev_objects and name in prev_objects:
            py, px = centre(prev_objects[name])
            nxt[0, 0][m], nxt[0, 1][m] = (py - ys[m]).float(), (px - xs[m]).float()
    return sem, heat, off, nxt


@pytest.fixture
def perfect_maps():
    """``frame_maps(objects, prev_objects=None) -> (semantic, heatmap, offsets, next_offsets)``:
    the raw maps a perfect ViP-DeepLab would predict for boxes ``{name: (class, y0, x0, y1, x1)}``
    on a 12x24 frame (a centre peak per object, offsets to its centre, next-frame offsets to its
    centre in the previous frame)."""
    return _frame_maps
