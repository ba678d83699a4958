"""ViP-DeepLab video stitching: temporally consistent instance ids from two-frame predictions.

Thesis ch. 7, Sec. 7.3.1.3 (Fig. 7-4): for every pair ``(t-1, t)`` the model predicts ``P'_{t-1}``
and ``R_{t-1}`` (frame ``t`` with the ids of ``P'_{t-1}``); the ids of ``R_{t-1}`` are propagated
to the single-frame prediction ``P_t`` between region pairs of the same class that are each
other's largest-IoU match; regions that receive no id become new instances.

Conventions follow deeplab2 (Apache-2.0; no code copied):

* :func:`match_by_iou` - ``get_stitch_video_panoptic_prediction_info`` of
  ``model/post_processor/vip_deeplab.py``: only thing segments (instance id > 0) of the same class
  are candidates; each side keeps its largest-IoU partner (ties: the larger panoptic id, the
  order of its ascending sort); a pair is kept when the choice is mutual.
* :func:`stitch_frame` - the sequence inference of ``ViP_DeepLab_Demo.ipynb``: the ids of the pair
  prediction are carried to the sequence ids of frame ``t-1`` by largest overlap, and unmatched
  instances of the new frame get ``local id + the largest instance id used so far``.

The stitching works on the groupings of :func:`~.panoptic_postprocess.panoptic_frame`: the left
half of the pair groups exactly as frame ``t-1`` did, so a pair segment's largest overlap in
frame ``t-1`` is that frame's instance of the same centre, and ``R_{t-1}`` is the grouping of
frame ``t``'s thing pixels around the centres of ``t-1`` (:func:`~.panoptic_postprocess.
pair_groups`). All IoUs and ties are those of the map-based definition.

**Ids on long streams.** The reference never re-uses an id, so the ids of a long stream grow
without bound (past the 8 bits of the Cityscapes-DVPS prediction format after some hundreds of
frames, past the label divisor after some thousands). :class:`TrackIds` keeps, per stream, the
frame each id was last seen; the reference numbering holds while its ids fit below the label
divisor, after which a new track takes the smallest id that no track has shown for
``reuse_gap`` frames. A VPQ window of ``k <= reuse_gap`` frames never sees one id on two tracks,
and the stitching itself only matches frame ``t`` with ``t-1``, so a recycled id is never
matched to its former track.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .panoptic_postprocess import PanopticFrame

__all__ = ['TrackIds', 'match_by_iou', 'stitch_frame', 'assign_track_ids', 'sequence_panoptic']


@dataclass
class TrackIds:
    """Instance-id bookkeeping of one stream (integers only).

    Attributes:
        frame: Index of the last stitched frame in the sequence (0: its first frame).
        max_id: Largest instance id handed out so far (the reference numbering adds it).
        last_seen: ``{panoptic id: frame}`` for the ids shown within the last ``reuse_gap``
            frames (older ones are dropped, so it stays as small as the live tracks).
    """

    frame: int = -1
    max_id: int = 0
    last_seen: dict[int, int] = field(default_factory=dict)


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


def _mutual_best(s: Tensor, la: Tensor, lb: Tensor, iou: Tensor) -> Tensor:
    """Keep mask of the candidate pairs ``(s, la, lb)`` that are each other's best by IoU.

    Ties: the larger partner label (the reference sorts ascending and overwrites).
    """
    if len(s) == 0:
        return torch.zeros(0, dtype=torch.bool, device=s.device)
    big = int(max(int(la.max()), int(lb.max()))) + 1
    iou_rank = torch.unique(iou, return_inverse=True)[1]  # dense: equal IoUs share a rank
    best_a = _best_per_group(s * big + la, iou_rank * big + lb)  # best dst of each src label
    best_b = _best_per_group(s * big + lb, iou_rank * big + la)  # best src of each dst label
    return best_a & best_b


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
    keep = _mutual_best(s, la, lb, iou)
    return s[keep], la[keep], lb[keep], iou[keep]


def _free_id(cls: int, start: int, busy, label_divisor: int) -> int | None:
    """Smallest instance id ``>= start`` of class ``cls`` whose panoptic id is not in ``busy``."""
    for inst in range(start, label_divisor):
        if cls * label_divisor + inst not in busy:
            return cls * label_divisor + inst
    return None


def assign_track_ids(
    labels: Tensor,
    seq: Tensor,
    ids: TrackIds | None,
    *,
    label_divisor: int,
    reuse_gap: int,
) -> tuple[Tensor, TrackIds]:
    """Give the unmatched instances of a frame their sequence ids; update the bookkeeping.

    An unmatched instance with local id ``i`` gets ``i + max_id`` (the reference numbering) when
    that fits below ``label_divisor``; otherwise the smallest id of its class that no track has
    shown within the last ``reuse_gap`` frames. When every id is that recent (more tracks within
    ``reuse_gap`` frames than the encoding holds), the id unseen for longest, and absent from
    the previous frame, is re-used with a warning.

    Args:
        labels: ``(K,)`` the frame's single-frame panoptic ids (``-1``: no instance).
        seq: ``(K,)`` propagated sequence ids (``-1``: unmatched).
        ids: The stream's bookkeeping after the previous frame (``None``: a new sequence).
        label_divisor: Panoptic label divisor.
        reuse_gap: Frames an id must stay unseen before a new track may take it (``>= 1``).

    Returns:
        ``(seq, ids)``: ``(K,)`` sequence ids of every instance (``-1`` where ``labels`` is) and
        the bookkeeping after this frame.

    Raises:
        ValueError: If a class has more instances in this frame and the previous one together
            than ids below ``label_divisor``.
    """
    div = label_divisor
    t = 0 if ids is None else ids.frame + 1
    max_id = 0 if ids is None else ids.max_id
    last = {} if ids is None else {p: f for p, f in ids.last_seen.items() if t - f < reuse_gap}
    seq = seq.clone()
    taken = set(seq[seq >= 0].tolist())
    new = ((labels >= 0) & (seq < 0)).nonzero()[:, 0]
    for g, label in zip(new.tolist(), labels[new].tolist()):
        cls, local = divmod(label, div)
        pid = cls * div + local + max_id if local + max_id < div else None
        if pid is None or pid in last or pid in taken:
            pid = _free_id(cls, 1, last.keys() | taken, div)
        if pid is None:  # every id of the class shown within reuse_gap frames
            old = [(f, p) for p, f in last.items() if p // div == cls and f < t - 1]
            old = [(f, p) for f, p in old if p not in taken]
            if not old:
                raise ValueError(
                    f'frame {t} of the sequence: class {cls} has more instances in this frame '
                    f'and the previous one than the {div - 1} ids below the label divisor '
                    f'{div}; use a larger label_divisor'
                )
            f, pid = min(old)
            warnings.warn(
                f'frame {t} of the sequence: all {div - 1} ids of class {cls} were shown within '
                f'the last {reuse_gap} frames; id {pid} (unseen for {t - f} frames) goes to a '
                'new track, so VPQ windows that long may join the two tracks',
                stacklevel=2,
            )
        taken.add(pid)
        seq[g] = pid
    shown = seq[seq >= 0].tolist()
    for p in shown:
        last[p] = t
    top = max((p % div for p in shown), default=0)
    return seq, TrackIds(frame=t, max_id=max(max_id, top), last_seen=last)


def stitch_frame(
    frame: PanopticFrame,
    right_group: Tensor | None,
    prev_seq: Tensor | None,
    ids: TrackIds | None,
    *,
    label_divisor: int,
    reuse_gap: int = 20,
) -> tuple[Tensor, TrackIds]:
    """Sequence ids of the instances of frame ``t`` (``P_t``) from the pair ``(t-1, t)``.

    Args:
        frame: ``P_t``, frame ``t`` post-processed alone.
        right_group: ``(n,)`` centre of ``t-1`` each thing pixel of ``frame`` joins in the pair
            (:func:`~.panoptic_postprocess.pair_groups`), i.e. ``R_{t-1}``; ``None`` for the
            first frame of a sequence.
        prev_seq: ``(K',)`` sequence id of each instance of frame ``t-1`` (``-1``: a centre
            without pixels); ``None`` for the first frame.
        ids: The stream's :class:`TrackIds` after frame ``t-1`` (``None``: a new sequence).
        label_divisor: Panoptic label divisor.
        reuse_gap: See :func:`assign_track_ids`.

    Returns:
        ``(seq, ids)``: ``(K,)`` sequence ids of the instances of ``frame`` (``-1`` for centres
        without pixels) and the updated bookkeeping.
    """
    labels, group = frame.labels, frame.group
    k = labels.shape[0]
    seq = torch.full_like(labels, -1)
    if right_group is not None and prev_seq is not None and k and len(prev_seq):
        kp = prev_seq.shape[0]
        # R_{t-1} in sequence ids: a pair segment takes the id of its centre's instance in t-1
        u_px = prev_seq[right_group]
        on = u_px >= 0
        inter = torch.bincount(right_group[on] * k + group[on], minlength=kp * k)
        pair = inter.nonzero()[:, 0]
        a, g, inter = pair // k, pair % k, inter[pair]
        u, v = prev_seq[a], labels[g]
        same = u // label_divisor == v // label_divisor
        a, g, u, v, inter = a[same], g[same], u[same], v[same], inter[same]
        area_u = torch.bincount(right_group, minlength=kp)[a]
        area_v = torch.bincount(group, minlength=k)[g]
        iou = inter.double() / (area_u + area_v - inter).double()
        keep = _mutual_best(torch.zeros_like(u), u, v, iou)
        seq[g[keep]] = u[keep]
    return assign_track_ids(labels, seq, ids, label_divisor=label_divisor, reuse_gap=reuse_gap)


def sequence_panoptic(frame: PanopticFrame, seq: Tensor) -> Tensor:
    """``frame.panoptic`` with its instances relabelled to their sequence ids ``seq`` (K,)."""
    out = frame.panoptic.clone()
    if len(frame.group):
        out.view(-1)[frame.thing_index] = seq[frame.group]
    return out
