"""Panoptic-DeepLab grouping against an independent per-pixel re-implementation.

The reference below is a plain numpy/loop transcription of Panoptic-DeepLab's post-processing as
deeplab2 describes it (``model/post_processor/panoptic_deeplab.py``: threshold, max-pool NMS with
zero padding, top-k strictly above the k-th score, nearest centre of ``coord + offset``,
majority class per instance, per-class ids in order of first appearance, stuff area limit). It
shares no code with the batched torch implementation under test.
"""

import numpy as np
import pytest
import torch

from mmvideoeq.models.utils.panoptic_postprocess import (
    find_instance_centers,
    pair_panoptic_postprocess,
    panoptic_deeplab_postprocess,
)

DIV, VOID = 1000, 32
THINGS = (2, 3)


def ref_postprocess(sem, heat, off, thing_ids, div, void, stuff_area, thr, kernel, top_k):
    """One image: ``sem`` (H, W) int, ``heat`` (H, W), ``off`` (2, H, W) -> panoptic (H, W)."""
    h, w = sem.shape
    x = np.where(heat > thr, heat, 0.0)
    r = kernel // 2
    padded = np.pad(x, r)
    pooled = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            pooled[i, j] = padded[i : i + kernel, j : j + kernel].max()
    x = np.where(pooled == x, x, 0.0)
    centers = [(i, j) for i in range(h) for j in range(w) if x[i, j] > 0]
    if top_k > 0 and len(centers) > top_k:
        kth = sorted(x.ravel(), reverse=True)[top_k - 1]
        centers = [(i, j) for i in range(h) for j in range(w) if x[i, j] > kth]
    thing = np.isin(sem, thing_ids)
    inst = np.zeros((h, w), dtype=np.int64)
    if centers:
        for i in range(h):
            for j in range(w):
                vy, vx = i + off[0, i, j], j + off[1, i, j]
                d = [np.hypot(vy - cy, vx - cx) for cy, cx in centers]
                inst[i, j] = int(np.argmin(d)) + 1
        inst = inst * thing
    pan = np.full((h, w), void * div, dtype=np.int64)
    order = []
    for v in inst.ravel():
        if v not in order:
            order.append(v)
    count = {}
    for iid in order:
        if iid == 0:
            continue
        mask = (inst == iid) & thing
        if not mask.any():
            continue
        cls = int(np.bincount(sem[mask]).argmax())
        count[cls] = count.get(cls, 0) + 1
        pan[mask] = cls * div + count[cls]
    for cls in np.unique(sem):
        if cls in thing_ids:
            continue
        mask = (sem == cls) & (inst == 0)
        if mask.sum() >= stuff_area:
            pan[mask] = cls * div
    return pan


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_matches_reference_on_random_maps(seed):
    g = torch.Generator().manual_seed(seed)
    b, h, w = 2, 14, 17
    sem = torch.randint(0, 5, (b, h, w), generator=g)
    heat = torch.rand(b, 1, h, w, generator=g)
    if seed == 2:
        heat[1] = 0.05  # no centre above the threshold in the second image
    off = torch.randn(b, 2, h, w, generator=g) * 4
    kw = dict(stuff_area=6, threshold=0.3, nms_kernel=3, top_k=6)
    pan = panoptic_deeplab_postprocess(
        sem, heat, off, thing_ids=THINGS, label_divisor=DIV, void_label=VOID, **kw
    )
    for i in range(b):
        ref = ref_postprocess(
            sem[i].numpy(),
            heat[i, 0].numpy().astype(np.float64),
            off[i].numpy(),
            THINGS,
            DIV,
            VOID,
            kw['stuff_area'],
            kw['threshold'],
            kw['nms_kernel'],
            kw['top_k'],
        )
        np.testing.assert_array_equal(pan[i].numpy(), ref)


def test_constructed_image():
    """Two cars and a person, a small stuff region; expected ids worked out by hand."""
    h, w = 6, 8
    sem = torch.zeros(1, h, w, dtype=torch.long)  # class 0: stuff everywhere
    sem[0, 0:3, 0:3] = 2  # car A (top-left)
    sem[0, 3:6, 5:8] = 2  # car B (bottom-right)
    sem[0, 0:2, 6:8] = 3  # a person
    sem[0, 5, 0] = 1  # one pixel of stuff class 1: below stuff_area -> void
    heat = torch.zeros(1, 1, h, w)
    centers = {(1, 1): 0.9, (4, 6): 0.8, (0, 7): 0.7}
    for (y, x), v in centers.items():
        heat[0, 0, y, x] = v
    off = torch.zeros(1, 2, h, w)
    for y in range(h):
        for x in range(w):
            c = (1, 1) if x < 4 else ((0, 7) if y < 2 else (4, 6))
            off[0, 0, y, x], off[0, 1, y, x] = c[0] - y, c[1] - x
    pan = panoptic_deeplab_postprocess(
        sem,
        heat,
        off,
        thing_ids=THINGS,
        label_divisor=DIV,
        void_label=VOID,
        stuff_area=2,
        threshold=0.1,
        nms_kernel=3,
        top_k=10,
    )[0]
    # raster order of first appearance: car A (row 0), person (row 0, x=6), car B (row 3)
    assert pan[0, 0] == 2001 and pan[2, 2] == 2001
    assert pan[0, 6] == 3001 and pan[1, 7] == 3001
    assert pan[3, 5] == 2002 and pan[5, 7] == 2002
    assert pan[5, 0] == VOID * DIV  # class 1 has 1 pixel < stuff_area 2
    assert pan[4, 2] == 0  # class 0 stuff, id 0


def test_top_k_keeps_strictly_above_kth():
    heat = torch.zeros(1, 1, 5, 9)
    for x, v in zip((0, 2, 4, 6, 8), (0.9, 0.8, 0.7, 0.6, 0.5)):
        heat[0, 0, 2, x] = v
    centers, valid = find_instance_centers(heat, threshold=0.1, nms_kernel=1, top_k=3)
    # 5 peaks > top_k=3: only those strictly above the 3rd score (0.7) survive
    assert centers[valid].tolist() == [[2, 0], [2, 2]]


def test_pair_postprocess_shares_ids_across_frames():
    """An object moving 3 px right keeps its id in R_t through the next-frame offsets."""
    h, w = 5, 10
    sem = torch.zeros(1, h, w, dtype=torch.long)
    sem[0, 1:4, 1:4] = 2
    nsem = torch.zeros(1, h, w, dtype=torch.long)
    nsem[0, 1:4, 4:7] = 2
    heat = torch.zeros(1, 1, h, w)
    heat[0, 0, 2, 2] = 1.0
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    off = torch.stack([2 - ys, 2 - xs])[None].float()
    nxt = torch.stack([2 - ys, 2 - xs])[None].float()  # pixels of t+1 -> centre (2, 2) of t
    p, r = pair_panoptic_postprocess(
        sem,
        heat,
        off,
        nsem,
        nxt,
        thing_ids=THINGS,
        label_divisor=DIV,
        void_label=VOID,
        stuff_area=1,
        threshold=0.1,
        nms_kernel=3,
        top_k=10,
    )
    assert set(p[0, 1:4, 1:4].flatten().tolist()) == {2001}
    assert set(r[0, 1:4, 4:7].flatten().tolist()) == {2001}
    assert r[0, 0, 0] == 0


def test_bad_shapes():
    with pytest.raises(ValueError, match='center heatmap must be'):
        panoptic_deeplab_postprocess(
            torch.zeros(1, 4, 4, dtype=torch.long),
            torch.zeros(1, 4, 4),
            torch.zeros(1, 2, 4, 4),
            thing_ids=THINGS,
            label_divisor=DIV,
            void_label=VOID,
        )
    with pytest.raises(ValueError, match='nms_kernel must be a positive odd'):
        find_instance_centers(torch.zeros(1, 1, 4, 4), nms_kernel=4)
