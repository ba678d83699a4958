"""DetectoRS ResNet / ResNeXt backbones: mmdet's, plus the options the DetectoRS chapter explores.

mmdet 3.3's ``DetectoRS_ResNet`` / ``DetectoRS_ResNeXt`` (``mmdet/models/backbones/
detectors_resnet.py``, Apache-2.0) already take RFP feedback (``rfp_inplanes``: a zero-initialised
1x1 convolution added to the first block of a stage, thesis Fig. 6-3) and SAC (``sac=``,
``stage_with_sac``). These subclasses keep their parameter layout (mmdet checkpoints load strictly)
and add only what they lack:

* ``rfp_stages``: which stages receive feedback. mmdet hard-wires stages 2-4; the chapter feeds
  "each stage" (Sec. 6.3.2). The default is mmdet's.
* Shallow presets for CPU-sized models: depth 14 (1 bottleneck per stage) and 26 (2 per stage).
* The chapter's initialisation when training from scratch. mmdet's ``init_weights`` without a
  pretrained checkpoint applies Kaiming initialisation to *every* ``nn.Conv2d``, which includes
  SAC's switch, context and offset convolutions and the feedback convolution; afterwards the
  switch is no longer "weight 0, bias 1" (Sec. 6.4.4) and the feedback is not zero (Sec. 6.3.2).
  Here those modules are re-initialised as the chapter prescribes after mmdet's pass.
* :attr:`takes_feedback` / :attr:`feedback_stages`, which the RFP neck checks at build time.
"""

from __future__ import annotations

from typing import Sequence

from mmdet.models.backbones.detectors_resnet import Bottleneck as _RSBottleneck
from mmdet.models.backbones.detectors_resnet import DetectoRS_ResNet
from mmdet.models.backbones.detectors_resnext import Bottleneck as _RSXBottleneck
from mmdet.models.backbones.detectors_resnext import DetectoRS_ResNeXt
from mmengine.model import constant_init
from torch import Tensor, nn

from mmvideoeq.registry import MODELS

__all__ = ['DetectoRSResNet', 'DetectoRSResNeXt']


class _FeedbackOptions:
    """The options added to mmdet's DetectoRS backbones (see the module docstring)."""

    def _setup_feedback(self, rfp_stages: Sequence[bool] | None) -> None:
        n = len(self.res_layers)
        stages = (False,) + (True,) * (n - 1) if rfp_stages is None else tuple(rfp_stages)
        if len(stages) != n or not all(isinstance(s, bool) for s in stages):
            raise ValueError(f'rfp_stages must be {n} bools (one per stage), got {rfp_stages!r}')
        self.rfp_stages = stages
        for i, name in enumerate(self.res_layers):
            block = getattr(self, name)[0]
            has = getattr(block, 'rfp_inplanes', None) is not None
            if self.rfp_inplanes and stages[i] and not has:
                block.rfp_inplanes = self.rfp_inplanes
                block.rfp_conv = nn.Conv2d(
                    self.rfp_inplanes, block.planes * block.expansion, 1, bias=True
                )
                constant_init(block.rfp_conv, 0)
            elif has and not stages[i]:
                del block.rfp_conv
                block.rfp_inplanes = None

    @property
    def feedback_stages(self) -> tuple[int, ...]:
        """Indices of the stages whose first block adds the feedback ``R_i(f_i)``."""
        if not self.rfp_inplanes:
            return ()
        return tuple(i for i, s in enumerate(self.rfp_stages) if s)

    @property
    def takes_feedback(self) -> bool:
        """Whether :meth:`rfp_forward` uses RFP feedback at all (``rfp_inplanes`` set)."""
        return bool(self.feedback_stages)

    def init_weights(self) -> None:
        """mmdet's initialisation, then the chapter's for SAC and the feedback convolutions."""
        super().init_weights()
        if self.pretrained is not None:
            return  # a checkpoint was loaded; keep what it holds
        for m in self.modules():
            if m is not self and hasattr(m, 'switch') and hasattr(m, 'weight_diff'):
                m.init_weights()  # SAC (mmcv's or ours): switch 0/1, Δw 0, context/offsets 0
            if getattr(m, 'rfp_inplanes', None) and hasattr(m, 'rfp_conv'):
                constant_init(m.rfp_conv, 0)

    def rfp_forward(self, x: Tensor, rfp_feats: Sequence[Tensor | None]) -> tuple[Tensor, ...]:
        """Backbone pass with feedback: ``x_i = B_i(x_{i-1}, R_i(f_i))`` (thesis Eq. 6.2).

        Args:
            x: Image batch ``(B, 3, H, W)``.
            rfp_feats: One entry per stage (the transformed feedback ``R_i(f_i)``, same spatial
                size as the stage's output, ``rfp_inplanes`` channels); entries of stages
                without feedback are ignored and may be ``None``.

        Returns:
            tuple[Tensor]: The stage outputs of ``out_indices``.
        """
        if self.deep_stem:
            x = self.stem(x)
        else:
            x = self.relu(self.norm1(self.conv1(x)))
        x = self.maxpool(x)
        outs = []
        stages = set(self.feedback_stages)
        for i, name in enumerate(self.res_layers):
            feat = rfp_feats[i] if i in stages else None
            for block in getattr(self, name):
                x = block.rfp_forward(x, feat)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


@MODELS.register_module()
class DetectoRSResNet(_FeedbackOptions, DetectoRS_ResNet):
    """mmdet's ``DetectoRS_ResNet`` with ``rfp_stages``, depths 14/26 and the chapter's init.

    Args:
        rfp_stages: Per stage, whether its first block takes RFP feedback (``None``: stages
            2-4, as mmdet). Only used with ``rfp_inplanes``.
        **kwargs: ``DetectoRS_ResNet`` / ``ResNet`` arguments (``depth`` also 14 or 26).
    """

    arch_settings = {
        **DetectoRS_ResNet.arch_settings,
        14: (_RSBottleneck, (1, 1, 1, 1)),
        26: (_RSBottleneck, (2, 2, 2, 2)),
    }

    def __init__(self, *, rfp_stages: Sequence[bool] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._setup_feedback(rfp_stages)


@MODELS.register_module()
class DetectoRSResNeXt(_FeedbackOptions, DetectoRS_ResNeXt):
    """mmdet's ``DetectoRS_ResNeXt`` with the options of :class:`DetectoRSResNet`.

    Args:
        rfp_stages: See :class:`DetectoRSResNet`.
        **kwargs: ``DetectoRS_ResNeXt`` arguments (``groups``, ``base_width``, ``depth``, ...).
    """

    arch_settings = {
        **DetectoRS_ResNeXt.arch_settings,
        14: (_RSXBottleneck, (1, 1, 1, 1)),
        26: (_RSXBottleneck, (2, 2, 2, 2)),
    }

    def __init__(self, *, rfp_stages: Sequence[bool] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._setup_feedback(rfp_stages)
