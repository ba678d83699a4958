"""The fast ViP-DeepLab post-processing gives the ids of the straightforward implementation.

``ref_*`` below is the previous, straightforward implementation, kept here as the slow reference:
every pixel compared with every centre (one ``cdist`` over the image), the batch padded with far
centres, dense max-pooling for the centres, the pair post-processed as one ``(H, 2W)`` canvas,
and the stitching on whole maps (overlap relabelling, mutual best IoU, ``local id + largest
id``). The fast path must give the same panoptic maps and ids, bit for bit, ties included; the
maps are random (noise, integer offsets for exact distance ties) or moving objects with noisy
offsets.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmvideoeq.models.utils.panoptic_postprocess import (
    find_instance_centers,
    nearest_center,
    pair_groups,
    panoptic_deeplab_postprocess,
    panoptic_frame,
    semantic_ids,
)
from mmvideoeq.models.utils.video_stitching import sequence_panoptic, stitch_frame

DIV, VOID = 1000, 32
THINGS = (2, 3, 4)


# ----------------------------------------------------------------- the slow reference
def ref_group(centers, valid, offsets):
    b, _, h, w = offsets.shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    coords = torch.stack([ys, xs]).to(offsets.dtype)
    votes = (coords[None] + offsets).reshape(b, 2, h * w).transpose(1, 2)
    far = torch.full_like(centers, 1 << 30, dtype=offsets.dtype)
    ctr = torch.where(valid[..., None], centers.to(offsets.dtype), far)
    d = torch.cdist(votes, ctr, compute_mode='donot_use_mm_for_euclid_dist')
    return d.argmin(2).reshape(b, h, w)


def ref_merge(semantic, instance, thing_ids, div, stuff_area, void_label, num_classes):
    b, h, w = semantic.shape
    sem, inst = semantic.reshape(b, -1).long(), instance.reshape(b, -1).long()
    c = num_classes
    is_thing = torch.isin(sem, torch.tensor(thing_ids))
    inst = torch.where(is_thing, inst, 0)
    n = int(inst.max()) + 1
    rows = torch.arange(b)[:, None] * n + inst
    hist = torch.bincount((rows * c + sem.clamp(0, c - 1))[is_thing], minlength=b * n * c)
    hist = hist.reshape(b, n, c)
    present = hist.sum(-1) > 0
    present[:, 0] = False
    majority = hist.argmax(-1)
    pos = torch.arange(h * w).expand(b, h * w)
    first = torch.full((b, n), h * w).scatter_reduce(1, inst, pos, reduce='amin')
    same = (majority[:, :, None] == majority[:, None, :]) & present[:, None, :]
    new_id = (same & (first[:, None, :] < first[:, :, None])).sum(-1) + 1
    label = majority * div + new_id
    ok = torch.gather(present, 1, inst) & is_thing
    pan = torch.where(ok, torch.gather(label, 1, inst), void_label * div)
    stuff_key = (torch.arange(b)[:, None] * c + sem.clamp(0, c - 1))[~is_thing]
    area = torch.bincount(stuff_key, minlength=b * c).reshape(b, c)
    big = torch.gather(area, 1, sem.clamp(0, c - 1)) >= stuff_area
    return torch.where(~is_thing & big, sem * div, pan).reshape(b, h, w)


def ref_centers(heatmap, threshold, nms_kernel, top_k):
    b, _, h, w = heatmap.shape
    heat = torch.where(heatmap > threshold, heatmap, 0.0)
    pooled = F.max_pool2d(heat, nms_kernel, stride=1, padding=nms_kernel // 2)
    heat = torch.where(pooled == heat, heat, 0.0).reshape(b, h * w)
    keep = heat > 0
    if top_k > 0 and h * w > top_k:
        kth = torch.topk(heat, top_k, dim=1).values[:, -1:]
        keep = keep & ((keep.sum(1, keepdim=True) <= top_k) | (heat > kth))
    counts = keep.sum(1)
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, : int(counts.max())]
    valid = torch.arange(order.shape[1])[None] < counts[:, None]
    return torch.stack([order // w, order % w], dim=-1), valid


def ref_postprocess(sem, heat, off, thing_ids, stuff_area, threshold, nms_kernel, top_k, c):
    centers, valid = ref_centers(heat, threshold, nms_kernel, top_k)
    index = ref_group(centers, valid, off)
    instance = torch.where(valid.any(1)[:, None, None], index + 1, 0)
    return ref_merge(sem, instance, thing_ids, DIV, stuff_area, VOID, c)


def ref_pairs(a, b):
    n = a.shape[0]
    fa, fb = a.reshape(n, -1).long(), b.reshape(n, -1).long()
    ma, mb = int(fa.max()) + 1, int(fb.max()) + 1
    key = (torch.arange(n)[:, None] * ma + fa) * mb + fb
    keys, counts = torch.unique(key.reshape(-1), return_counts=True)
    return keys // mb // ma, keys // mb % ma, keys % mb, counts


def ref_areas(x, sample, label):
    flat = x.reshape(x.shape[0], -1).long()
    big = int(flat.max()) + 1
    keys, counts = torch.unique(torch.arange(x.shape[0])[:, None] * big + flat, return_counts=True)
    return counts[torch.searchsorted(keys, sample * big + label)]


def ref_best(group, order_key):
    rank = torch.empty_like(order_key)
    rank[torch.argsort(order_key, stable=True)] = torch.arange(len(order_key))
    _, inv = torch.unique(group, return_inverse=True)
    best = torch.full((int(inv.max()) + 1,), -1).scatter_reduce(0, inv, rank, reduce='amax')
    return rank == best[inv]


def ref_match(src, dst):
    s, la, lb, inter = ref_pairs(src, dst)
    ok = (la // DIV == lb // DIV) & (la % DIV > 0) & (lb % DIV > 0)
    s, la, lb, inter = s[ok], la[ok], lb[ok], inter[ok]
    if len(s) == 0:
        return s, la, lb
    iou = inter.double() / (ref_areas(src, s, la) + ref_areas(dst, s, lb) - inter).double()
    big = int(max(int(la.max()), int(lb.max()))) + 1
    rank = torch.unique(iou, return_inverse=True)[1]
    keep = ref_best(s * big + la, rank * big + lb) & ref_best(s * big + lb, rank * big + la)
    return s[keep], la[keep], lb[keep]


def ref_relabel(src, ref):
    s, la, lb, inter = ref_pairs(src, ref)
    ok = (la % DIV > 0) & (lb % DIV > 0)
    s, la, lb, inter = s[ok], la[ok], lb[ok], inter[ok]
    if len(s) == 0:
        return s, la, lb
    big = int(max(int(la.max()), int(lb.max()))) + 1
    best = ref_best(s * big + la, inter * big + lb)
    return s[best], la[best], lb[best]


def ref_apply(x, sample, old, new, default):
    out = default.clone().reshape(x.shape[0], -1)
    for s, o, n in zip(sample.tolist(), old.tolist(), new.tolist()):
        out[s][x[s].reshape(-1) == o] = n
    return out.reshape(x.shape)


def ref_stitch(prev_pair, prev_out, next_pair, current, max_id, has_prev):
    max_id = torch.where(has_prev, max_id, 0)
    s, a, r = ref_relabel(prev_pair, prev_out)
    keep = has_prev[s]
    seq_next = ref_apply(next_pair, s[keep], a[keep], r[keep], torch.zeros_like(next_pair))
    ms, src, dst = ref_match(seq_next, current)
    cls, ins = current // DIV, current % DIV
    assert not bool(((ins + max_id[:, None, None]) >= DIV)[ins > 0].any())
    fresh = torch.where(ins > 0, cls * DIV + ins + max_id[:, None, None], current)
    out = ref_apply(current, ms, dst, src, fresh)
    return out, torch.maximum(max_id, (out % DIV).reshape(out.shape[0], -1).amax(1))


# ----------------------------------------------------------------- random maps
def noise_maps(g, b, h, w, n_classes=6, integer_offsets=False, peaks=0.08):
    sem = torch.randint(0, n_classes, (b, h, w), generator=g)
    heat = torch.rand(b, 1, h, w, generator=g) * (torch.rand(b, 1, h, w, generator=g) < peaks)
    off = torch.randn(b, 2, h, w, generator=g) * 6
    nxt = torch.randn(b, 2, h, w, generator=g) * 6
    if integer_offsets:  # votes on the pixel grid: many exact distance ties
        off, nxt = off.round(), nxt.round()
    return sem, heat, off, nxt


def object_video(g, b, h, w, frames, n_obj=7):
    """Boxes of thing classes drifting over stuff; offsets to their centres plus noise."""
    pos = torch.rand(b, n_obj, 2, generator=g) * torch.tensor([h - 8.0, w - 12.0])
    vel = torch.randn(b, n_obj, 2, generator=g) * 1.5
    cls = torch.tensor(THINGS)[torch.randint(0, len(THINGS), (b, n_obj), generator=g)]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    out, prev_ctr = [], None
    for _ in range(frames):
        sem = (ys[None] * 2 // h).repeat(b, 1, 1)  # stuff classes 0 and 1
        heat = torch.zeros(b, 1, h, w)
        off, nxt = torch.randn(b, 2, h, w, generator=g), torch.randn(b, 2, h, w, generator=g)
        ctr = (pos + torch.tensor([3.0, 5.0])).round().long()
        for i in range(b):
            for j in range(n_obj):
                y0, x0 = pos[i, j].long().tolist()
                m = (ys >= y0) & (ys < y0 + 7) & (xs >= x0) & (xs < x0 + 11)
                sem[i][m] = cls[i, j]
                cy, cx = ctr[i, j].clamp(min=0).tolist()
                heat[i, 0, min(cy, h - 1), min(cx, w - 1)] = 0.5 + 0.5 * j / n_obj
                off[i, 0][m] += cy - ys[m]
                off[i, 1][m] += cx - xs[m]
                if prev_ctr is not None:
                    py, px = prev_ctr[i, j].tolist()
                    nxt[i, 0][m] += py - ys[m]
                    nxt[i, 1][m] += px - xs[m]
        out.append((sem, heat, off, nxt))
        prev_ctr = ctr
        pos = (pos + vel).clamp(torch.zeros(2), torch.tensor([h - 8.0, w - 12.0]))
    return out


KW = dict(stuff_area=12, threshold=0.1, nms_kernel=3, top_k=60)


def fast_kw(c):
    return dict(thing_ids=THINGS, label_divisor=DIV, void_label=VOID, num_classes=c, **KW)


# ----------------------------------------------------------------- tests
@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('integer', [False, True])
def test_nearest_center_equals_brute_force(seed, integer):
    g = torch.Generator().manual_seed(seed)
    k = [3, 40, 150][seed]
    votes = torch.rand(3000, 2, generator=g) * torch.tensor([80.0, 160.0]) - 10
    if integer:
        votes = votes.round()
    votes[:5] = torch.tensor(
        [[float('nan'), 1.0], [float('inf'), 2.0], [3e9, 1.0], [-1e8, 0], [0, 0]]
    )
    centers = torch.stack(
        [torch.randint(0, 64, (k,), generator=g), torch.randint(0, 128, (k,), generator=g)], 1
    )
    centers[1] = centers[0]  # a duplicate centre: always a tie
    brute = torch.cdist(
        votes[None], centers[None].float(), compute_mode='donot_use_mm_for_euclid_dist'
    )
    assert torch.equal(nearest_center(votes, centers), brute[0].argmin(1))


@pytest.mark.parametrize('density', [0.02, 0.3])
@pytest.mark.parametrize('kernel, top_k', [(3, 0), (5, 10), (1, 40)])
def test_centers_equal_reference(density, kernel, top_k):
    """Sparse (gathered windows) and dense (max-pooled) non-maximum suppression."""
    g = torch.Generator().manual_seed(kernel)
    heat = torch.rand(2, 1, 64, 80, generator=g) * (torch.rand(2, 1, 64, 80, generator=g) < density)
    heat[0, 0, 0, :3] = 0.7  # equal neighbours on the border: all kept
    ref_c, ref_v = ref_centers(heat, 0.1, kernel, top_k)
    centers, valid = find_instance_centers(heat, 0.1, kernel, top_k)
    assert torch.equal(valid, ref_v) and torch.equal(centers[valid], ref_c[ref_v])


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_panoptic_frame_equals_reference(seed):
    g = torch.Generator().manual_seed(seed)
    b, h, w = 2, 40, 72
    sem, heat, off, _ = noise_maps(g, b, h, w, integer_offsets=seed % 2 == 1)
    if seed == 3:
        heat[1] = 0.0  # no centre in the second image
    kw = dict(thing_ids=THINGS, stuff_area=12, threshold=0.1, nms_kernel=3, top_k=60 if seed else 0)
    ref = ref_postprocess(sem, heat, off, kw['thing_ids'], 12, 0.1, 3, kw['top_k'], 6)
    fast = panoptic_deeplab_postprocess(sem, heat, off, label_divisor=DIV, void_label=VOID, **kw)
    assert torch.equal(fast, ref)
    assert (fast % DIV).amax() >= 10  # many instances: the grid pruning is exercised


@pytest.mark.parametrize('kind', ['smooth', 'integer', 'nan_inf'])
def test_semantic_ids_equal_argmax(kind):
    """``max(1).indices`` gives ``argmax(1)``'s ids: first class on ties, NaN and inf alike."""
    g = torch.Generator().manual_seed(0)
    logits = F.interpolate(torch.randn(2, 19, 6, 9, generator=g), (48, 80), mode='bilinear')
    if kind == 'integer':
        logits = (logits * 2).round()  # many ties, also of three or more classes
    if kind == 'nan_inf':
        logits[0, 4, :10] = float('nan')
        logits[0, 7, 5:15] = float('nan')
        logits[1, 3, :, :20] = float('inf')
        logits[1, 9, 10:, 10:] = float('inf')
    assert torch.equal(semantic_ids(logits), logits.argmax(1))


def run_reference(frames, c):
    """The previous streaming post-processing on a batch of videos."""
    outs, prev = [], None
    for sem, heat, off, nxt in frames:
        cur = ref_postprocess(sem, heat, off, THINGS, KW['stuff_area'], 0.1, 3, KW['top_k'], c)
        if prev is None:
            out, max_id = cur, (cur % DIV).reshape(cur.shape[0], -1).amax(1)
        else:
            w = sem.shape[-1]
            shifted = nxt.clone()
            shifted[:, 1] -= w
            pair = ref_postprocess(
                torch.cat([prev[0], sem], -1),
                torch.cat([prev[1], torch.zeros_like(heat)], -1),
                torch.cat([prev[2], shifted], -1),
                THINGS, KW['stuff_area'], 0.1, 3, KW['top_k'], c,
            )  # fmt: skip
            has = torch.ones(sem.shape[0], dtype=torch.bool)
            out, max_id = ref_stitch(pair[..., :w], prev[3], pair[..., w:], cur, prev[4], has)
        outs.append(out)
        prev = (sem, heat, off, out, max_id)
    return outs


def run_fast(frames, c):
    """The streaming step's post-processing, one stream per sample."""
    b = frames[0][0].shape[0]
    outs, mem = [], [None] * b
    for sem, heat, off, nxt in frames:
        out = []
        for i in range(b):
            f = panoptic_frame(sem[i], heat[i, 0], off[i], **fast_kw(c))
            if mem[i] is None:
                seq, ids = stitch_frame(f, None, None, None, label_divisor=DIV)
            else:
                right = pair_groups(mem[i][0], f, nxt[i])
                seq, ids = stitch_frame(f, right, mem[i][1], mem[i][2], label_divisor=DIV)
            mem[i] = (f.centers, seq, ids)
            out.append(sequence_panoptic(f, seq))
        outs.append(torch.stack(out))
    return outs


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('kind', ['objects', 'noise', 'integer_noise'])
def test_streamed_ids_equal_reference(seed, kind):
    g = torch.Generator().manual_seed(seed)
    b, h, w, t = 2, 36, 64, 5
    if kind == 'objects':
        frames = object_video(g, b, h, w, t)
    else:
        frames = [noise_maps(g, b, h, w, integer_offsets=kind == 'integer_noise') for _ in range(t)]
    ref, fast = run_reference(frames, 6), run_fast(frames, 6)
    for a, f in zip(ref, fast):
        np.testing.assert_array_equal(f.numpy(), a.numpy())
    if kind == 'objects':  # tracks carried: later frames re-use ids of the first
        first = set(ref[0].unique().tolist())
        assert len(first & set(ref[-1].unique().tolist())) >= 4


def test_pair_votes_are_computed_as_on_the_canvas():
    """A vote ``x + offset`` of frame t near the bisector of two centres of t-1: the canvas
    computes it as ``(x + W) + (offset - W)``, whose rounding differs from ``x + offset``; the
    pair grouping follows the canvas (ties: the first centre)."""
    h, w = 1, 64
    sem = torch.full((1, h, w), 2)
    heat = torch.zeros(1, 1, h, w)
    heat[0, 0, 0, 20], heat[0, 0, 0, 21] = 1.0, 0.9  # centres of t-1 at x = 20, 21
    offsets = 10.5 + torch.linspace(-2e-5, 2e-5, 81)  # pixel x = 10 votes near x = 20.5
    nxt = torch.zeros(1, 2, h, w)
    differs = 0
    for o in offsets.tolist():
        nxt[0, 1, 0, 10] = o
        shifted = nxt.clone()
        shifted[:, 1] -= w
        canvas_off = torch.cat([torch.zeros(1, 2, h, w), shifted], -1)
        centers, valid = find_instance_centers(
            torch.cat([heat, torch.zeros_like(heat)], -1), 0.1, 1
        )
        ref = ref_group(centers, valid, canvas_off)[0, 0, w + 10]
        kw = dict(fast_kw(6), nms_kernel=1)
        prev = panoptic_frame(sem[0], heat[0, 0], torch.zeros(2, h, w), **kw)
        cur = panoptic_frame(sem[0], torch.zeros(h, w), torch.zeros(2, h, w), **kw)
        assert int(pair_groups(prev.centers, cur, nxt[0])[10]) == int(ref)
        direct = torch.tensor([[0.0, 10.0]]) + torch.tensor([[0.0, o]])
        differs += int(nearest_center(direct, prev.centers)) != int(ref)
    assert differs > 0  # the plain sum would group some of these votes differently
