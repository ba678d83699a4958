"""MDEQ's classification and segmentation heads (locuslab/mdeq ``lib/models/mdeq.py``)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['Bottleneck', 'MDEQClsHead', 'MDEQSegHead']


class Bottleneck(nn.Module):
    """Head bottleneck of the reference classifier (``mdeq.py``): 1x1 -> 3x3 -> 1x1 (x4 width),
    BatchNorms without affine parameters, projection shortcut with an affine BN."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, bn_momentum: float) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=bn_momentum, affine=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=bn_momentum, affine=False)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out, momentum=bn_momentum, affine=False)
        self.downsample = None
        if in_channels != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out, 1, bias=False),
                nn.BatchNorm2d(out, momentum=bn_momentum),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class MDEQClsHead(nn.Module):
    """Classification head of the reference (``MDEQClsNet._make_head``).

    Each scale is widened by a Bottleneck (``incre_modules``), the running sum is carried to the
    next lower resolution by a stride-2 conv + BN + ReLU (``downsamp_modules``), then a 1x1 conv +
    BN + ReLU (``final_layer``), global average pooling and a linear ``classifier``.

    Args:
        num_channels: Branch widths.
        head_channels: Bottleneck planes per branch (output ``4 *`` that).
        final_chansize: Width of the final 1x1 conv.
        num_classes: Classes.
        bn_momentum: BatchNorm momentum.
    """

    def __init__(
        self,
        num_channels: Sequence[int],
        head_channels: Sequence[int],
        final_chansize: int,
        num_classes: int,
        bn_momentum: float,
    ) -> None:
        super().__init__()
        if len(head_channels) != len(num_channels):
            raise ValueError(
                f'head_channels {tuple(head_channels)} needs one entry per branch '
                f'({len(num_channels)})'
            )
        exp = Bottleneck.expansion
        self.incre_modules = nn.ModuleList(
            nn.Sequential(Bottleneck(c, h, bn_momentum))
            for c, h in zip(num_channels, head_channels)
        )
        self.downsamp_modules = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(
                    head_channels[i] * exp,
                    head_channels[i + 1] * exp,
                    3,
                    stride=2,
                    padding=1,
                    bias=True,
                ),
                nn.BatchNorm2d(head_channels[i + 1] * exp, momentum=bn_momentum),
                nn.ReLU(),
            )
            for i in range(len(num_channels) - 1)
        )
        self.final_layer = nn.Sequential(
            nn.Conv2d(head_channels[-1] * exp, final_chansize, 1, bias=True),
            nn.BatchNorm2d(final_chansize, momentum=bn_momentum),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(final_chansize, num_classes)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Args: S features ``(B, C_s, H_s, W_s)``. Returns logits ``(B, num_classes)``."""
        y = self.incre_modules[0](features[0])
        for i, down in enumerate(self.downsamp_modules):
            y = self.incre_modules[i + 1](features[i + 1]) + down(y)
        y = self.final_layer(y)
        return self.classifier(y.mean(dim=(2, 3)))


class MDEQSegHead(nn.Module):
    """Segmentation head of the reference (``MDEQSegNet.last_layer``).

    Args:
        num_channels: Branch widths (their sum is the concatenated width).
        num_classes: Classes.
        final_conv_kernel: Kernel of the classifier conv (1 or 3).
        bn_momentum: BatchNorm momentum.
    """

    def __init__(
        self,
        num_channels: Sequence[int],
        num_classes: int,
        final_conv_kernel: int,
        bn_momentum: float,
    ) -> None:
        super().__init__()
        if final_conv_kernel not in (1, 3):
            raise ValueError(f'final_conv_kernel must be 1 or 3, got {final_conv_kernel}')
        width = int(sum(num_channels))
        self.last_layer = nn.Sequential(
            nn.Conv2d(width, width, 1, bias=True),
            nn.BatchNorm2d(width, momentum=bn_momentum),
            nn.ReLU(),
            nn.Conv2d(
                width, num_classes, final_conv_kernel, padding=final_conv_kernel // 2, bias=True
            ),
        )

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Args: S features. Returns logits ``(B, num_classes, H_0, W_0)`` at the first scale."""
        size = features[0].shape[-2:]
        ups = [features[0]] + [
            F.interpolate(f, size=size, mode='bilinear', align_corners=True) for f in features[1:]
        ]
        return self.last_layer(torch.cat(ups, dim=1))
