"""ViP-DeepLab: depth-aware video panoptic segmentation (thesis ch. 7), with a streaming mode.

The model is its own segmentor on mmseg's ``BaseSegmentor`` rather than an ``EncoderDecoder``:
training takes *pairs* of frames (two backbone passes with shared weights and a head that reads
both), its outputs are panoptic ids and depth rather than per-class logits, and its video
inference carries a state between frames (the previous frame's features, raw maps and stitched
ids). ``EncoderDecoder``'s single-frame ``encode_decode`` / logits post-processing fits none of
this.

Inputs are ``(B, 3, H, W)`` frames or ``(B, 6, H, W)`` pairs (frame ``t`` then ``t+1`` stacked on
channels, deeplab2's layout and ``PackDVPSInputs``'). Training needs pairs when the head has the
next-frame branch. ``predict`` is per-frame Panoptic-DeepLab (fresh ids on every frame);
temporally consistent ids come from the streaming protocol (:mod:`.vip_deeplab_stream`), which
pairs ``(t-1, t)`` frame by frame and stitches (``docs/vip_deeplab.md``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.models.segmentors import BaseSegmentor
from mmseg.structures import SegDataSample
from torch import Tensor

from mmvideoeq.models.heads.vip_deeplab_head import resize_outputs
from mmvideoeq.models.streaming import backbone_aux_losses
from mmvideoeq.models.utils.panoptic_postprocess import panoptic_deeplab_postprocess, semantic_ids
from mmvideoeq.registry import MODELS

from .vip_deeplab_stream import ViPStreamMixin

__all__ = ['ViPDeepLab', 'split_frames', 'resize_nearest']

#: Post-processing defaults: deeplab2 ``configs/*_dvps/vip_deeplab/*.textproto`` evaluator options
#: (``keep_k_centers`` is the proto default). ``id_reuse_gap``: frames a stitched instance id
#: must stay unseen before a new track may take it, once the ids reach the label divisor; 20 is
#: the longest VPQ window of the DVPS protocols (SemKITTI-DVPS k = 20), so no evaluated window
#: sees one id on two tracks.
DEFAULT_TEST_CFG = dict(
    center_threshold=0.1, nms_kernel=13, top_k=400, stuff_area=2048, mode='whole', id_reuse_gap=20
)


def split_frames(inputs: Tensor, max_frames: int = 2) -> list[Tensor]:
    """Cut ``(B, 3 * T, H, W)`` into ``T`` frames ``(B, 3, H, W)``.

    Raises:
        ValueError: If the channels are not a multiple of 3 or ``T > max_frames``.
    """
    if inputs.dim() != 4 or inputs.shape[1] % 3 != 0 or inputs.shape[1] == 0:
        raise ValueError(
            f'inputs must be (B, 3*T, H, W) frames stacked on channels, got {tuple(inputs.shape)}'
        )
    t = inputs.shape[1] // 3
    if t > max_frames:
        raise ValueError(
            f'got a clip of {t} frames stacked on channels; ViP-DeepLab reads one frame or one '
            'pair (t, t+1) per sample'
        )
    return list(inputs.split(3, dim=1))


def resize_nearest(x: Tensor, size: Sequence[int]) -> Tensor:
    """Nearest-neighbour resize of integer maps ``(B, C, H, W)`` (ids stay exact at any size).

    Source pixel ``floor(i * H / H')``, as ``F.interpolate(mode='nearest')``.
    """
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    ys = (torch.arange(size[0], device=x.device) * h // size[0]).clamp(max=h - 1)
    xs = (torch.arange(size[1], device=x.device) * w // size[1]).clamp(max=w - 1)
    return x[..., ys[:, None], xs[None, :]]


def _stack_field(samples: Sequence, key: str, what: str, pad_value: float) -> Tensor:
    """Stack ``sample.<key>.data`` ``(1, H, W)`` of a batch into ``(B, H, W)`` (padded)."""
    maps = []
    for i, s in enumerate(samples):
        field = s.get(key) if hasattr(s, 'get') else None
        if field is None:
            raise ValueError(
                f'data sample {i} has no {key!r} ({what}); load it in the pipeline '
                '(LoadPanopticAnnotation / LoadKittiDepthAnnotation, PackDVPSInputs)'
            )
        maps.append(field.data.reshape(field.data.shape[-2:]))
    h = max(m.shape[0] for m in maps)
    w = max(m.shape[1] for m in maps)
    return torch.stack(
        [F.pad(m, (0, w - m.shape[1], 0, h - m.shape[0]), value=pad_value) for m in maps]
    )


@MODELS.register_module()
class ViPDeepLab(ViPStreamMixin, BaseSegmentor):
    """ViP-DeepLab segmentor (any backbone; the streaming mode needs a DEQ backbone).

    Args:
        backbone: Backbone config (``mmvideoeq.MDEQ``, ``mmdet.ResNet``, ``mmseg.ResNetV1c``...).
        decode_head: :class:`~mmvideoeq.models.heads.ViPDeepLabHead` config.
        neck: Optional neck config.
        train_cfg: Unused (kept for the mmseg interface).
        test_cfg: Post-processing: ``center_threshold``, ``nms_kernel``, ``top_k``,
            ``stuff_area`` (defaults: deeplab2's ViP-DeepLab evaluator options) and the
            streaming stitching's ``id_reuse_gap`` (see :data:`DEFAULT_TEST_CFG`).
        data_preprocessor: Data preprocessor config (``ViPDataPreprocessor``).
        init_cfg: mmengine init config.
    """

    def __init__(
        self,
        *,
        backbone: dict,
        decode_head: dict,
        neck: dict | None = None,
        train_cfg: dict | None = None,
        test_cfg: dict | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        self.decode_head = MODELS.build(decode_head)
        self.train_cfg = train_cfg
        unknown = set(test_cfg or {}) - set(DEFAULT_TEST_CFG)
        if unknown:
            raise ValueError(f'unknown test_cfg keys {sorted(unknown)} for ViPDeepLab')
        self.test_cfg = {**DEFAULT_TEST_CFG, **(test_cfg or {})}
        gap = self.test_cfg['id_reuse_gap']
        if isinstance(gap, bool) or not isinstance(gap, int) or gap < 1:
            raise ValueError(
                f'test_cfg.id_reuse_gap must be an int >= 1 (frames an instance id stays unused '
                f'before it is re-used), got {gap!r}'
            )
        self.align_corners = self.decode_head.align_corners

    # ------------------------------------------------------------------ features
    def extract_feat(self, inputs: Tensor) -> tuple[Tensor, ...]:
        """Backbone (and neck) features of frames ``(N, 3, H, W)``."""
        feats = tuple(self.backbone(inputs))
        return tuple(self.neck(feats)) if self.with_neck else feats

    def _pair_feats(self, inputs: Tensor):
        """Features of frame ``t`` and, for a pair input, of frame ``t+1`` (one backbone batch)."""
        frames = split_frames(inputs)
        if len(frames) == 1:
            return self.extract_feat(frames[0]), None
        if frames[0].shape != frames[1].shape:  # pragma: no cover - split keeps shapes equal
            raise ValueError('the frames of a pair must have one size')
        b = inputs.shape[0]
        feats = self.extract_feat(torch.cat(frames))
        return tuple(f[:b] for f in feats), tuple(f[b:] for f in feats)

    # ------------------------------------------------------------------ training
    def loss(self, inputs: Tensor, data_samples: Sequence[SegDataSample]) -> dict:
        """Losses of a batch of pairs (or frames, without the next-frame branch).

        Raises:
            ValueError: If the head has a next-frame branch and the inputs are not pairs.
        """
        head = self.decode_head
        if head.with_next and len(split_frames(inputs)) != 2:
            raise ValueError(
                'the next-frame branch trains on frame pairs (t, t+1): inputs must be '
                f'(B, 6, H, W), got one frame per sample {tuple(inputs.shape)}; load the next '
                'frame (with_next_frame=True, LoadNextImageFromFile) or set next_frame=None in '
                'the head'
            )
        feats, next_feats = self._pair_feats(inputs)
        outs = head(feats, next_feats if head.with_next else None)
        outs = resize_outputs(outs, inputs.shape[-2:], self.align_corners)
        ignore = head.ignore_label * head.label_divisor
        panoptic = depth = next_pan = None
        if head.depth_range is not None:
            depth = _stack_field(data_samples, 'gt_depth', 'depth ground truth', 0.0)
            gt_size = depth.shape[-2:]
        if head.with_panoptic:
            panoptic = _stack_field(data_samples, 'gt_panoptic', 'panoptic ground truth', ignore)
            gt_size = panoptic.shape[-2:]
        # labels are not padded with the inputs (padding is bottom/right): crop the outputs
        outs = {k: v[..., : gt_size[0], : gt_size[1]] for k, v in outs.items()}
        if head.with_next:
            next_pan = _stack_field(
                data_samples, 'next_gt_panoptic', 'panoptic ground truth of frame t+1', ignore
            )
        losses = head.loss_by_feat(outs, panoptic, depth=depth, next_panoptic=next_pan)
        losses.update(backbone_aux_losses(self.backbone))
        return losses

    # ------------------------------------------------------------------ inference
    def _forward(self, inputs: Tensor, data_samples=None) -> dict[str, Tensor]:
        """Raw head outputs (decoder resolution)."""
        feats, next_feats = self._pair_feats(inputs)
        return self.decode_head(feats, next_feats if self.decode_head.with_next else None)

    def encode_decode(self, inputs: Tensor, batch_img_metas: list) -> Tensor:
        """Semantic logits at the input resolution (mmseg interface)."""
        if not self.decode_head.with_panoptic:
            raise ValueError('a depth-only ViPDeepLab (panoptic=False) has no semantic logits')
        outs = self.decode_head(self.extract_feat(split_frames(inputs)[0]))
        return resize_outputs(dict(semantic=outs['semantic']), inputs.shape[-2:])['semantic']

    def aug_test(self, *args, **kwargs):  # pragma: no cover - mmseg 0.x interface
        raise NotImplementedError('ViPDeepLab has no test-time augmentation')

    @staticmethod
    def _shared_meta(data_samples, key: str, default) -> tuple:
        values = {tuple(s.metainfo.get(key, default))[: len(default)] for s in data_samples}
        if len(values) != 1:
            raise ValueError(f'a batch must hold frames of one {key}, got {sorted(values)}')
        return values.pop()

    def to_network(self, outs: dict[str, Tensor], input_size, data_samples) -> dict[str, Tensor]:
        """Raw outputs -> the input size -> padding removed: maps ``(B, C, h, w)``, ``img_shape``.

        Post-processing and stitching run at this size (deeplab2 post-processes at the
        network's input size too); :meth:`pack_predictions` brings the results to ``ori_shape``.
        All samples of a batch must share ``img_shape`` and ``padding_size``.
        """
        outs = resize_outputs(outs, input_size, self.align_corners)
        h, w = self._shared_meta(data_samples, 'img_shape', tuple(input_size))
        left, _, top, _ = self._shared_meta(data_samples, 'padding_size', (0, 0, 0, 0))
        return {k: v[:, :, top : top + h, left : left + w] for k, v in outs.items()}

    def pp_kwargs(self) -> dict:
        """Post-processing options from the head's classes and ``test_cfg`` (no label divisor)."""
        head, cfg = self.decode_head, self.test_cfg
        return dict(
            thing_ids=head.thing_ids,
            void_label=head.ignore_label,
            stuff_area=cfg['stuff_area'],
            threshold=cfg['center_threshold'],
            nms_kernel=cfg['nms_kernel'],
            top_k=cfg['top_k'],
            num_classes=head.num_classes,
        )

    def panoptic(self, semantic: Tensor, center: Tensor, offset: Tensor) -> Tensor:
        """Panoptic-DeepLab post-processing with this model's classes and ``test_cfg``."""
        return panoptic_deeplab_postprocess(
            semantic,
            center,
            offset,
            label_divisor=self.decode_head.label_divisor,
            **self.pp_kwargs(),
        )

    def pack_predictions(
        self, data_samples, panoptic: Tensor | None, semantic: Tensor | None, depth: Tensor | None
    ) -> list:
        """Write ``pred_panoptic``, ``pred_sem_seg`` (nearest) and ``pred_depth`` (bilinear),
        each ``(1, H, W)`` at the sample's ``ori_shape``.

        Args:
            data_samples: The batch's samples (updated in place and returned).
            panoptic, semantic: ``(B, h, w)`` ids at the network size, or None (depth only).
            depth: ``(B, 1, h, w)`` metres, or None.
        """
        out = []
        for i, s in enumerate(data_samples):
            size = tuple(
                s.metainfo.get('ori_shape', (depth if panoptic is None else panoptic).shape[-2:])
            )[:2]
            if panoptic is not None:
                ids = torch.stack([panoptic[i], semantic[i]])[None]
                ids = resize_nearest(ids, size)[0]
                s.pred_panoptic = PixelData(data=ids[:1].to(torch.int64))
                s.pred_sem_seg = PixelData(data=ids[1:])
            if depth is not None:
                d = resize_outputs(dict(depth=depth[i : i + 1]), size, self.align_corners)
                s.pred_depth = PixelData(data=d['depth'][0])
            out.append(s)
        return out

    @torch.no_grad()
    def predict(self, inputs: Tensor, data_samples: Sequence[SegDataSample] | None = None):
        """Per-frame panoptic, semantic and depth predictions of frame ``t`` (fresh ids)."""
        frame = split_frames(inputs)[0]
        if data_samples is None:
            data_samples = [SegDataSample() for _ in range(frame.shape[0])]
        outs = self.decode_head(self.extract_feat(frame))
        return self.predict_from_outputs(outs, frame.shape[-2:], list(data_samples))

    def predict_from_outputs(self, outs: dict[str, Tensor], input_size, data_samples) -> list:
        """Post-process raw head outputs of frames (fresh ids) and pack them."""
        maps = self.to_network(outs, input_size, data_samples)
        if not self.decode_head.with_panoptic:
            return self.pack_predictions(data_samples, None, None, maps['depth'])
        semantic = semantic_ids(maps['semantic'])
        pan = self.panoptic(semantic, maps['center'], maps['offset'])
        return self.pack_predictions(data_samples, pan, semantic, maps.get('depth'))
