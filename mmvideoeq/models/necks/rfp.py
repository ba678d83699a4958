"""Recursive Feature Pyramid (RFP), DetectoRS (thesis ch. 6.3), with the chapter's design space.

The recursion (Eq. 6.2/6.3, Fig. 6-2) is

.. math::

    f^t_i = F_i(f^t_{i+1}, x^t_i), \\quad x^t_i = B^t_i(x^t_{i-1}, R_i(f^{t-1}_i)),
    \\quad f^0 = 0,

unrolled for ``T`` steps. ``F`` is the FPN top-down path, ``R`` the connecting module (ASPP,
Sec. 6.3.3) and, from step 2 on, a fusion module (Sec. 6.3.4) mixes the new output with the
previous one: ``f^t <- s * f^t + (1 - s) * f^{t-1}`` with ``s = sigmoid(conv1x1(f^t))``. As in
mmdet, the first step runs the backbone without feedback (``f^0 = 0`` adds nothing).

Why not mmdet's ``RFP`` (``mmdet/models/necks/rfp.py``, Apache-2.0) as is: it hard-wires ASPP,
the fusion module and a separate backbone ``B^t`` per step, and feeds stages 2-4 only. This neck
keeps its parameter names (``rfp_modules``, ``rfp_aspp`` with mmdet's ``ASPP`` module,
``rfp_weight``) so mmdet's DetectoRS checkpoints load strictly, and makes every choice of thesis
Table 6-III a config option:

* ``rfp_steps`` = ``T`` (2 in the chapter, 3 for "RFP + 3X");
* ``with_aspp=False``: ``R`` is the identity ("RFP - aspp");
* ``with_fusion=False``: ``f^t`` replaces ``f^{t-1}`` ("RFP - fusion");
* ``share_backbone=True``: every step runs the detector's own backbone ("RFP + sharing");
  that backbone then needs ``rfp_inplanes``, and the detector passes it to :meth:`forward`;
* which stages take feedback is the backbone's ``rfp_stages``;
* ``train_steps=(lo, hi)`` (an addition for streaming, not in the chapter): every training forward
  unrolls a number of steps drawn uniformly from ``[lo, hi]`` (steps past ``rfp_steps`` reuse the
  last backbone), as SUR-StreamDEQ draws its unrolling depth, so that the heads and the feedback
  backbone also learn on pyramids after more (or fewer) steps than ``T``. Evaluation always
  unrolls ``rfp_steps``. (Under DistributedDataParallel a draw of 1 leaves the feedback modules
  without gradient: set ``find_unused_parameters=True``.)
* ``feedback_bound=c`` (an addition for streaming, not in the chapter): the fed-back features are
  squashed, ``R_c(f) = c * tanh(R(f) / c)``, so every element of the feedback lies in ``(-c, c)``
  whatever the carried pyramid. The new pyramid ``F(B(x, R_c(f)))`` is then a bounded function of
  the image, and the fusion is a per-element convex combination of it and ``f``, so a pyramid
  carried across any number of steps stays within the elementwise range of the fresh pyramids it
  has seen: the streamed recursion cannot grow without bound. Near zero ``R_c`` is the identity
  (slope 1), so small feedback passes unchanged and the cold step is the chapter's.

:meth:`feedback_step` is one application of the recursion from a given ``f^{t-1}``; the
detectors' streaming path (:class:`~mmvideoeq.models.detectors.RecursiveFeedbackMixin`) iterates it
across video frames.
"""

from __future__ import annotations

from typing import Sequence

import torch
from mmdet.models.necks.fpn import FPN
from mmdet.models.necks.rfp import ASPP
from mmengine.model import ModuleList, constant_init, xavier_init
from torch import Tensor, nn

from mmvideoeq.registry import MODELS

__all__ = ['RecursiveFeaturePyramid', 'check_feedback_backbone', 'feedback_stages']


def feedback_stages(backbone: nn.Module) -> tuple[int, ...]:
    """Stages whose first block adds feedback (mmdet's backbones: every stage but the first)."""
    stages = getattr(backbone, 'feedback_stages', None)
    if stages is not None:
        return tuple(stages)
    if not getattr(backbone, 'rfp_inplanes', None):
        return ()
    return tuple(range(1, len(getattr(backbone, 'res_layers', ()))))


def check_feedback_backbone(backbone: nn.Module, channels: int, what: str) -> None:
    """Raise if ``backbone`` cannot take RFP feedback of ``channels`` channels.

    Args:
        backbone: A built backbone.
        channels: Channels of ``R(f)`` that the neck feeds back.
        what: How the caller names the backbone in the message.

    Raises:
        TypeError: The backbone has no ``rfp_forward`` or was built without ``rfp_inplanes``.
        ValueError: Its ``rfp_inplanes`` differs from ``channels``.
    """
    name = type(backbone).__name__
    if not callable(getattr(backbone, 'rfp_forward', None)):
        raise TypeError(
            f'{what} ({name}) cannot take RFP feedback: it has no rfp_forward(); use '
            'mmvideoeq.DetectoRSResNet / DetectoRSResNeXt (or mmdet.DetectoRS_ResNet) with '
            f'rfp_inplanes={channels}'
        )
    inplanes = getattr(backbone, 'rfp_inplanes', None)
    if not inplanes or not feedback_stages(backbone):
        raise TypeError(
            f'{what} ({name}) was built without rfp_inplanes (or with no rfp_stages), so it '
            f'has no feedback convolution; set rfp_inplanes={channels}'
        )
    if inplanes != channels:
        raise ValueError(
            f'{what} has rfp_inplanes={inplanes} but the RFP neck feeds back {channels} channels '
            '(4 * aspp_out_channels with ASPP, out_channels without); make them equal'
        )


@MODELS.register_module()
class RecursiveFeaturePyramid(FPN):
    """RFP neck; mmdet's ``RFP`` with every option of thesis Table 6-III.

    Input of :meth:`forward`: ``(img, c_1, ..., c_S)``, i.e. a backbone built with
    ``output_img=True``.

    Args:
        rfp_steps: Unrolled steps ``T >= 1`` (``T = 1`` is a plain FPN).
        rfp_backbone: Config of the backbone ``B^t`` of steps ``2..T`` (one copy per step);
            ``None`` with ``share_backbone=True``.
        aspp_out_channels: Channels of each of the four ASPP branches.
        aspp_dilations: Dilations of the branches (the last one, global pooling, must be 1).
        with_aspp: ``R`` = ASPP (True) or the identity (False).
        with_fusion: Fuse ``f^{t-1}`` and ``f^t`` with a sigmoid gate (True) or replace.
        share_backbone: Steps ``2..T`` run the detector's backbone (``B^t`` shared).
        train_steps: ``(lo, hi)``: in training, unroll a uniformly drawn number of steps in
            ``[lo, hi]`` (global RNG) instead of ``rfp_steps``; ``None``: always ``rfp_steps``.
        feedback_bound: ``c > 0``: feed back ``c * tanh(R(f) / c)`` (a bounded recursion, see
            the module docstring); ``None``: ``R(f)`` as the chapter.
        **kwargs: ``mmdet.FPN`` arguments (``in_channels``, ``out_channels``, ``num_outs``, ...).

    Raises:
        ValueError/TypeError: ``rfp_steps < 1``, an ``rfp_backbone`` that cannot take feedback
            (or none when one is needed, or one together with ``share_backbone``), bad ASPP
            dilations, or an ``init_cfg``.
    """

    def __init__(
        self,
        *,
        rfp_steps: int = 2,
        rfp_backbone: dict | None = None,
        aspp_out_channels: int = 64,
        aspp_dilations: Sequence[int] = (1, 3, 6, 1),
        with_aspp: bool = True,
        with_fusion: bool = True,
        share_backbone: bool = False,
        train_steps: Sequence[int] | None = None,
        feedback_bound: float | None = None,
        init_cfg: dict | None = None,
        **kwargs,
    ) -> None:
        if isinstance(rfp_steps, bool) or not isinstance(rfp_steps, int) or rfp_steps < 1:
            raise ValueError(
                f'rfp_steps must be an int >= 1 (T of thesis Eq. 6.3), got {rfp_steps!r}'
            )
        if init_cfg is not None:
            raise ValueError(
                'RecursiveFeaturePyramid sets its own initialisation (as mmdet RFP); remove '
                'init_cfg'
            )
        super().__init__(init_cfg=None, **kwargs)
        self.rfp_steps = rfp_steps
        if train_steps is not None:
            lo, hi = (int(v) for v in train_steps)
            if not 1 <= lo <= hi:
                raise ValueError(
                    f'train_steps must be (lo, hi) with 1 <= lo <= hi, got {train_steps}'
                )
            train_steps = (lo, hi)
        self.train_steps = train_steps
        if feedback_bound is not None:
            if isinstance(feedback_bound, bool) or not isinstance(feedback_bound, (int, float)):
                raise TypeError(f'feedback_bound must be a number or None, got {feedback_bound!r}')
            if not 0 < feedback_bound < float('inf'):
                raise ValueError(f'feedback_bound must be finite and > 0, got {feedback_bound}')
            feedback_bound = float(feedback_bound)
        self.feedback_bound = feedback_bound
        self.with_aspp, self.with_fusion = with_aspp, with_fusion
        self.share_backbone = share_backbone
        if with_aspp:
            dil = tuple(aspp_dilations)
            if not dil or dil[-1] != 1:
                raise ValueError(
                    f'aspp_dilations must end with 1 (the global-pooling branch), got {dil}'
                )
            self.rfp_aspp = ASPP(self.out_channels, aspp_out_channels, dil)
            self.feedback_channels = aspp_out_channels * len(dil)
        else:
            self.feedback_channels = self.out_channels
        if with_fusion:
            self.rfp_weight = nn.Conv2d(self.out_channels, 1, kernel_size=1, bias=True)
        if share_backbone:
            if rfp_backbone is not None:
                raise ValueError(
                    'share_backbone=True runs the detector backbone at every step; remove '
                    'rfp_backbone (or set share_backbone=False)'
                )
        elif rfp_steps > 1:
            if rfp_backbone is None:
                raise ValueError(
                    f'rfp_steps={rfp_steps} needs rfp_backbone (the backbone of steps 2..T) '
                    'or share_backbone=True'
                )
            self.rfp_modules = ModuleList()
            for step in range(1, rfp_steps):
                module = MODELS.build(rfp_backbone)
                check_feedback_backbone(module, self.feedback_channels, f'rfp_backbone {step}')
                self.rfp_modules.append(module)

    def init_weights(self) -> None:
        """mmdet RFP's: Xavier FPN convs, each step backbone's own init, fusion conv 0."""
        for convs in (self.lateral_convs, self.fpn_convs):
            for m in convs.modules():
                if isinstance(m, nn.Conv2d):
                    xavier_init(m, distribution='uniform')
        for module in getattr(self, 'rfp_modules', ()):
            module.init_weights()
        if self.with_aspp:
            self.rfp_aspp.init_weights()
        if self.with_fusion:
            constant_init(self.rfp_weight, 0)

    # ------------------------------------------------------------------ the pieces of Eq. 6.3
    def pyramid(self, feats: Sequence[Tensor]) -> list[Tensor]:
        """``F``: the FPN top-down path (Eq. 6.1) on the backbone's stage outputs."""
        return list(FPN.forward(self, tuple(feats)))

    def connect(self, z: Sequence[Tensor], stages: Sequence[int]) -> list[Tensor | None]:
        """``R_i(f_i)`` for the stages in ``stages`` (ASPP or identity), ``None`` elsewhere.

        With ``feedback_bound=c`` each map is squashed to ``c * tanh(R_i(f_i) / c)``.
        """
        out: list[Tensor | None] = [None] * len(z)
        c = self.feedback_bound
        for i in stages:
            r = self.rfp_aspp(z[i]) if self.with_aspp else z[i]
            out[i] = r if c is None else c * torch.tanh(r / c)
        return out

    def fuse(self, z_prev: Sequence[Tensor], z_new: Sequence[Tensor]) -> list[Tensor]:
        """Fusion module (Fig. 6-4): ``s * f^t + (1 - s) * f^{t-1}``, ``s = sigmoid(conv(f^t))``.

        Without fusion ``f^t`` is returned.
        """
        if not self.with_fusion:
            return list(z_new)
        out = []
        for prev, new in zip(z_prev, z_new):
            gate = torch.sigmoid(self.rfp_weight(new))
            out.append(gate * new + (1 - gate) * prev)
        return out

    def step_backbone(self, step: int, backbone: nn.Module | None = None) -> nn.Module:
        """The backbone ``B^{t}`` of feedback step ``step >= 1`` (step ``T - 1`` and later: last).

        Args:
            step: 1 for the first step with feedback (``t = 2``).
            backbone: The detector's backbone (needed with ``share_backbone``).
        """
        if self.share_backbone:
            if backbone is None:
                raise TypeError(
                    'share_backbone=True needs the detector backbone: use a mmvideoeq '
                    'DetectoRS detector (DetectoRSHTC / DetectoRSCascadeRCNN / '
                    'DetectoRSFasterRCNN), which passes it to the neck'
                )
            return backbone
        if not hasattr(self, 'rfp_modules'):
            raise TypeError(
                'this RFP was built with rfp_steps=1 and no rfp_backbone, so it has no backbone '
                'for feedback steps; set rfp_backbone or share_backbone=True'
            )
        return self.rfp_modules[min(step, len(self.rfp_modules)) - 1]

    def feedback_step(
        self, img: Tensor, z: Sequence[Tensor], step: int, backbone: nn.Module | None = None
    ) -> list[Tensor]:
        """One recursive step ``f^{t-1} -> f^t`` with feedback (Eq. 6.3 and the fusion).

        Args:
            img: Image batch ``(B, 3, H, W)``.
            z: ``f^{t-1}``: ``num_outs`` tensors ``(B, out_channels, H_l, W_l)``.
            step: ``t - 1`` (selects ``B^t``; see :meth:`step_backbone`).
            backbone: The detector's backbone (for ``share_backbone``).

        Returns:
            list[Tensor]: ``f^t``, shaped like ``z``.
        """
        net = self.step_backbone(step, backbone)
        feats = net.rfp_forward(img, self.connect(z, feedback_stages(net)))
        return self.fuse(z, self.pyramid(feats))

    def forward(self, inputs: Sequence[Tensor], backbone: nn.Module | None = None) -> tuple:
        """Cold unroll of ``T`` steps from ``f^0 = 0`` (step 1 without feedback, as mmdet).

        In training with ``train_steps`` the number of steps is drawn (see the class).

        Args:
            inputs: ``(img, c_1, ..., c_S)`` from a backbone with ``output_img=True``.
            backbone: The detector's backbone (needed with ``share_backbone``).

        Returns:
            tuple[Tensor]: ``f^T``, ``num_outs`` maps ``(B, out_channels, H_l, W_l)``.
        """
        inputs = list(inputs)
        if len(inputs) != len(self.in_channels) + 1:
            raise ValueError(
                f'RFP takes the image and {len(self.in_channels)} feature maps, got '
                f'{len(inputs)} inputs: build the backbone with output_img=True'
            )
        img = inputs.pop(0)
        steps = self.rfp_steps
        if self.training and self.train_steps is not None:
            lo, hi = self.train_steps
            steps = int(torch.randint(lo, hi + 1, ()).item())
        z = self.pyramid(inputs)
        for step in range(1, steps):
            z = self.feedback_step(img, z, step, backbone)
        return tuple(z)
