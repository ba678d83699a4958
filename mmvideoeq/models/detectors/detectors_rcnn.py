"""DetectoRS detectors: mmdet's two-stage detectors driving the RFP recursion, cold and streamed.

RFP is a recursion ``f^t = G(f^{t-1})`` with ``G(f) = Fuse(f, F(B(x, R(f))))`` (thesis Eq. 6.3,
:mod:`mmvideoeq.models.necks.rfp`): a fixed-point iteration of the kind the DEQ core solves. The
detectors here run it in two ways:

* per image (training and ``predict``): ``T`` unrolled steps from ``f^0 = 0`` exactly as mmdet
  (step 1 without feedback);
* on video (``stream_step``, the streaming protocol :class:`mmvideoeq.streaming.StreamingModel`):
  the last pyramid of frame ``t - 1`` is the feedback of frame ``t`` and ``M`` recursive steps run
  per frame, through :func:`mmvideoeq.deq.solve` (``method='fixed_point'``, exactly ``M``
  applications of ``G``, solver statistics included). The zero state is the cold state: the
  step from ``f = 0`` is the no-feedback step (mmdet's step 1), so ``M = T`` from a cold state
  reproduces the per-image detector and ``M = 1`` from a cold state is "no feedback".

With a separate backbone per step (``share_backbone=False``), cold step ``k`` uses ``B^k`` as in
training and every step from a carried (warm) state uses the last one, ``B^T``.

Training on carried states (:mod:`mmvideoeq.models.clip_training`): a batch of clips (samples
with ``clip_index`` / ``clip_step`` metainfo) is trained as it is streamed: each clip's first
frame from ``f^0 = 0`` with the cold steps, every later frame with ``stream_steps`` feedback steps
from the previous frame's pyramid, the loss on every frame, backpropagation truncated every
``truncate`` frames (``clip_train_cfg``). A batch without clip metainfo is trained per image as
above.

The detector classes are mmdet's (``FasterRCNN``, ``CascadeRCNN``, ``HybridTaskCascade``) with
this mixin; their parameters and checkpoints are mmdet's. ``DetectoRSHTC`` also returns the
semantic head's per-pixel prediction (``pred_sem_seg``, COCO-stuff labels) for panoptic output
(thesis Table 6-VI; combined with the instances by
:class:`~mmvideoeq.evaluation.metrics.CocoPanopticPQMetric`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from mmdet.models.detectors import CascadeRCNN, FasterRCNN, HybridTaskCascade
from mmengine.structures import PixelData
from torch import Tensor

from mmvideoeq.deq import solve
from mmvideoeq.models.clip_training import (
    ClipTrainConfig,
    ClipTrainingMixin,
    draw_steps,
)
from mmvideoeq.models.necks.rfp import RecursiveFeaturePyramid, check_feedback_backbone
from mmvideoeq.models.utils.two_stage import two_stage_loss
from mmvideoeq.registry import MODELS
from mmvideoeq.streaming import StepOutput

__all__ = [
    'RecursiveFeedbackMixin',
    'DetectoRSFasterRCNN',
    'DetectoRSCascadeRCNN',
    'DetectoRSHTC',
]


def pyramid_shapes(height: int, width: int, num_levels: int) -> list[tuple[int, int]]:
    """Spatial sizes of a ResNet-FPN pyramid: stride 4, then halved (rounding up) per level."""
    h, w = math.ceil(math.ceil(height / 2) / 2), math.ceil(math.ceil(width / 2) / 2)
    out = []
    for _ in range(num_levels):
        out.append((h, w))
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return out


class RecursiveFeedbackMixin(ClipTrainingMixin):
    """RFP recursion for mmdet two-stage detectors: per image and streamed (module docstring).

    Builds like the mmdet detector it is mixed into; with a
    :class:`~mmvideoeq.models.necks.RecursiveFeaturePyramid` neck it checks that the backbone
    outputs the image (``output_img=True``) and, with ``share_backbone``, takes feedback.

    Args:
        clip_train_cfg: :class:`~mmvideoeq.models.clip_training.ClipTrainConfig` fields
            (``stream_steps``, ``cold_steps``, ``truncate``) for batches of clips; ``None``: the
            defaults (one feedback step per carried frame, the configured cold unroll,
            windows of 2 frames).
        **kwargs: The mmdet detector's arguments.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        if self.with_rfp:
            if not getattr(self.backbone, 'output_img', False):
                raise ValueError(
                    f'an RFP neck needs the image from the backbone: set output_img=True on '
                    f'{type(self.backbone).__name__}'
                )
            if self.neck.share_backbone:
                check_feedback_backbone(
                    self.backbone,
                    self.neck.feedback_channels,
                    'the detector backbone (shared by every RFP step)',
                )

    @property
    def with_rfp(self) -> bool:
        """Whether the neck is a recursive feature pyramid."""
        return isinstance(getattr(self, 'neck', None), RecursiveFeaturePyramid)

    def extract_feat(self, batch_inputs: Tensor) -> tuple[Tensor, ...]:
        """Backbone + neck; with RFP the neck unrolls ``T`` steps (it gets the backbone)."""
        x = self.backbone(batch_inputs)
        if self.with_rfp:
            return self.neck(x, backbone=self.backbone)
        return self.neck(x) if self.with_neck else x

    def _check_clip_trainable(self) -> None:
        self._check_rfp_streamable()

    def clip_train_step(
        self, inputs: Tensor, z0: list[Tensor] | None, cfg: ClipTrainConfig
    ) -> tuple[list[Tensor], list[Tensor], dict]:
        """One streamed RFP step of training frames, with autograd (the streamed test's step).

        Args:
            inputs: Frames ``(n, 3, H, W)``.
            z0: The previous frames' pyramids (``num_outs`` tensors ``(n, C, H_l, W_l)``) or
                ``None`` for first frames: then the cold unroll from ``f^0 = 0`` (step 1 without
                feedback) of ``cfg.cold_steps`` steps (``None``: the neck's ``train_steps`` draw,
                else ``rfp_steps``).
            cfg: The clip-training configuration.

        Returns:
            tuple: the new pyramid (the carried state and the heads' features, the same list)
            and no extra losses.
        """
        neck, backbone = self.neck, self.backbone
        if z0 is None:
            if cfg.cold_steps is not None:
                steps = draw_steps(cfg.cold_steps)
            elif neck.train_steps is not None:
                steps = draw_steps(neck.train_steps)
            else:
                steps = neck.rfp_steps
            z = neck.pyramid(backbone(inputs)[1:])
            for step in range(1, steps):
                z = neck.feedback_step(inputs, z, step, backbone)
        else:
            last = max(neck.rfp_steps - 1, 1)  # a carried state always runs the last backbone
            z = list(z0)
            for _ in range(draw_steps(cfg.stream_steps)):
                z = neck.feedback_step(inputs, z, last, backbone)
        return z, z, {}

    def loss_from_feats(self, feats: Sequence[Tensor], data_samples: list) -> dict:
        """mmdet's RPN and RoI losses on a given pyramid ``num_outs x (B, C, H_l, W_l)``."""
        return two_stage_loss(self, feats, data_samples)

    def predict(self, batch_inputs: Tensor, batch_data_samples: list, rescale: bool = True):
        """mmdet's two-stage ``predict``: features, then :meth:`predict_from_pyramid`."""
        return self.predict_from_pyramid(
            self.extract_feat(batch_inputs), batch_data_samples, rescale=rescale
        )

    def predict_from_pyramid(
        self, x: Sequence[Tensor], data_samples: list, rescale: bool = True
    ) -> list:
        """RPN and RoI heads on given pyramid features (mmdet ``TwoStageDetector.predict``).

        Args:
            x: Pyramid features, ``num_outs`` maps ``(B, C, H_l, W_l)``.
            data_samples: The batch's data samples.
            rescale: Rescale predictions to the original image size.

        Returns:
            list: The data samples with ``pred_instances`` (and model-specific extras).
        """
        x = tuple(x)
        if data_samples[0].get('proposals', None) is None:
            rpn_results = self.rpn_head.predict(x, data_samples, rescale=False)
        else:
            rpn_results = [s.proposals for s in data_samples]
        results = self.roi_head.predict(x, rpn_results, data_samples, rescale=rescale)
        samples = self.add_pred_to_datasample(data_samples, results)
        return self.add_extra_predictions(x, samples, rescale)

    def add_extra_predictions(self, x: tuple, samples: list, rescale: bool) -> list:
        """Hook for predictions besides the instances (none here)."""
        return samples

    # ------------------------------------------------------------------ streaming protocol
    def stream_zero_state(self, inputs: Tensor) -> list[Tensor]:
        """The cold state ``f^0 = 0`` for a batch ``(B, 3, H, W)``: zero pyramid maps."""
        self._check_rfp_streamable()
        b, _, h, w = inputs.shape
        c = self.neck.out_channels
        return [
            inputs.new_zeros(b, c, hh, ww) for hh, ww in pyramid_shapes(h, w, self.neck.num_outs)
        ]

    def _check_rfp_streamable(self) -> None:
        if not self.with_rfp:
            raise TypeError(
                f'{type(self).__name__} has neck {type(getattr(self, "neck", None)).__name__}; '
                'streaming RFP needs a RecursiveFeaturePyramid neck'
            )

    def rfp_map(self, img: Tensor):
        """The recursion ``f -> G(f)`` for images ``img`` as a function of a list state.

        Samples whose state is all zeros (cold) take the no-feedback step ``F(B^1(x))``;
        the others a feedback step with ``B^k`` (``k``: the samples' feedback steps so far, or
        the last backbone for a carried state). The function counts steps per sample, so it is
        meant for one solver call.

        Args:
            img: Preprocessed images ``(B, 3, H, W)``.

        Returns:
            callable: ``list[Tensor] -> list[Tensor]`` on pyramids with batch dim B.
        """
        neck, backbone = self.neck, self.backbone
        last = max(neck.rfp_steps - 1, 1)
        step: list[Tensor] = []

        def g(z: list[Tensor]) -> list[Tensor]:
            b = img.shape[0]
            cold = torch.stack([t.reshape(b, -1).abs().amax(1) == 0 for t in z]).all(0)
            if not step:
                step.append(torch.where(cold, 1, last).to(img.device))
            out = [torch.empty_like(t) for t in z]
            groups = [(cold, None)] + [
                (~cold & (step[0] == k), k) for k in step[0][~cold].unique().tolist()
            ]
            for mask, k in groups:
                if not mask.any():
                    continue
                idx = mask.nonzero().flatten()
                full = len(idx) == b
                x = img if full else img[idx]
                if k is None:
                    new = neck.pyramid(backbone(x)[1:])
                else:
                    zk = z if full else [t[idx] for t in z]
                    new = neck.feedback_step(x, zk, int(k), backbone)
                for o, t in zip(out, new):
                    if full:
                        o.copy_(t)
                    else:
                        o[idx] = t
            step[0] = torch.where(cold, step[0], (step[0] + 1).clamp(max=last))
            return out

        return g

    @torch.no_grad()
    def stream_step(self, inputs, z0, memory, budget, payloads) -> StepOutput:
        """:meth:`StreamingModel.stream_step <mmvideoeq.streaming.StreamingModel.stream_step>`:
        ``M = budget.max_iter`` recursive RFP steps from the carried pyramids ``z0``
        (``num_outs`` tensors ``(B, C, H_l, W_l)``; ``None``: the cold ``f^0 = 0``), then the
        heads. The full solve is ``rfp_steps`` steps, the per-image detector from a cold state;
        ``budget.tol`` stops early on ``||G(f) - f|| / ||G(f)||``. No memory."""
        self._check_rfp_streamable()
        if z0 is None:
            z0 = self.stream_zero_state(inputs)
        if budget.is_full:
            run = dict(max_iter=self.neck.rfp_steps, tol=0.0, return_lowest=False)
        else:
            run = dict(
                max_iter=budget.max_iter, tol=budget.tol, return_lowest=budget.select == 'lowest'
            )
        z, stats = solve(self.rfp_map(inputs), list(z0), method='fixed_point', **run)
        preds = self.predict_from_pyramid(z, list(payloads))
        return StepOutput(preds, [t.detach() for t in z], [None] * inputs.shape[0], stats)


@MODELS.register_module()
class DetectoRSFasterRCNN(RecursiveFeedbackMixin, FasterRCNN):
    """mmdet ``FasterRCNN`` with the RFP recursion (per image and streamed)."""


@MODELS.register_module()
class DetectoRSCascadeRCNN(RecursiveFeedbackMixin, CascadeRCNN):
    """mmdet ``CascadeRCNN`` with the RFP recursion (per image and streamed)."""


@MODELS.register_module()
class DetectoRSHTC(RecursiveFeedbackMixin, HybridTaskCascade):
    """mmdet ``HybridTaskCascade`` with the RFP recursion and the semantic head's prediction.

    With an ``mmdet.FPN`` neck this is mmdet's HTC (the baseline of thesis Table 6-II) plus
    ``pred_sem_seg``: the argmax of the semantic head (COCO-stuff ``stuffthingmaps`` labels) at
    the original image size, the "stuff" source of panoptic output. mmdet's HTC computes that head
    inside its RoI head but discards the class scores, so here it runs once more at test time
    (``predict_semantic=False`` skips it).

    Args:
        predict_semantic: Add ``pred_sem_seg`` to the predictions.
        **kwargs: ``HybridTaskCascade`` arguments.
    """

    def __init__(self, *, predict_semantic: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.predict_semantic = predict_semantic

    def add_extra_predictions(self, x: tuple, samples: list, rescale: bool) -> list:
        if not (self.predict_semantic and self.with_semantic):
            return samples
        logits, _ = self.roi_head.semantic_head(x)
        meta = samples[0].metainfo
        logits = F.interpolate(
            logits, size=meta['batch_input_shape'], mode='bilinear', align_corners=False
        )
        for i, sample in enumerate(samples):
            h, w = sample.metainfo['img_shape'][:2]
            seg = logits[i : i + 1, :, :h, :w]
            if rescale:
                seg = F.interpolate(
                    seg, size=sample.metainfo['ori_shape'][:2], mode='bilinear', align_corners=False
                )
            sample.pred_sem_seg = PixelData(sem_seg=seg.argmax(1))
        return samples
