"""Switchable Atrous Convolution (SAC), DetectoRS (thesis ch. 6.4, Eq. 6.4 and Fig. 6-5).

.. math::

    \\mathrm{Conv}(x, w, 1) \\to S(x)\\,\\mathrm{Conv}(x, w, 1)
        + (1 - S(x))\\,\\mathrm{Conv}(x, w + \\Delta w, r)

with the switch ``S`` = 5x5 average pooling followed by a 1x1 convolution, ``r = 3``, the weight
lock ``w`` / ``w + Δw`` (``Δw`` initialised to 0), a global-context module before and after the
switched part (global average pooling, one 1x1 convolution, added back; zero-initialised), and
deformable convolutions in both branches (offsets from the pooled input, zero-initialised).

Why this is not mmcv's ``SAConv2d`` (``mmcv/ops/saconv.py``): that class lives in ``mmcv.ops``,
so it needs mmcv's compiled extension even without deformable convolution, and it has none of the
design choices of Table 6-III as options. This class keeps mmcv's parameter names, shapes and
numerics by default (a state dict of mmcv's ``SAC`` loads strictly and gives the same output;
``tests/models/test_detectors_layers.py``), inherits the weight-standardised ``ConvAWS2d`` as
mmcv's does (here :class:`.conv_aws.ConvAWS2d`: mmcv's, with a faster standardisation that is
kept between frames without autograd), and adds:

* ``atrous_rate`` (``r``; mmcv fixes 3);
* ``global_context=False``: no pre/post context modules ("SAC - DCN - global");
* ``weight_locking=False``: the large-rate branch uses an independent kernel ``Δw`` alone,
  initialised like a fresh convolution ("SAC - DCN - locking");
* ``dual_switch=True``: ``S_1(x) Conv(x, w, 1) + S_2(x) Conv(x, w + Δw, r)`` with a second switch
  ``S_2`` (weight 0, bias 0 at initialisation) instead of ``1 - S`` ("SAC - DCN + DS");
* ``use_deform`` with ``deform_impl``: mmcv's compiled op or the plain-PyTorch path of
  :mod:`.deform_conv` (``'auto'``: mmcv's on CUDA, plain PyTorch on CPU; "SAC - DCN" is
  ``use_deform=False``);
* maps smaller than 3 pixels (where reflect padding of the 5x5 switch pooling is undefined and
  mmcv raises) use replicate padding;
* a ``bias`` is added at the end (mmcv's class holds one it never adds; DetectoRS uses none).

A kernel other than 3x3 is refused: SAC converts the 3x3 convolutions of the backbone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from mmengine.model import constant_init
from torch import Tensor, nn

from mmvideoeq.registry import MODELS

from .conv_aws import ConvAWS2d
from .deform_conv import deform_conv2d

__all__ = ['SwitchableAtrousConv']


@MODELS.register_module()
class SwitchableAtrousConv(ConvAWS2d):
    """SAC with the ablation options of thesis Table 6-III; mmcv's ``SAC`` by default.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Must be 3 (or ``(3, 3)``).
        stride, padding, dilation, groups: Of the rate-1 branch, as in ``nn.Conv2d``; the large
            branch uses ``padding * atrous_rate`` and ``dilation * atrous_rate``.
        bias: Add a learnable bias to the output.
        use_deform: Deformable convolutions in both branches (thesis Sec. 6.4.4).
        atrous_rate: ``r`` of Eq. 6.4.
        global_context: The two global-context modules of Fig. 6-5.
        weight_locking: ``w + Δw`` for the large branch (True) or ``Δw`` alone (False).
        dual_switch: Two independent switches instead of ``S`` and ``1 - S``.
        deform_impl: ``'auto'``, ``'mmcv'`` or ``'torch'`` (see
            :func:`~mmvideoeq.models.layers.deform_conv.deform_conv2d`).

    Shapes:
        ``(N, C_in, H, W) -> (N, C_out, H_out, W_out)`` as the rate-1 convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        use_deform: bool = False,
        atrous_rate: int = 3,
        global_context: bool = True,
        weight_locking: bool = True,
        dual_switch: bool = False,
        deform_impl: str = 'auto',
    ) -> None:
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if ks != (3, 3):
            raise ValueError(
                f'SwitchableAtrousConv converts 3x3 convolutions (thesis Sec. 6.4.4); got '
                f'kernel_size={kernel_size}. Use it only as the sac= conv of a 3x3 layer (e.g. '
                'stage_with_sac of a DetectoRS ResNet, whose conv2 is 3x3)'
            )
        if isinstance(atrous_rate, bool) or not isinstance(atrous_rate, int) or atrous_rate < 1:
            raise ValueError(f'atrous_rate must be a positive int, got {atrous_rate!r}')
        if deform_impl not in ('auto', 'mmcv', 'torch'):
            raise ValueError(f"deform_impl must be 'auto', 'mmcv' or 'torch', got {deform_impl!r}")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        self.use_deform = use_deform
        self.atrous_rate = atrous_rate
        self.global_context = global_context
        self.weight_locking = weight_locking
        self.dual_switch = dual_switch
        self.deform_impl = deform_impl
        # names and shapes as in mmcv's SAConv2d, so its checkpoints load strictly
        self.switch = nn.Conv2d(in_channels, 1, kernel_size=1, stride=stride, bias=True)
        if dual_switch:
            self.switch_l = nn.Conv2d(in_channels, 1, kernel_size=1, stride=stride, bias=True)
        self.weight_diff = nn.Parameter(torch.empty_like(self.weight))
        if global_context:
            self.pre_context = nn.Conv2d(in_channels, in_channels, kernel_size=1, bias=True)
            self.post_context = nn.Conv2d(out_channels, out_channels, kernel_size=1, bias=True)
        if use_deform:
            taps = 2 * 3 * 3
            self.offset_s = nn.Conv2d(in_channels, taps, 3, padding=1, stride=stride, bias=True)
            self.offset_l = nn.Conv2d(in_channels, taps, 3, padding=1, stride=stride, bias=True)
        self.init_weights()

    def init_weights(self) -> None:
        """Thesis Sec. 6.4.4: switch weight 0 / bias 1, ``Δw`` 0, context and offsets 0.

        With these values a converted layer computes exactly the rate-1 convolution. Without
        weight locking ``Δw`` is a kernel of its own and gets ``nn.Conv2d``'s initialisation.
        """
        constant_init(self.switch, 0, bias=1)
        if self.dual_switch:
            constant_init(self.switch_l, 0, bias=0)
        if self.weight_locking:
            self.weight_diff.data.zero_()
        else:
            nn.init.kaiming_uniform_(self.weight_diff, a=math.sqrt(5))
        if self.global_context:
            constant_init(self.pre_context, 0)
            constant_init(self.post_context, 0)
        if self.use_deform:
            constant_init(self.offset_s, 0)
            constant_init(self.offset_l, 0)

    def _conv(self, x: Tensor, pooled: Tensor, weight: Tensor, scale: int, offset: str) -> Tensor:
        padding = tuple(scale * p for p in self.padding)
        dilation = tuple(scale * d for d in self.dilation)
        if self.use_deform:
            return deform_conv2d(
                x,
                getattr(self, offset)(pooled),
                weight,
                self.stride,
                padding,
                dilation,
                self.groups,
                1,
                impl=self.deform_impl,
            )
        return F.conv2d(x, weight, None, self.stride, padding, dilation, self.groups)

    def forward(self, x: Tensor) -> Tensor:
        if self.global_context:
            x = x + self.pre_context(F.adaptive_avg_pool2d(x, 1))
        mode = 'reflect' if min(x.shape[-2:]) > 2 else 'replicate'
        pooled = F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode=mode), kernel_size=5, stride=1)
        switch = self.switch(pooled)
        weight = self.standardised_weight()
        out_s = self._conv(x, pooled, weight, 1, 'offset_s')
        weight_l = weight + self.weight_diff if self.weight_locking else self.weight_diff
        out_l = self._conv(x, pooled, weight_l, self.atrous_rate, 'offset_l')
        switch_l = self.switch_l(pooled) if self.dual_switch else 1 - switch
        out = switch * out_s + switch_l * out_l
        if self.global_context:
            out = out + self.post_context(F.adaptive_avg_pool2d(out, 1))
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out
