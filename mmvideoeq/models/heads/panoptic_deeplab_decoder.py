"""Building blocks of the Panoptic-DeepLab / ViP-DeepLab decoders.

Panoptic-DeepLab (Cheng et al., CVPR 2020, Sec. 3.1 and Fig. 2): one ASPP on the high-level
feature, then, for each low-level feature (from lower to higher resolution), a 1x1 projection,
bilinear upsampling (corners aligned) of the running feature, concatenation and one 5x5
(depthwise-separable) convolution; prediction heads are a 5x5 convolution and a 1x1 output
convolution. Layer layout follows deeplab2's ``model/decoder/panoptic_deeplab.py`` and
``model/decoder/aspp.py`` (Apache-2.0; no code copied): ASPP branches are a 1x1 conv, three 3x3
atrous convs and global image pooling, concatenated and projected by a 1x1 conv with dropout 0.1.

``CascadeASPP`` is the thesis' context module of the next-frame branch (ch. 7, Sec. 7.3.1.2:
"four ASPP modules ... densely-connected"): module ``i`` reads the input concatenated with the
outputs of modules ``1..i-1`` (DenseASPP-style) and the branch outputs the last module's result.
``num_cascade=1`` is a plain ASPP, deeplab2's choice.

The atrous branches reuse mmseg's ``ASPPModule``; convolutions are mmcv's ``ConvModule`` and
``DepthwiseSeparableConvModule``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmseg.models.decode_heads.aspp_head import ASPPModule
from mmseg.models.utils import resize
from torch import Tensor, nn

__all__ = ['ASPP', 'CascadeASPP', 'PanopticDeepLabDecoder', 'PredictionHead', 'conv5x5']


def conv5x5(in_ch: int, out_ch: int, conv_type: str, norm_cfg: dict, act_cfg: dict) -> nn.Module:
    """The 5x5 convolution (+ norm + activation) of decoders and heads."""
    if conv_type == 'depthwise_separable':
        return DepthwiseSeparableConvModule(
            in_ch, out_ch, 5, padding=2, norm_cfg=norm_cfg, act_cfg=act_cfg
        )
    if conv_type == 'standard':
        return ConvModule(in_ch, out_ch, 5, padding=2, norm_cfg=norm_cfg, act_cfg=act_cfg)
    raise ValueError(f"conv_type must be 'depthwise_separable' or 'standard', got {conv_type!r}")


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3) as used by Panoptic-DeepLab.

    Args:
        in_channels: Input channels.
        channels: Channels of every branch and of the output.
        atrous_rates: The three dilation rates of the 3x3 branches.
        norm_cfg, act_cfg: mmcv norm/activation configs.
        dropout: Dropout after the projection.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        atrous_rates: Sequence[int],
        norm_cfg: dict,
        act_cfg: dict,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        rates = tuple(int(r) for r in atrous_rates)
        if len(rates) != 3 or min(rates) < 2:
            raise ValueError(f'atrous_rates must be three rates >= 2, got {atrous_rates}')
        self.branches = ASPPModule((1, *rates), in_channels, channels, None, norm_cfg, act_cfg)
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            ConvModule(in_channels, channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg),
        )
        self.project = ConvModule(5 * channels, channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool(x).expand(-1, -1, x.shape[2], x.shape[3])
        return self.dropout(self.project(torch.cat([*self.branches(x), pooled], dim=1)))


class CascadeASPP(nn.Module):
    """``num_cascade`` densely connected ASPP modules (see the module docstring)."""

    def __init__(self, in_channels: int, channels: int, num_cascade: int = 1, **kwargs) -> None:
        super().__init__()
        if num_cascade < 1:
            raise ValueError(f'num_cascade must be >= 1, got {num_cascade}')
        self.stages = nn.ModuleList(
            ASPP(in_channels + i * channels, channels, **kwargs) for i in range(num_cascade)
        )

    def forward(self, x: Tensor) -> Tensor:
        outs: list[Tensor] = []
        for stage in self.stages:
            outs.append(stage(torch.cat([x, *outs], dim=1) if outs else x))
        return outs[-1]


class PanopticDeepLabDecoder(nn.Module):
    """ASPP on the high-level feature, then fusion with low-level features (coarse to fine).

    Args:
        high_channels: Channels of the high-level feature.
        low_channels: Channels of the low-level features, lower resolution first.
        low_project: 1x1 projection width of each low-level feature (deeplab2: 64, 32).
        aspp_channels: ASPP width (256).
        decoder_channels: Width of the fusion convolutions (256 semantic, 128 instance).
        atrous_rates: ASPP rates (deeplab2: 3, 6, 9 at output stride 32).
        num_cascade: ASPP modules in the context module (1 = ASPP, 4 = Cascade-ASPP).
        conv_type: ``'depthwise_separable'`` (deeplab2) or ``'standard'`` 5x5 fusion convs.
        norm_cfg, act_cfg: mmcv configs.
        align_corners: Bilinear upsampling with aligned corners (deeplab2: True).
    """

    def __init__(
        self,
        *,
        high_channels: int,
        low_channels: Sequence[int],
        low_project: Sequence[int],
        aspp_channels: int = 256,
        decoder_channels: int = 256,
        atrous_rates: Sequence[int] = (3, 6, 9),
        num_cascade: int = 1,
        conv_type: str = 'depthwise_separable',
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        norm_cfg = norm_cfg or dict(type='BN')
        act_cfg = act_cfg or dict(type='ReLU')
        if len(low_channels) != len(low_project):
            raise ValueError(
                f'low_project {list(low_project)} needs one width per low-level feature '
                f'{list(low_channels)}'
            )
        self.context = CascadeASPP(
            high_channels,
            aspp_channels,
            num_cascade,
            atrous_rates=atrous_rates,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
        )
        self.project = nn.ModuleList(
            ConvModule(c, p, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for c, p in zip(low_channels, low_project)
        )
        widths = [aspp_channels] + [decoder_channels] * len(low_channels)
        self.fuse = nn.ModuleList(
            conv5x5(w + p, decoder_channels, conv_type, norm_cfg, act_cfg)
            for w, p in zip(widths, low_project)
        )
        self.align_corners = align_corners
        self.out_channels = decoder_channels if len(low_channels) else aspp_channels

    def forward(self, high: Tensor, lows: Sequence[Tensor]) -> Tensor:
        """Args: ``high`` ``(B, C_h, h, w)``, ``lows`` low-level maps, lower resolution first.
        Returns the decoded feature at the resolution of the last low-level map."""
        x = self.context(high)
        for low, proj, fuse in zip(lows, self.project, self.fuse):
            low = proj(low)
            x = resize(
                x,
                size=low.shape[2:],
                mode='bilinear',
                align_corners=self.align_corners,
                warning=False,
            )
            x = fuse(torch.cat([x, low], dim=1))
        return x


class PredictionHead(nn.Module):
    """A 5x5 convolution + norm + activation, then a 1x1 output convolution.

    The output convolution is initialised from N(0, 0.01) truncated at two standard deviations
    with zero bias (deeplab2's ``final_conv``).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        out_channels: int,
        conv_type: str,
        norm_cfg: dict,
        act_cfg: dict,
    ) -> None:
        super().__init__()
        self.conv = conv5x5(in_channels, channels, conv_type, norm_cfg, act_cfg)
        self.out = nn.Conv2d(channels, out_channels, 1)
        nn.init.trunc_normal_(self.out.weight, std=0.01, a=-0.02, b=0.02)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.conv(x))
