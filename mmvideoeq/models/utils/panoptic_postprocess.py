"""Panoptic-DeepLab grouping: semantic + centre heatmap + centre offsets -> panoptic ids.

Batched pure-PyTorch implementation of the post-processing of Panoptic-DeepLab (Cheng et al.,
CVPR 2020, Sec. 3.2) with the conventions of deeplab2's ``model/post_processor/panoptic_deeplab.py``
(Apache-2.0; no code copied), the path ViP-DeepLab's configs use
(``merge_semantic_and_instance_with_tf_op: false``):

* centres: heatmap values ``<= threshold`` are zeroed, non-maximum suppression keeps a pixel equal
  to the max of its ``nms_kernel x nms_kernel`` window (zero padding), every remaining positive
  pixel is a centre; with more than ``top_k`` centres only those *strictly* above the ``top_k``-th
  score are kept. Centres are numbered in raster order (``tf.where``).
* grouping: every pixel votes for ``coord + offset`` (offsets in ``(y, x)`` order) and joins the
  nearest centre (first one on ties); only ``thing`` pixels get an instance.
* merging: an instance takes the majority semantic class of its thing pixels (ties: the smaller
  class id); instance ids restart at 1 per class, in the order the instances first appear in a
  raster scan; thing pixels without a centre and stuff classes whose area is below
  ``stuff_area`` pixels become ``void_label``.

mmdet/mmseg have no bottom-up panoptic grouping, hence written here. Everything is vectorised over
the batch; the per-pixel nearest-centre search is chunked to bound memory.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'find_instance_centers',
    'group_pixels',
    'merge_semantic_and_instance',
    'panoptic_deeplab_postprocess',
    'pair_panoptic_postprocess',
]

_CHUNK = 1 << 22  # pixel x centre pairs per distance chunk


def _check_maps(semantic: Tensor, heatmap: Tensor, offsets: Tensor) -> None:
    if semantic.dim() != 3:
        raise ValueError(f'semantic must be (B, H, W) class ids, got shape {tuple(semantic.shape)}')
    b, h, w = semantic.shape
    if tuple(heatmap.shape) != (b, 1, h, w):
        raise ValueError(
            f'center heatmap must be (B, 1, H, W) = {(b, 1, h, w)}, got {tuple(heatmap.shape)}'
        )
    if tuple(offsets.shape) != (b, 2, h, w):
        raise ValueError(
            f'center offsets must be (B, 2, H, W) = {(b, 2, h, w)} in (y, x) order, got '
            f'{tuple(offsets.shape)}'
        )


def find_instance_centers(
    heatmap: Tensor, threshold: float = 0.1, nms_kernel: int = 13, top_k: int = 400
) -> tuple[Tensor, Tensor]:
    """Instance centres of a batch of heatmaps (Panoptic-DeepLab Sec. 3.2, "centre selection").

    Args:
        heatmap: Centre heatmaps ``(B, 1, H, W)``.
        threshold: Scores ``<= threshold`` are not centres.
        nms_kernel: Window of the max-pooling non-maximum suppression (odd).
        top_k: Keep at most this many centres (those strictly above the ``top_k``-th score);
            ``<= 0`` keeps all.

    Returns:
        ``(centers, valid)``: ``(B, K, 2)`` long ``(y, x)`` coordinates in raster order, padded to
        the largest count ``K`` of the batch, and ``(B, K)`` bool marking the real centres.
    """
    if nms_kernel < 1 or nms_kernel % 2 == 0:
        raise ValueError(f'nms_kernel must be a positive odd int, got {nms_kernel}')
    b, _, h, w = heatmap.shape
    heat = torch.where(heatmap > threshold, heatmap, torch.zeros_like(heatmap))
    r = nms_kernel // 2  # a k x k max is a k x 1 max of a 1 x k max (2k instead of k^2 reads)
    pooled = F.max_pool2d(heat, (1, nms_kernel), stride=1, padding=(0, r))
    pooled = F.max_pool2d(pooled, (nms_kernel, 1), stride=1, padding=(r, 0))
    heat = torch.where(pooled == heat, heat, torch.zeros_like(heat)).reshape(b, h * w)
    keep = heat > 0
    if top_k > 0 and h * w > top_k:
        kth = torch.topk(heat, top_k, dim=1).values[:, -1:]
        many = keep.sum(1, keepdim=True) > top_k
        keep = keep & (~many | (heat > kth))
    counts = keep.sum(1)
    k = int(counts.max()) if b else 0
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :k]
    centers = torch.stack([order // w, order % w], dim=-1)
    valid = torch.arange(k, device=heat.device)[None] < counts[:, None]
    return centers, valid


def group_pixels(centers: Tensor, valid: Tensor, offsets: Tensor) -> Tensor:
    """Index of the nearest centre of every pixel's predicted centre ``coord + offset``.

    Args:
        centers: ``(B, K, 2)`` centre coordinates ``(y, x)``.
        valid: ``(B, K)`` real centres (padding is never chosen).
        offsets: ``(B, 2, H, W)`` predicted offsets to the centre, ``(y, x)``.

    Returns:
        ``(B, H, W)`` long: the index into ``centers`` (0-based; 0 when a sample has no centre).
    """
    b, _, h, w = offsets.shape
    k = centers.shape[1]
    out = torch.zeros(b, h * w, dtype=torch.long, device=offsets.device)
    if k == 0:
        return out.reshape(b, h, w)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=offsets.device),
        torch.arange(w, device=offsets.device),
        indexing='ij',
    )
    coords = torch.stack([ys, xs]).to(offsets.dtype)
    votes = (coords[None] + offsets).reshape(b, 2, h * w).transpose(1, 2)  # (B, HW, 2)
    # padding centres far away: never the nearest while a sample has a real centre
    far = torch.full_like(centers, 1 << 30, dtype=offsets.dtype)
    ctr = torch.where(valid[..., None], centers.to(offsets.dtype), far)
    step = max(1, _CHUNK // max(1, k * b))
    for s in range(0, h * w, step):
        d = torch.cdist(votes[:, s : s + step], ctr, compute_mode='donot_use_mm_for_euclid_dist')
        out[:, s : s + step] = d.argmin(dim=2)
    return out.reshape(b, h, w)


def _first_positions(inst: Tensor, n: int) -> Tensor:
    """``(B, n)`` raster position where each instance id first appears (``HW`` if absent)."""
    b, hw = inst.shape
    pos = torch.arange(hw, device=inst.device).expand(b, hw)
    first = torch.full((b, n), hw, dtype=torch.long, device=inst.device)
    return first.scatter_reduce(1, inst, pos, reduce='amin')


def merge_semantic_and_instance(
    semantic: Tensor,
    instance: Tensor,
    thing_ids: Sequence[int],
    label_divisor: int,
    stuff_area: int,
    void_label: int,
    num_classes: int | None = None,
) -> Tensor:
    """Panoptic ids ``class * label_divisor + instance`` from semantic and instance maps.

    Args:
        semantic: ``(B, H, W)`` class ids.
        instance: ``(B, H, W)`` instance ids (0 = none), only read on thing pixels.
        thing_ids: Class ids that have instances.
        label_divisor: Panoptic label divisor.
        stuff_area: Stuff segments with fewer pixels become void.
        void_label: Class id of void pixels (the dataset's ignore label).
        num_classes: Number of semantic classes (default: ``semantic.max() + 1``).

    Returns:
        ``(B, H, W)`` long panoptic ids.
    """
    b, h, w = semantic.shape
    sem = semantic.reshape(b, h * w).long()
    inst = instance.reshape(b, h * w).long()
    c = int(num_classes if num_classes is not None else (int(sem.max()) + 1 if sem.numel() else 1))
    things = torch.as_tensor(list(thing_ids), dtype=torch.long, device=sem.device)
    is_thing = torch.isin(sem, things)
    inst = torch.where(is_thing, inst, torch.zeros_like(inst))
    n = int(inst.max()) + 1 if inst.numel() else 1
    # class histogram of each instance over its thing pixels
    rows = torch.arange(b, device=sem.device)[:, None] * n + inst
    key = (rows * c + sem.clamp(0, c - 1))[is_thing]
    hist = torch.bincount(key, minlength=b * n * c).reshape(b, n, c)
    present = hist.sum(-1) > 0
    present[:, 0] = False
    majority = hist.argmax(-1)  # first max: the smaller class id on ties
    # per-class instance ids by first raster appearance
    first = _first_positions(inst, n)
    same = (majority[:, :, None] == majority[:, None, :]) & present[:, None, :]
    earlier = first[:, None, :] < first[:, :, None]
    new_id = (same & earlier).sum(-1) + 1
    label = majority * label_divisor + new_id
    thing_px = torch.gather(label, 1, inst)
    ok = torch.gather(present, 1, inst) & is_thing
    void = void_label * label_divisor
    pan = torch.where(ok, thing_px, torch.full_like(sem, void))
    # stuff segments with enough pixels
    stuff_key = (torch.arange(b, device=sem.device)[:, None] * c + sem.clamp(0, c - 1))[~is_thing]
    area = torch.bincount(stuff_key, minlength=b * c).reshape(b, c)
    big = torch.gather(area, 1, sem.clamp(0, c - 1)) >= stuff_area
    pan = torch.where(~is_thing & big, sem * label_divisor, pan)
    return pan.reshape(b, h, w)


def panoptic_deeplab_postprocess(
    semantic: Tensor,
    heatmap: Tensor,
    offsets: Tensor,
    *,
    thing_ids: Sequence[int],
    label_divisor: int,
    void_label: int,
    stuff_area: int = 2048,
    threshold: float = 0.1,
    nms_kernel: int = 13,
    top_k: int = 400,
    num_classes: int | None = None,
) -> Tensor:
    """Panoptic-DeepLab post-processing of a batch (see the module docstring).

    Args:
        semantic: ``(B, H, W)`` semantic class ids (argmax of the semantic head).
        heatmap: ``(B, 1, H, W)`` centre heatmap.
        offsets: ``(B, 2, H, W)`` centre offsets ``(y, x)`` in pixels.
        thing_ids, label_divisor, void_label, stuff_area, num_classes: See
            :func:`merge_semantic_and_instance`.
        threshold, nms_kernel, top_k: See :func:`find_instance_centers`.

    Returns:
        ``(B, H, W)`` long panoptic ids ``class * label_divisor + instance``.
    """
    _check_maps(semantic, heatmap, offsets)
    centers, valid = find_instance_centers(heatmap, threshold, nms_kernel, top_k)
    index = group_pixels(centers, valid, offsets)
    has = valid.any(dim=1)[:, None, None]
    instance = torch.where(has, index + 1, torch.zeros_like(index))
    return merge_semantic_and_instance(
        semantic, instance, thing_ids, label_divisor, stuff_area, void_label, num_classes
    )


def pair_panoptic_postprocess(
    semantic: Tensor,
    heatmap: Tensor,
    offsets: Tensor,
    next_semantic: Tensor,
    next_offsets: Tensor,
    **kwargs,
) -> tuple[Tensor, Tensor]:
    """Two-frame panoptic of ViP-DeepLab (thesis ch. 7, Sec. 7.3.1.2 and Fig. 7-2).

    The frames ``t`` and ``t+1`` are concatenated horizontally; only frame ``t`` has centres (the
    right half of the heatmap is zero) and the next-frame offsets point from pixels of ``t+1``
    to centres of ``t``, so their x part is shifted by ``-W`` (deeplab2's
    ``video/vip_deeplab.py``). One Panoptic-DeepLab post-processing of the ``(H, 2W)`` canvas
    gives instances spanning both frames with the same id.

    Args:
        semantic: ``(B, H, W)`` class ids of frame ``t``.
        heatmap: ``(B, 1, H, W)`` centre heatmap of frame ``t``.
        offsets: ``(B, 2, H, W)`` centre offsets of frame ``t``.
        next_semantic: ``(B, H, W)`` class ids of frame ``t+1``.
        next_offsets: ``(B, 2, H, W)`` offsets from pixels of ``t+1`` to centres of ``t``.
        **kwargs: Arguments of :func:`panoptic_deeplab_postprocess`.

    Returns:
        ``(P_t, R_t)``: ``(B, H, W)`` panoptic ids of frame ``t`` and of frame ``t+1`` (ids shared
        with ``P_t``), the left and right halves of the canvas.
    """
    _check_maps(next_semantic, heatmap, next_offsets)
    w = semantic.shape[-1]
    shifted = next_offsets.clone()
    shifted[:, 1] -= w
    pan = panoptic_deeplab_postprocess(
        torch.cat([semantic, next_semantic], dim=-1),
        torch.cat([heatmap, torch.zeros_like(heatmap)], dim=-1),
        torch.cat([offsets, shifted], dim=-1),
        **kwargs,
    )
    return pan[..., :w], pan[..., w:]
