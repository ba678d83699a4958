"""ViP-DeepLab video stitching: temporally consistent instance ids from two-frame predictions.

Thesis ch. 7, Sec. 7.3.1.3 (Fig. 7-4): for every pair ``(t, t+1)`` the model predicts ``P_t`` and
``R_t`` (frame ``t+1`` with the ids of ``P_t``); the ids of ``R_t`` are propagated to the
single-frame prediction ``P_{t+1}`` between region pairs of the same class that are each other's
largest-IoU match; regions that receive no id become new instances.

Conventions follow deeplab2 (Apache-2.0; no code copied):

* :func:`match_by_iou` - ``get_stitch_video_panoptic_prediction_info`` of
  ``model/post_processor/vip_deeplab.py``: only thing segments (instance id > 0) of the same class
  are candidates; each side keeps its largest-IoU partner (ties: the larger panoptic id, the
  order of its ascending sort); a pair is kept when the choice is mutual.
* :func:`relabel_by_overlap` and the new-id rule of :func:`stitch_frame` - the sequence inference
  of ``ViP_DeepLab_Demo.ipynb``: the ids of a pair prediction are carried to the sequence ids of
  the same frame by largest overlap, and unmatched instances of the new frame get
  ``local id + the largest instance id used so far`` in the video.

Everything is batched over the first dimension; pure PyTorch (mmdet/mmseg have no video panoptic
stitching).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .panoptic_postprocess import pair_panoptic_postprocess

__all__ = [
    'match_by_iou',
    'relabel_by_overlap',
    'apply_label_map',
    'stitch_frame',
    'stitch_pair_step',
]


def _pairs(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Unique ``(sample, label_a, label_b)`` triples of two ``(B, H, W)`` maps and their counts.

    The triple is packed into one int64 key (a 1-d ``unique`` is much faster than ``unique`` over
    rows); labels are non-negative panoptic ids (< 2^26 for the DVPS datasets).
    """
    n = a.shape[0]
    fa, fb = a.reshape(n, -1).long(), b.reshape(n, -1).long()
    ma, mb = int(fa.max()) + 1, int(fb.max()) + 1
    if n * ma * mb >= 2**62:
        raise ValueError(f'panoptic ids too large to pair ({ma - 1}, {mb - 1})')
    key = (torch.arange(n, device=a.device)[:, None] * ma + fa) * mb + fb
    keys, counts = torch.unique(key.reshape(-1), return_counts=True)
    rest = keys // mb
    return rest // ma, rest % ma, keys % mb, counts


def _areas(x: Tensor, sample: Tensor, label: Tensor) -> Tensor:
    """Area of segment ``label`` in sample ``sample`` of ``x`` ``(B, H, W)`` (1-d queries)."""
    b = x.shape[0]
    flat = x.reshape(b, -1).long()
    big = int(flat.max()) + 1
    keys, counts = torch.unique(
        torch.arange(b, device=x.device)[:, None] * big + flat, return_counts=True
    )
    return counts[torch.searchsorted(keys, sample * big + label)]


def _best_per_group(group: Tensor, order_key: Tensor) -> Tensor:
    """Bool mask of the element with the largest ``order_key`` rank within each group id."""
    rank = torch.empty_like(order_key)
    rank[torch.argsort(order_key, stable=True)] = torch.arange(len(order_key), device=group.device)
    _, inv = torch.unique(group, return_inverse=True)
    best = torch.full((int(inv.max()) + 1 if len(inv) else 0,), -1, device=group.device)
    best = best.scatter_reduce(0, inv, rank, reduce='amax')
    return rank == best[inv]


def match_by_iou(
    src: Tensor, dst: Tensor, label_divisor: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Mutual largest-IoU matches between the thing segments of two panoptic maps.

    Args:
        src: ``(B, H, W)`` panoptic ids whose ids are propagated (``R_t``).
        dst: ``(B, H, W)`` panoptic ids that receive them (``P_{t+1}``).
        label_divisor: Panoptic label divisor.

    Returns:
        ``(sample, src_label, dst_label, iou)``: 1-d tensors, one entry per matched pair.
    """
    if src.shape != dst.shape:
        raise ValueError(f'src {tuple(src.shape)} and dst {tuple(dst.shape)} must have one shape')
    s, la, lb, inter = _pairs(src, dst)
    ok = (la // label_divisor == lb // label_divisor) & (la % label_divisor > 0)
    ok &= lb % label_divisor > 0
    s, la, lb, inter = s[ok], la[ok], lb[ok], inter[ok]
    if len(s) == 0:
        return s, la, lb, inter.double()
    union = _areas(src, s, la) + _areas(dst, s, lb) - inter
    iou = inter.double() / union.double()
    # rank by IoU, ties by the partner's label (the reference sorts ascending and overwrites)
    big = int(max(int(la.max()), int(lb.max()))) + 1
    iou_rank = torch.unique(iou, return_inverse=True)[1]  # dense: equal IoUs share a rank
    key_a = iou_rank * big + lb  # best dst for each src label
    key_b = iou_rank * big + la  # best src for each dst label
    best_a = _best_per_group(s * big + la, key_a)
    best_b = _best_per_group(s * big + lb, key_b)
    keep = best_a & best_b
    return s[keep], la[keep], lb[keep], iou[keep]


def relabel_by_overlap(src: Tensor, ref: Tensor, label_divisor: int) -> tuple[Tensor, ...]:
    """Map every thing segment of ``src`` to the thing segment of ``ref`` it overlaps most.

    Both maps describe the same frame (a pair prediction and the stitched sequence prediction);
    ties go to the larger ``ref`` id.

    Args:
        src: ``(B, H, W)`` panoptic ids.
        ref: ``(B, H, W)`` panoptic ids of the same frames.
        label_divisor: Panoptic label divisor.

    Returns:
        ``(sample, src_label, ref_label)``: 1-d tensors, one entry per mapped ``src`` segment.
    """
    s, la, lb, inter = _pairs(src, ref)
    ok = (la % label_divisor > 0) & (lb % label_divisor > 0)
    s, la, lb, inter = s[ok], la[ok], lb[ok], inter[ok]
    if len(s) == 0:
        return s, la, lb
    big = int(max(int(la.max()), int(lb.max()))) + 1
    best = _best_per_group(s * big + la, inter * big + lb)
    return s[best], la[best], lb[best]


def apply_label_map(
    x: Tensor, sample: Tensor, old: Tensor, new: Tensor, default: Tensor | None = None
) -> Tensor:
    """Replace ``old[i]`` by ``new[i]`` in sample ``sample[i]`` of ``x`` ``(B, H, W)``, at once.

    Args:
        x: ``(B, H, W)`` labels.
        sample, old, new: 1-d tensors of equal length; ``(sample, old)`` pairs must be unique.
        default: ``(B, H, W)`` values for pixels whose label is not mapped (default: ``x``).

    Returns:
        ``(B, H, W)`` relabelled map.
    """
    out = x.clone() if default is None else default.clone()
    if len(old) == 0:
        return out
    b = x.shape[0]
    flat = x.reshape(b, -1).long()
    big = int(max(int(flat.max()), int(old.max()))) + 1
    keys = sample.long() * big + old.long()
    order = torch.argsort(keys)
    keys, vals = keys[order], new.long()[order]
    px = torch.arange(b, device=x.device)[:, None] * big + flat
    pos = torch.searchsorted(keys, px).clamp(max=len(keys) - 1)
    hit = keys[pos] == px
    res = out.reshape(b, -1)
    res[hit] = vals[pos][hit].to(res.dtype)
    return res.reshape(x.shape)


def stitch_frame(
    prev_pair: Tensor,
    prev_out: Tensor,
    next_pair: Tensor,
    current: Tensor,
    max_id: Tensor,
    has_prev: Tensor,
    label_divisor: int,
) -> tuple[Tensor, Tensor]:
    """Sequence-consistent panoptic ids of frame ``t`` from the pair ``(t-1, t)``.

    Args:
        prev_pair: ``(B, H, W)`` ``P'_{t-1}``, the left half of the pair prediction of
            ``(t-1, t)``.
        prev_out: ``(B, H, W)`` the stitched output of frame ``t-1`` (sequence ids).
        next_pair: ``(B, H, W)`` ``R_{t-1}``, the right half (frame ``t``, ids of ``P'_{t-1}``).
        current: ``(B, H, W)`` ``P_t``, the single-frame prediction of frame ``t``.
        max_id: ``(B,)`` largest instance id used so far in each video.
        has_prev: ``(B,)`` bool; samples without a previous frame start a new video.
        label_divisor: Panoptic label divisor.

    Returns:
        ``(out, max_id)``: ``(B, H, W)`` frame ``t`` with sequence ids and the updated ``(B,)``
        largest instance id.

    Raises:
        ValueError: If a new instance id would reach ``label_divisor``.
    """
    div = label_divisor
    has_prev = has_prev.bool()
    max_id = torch.where(has_prev, max_id.long(), torch.zeros_like(max_id.long()))
    # R_{t-1} in sequence ids; segments without one cannot pass an id on
    s, a, r = relabel_by_overlap(prev_pair, prev_out, div)
    keep = has_prev[s]
    seq_next = apply_label_map(
        next_pair, s[keep], a[keep], r[keep], default=torch.zeros_like(next_pair)
    )
    ms, src, dst, _ = match_by_iou(seq_next, current, div)
    cls, ins = current // div, current % div
    shift = max_id[:, None, None]
    if bool(((ins + shift) >= div).logical_and(ins > 0).any()):
        raise ValueError(
            f'a new instance id reached the label divisor {div}: the video has more instances '
            'than the panoptic encoding can hold; use a larger label_divisor'
        )
    fresh = torch.where(ins > 0, cls * div + ins + shift, current)
    out = apply_label_map(current, ms, dst, src, default=fresh)
    new_max = torch.maximum(max_id, (out % div).reshape(out.shape[0], -1).amax(1))
    return out, new_max


def stitch_pair_step(
    prev: dict[str, Tensor],
    semantic: Tensor,
    next_offset: Tensor,
    current: Tensor,
    *,
    label_divisor: int,
    **postprocess_kwargs,
) -> tuple[Tensor, Tensor]:
    """Frame ``t`` of a video: post-process the pair ``(t-1, t)`` and stitch it onto ``P_t``.

    Args:
        prev: Maps of frame ``t-1`` at the size of frame ``t``: ``semantic`` ``(B, H, W)``,
            ``center`` ``(B, 1, H, W)``, ``offset`` ``(B, 2, H, W)``, ``panoptic`` ``(B, H, W)``
            (its stitched output), ``max_id`` ``(B,)`` and ``has_prev`` ``(B,)`` bool.
        semantic: ``(B, H, W)`` class ids of frame ``t``.
        next_offset: ``(B, 2, H, W)`` offsets from pixels of ``t`` to centres of ``t-1``.
        current: ``(B, H, W)`` single-frame panoptic ``P_t``.
        label_divisor: Panoptic label divisor.
        **postprocess_kwargs: :func:`panoptic_deeplab_postprocess` options (``thing_ids``,
            ``void_label``, ``stuff_area``, ``threshold``, ``nms_kernel``, ``top_k``,
            ``num_classes``).

    Returns:
        ``(out, max_id)`` as :func:`stitch_frame`.
    """
    p_prev, r_prev = pair_panoptic_postprocess(
        prev['semantic'],
        prev['center'],
        prev['offset'],
        semantic,
        next_offset,
        label_divisor=label_divisor,
        **postprocess_kwargs,
    )
    return stitch_frame(
        p_prev, prev['panoptic'], r_prev, current, prev['max_id'], prev['has_prev'], label_divisor
    )
