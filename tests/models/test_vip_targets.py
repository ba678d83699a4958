"""Panoptic-DeepLab / ViP-DeepLab targets against a per-instance loop re-implementation.

``ref_targets`` transcribes deeplab2's ``PanopticSampleGenerator._generate_gt_center_and_offset``
and the weights of ``PanopticSampleGenerator.call`` instance by instance with numpy (rounded mean
centre, a (6 sigma + 3)-wide Gaussian written with ``max``, integer offsets, crowd = thing with
instance 0, small-instance semantic weights, next-frame offsets to the centre in frame t).
"""

import numpy as np
import pytest
import torch

from mmvideoeq.models.utils.panoptic_targets import panoptic_deeplab_targets

DIV, IGN, NCLS, THINGS = 1000, 32, 5, (2, 3)


def ref_targets(pan, nxt, sigma, small_area, small_w):
    h, w = pan.shape
    sem = pan // DIV
    ignored = sem == IGN
    thing = np.isin(sem, THINGS) & ~ignored
    crowd = thing & (pan % DIV == 0)
    center = np.zeros((h, w))
    offset = np.zeros((2, h, w))
    next_offset = np.zeros((2, h, w))
    sem_w = np.ones((h, w))
    r = int(round(3 * sigma + 1))
    for pid in np.unique(pan):
        if pid // DIV == IGN or pid % DIV == 0 or pid // DIV not in THINGS:
            continue
        ys, xs = np.nonzero(pan == pid)
        if len(ys) < small_area:
            sem_w[pan == pid] = small_w
        cy, cx = int(np.round(ys.mean())), int(np.round(xs.mean()))  # numpy rounds half to even
        for y in range(h):
            for x in range(w):
                if abs(y - cy) <= r and abs(x - cx) <= r:
                    g = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))
                    center[y, x] = max(center[y, x], g)
        offset[0][pan == pid] = cy - ys
        offset[1][pan == pid] = cx - xs
        nys, nxs = np.nonzero(nxt == pid)
        next_offset[0][nys, nxs] = cy - nys
        next_offset[1][nys, nxs] = cx - nxs
    return dict(
        semantic=np.where(ignored, IGN, sem),
        semantic_weights=sem_w,
        center=center[None],
        center_weights=(~crowd & ~ignored).astype(float),
        offset=offset,
        offset_weights=(thing & ~crowd).astype(float),
        next_offset=next_offset,
        next_offset_weights=(np.abs(next_offset).sum(0) > 0).astype(float),
    )


def _labels(seed):
    rng = np.random.default_rng(seed)
    h, w = 20, 26
    pan = np.zeros((h, w), np.int64)  # class 0 stuff
    pan[:, 13:] = 1 * DIV
    pan[2:9, 3:10] = 2 * DIV + 1
    pan[10:17, 5:8] = 2 * DIV + 2  # small instance
    pan[4:18, 15:24] = 3 * DIV + 1
    pan[0:2, 0:4] = 2 * DIV  # crowd
    pan[18:, :3] = IGN * DIV
    nxt = np.roll(pan, shift=(int(rng.integers(0, 3)), int(rng.integers(1, 4))), axis=(0, 1))
    return pan, nxt


@pytest.mark.parametrize('seed', [0, 1])
def test_targets_match_reference(seed):
    pan, nxt = _labels(seed)
    kw = dict(sigma=2.0, small_area=30, small_w=3.0)
    got = panoptic_deeplab_targets(
        torch.from_numpy(np.stack([pan, nxt])),
        next_panoptic=torch.from_numpy(np.stack([nxt, pan])),
        thing_ids=THINGS,
        label_divisor=DIV,
        ignore_label=IGN,
        num_classes=NCLS,
        sigma=kw['sigma'],
        small_instance_area=kw['small_area'],
        small_instance_weight=kw['small_w'],
    )
    for i, (a, b) in enumerate([(pan, nxt), (nxt, pan)]):
        ref = ref_targets(a, b, **kw)
        for key, val in ref.items():
            np.testing.assert_allclose(got[key][i].numpy(), val, rtol=1e-6, atol=1e-6, err_msg=key)


def test_unknown_class_is_an_error():
    pan = torch.full((1, 4, 4), 7 * DIV)
    with pytest.raises(ValueError, match='class set of the dataset does not match'):
        panoptic_deeplab_targets(
            pan, thing_ids=THINGS, label_divisor=DIV, ignore_label=IGN, num_classes=NCLS
        )


def test_pair_of_different_sizes_is_an_error():
    with pytest.raises(ValueError, match='frames of a pair must have one size'):
        panoptic_deeplab_targets(
            torch.zeros(1, 4, 4, dtype=torch.long),
            next_panoptic=torch.zeros(1, 4, 5),
            thing_ids=THINGS,
            label_divisor=DIV,
            ignore_label=IGN,
            num_classes=NCLS,
        )
