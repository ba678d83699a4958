"""ViP-DeepLab video stitching: constructed videos and an independent matching reference.

The constructed videos give the raw maps a perfect model would predict (the ``perfect_maps``
fixture of ``conftest.py``) and walk them through the stitching step frame by frame; the
expected ids follow from the thesis' description (Sec. 7.3.1.3): an object keeps its id while it
is visible, a new object gets an id never used before in the video.

``ref_match`` is a dictionary transcription of deeplab2's
``get_stitch_video_panoptic_prediction_info`` (ascending IoU sort, later entries overwrite,
mutual agreement), written independently of the batched implementation.
"""

import numpy as np
import pytest
import torch

from mmvideoeq.models.utils.panoptic_postprocess import panoptic_deeplab_postprocess
from mmvideoeq.models.utils.video_stitching import (
    match_by_iou,
    relabel_by_overlap,
    stitch_frame,
    stitch_pair_step,
)

DIV, VOID = 1000, 32
PP = dict(thing_ids=(2, 3), void_label=VOID, stuff_area=1, threshold=0.1, nms_kernel=3, top_k=20)


def run_video(frames, frame_maps):
    """Stitch a video of object dicts; return each frame's ``{object name: panoptic id}``."""
    prev, out_ids, objs_prev = None, [], None
    for objects in frames:
        sem, heat, off, nxt = frame_maps(objects, objs_prev)
        current = panoptic_deeplab_postprocess(sem, heat, off, label_divisor=DIV, **PP)
        if prev is None:
            out = current
            max_id = (current % DIV).reshape(1, -1).amax(1)
        else:
            out, max_id = stitch_pair_step(prev, sem, nxt, current, label_divisor=DIV, **PP)
        ids = {}
        for name, (_, y0, x0, y1, x1) in objects.items():
            vals = out[0, y0:y1, x0:x1].unique().tolist()
            assert len(vals) == 1, (name, vals)
            ids[name] = vals[0]
        out_ids.append(ids)
        prev = dict(
            semantic=sem,
            center=heat,
            offset=off,
            panoptic=out,
            max_id=max_id,
            has_prev=torch.ones(1, dtype=torch.bool),
        )
        objs_prev = objects
    return out_ids


def test_id_kept_while_moving(perfect_maps):
    frames = [
        {'a': (2, 2, 1 + 2 * t, 6, 5 + 2 * t), 'b': (3, 7, 18 - t, 11, 22 - t)} for t in range(5)
    ]
    ids = run_video(frames, perfect_maps)
    assert all(f == ids[0] for f in ids)
    assert ids[0]['a'] // DIV == 2 and ids[0]['b'] // DIV == 3


def test_swap_follows_the_objects(perfect_maps):
    """Two cars exchange places between frames 1 and 2; ids follow the cars, not the places."""
    left, right = (2, 3, 1, 8, 6), (2, 3, 17, 8, 22)
    frames = [
        {'a': left, 'b': right},
        {'a': left, 'b': right},
        {'a': right, 'b': left},
        {'a': right, 'b': left},
    ]
    ids = run_video(frames, perfect_maps)
    assert ids[0]['a'] != ids[0]['b']
    for f in ids[1:]:
        assert f == ids[0]


def test_birth_gets_a_new_id_and_death_frees_none(perfect_maps):
    frames = [
        {'a': (2, 1, 1, 5, 5), 'b': (2, 7, 1, 11, 5)},
        {'a': (2, 1, 2, 5, 6)},  # b dies
        {'a': (2, 1, 3, 5, 7), 'c': (2, 6, 17, 9, 20)},  # c is born (smaller than a)
        {'a': (2, 1, 4, 5, 8), 'c': (2, 6, 16, 9, 19)},
    ]
    ids = run_video(frames, perfect_maps)
    a, b, c = ids[0]['a'], ids[0]['b'], ids[2]['c']
    assert [f['a'] for f in ids] == [a] * 4
    assert c not in (a, b)  # never re-uses the id of the dead b
    # frame 0 numbers a, b as 2001, 2002; in frame 2, c is the second car in raster order
    # (local id 2) and gets local id + the largest id used so far (2): 2004
    assert (a, b, c) == (2001, 2002, 2004)
    assert ids[3]['c'] == c


def ref_match(src, dst, div):
    """deeplab2's numpy stitching info as a dictionary loop: {dst label: src label}."""
    s_lab, s_cnt = np.unique(src, return_counts=True)
    d_lab, d_cnt = np.unique(dst, return_counts=True)
    s_area, d_area = dict(zip(s_lab, s_cnt)), dict(zip(d_lab, d_cnt))
    inter = {}
    for a, b in zip(src.ravel(), dst.ravel()):
        inter[(a, b)] = inter.get((a, b), 0) + 1
    ious = []
    for (a, b), n in sorted(inter.items()):
        if a // div != b // div or a % div == 0 or b % div == 0:
            continue
        ious.append((a, b, n / (s_area[a] + d_area[b] - n)))
    ious.sort(key=lambda e: e[2])  # stable: equal IoUs keep the ascending (a, b) order
    a2b, b2a = {}, {}
    for a, b, _ in ious:
        a2b[a] = b
        b2a[b] = a
    return {b: a for a, b in a2b.items() if b2a[b] == a}


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_match_by_iou_equals_reference(seed):
    rng = np.random.default_rng(seed)
    b = 2
    # few large blobs plus noise so that IoU ties and class mismatches occur
    src = rng.choice([2001, 2002, 3001, 3002, 2000, 0], size=(b, 6, 7))
    dst = rng.choice([2005, 2006, 3004, 2001, 1000], size=(b, 6, 7))
    s, a, d, _ = match_by_iou(torch.from_numpy(src), torch.from_numpy(dst), DIV)
    for i in range(b):
        got = {int(y): int(x) for j, x, y in zip(s.tolist(), a.tolist(), d.tolist()) if j == i}
        assert got == ref_match(src[i], dst[i], DIV)


def test_relabel_by_overlap_largest_overlap_wins():
    src = torch.tensor([[[2001, 2001, 2001, 2002, 2002, 0]]])
    ref = torch.tensor([[[2007, 2007, 2009, 2009, 2009, 2007]]])
    s, a, r = relabel_by_overlap(src, ref, DIV)
    assert dict(zip(a.tolist(), r.tolist())) == {2001: 2007, 2002: 2009}


def test_new_id_overflow_is_an_error():
    cur = torch.tensor([[[2001, 2002]]])
    with pytest.raises(ValueError, match='reached the label divisor'):
        stitch_frame(cur, cur, cur, cur, torch.tensor([DIV - 2]), torch.tensor([True]), DIV)


def test_iou_tie_goes_to_the_larger_label():
    """Equal IoUs: the reference's ascending sort lets the larger label overwrite."""
    src = torch.tensor([[[2001, 2001, 2001, 2001]]])
    dst = torch.tensor([[[2005, 2005, 2006, 2006]]])
    expected = ref_match(src[0].numpy(), dst[0].numpy(), DIV)
    assert expected == {2006: 2001}
    s, a, d, iou = match_by_iou(src, dst, DIV)
    assert (a.tolist(), d.tolist(), iou.tolist()) == ([2001], [2006], [0.5])
