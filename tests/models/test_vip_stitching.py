"""ViP-DeepLab video stitching: constructed videos, an independent matching reference, long streams.

The constructed videos give the raw maps a perfect model would predict (the ``perfect_maps``
fixture of ``conftest.py``) and walk them through the stitching step frame by frame; the
expected ids follow from the thesis' description (Sec. 7.3.1.3): an object keeps its id while it
is visible, a new object gets an id no other track has shown recently.

``ref_match`` is a dictionary transcription of deeplab2's
``get_stitch_video_panoptic_prediction_info`` (ascending IoU sort, later entries overwrite,
mutual agreement), written independently of the batched implementation.
"""

import numpy as np
import pytest
import torch

from mmvideoeq.models.utils.panoptic_postprocess import pair_groups, panoptic_frame
from mmvideoeq.models.utils.video_stitching import (
    TrackIds,
    assign_track_ids,
    match_by_iou,
    sequence_panoptic,
    stitch_frame,
)

DIV, VOID = 1000, 32
PP = dict(thing_ids=(2, 3), void_label=VOID, stuff_area=1, threshold=0.1, nms_kernel=3, top_k=20)


def stitch_video(frames, frame_maps, div=DIV, gap=20):
    """Stitch a video of object dicts; yield each frame's ``{object name: panoptic id}``."""
    mem, objs_prev = None, None
    for objects in frames:
        sem, heat, off, nxt = frame_maps(objects, objs_prev)
        f = panoptic_frame(sem[0], heat[0, 0], off[0], label_divisor=div, **PP)
        if mem is None:
            seq, ids = stitch_frame(f, None, None, None, label_divisor=div, reuse_gap=gap)
        else:
            right = pair_groups(mem[0], f, nxt[0])
            seq, ids = stitch_frame(f, right, mem[1], mem[2], label_divisor=div, reuse_gap=gap)
        out = sequence_panoptic(f, seq)
        ids_of = {}
        for name, (_, y0, x0, y1, x1) in objects.items():
            box = out[y0:y1, x0:x1]
            assert bool((box == box[0, 0]).all()), (name, box.unique().tolist())
            ids_of[name] = int(box[0, 0])
        yield ids_of, ids
        mem, objs_prev = (f.centers, seq, ids), objects


def run_video(frames, frame_maps):
    return [ids for ids, _ in stitch_video(frames, frame_maps)]


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


def test_birth_gets_a_new_id_and_death_frees_none_early(perfect_maps):
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


def test_iou_tie_goes_to_the_larger_label():
    """Equal IoUs: the reference's ascending sort lets the larger label overwrite."""
    src = torch.tensor([[[2001, 2001, 2001, 2001]]])
    dst = torch.tensor([[[2005, 2005, 2006, 2006]]])
    expected = ref_match(src[0].numpy(), dst[0].numpy(), DIV)
    assert expected == {2006: 2001}
    s, a, d, iou = match_by_iou(src, dst, DIV)
    assert (a.tolist(), d.tolist(), iou.tolist()) == ([2001], [2006], [0.5])


def test_reference_numbering_then_smallest_free_id():
    """Below the divisor a new instance gets ``local id + largest id``; past it, the smallest id
    of its class that no track showed within ``reuse_gap`` frames."""
    div = 10
    ids = TrackIds(frame=4, max_id=6, last_seen={2006: 4, 2001: 4, 2002: 1, 3003: 3})
    labels = torch.tensor([2001, 2002, 3001, -1])
    seq = torch.tensor([2006, -1, -1, -1])  # the first instance carries track 2006
    out, new = assign_track_ids(labels, seq, ids, label_divisor=div, reuse_gap=3)
    # 2002: local 2 + 6 = 8 fits; 3001: 1 + 6 = 7 fits
    assert out.tolist() == [2006, 2008, 3007, -1] and new.max_id == 8 and new.frame == 5
    assert new.last_seen == {2006: 5, 2008: 5, 3007: 5, 2001: 4, 3003: 3}  # 2002: 4 frames ago
    out, new = assign_track_ids(
        torch.tensor([2003, 3002]), torch.tensor([-1, -1]), new, label_divisor=div, reuse_gap=3
    )
    # 3 + 8 and 2 + 8 do not fit below 10: 2001 was shown 2 frames ago, 2002 is free;
    # class 3: 3001 and 3002 are free (3003 was shown 3 frames ago, the gap)
    assert out.tolist() == [2002, 3001] and new.max_id == 8


def test_every_id_in_use_recycles_the_oldest_and_warns():
    div = 4  # instance ids 1..3 per class

    def pid(c, i):
        return c * div + i

    ids = TrackIds(frame=9, max_id=3, last_seen={pid(2, 1): 9, pid(2, 2): 7, pid(2, 3): 8})
    with pytest.warns(UserWarning, match=f'id {pid(2, 2)} .unseen for 3 frames. goes to a new'):
        out, _ = assign_track_ids(
            torch.tensor([pid(2, 1)]), torch.tensor([-1]), ids, label_divisor=div, reuse_gap=20
        )
    assert out.tolist() == [pid(2, 2)]
    # three new instances in frame 10 and one carried from frame 9: no id left
    with pytest.raises(ValueError, match='class 2 has more instances in this frame and the prev'):
        assign_track_ids(
            torch.tensor([pid(2, 1), pid(2, 2), pid(2, 3), pid(2, 1)]),
            torch.tensor([pid(2, 1), -1, -1, -1]),
            TrackIds(frame=9, max_id=3, last_seen={pid(2, 1): 9}),
            label_divisor=div,
            reuse_gap=20,
        )


def test_week_long_stream_recycles_ids(perfect_maps):
    """900 frames, a new short-lived object every frame (the reference numbering would reach
    about 2000 against a divisor of 1000): the ids stay below the divisor, a track keeps its id
    while it lives, two live tracks never share one, and an id goes to a new track only after no
    track showed it for ``reuse_gap`` frames.

    A newborn's pixels join some centre of the previous frame in the pair (every thing pixel
    does); its next-frame offsets point at the persistent object of another class, so that it
    cannot inherit a track's id."""
    gap, life, n = 20, 3, 900
    cache = {}

    def maps(objects, prev):
        layout = tuple(objects.values()), tuple(prev.values()) if prev else None
        if layout not in cache:  # the scene repeats every 500 frames: build its maps once
            cache[layout] = newborn_maps(objects, prev)
        return cache[layout]

    def newborn_maps(objects, prev):
        sem, heat, off, nxt = perfect_maps(objects, prev)
        if prev:
            _, y0, x0, y1, x1 = prev['p']
            cy, cx = (y0 + y1 - 1) // 2, (x0 + x1 - 1) // 2
            ys, xs = torch.meshgrid(
                torch.arange(sem.shape[1]), torch.arange(sem.shape[2]), indexing='ij'
            )
            for name, (_, y0, x0, y1, x1) in objects.items():
                if name not in prev:
                    m = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
                    nxt[0, 0][m], nxt[0, 1][m] = (cy - ys[m]).float(), (cx - xs[m]).float()
        return sem, heat, off, nxt

    def frame(t):
        objects = {'p': (2, 0, 1 + (t // 50) % 10, 4, 5 + (t // 50) % 10)}  # lives throughout
        for b in range(max(0, t - life + 1), t + 1):  # born at b, lives `life` frames
            slot = 6 * (b % 4)
            objects[b] = (3, 6, slot + 1, 10, slot + 5)
        return objects

    track_id, shown = {}, {}  # track -> its id; id -> (track, last frame shown)
    reused, first_reuse = 0, n
    for t, (ids_of, ids) in enumerate(stitch_video((frame(t) for t in range(n)), maps)):
        assert len(set(ids_of.values())) == len(ids_of)  # live tracks never collide
        for track, pid in ids_of.items():
            assert 0 < pid % DIV < DIV and pid // DIV == (2 if track == 'p' else 3)
            if track in track_id:
                assert track_id[track] == pid  # a track keeps its id
            else:
                track_id[track] = pid
                if pid in shown:  # a recycled id: its last track was gone for >= gap frames
                    assert t - shown[pid][1] >= gap
                    reused += 1
                    first_reuse = min(first_reuse, t)
            shown[pid] = (track, t)
        assert len(ids.last_seen) <= 1 + gap + life  # the bookkeeping stays small
    # the reference numbering reaches the divisor at frame ~440, then ids are recycled
    assert ids.frame == n - 1 and first_reuse < 500 and reused > 300
