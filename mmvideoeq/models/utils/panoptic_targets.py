"""Panoptic-DeepLab / ViP-DeepLab training targets from panoptic ground truth (pure PyTorch).

Follows deeplab2's ``data/sample_generator.py`` (``PanopticSampleGenerator``, Apache-2.0; no code
copied), which ViP-DeepLab's reference configs use:

* semantic target ``panoptic // label_divisor``; pixels of ``ignore_label`` (or of a class id
  ``>= num_classes``) are ignored. Semantic loss weights are 1, and ``small_instance_weight`` on
  instances with fewer than ``small_instance_area`` pixels (Panoptic-DeepLab Sec. 3.3).
* a *crowd* region is a thing class with instance id 0; it keeps its semantic label but gets no
  centre, no offset and no centre-loss weight.
* every other thing instance has its centre at the rounded (half to even) mean of its pixel
  coordinates; the heatmap is the max over instances of ``exp(-d^2 / (2 sigma^2))`` within a
  ``(6 sigma + 3)``-wide square window; offsets ``centre - pixel`` (``(y, x)``, integers) on its
  pixels.
* weights: centre loss on non-crowd, non-ignored pixels; offset loss on non-crowd thing pixels.
* next-frame offsets (ViP-DeepLab, Sec. 7.3.1.2): pixels of frame ``t+1`` whose panoptic id is an
  instance of frame ``t`` point to that instance's centre in frame ``t``; the loss covers the
  pixels with a non-zero next offset (deeplab2's ``NEXT_REGRESSION_LOSS_WEIGHT``).
* a class id that is neither a class of the model nor ``ignore_label`` is an error (a class set
  that does not match the dataset), not silently ignored.

Written here because Panoptic-DeepLab targets exist in no OpenMMLab library.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ['panoptic_deeplab_targets']


def _segments(pan: Tensor, thing: Tensor, div: int):
    """Thing instances of a ``(B, H, W)`` map: keys ``b * big + id``, per-pixel index, centres."""
    b, h, w = pan.shape
    big = int(pan.max()) + 1 if pan.numel() else 1
    keys_px = torch.arange(b, device=pan.device)[:, None, None] * big + pan.long()
    inst_px = thing & (pan % div > 0)
    keys, inv = torch.unique(keys_px[inst_px], return_inverse=True)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=pan.device), torch.arange(w, device=pan.device), indexing='ij'
    )
    coords = torch.stack([ys, xs], -1).expand(b, h, w, 2)[inst_px].double()
    n = len(keys)
    area = torch.bincount(inv, minlength=n)
    sums = torch.zeros(n, 2, dtype=torch.double, device=pan.device).index_add_(0, inv, coords)
    centers = torch.round(sums / area.clamp(min=1)[:, None]).long()
    return big, keys, inst_px, inv, area, centers


def _heatmap(centers: Tensor, sample: Tensor, shape: tuple, sigma: float, dtype) -> Tensor:
    """Max over instances of truncated Gaussians centred at ``centers`` ``(N, 2)``."""
    b, h, w = shape
    r = int(round(3 * sigma + 1))
    heat = torch.zeros(b, h + 2 * r + 1, w + 2 * r + 1, dtype=dtype, device=centers.device)
    if len(centers):
        d = torch.arange(-r, r + 1, device=centers.device)
        g = torch.exp(-(d[:, None] ** 2 + d[None] ** 2).to(dtype) / (2 * sigma**2)).reshape(-1)
        dy, dx = torch.meshgrid(d, d, indexing='ij')
        py = (centers[:, :1] + dy.reshape(1, -1) + r).clamp(0, h + 2 * r)
        px = (centers[:, 1:] + dx.reshape(1, -1) + r).clamp(0, w + 2 * r)
        flat = (sample[:, None] * heat[0].numel() + py * heat.shape[2] + px).reshape(-1)
        heat = (
            heat.reshape(-1)
            .scatter_reduce(0, flat, g.repeat(len(centers)), reduce='amax')
            .reshape(heat.shape)
        )
    return heat[:, r : r + h, r : r + w]


def _offsets_to(centers: Tensor, index: Tensor, mask: Tensor) -> Tensor:
    """``(B, 2, H, W)`` float offsets ``centers[index] - pixel`` on ``mask`` ``(B, H, W)``, else 0.

    ``index`` ``(N,)`` gives, for the ``N`` masked pixels in raster order, their centre's row.
    """
    b, h, w = mask.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=mask.device), torch.arange(w, device=mask.device), indexing='ij'
    )
    coords = torch.stack([ys, xs], -1).expand(b, h, w, 2)[mask]
    out = torch.zeros(b, 2, h, w, dtype=torch.float32, device=mask.device)
    out.permute(0, 2, 3, 1)[mask] = (centers[index] - coords).float()
    return out


def _next_offsets(next_panoptic: Tensor, keys: Tensor, big: int, centers: Tensor, div: int):
    """Offsets from pixels of frame ``t+1`` to the centre of their instance in frame ``t``."""
    b = next_panoptic.shape[0]
    nxt_pan = next_panoptic.long()
    nxt = torch.arange(b, device=nxt_pan.device)[:, None, None] * big + nxt_pan
    nxt = torch.where(nxt_pan < big, nxt, torch.full_like(nxt, -1))  # ids absent from frame t
    if len(keys):
        pos = torch.searchsorted(keys, nxt).clamp(max=len(keys) - 1)
        hit = (keys[pos] == nxt) & (nxt_pan % div > 0)
    else:
        pos, hit = torch.zeros_like(nxt), torch.zeros_like(nxt, dtype=torch.bool)
    return _offsets_to(centers, pos[hit], hit)


def panoptic_deeplab_targets(
    panoptic: Tensor,
    *,
    thing_ids: Sequence[int],
    label_divisor: int,
    ignore_label: int,
    num_classes: int,
    sigma: float = 8.0,
    small_instance_area: int = 4096,
    small_instance_weight: float = 3.0,
    next_panoptic: Tensor | None = None,
) -> dict[str, Tensor]:
    """Targets and per-pixel loss weights of a batch of panoptic labels.

    Args:
        panoptic: ``(B, H, W)`` ground truth ``class * label_divisor + instance``.
        thing_ids: Classes with instances.
        label_divisor: Panoptic label divisor.
        ignore_label: Class id of void pixels.
        num_classes: Number of semantic classes.
        sigma: Standard deviation of the centre Gaussians in pixels.
        small_instance_area: Instances with fewer pixels get ``small_instance_weight``.
        small_instance_weight: Semantic-loss weight of small instances (1 turns it off).
        next_panoptic: ``(B, H, W)`` ground truth of frame ``t+1`` for the next-frame offsets.

    Returns:
        dict with ``semantic`` ``(B, H, W)`` long (``ignore_label`` where ignored),
        ``semantic_weights``, ``center`` ``(B, 1, H, W)``, ``center_weights`` ``(B, H, W)``,
        ``offset`` ``(B, 2, H, W)``, ``offset_weights`` ``(B, H, W)`` and, with
        ``next_panoptic``, ``next_offset`` ``(B, 2, H, W)`` and ``next_offset_weights``.

    Raises:
        ValueError: If a class id is neither in ``[0, num_classes)`` nor ``ignore_label``.
    """
    if panoptic.dim() != 3:
        raise ValueError(f'panoptic must be (B, H, W), got shape {tuple(panoptic.shape)}')
    pan = panoptic.long()
    b, h, w = pan.shape
    dtype = torch.float32
    sem = pan // label_divisor
    ignored = sem == ignore_label
    bad = ~ignored & ((sem < 0) | (sem >= num_classes))
    if bool(bad.any()):
        raise ValueError(
            f'panoptic ground truth has class ids {sorted(set(sem[bad].unique().tolist()))[:8]} '
            f'outside [0, {num_classes}) that are not the ignore label {ignore_label}: the '
            'class set of the dataset does not match the model (num_classes, label_divisor, '
            'ignore_label)'
        )
    things = torch.as_tensor(list(thing_ids), dtype=torch.long, device=pan.device)
    thing = torch.isin(sem, things) & ~ignored
    crowd = thing & (pan % label_divisor == 0)
    big, keys, inst_px, inv, area, centers = _segments(pan, thing, label_divisor)
    sample = keys // big
    sem_w = torch.ones(b, h, w, dtype=dtype, device=pan.device)
    small = (area < small_instance_area)[inv]
    sem_w[inst_px] = torch.where(small, small_instance_weight, 1.0).to(dtype)
    out = dict(
        semantic=torch.where(ignored, torch.full_like(sem, ignore_label), sem),
        semantic_weights=sem_w,
        center=_heatmap(centers, sample, (b, h, w), sigma, dtype)[:, None],
        center_weights=(~crowd & ~ignored).to(dtype),
        offset=_offsets_to(centers, inv, inst_px),
        offset_weights=(thing & ~crowd).to(dtype),
    )
    if next_panoptic is not None:
        if next_panoptic.shape != panoptic.shape:
            raise ValueError(
                f'next_panoptic {tuple(next_panoptic.shape)} must have the shape of panoptic '
                f'{tuple(panoptic.shape)}: the frames of a pair must have one size'
            )
        nxt_off = _next_offsets(next_panoptic, keys, big, centers, label_divisor)
        out['next_offset'] = nxt_off
        out['next_offset_weights'] = (nxt_off.abs().sum(1) > 0).to(dtype)
    return out
