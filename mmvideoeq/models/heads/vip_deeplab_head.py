"""ViP-DeepLab heads: Panoptic-DeepLab dual decoder, depth head and next-frame instance branch.

Thesis ch. 7, Fig. 7-3 (Qiao et al., CVPR 2021): on the features of frame ``t`` a semantic decoder
feeds the semantic head and the depth head (Sec. 7.3.2: features upsampled 2x, then
``Depth = min + (max - min) * sigmoid(f_d)``, Eq. 7.3, ``max = 88`` m for KITTI), an instance
decoder feeds the centre-heatmap and centre-offset heads (Panoptic-DeepLab); the next-frame
instance branch concatenates the high-level features of frames ``t`` and ``t+1``, decodes them
with the low-level features of ``t+1`` and regresses, for every pixel of ``t+1``, the offset to
its object's centre in frame ``t``.

Widths, rates and the depth range default to deeplab2's ``configs/cityscapes_dvps/vip_deeplab/
resnet50_beta_os32.textproto``; the forward pass follows deeplab2's
``model/decoder/vip_deeplab_decoder.py`` (Apache-2.0; no code copied).
"""

from __future__ import annotations

from typing import Sequence

import torch
from mmengine.model import BaseModule
from mmseg.models.utils import resize
from torch import Tensor

from mmvideoeq.models.utils.panoptic_targets import panoptic_deeplab_targets
from mmvideoeq.registry import MODELS

from .panoptic_deeplab_decoder import PanopticDeepLabDecoder, PredictionHead

__all__ = ['ViPDeepLabHead', 'resize_outputs']

_SEM = dict(aspp_channels=256, decoder_channels=256, low_project=(64, 32), atrous_rates=(3, 6, 9))
_INS = dict(aspp_channels=256, decoder_channels=128, low_project=(32, 16), atrous_rates=(3, 6, 9))


def resize_outputs(outs: dict[str, Tensor], size: Sequence[int], align_corners: bool = True):
    """Bilinearly resize raw head outputs to ``size``; offsets are rescaled with the image.

    Offsets are scaled by ``(size - 1) / (h - 1)`` per axis, deeplab2's
    ``resize_and_rescale_offsets`` (valid with aligned corners).
    """
    out = {}
    for key, val in outs.items():
        h, w = val.shape[-2:]
        if (h, w) == tuple(size):
            out[key] = val
            continue
        val = resize(
            val, size=tuple(size), mode='bilinear', align_corners=align_corners, warning=False
        )
        if 'offset' in key:
            scale = val.new_tensor([(size[0] - 1) / max(h - 1, 1), (size[1] - 1) / max(w - 1, 1)])
            val = val * scale[None, :, None, None]
        out[key] = val
    return out


@MODELS.register_module()
class ViPDeepLabHead(BaseModule):
    """Dual-decoder Panoptic-DeepLab head with ViP-DeepLab's depth and next-frame branches.

    Args:
        in_channels: Channels of the backbone feature maps.
        high_index: Index of the high-level feature (output stride 32 in deeplab2).
        low_indices: Indices of the low-level features, lower resolution first (stride 8, 4).
        num_classes: Semantic classes.
        thing_ids: Classes with instances.
        label_divisor: Panoptic label divisor of the dataset.
        ignore_label: Void class id of the dataset's panoptic labels.
        semantic_decoder: :class:`PanopticDeepLabDecoder` widths of the semantic branch.
        instance_decoder: Those of the instance (and next-frame) branch.
        semantic_head_channels, center_head_channels, offset_head_channels: Head widths.
        depth_head: ``dict(channels=64, min_depth=0., max_depth=88.)`` or None (no depth).
        panoptic: Build the panoptic branches; ``False`` keeps the semantic decoder and the depth
            head only (monocular depth, e.g. KITTI depth prediction).
        next_frame: ``dict(channels=32, num_cascade=1)`` or None (Panoptic-DeepLab only);
            ``num_cascade=4`` is the chapter's Cascade-ASPP.
        conv_type: ``'depthwise_separable'`` or ``'standard'`` 5x5 convolutions.
        norm_cfg, act_cfg: mmcv configs.
        align_corners: Aligned-corner bilinear resizing (deeplab2: True).
        target_cfg: :func:`panoptic_deeplab_targets` options (``sigma``, ``small_instance_area``,
            ``small_instance_weight``).
        loss_semantic, loss_center, loss_offset, loss_next_offset, loss_depth: Loss configs.
        init_cfg: mmengine init config.
    """

    def __init__(
        self,
        *,
        in_channels: Sequence[int],
        high_index: int = -1,
        low_indices: Sequence[int] = (1, 0),
        num_classes: int,
        thing_ids: Sequence[int],
        label_divisor: int,
        ignore_label: int,
        semantic_decoder: dict | None = None,
        instance_decoder: dict | None = None,
        semantic_head_channels: int = 256,
        center_head_channels: int = 32,
        offset_head_channels: int = 32,
        depth_head: dict | None = None,
        panoptic: bool = True,
        next_frame: dict | None = None,
        conv_type: str = 'depthwise_separable',
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        align_corners: bool = True,
        target_cfg: dict | None = None,
        loss_semantic: dict | None = None,
        loss_center: dict | None = None,
        loss_offset: dict | None = None,
        loss_next_offset: dict | None = None,
        loss_depth: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        thing_ids = tuple(int(t) for t in thing_ids)
        if any(not 0 <= t < num_classes for t in thing_ids):
            raise ValueError(f'thing_ids {thing_ids} must be class ids in [0, {num_classes})')
        self.num_classes, self.thing_ids = int(num_classes), thing_ids
        self.label_divisor, self.ignore_label = int(label_divisor), int(ignore_label)
        n = len(in_channels)
        self.high_index = high_index % n
        self.low_indices = tuple(int(i) % n for i in low_indices)
        if not panoptic and (depth_head is None or next_frame is not None):
            raise ValueError('panoptic=False needs a depth_head and no next_frame branch')
        self.with_panoptic = bool(panoptic)
        self.with_next = next_frame is not None
        self.align_corners = align_corners
        self.target_cfg = dict(target_cfg or {})
        common = dict(
            conv_type=conv_type,
            norm_cfg=norm_cfg or dict(type='BN'),
            act_cfg=act_cfg or dict(type='ReLU'),
        )
        self._build_branches(
            [in_channels[i] for i in (self.high_index, *self.low_indices)],
            dict(sem=semantic_decoder, ins=instance_decoder),
            dict(sem=semantic_head_channels, ctr=center_head_channels, off=offset_head_channels),
            depth_head,
            next_frame,
            common,
        )
        self._build_losses(loss_semantic, loss_center, loss_offset, loss_next_offset, loss_depth)

    def _build_branches(self, channels, decoders, widths, depth_head, next_frame, common) -> None:
        """Decoders and prediction heads (see the class docstring for the arguments)."""
        high, lows = channels[0], channels[1:]

        def decoder(spec: dict | None, default: dict, high_ch: int, **extra):
            return PanopticDeepLabDecoder(
                high_channels=high_ch,
                low_channels=lows,
                align_corners=self.align_corners,
                **{**default, **(spec or {}), **extra},
                **common,
            )

        self.semantic_decoder = decoder(decoders['sem'], _SEM, high)
        sem_ch = self.semantic_decoder.out_channels
        if self.with_panoptic:
            self.instance_decoder = decoder(decoders['ins'], _INS, high)
            ins_ch = self.instance_decoder.out_channels
            self.semantic_head = PredictionHead(sem_ch, widths['sem'], self.num_classes, **common)
            self.center_head = PredictionHead(ins_ch, widths['ctr'], 1, **common)
            self.offset_head = PredictionHead(ins_ch, widths['off'], 2, **common)
        self.depth_range = None
        if depth_head is not None:
            dh = {**dict(channels=64, min_depth=0.0, max_depth=88.0), **depth_head}
            if not dh['max_depth'] > dh['min_depth'] >= 0:
                raise ValueError(f'depth_head needs 0 <= min_depth < max_depth, got {dh}')
            self.depth_range = (float(dh['min_depth']), float(dh['max_depth']))
            self.depth_head = PredictionHead(sem_ch, dh['channels'], 1, **common)
        if self.with_next:
            nf = {**dict(channels=32, num_cascade=1), **next_frame}
            self.next_decoder = decoder(
                decoders['ins'], _INS, 2 * high, num_cascade=nf['num_cascade']
            )
            self.next_offset_head = PredictionHead(ins_ch, nf['channels'], 2, **common)

    def _build_losses(self, semantic, center, offset, next_offset, depth) -> None:
        """Loss modules; defaults: deeplab2's ViP-DeepLab weights (1, 200, 0.01, 0.01, 0.1)."""
        sem_loss = dict(semantic or dict(type='TopKCrossEntropyLoss', top_k_percent=0.2))
        if sem_loss.setdefault('ignore_index', self.ignore_label) != self.ignore_label:
            raise ValueError(
                f"loss_semantic.ignore_index={sem_loss['ignore_index']} differs from the head's "
                f'ignore_label={self.ignore_label}; leave it unset'
            )
        pix = dict(type='WeightedPixelLoss')
        self.loss_semantic = MODELS.build(sem_loss)
        self.loss_center = MODELS.build(
            center or dict(pix, mode='mse', loss_weight=200.0, loss_name='loss_ctr')
        )
        self.loss_offset = MODELS.build(
            offset or dict(pix, mode='l1', loss_weight=0.01, loss_name='loss_off')
        )
        self.loss_next_offset = MODELS.build(
            next_offset or dict(pix, mode='l1', loss_weight=0.01, loss_name='loss_next')
        )
        self.loss_depth = MODELS.build(depth or dict(type='ViPDepthLoss', loss_weight=0.1))

    # ------------------------------------------------------------------ forward
    def _split(self, feats: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        return feats[self.high_index], [feats[i] for i in self.low_indices]

    def forward(
        self, feats: Sequence[Tensor], next_feats: Sequence[Tensor] | None = None
    ) -> dict[str, Tensor]:
        """Raw outputs at decoder resolution.

        Args:
            feats: Backbone features of frame ``t``.
            next_feats: Backbone features of frame ``t+1`` (for the next-frame branch).

        Returns:
            dict: ``semantic`` ``(B, C, H/4, W/4)`` logits, ``center`` ``(B, 1, ...)``,
            ``offset`` ``(B, 2, ...)`` (``(y, x)`` pixels at that resolution), ``depth``
            ``(B, 1, H/2, W/2)`` metres (with a depth head), ``next_offset`` (with
            ``next_feats``).
        """
        high, lows = self._split(feats)
        sem = self.semantic_decoder(high, lows)
        out = {}
        if self.with_panoptic:
            ins = self.instance_decoder(high, lows)
            out.update(
                semantic=self.semantic_head(sem),
                center=self.center_head(ins),
                offset=self.offset_head(ins),
            )
        if self.depth_range is not None:
            up = resize(
                sem,
                scale_factor=2,
                mode='bilinear',
                align_corners=self.align_corners,
                warning=False,
            )
            lo, hi = self.depth_range
            out['depth'] = lo + (hi - lo) * torch.sigmoid(self.depth_head(up))
        if next_feats is not None:
            out['next_offset'] = self.forward_next(high, next_feats)
        return out

    def forward_next(self, high: Tensor, next_feats: Sequence[Tensor]) -> Tensor:
        """Next-frame offsets from frame ``t``'s high-level feature and frame ``t+1``'s features."""
        if not self.with_next:
            raise ValueError('this head has no next-frame branch (next_frame=None)')
        nhigh, nlows = self._split(next_feats)
        if nhigh.shape != high.shape:
            raise ValueError(
                f'the frames of a pair must have one size: high-level features {tuple(high.shape)}'
                f' and {tuple(nhigh.shape)}'
            )
        return self.next_offset_head(self.next_decoder(torch.cat([high, nhigh], 1), nlows))

    # ------------------------------------------------------------------ losses
    def loss_by_feat(
        self,
        outs: dict[str, Tensor],
        panoptic: Tensor | None,
        depth: Tensor | None = None,
        next_panoptic: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Losses of the raw outputs against ground truth of the same size.

        Args:
            outs: :meth:`forward` outputs (any resolution; resized to the labels').
            panoptic: ``(B, H, W)`` panoptic ground truth of frame ``t`` (None without the
                panoptic branches).
            depth: ``(B, H, W)`` depth of frame ``t`` in metres, 0 = invalid.
            next_panoptic: ``(B, H, W)`` panoptic ground truth of frame ``t+1``.

        Returns:
            dict of scalar losses (``loss_sem``, ``loss_ctr``, ``loss_off``, ``loss_depth``,
            ``loss_next``; names from the loss configs).
        """
        losses = {}
        if 'depth' in outs:
            if depth is None:
                raise ValueError('the model has a depth head but the samples carry no gt_depth')
            d = resize_outputs(dict(depth=outs['depth']), depth.shape[-2:], self.align_corners)
            losses[self.loss_depth.loss_name] = self.loss_depth(d['depth'], depth)
        if not self.with_panoptic:
            return losses
        size = panoptic.shape[-2:]
        outs = resize_outputs(outs, size, self.align_corners)
        t = panoptic_deeplab_targets(
            panoptic,
            thing_ids=self.thing_ids,
            label_divisor=self.label_divisor,
            ignore_label=self.ignore_label,
            num_classes=self.num_classes,
            next_panoptic=next_panoptic if 'next_offset' in outs else None,
            **self.target_cfg,
        )
        losses[self.loss_semantic.loss_name] = self.loss_semantic(
            outs['semantic'], t['semantic'], t['semantic_weights']
        )
        losses[self.loss_center.loss_name] = self.loss_center(
            outs['center'], t['center'], t['center_weights']
        )
        losses[self.loss_offset.loss_name] = self.loss_offset(
            outs['offset'], t['offset'], t['offset_weights']
        )
        if 'next_offset' in outs:
            losses[self.loss_next_offset.loss_name] = self.loss_next_offset(
                outs['next_offset'], t['next_offset'], t['next_offset_weights']
            )
        return losses
