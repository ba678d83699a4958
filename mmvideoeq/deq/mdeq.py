"""Multiscale Deep Equilibrium network (MDEQ), plain PyTorch.

Implements the architecture of MDEQ (Bai, Koltun, Kolter, "Multiscale Deep Equilibrium Models",
NeurIPS 2020) as released in locuslab/mdeq (MIT licence). The code here is written from scratch;
the following facts were taken from the reference (``lib/models/mdeq_core.py``,
``lib/models/mdeq.py``, ``lib/modules/optimizations.py``, ``experiments/*/*.yaml``):

* stem (``downsample`` there): two 3x3 convolutions (stride 2 each when ``DOWNSAMPLE_TIMES=2``)
  with BatchNorm + ReLU; injection (``stage0``): 1x1 conv + BN + ReLU, added to the
  highest-resolution branch only (the other branches get zero injection);
* the layer :math:`f_\\theta` (``fullstage``, one ``MDEQModule``): per resolution ``s`` a residual
  block (``BasicBlock``)::

      u   = relu(gn1(conv1(z_s)))                       # conv1: C_s -> E*C_s, 3x3
      v   = gn2(drop(conv2(u)) + x_s)                   # conv2: E*C_s -> C_s, 3x3
      b_s = gn3(relu(v + z_s))

  followed by multiscale fusion ``y_i = sum_j F_ij(b_j)`` (``F_ii`` = identity, ``F_ij`` for
  ``j < i``: ``i-j`` stride-2 3x3 conv + GN (+ ReLU between), for ``j > i``: 1x1 conv + GN +
  nearest upsampling) and the post-fusion ``z_i' = gn(conv1x1(relu(y_i)))`` with ``G/2`` groups;
* weight normalisation (``WNORM: true``) on ``conv1``/``conv2`` of every block and on the
  post-fusion 1x1 convs, with parameters ``weight_g`` ``(C_out, 1, 1, 1)`` and ``weight_v``,
  ``w = v * g / ||v||`` (norm over all dims but 0);
* variational dropout: one Bernoulli mask of shape ``(B, C_s, 1, 1)`` per block, drawn once per
  forward pass and shared by every solver iteration (training only);
* heads: classification (``incre_modules`` Bottlenecks, ``downsamp_modules``, ``final_layer``,
  global average pool, ``classifier``) and segmentation (``last_layer``: all scales bilinearly
  upsampled, ``align_corners=True``, to the highest resolution, concatenated, 1x1 conv + BN + ReLU +
  classifier conv).

The module names below the top level keep the reference's names (``branches.i.blocks.k.conv1``,
``fuse_layers.i.j.net...``, ``post_fuse_layers.i.conv``, ``incre_modules`` ...) and weight norm is
implemented by hand with the reference's parameter names (``weight_g``/``weight_v``), so an official
checkpoint converts by renaming top-level prefixes only (see :mod:`mmvideoeq.deq.mdeq_convert`).
The solver is *not* part of the network: the equilibrium is found by :class:`DEQSolver`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Iterator, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .core import DEQSolver
from .solvers import SolverStats

__all__ = ['MDEQNet', 'MDEQOutput', 'MDEQ_PRESETS', 'MDEQLayer', 'WNConv2d']

# Values from locuslab/mdeq experiments/imagenet/cls_mdeq_{SMALL,XL}.yaml and
# experiments/cityscapes/seg_mdeq_{SMALL,XL}.yaml. ``num_layers`` is the reference's NUM_LAYERS (the
# number of unrolled f applications used during its pretraining phase); ``f_thres``/``b_thres`` are
# the forward/backward solver iteration limits.
MDEQ_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    'small': {
        'cls': dict(
            num_channels=(32, 64, 128, 256),
            num_blocks=(1, 1, 1, 1),
            expansion=4,
            num_groups=8,
            dropout=0.0,
            f_thres=24,
            b_thres=24,
            num_layers=5,
            downsample_times=2,
            wnorm=True,
            bn_momentum=0.1,
            num_classes=1000,
            head_channels=(28, 56, 112, 224),
            final_chansize=2048,
            final_conv_kernel=1,
        ),
        'seg': dict(
            num_channels=(32, 64, 128, 256),
            num_blocks=(1, 1, 1, 1),
            expansion=4,
            num_groups=8,
            dropout=0.02,
            f_thres=26,
            b_thres=26,
            num_layers=4,
            downsample_times=2,
            wnorm=True,
            bn_momentum=0.01,
            num_classes=19,
            head_channels=(28, 56, 112, 224),
            final_chansize=2048,
            final_conv_kernel=1,
        ),
    },
    'xl': {
        'cls': dict(
            num_channels=(88, 176, 352, 704),
            num_blocks=(1, 1, 1, 1),
            expansion=6,
            num_groups=8,
            dropout=0.0,
            f_thres=27,
            b_thres=27,
            num_layers=4,
            downsample_times=2,
            wnorm=True,
            bn_momentum=0.1,
            num_classes=1000,
            head_channels=(32, 64, 128, 256),
            final_chansize=2048,
            final_conv_kernel=1,
        ),
        'seg': dict(
            num_channels=(88, 176, 352, 704),
            num_blocks=(1, 1, 1, 1),
            expansion=6,
            num_groups=8,
            dropout=0.04,
            f_thres=26,
            b_thres=26,
            num_layers=3,
            downsample_times=2,
            wnorm=True,
            bn_momentum=0.01,
            num_classes=19,
            head_channels=(32, 64, 128, 256),
            final_chansize=2048,
            final_conv_kernel=1,
        ),
    },
}


class MDEQOutput(NamedTuple):
    """Result of :meth:`MDEQNet.forward_features`.

    Attributes:
        features: S tensors ``(B, C_s, H/4/2^s, W/4/2^s)``, the (post-processed) equilibrium.
        z: the fixed point, S tensors of the same shapes. It carries the autograd graph in
            training; detach it before storing it across frames.
        stats: the solver's :class:`SolverStats`.
        aux: the solver wrapper's auxiliary dict, e.g. ``{'jac_loss': Tensor, 'unroll_iters': int}``
            in training (empty in evaluation).
    """

    features: list[Tensor]
    z: list[Tensor]
    stats: SolverStats
    aux: dict[str, Any]


def _conv_out(size: int) -> int:
    """Output size of a 3x3, stride-2, padding-1 convolution."""
    return (size - 1) // 2 + 1


class VariationalDropout2d(nn.Module):
    """Variational (locked) dropout: one ``(B, C, 1, 1)`` mask per forward pass.

    The same mask is applied at every pixel and at every solver iteration, as the reference's
    ``VariationalHidDropout2d`` does. The mask is drawn by :meth:`reset_mask` and is only used in
    training mode.

    Args:
        p: Drop probability in ``[0, 1)``.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f'dropout probability must be in [0, 1), got {p}')
        self.p = float(p)
        self.mask: Tensor | None = None

    def reset_mask(
        self, batch: int, channels: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        """Draw a new mask ``(batch, channels, 1, 1)`` scaled by ``1 / (1 - p)``."""
        keep = 1.0 - self.p
        self.mask = (
            torch.empty(batch, channels, 1, 1, device=device, dtype=dtype).bernoulli_(keep) / keep
        )

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.mask is None or self.mask.shape[:2] != x.shape[:2]:
            raise RuntimeError(
                'VariationalDropout2d: call reset_mask() with the batch shape '
                'before the forward pass (MDEQNet.forward_features does this)'
            )
        return x * self.mask


class WNConv2d(nn.Module):
    """Conv2d with weight normalisation ``w = v * g / ||v||`` (Salimans & Kingma, 2016).

    Parameters are named ``weight_g`` ``(C_out, 1, 1, 1)`` and ``weight_v``
    ``(C_out, C_in, k, k)`` like the reference's ``optimizations.weight_norm(dim=0)``, so official
    checkpoints load unchanged. The weight is recomputed at every call, except inside
    :func:`frozen_weight_norm`, which computes it once for a whole solve (as the reference does once
    per forward pass); the frozen weight keeps its autograd graph to ``g`` and ``v``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        stride: Stride.
        padding: Zero padding.
        bias: Whether to add a bias (the reference's weight-normed convs have none).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.stride, self.padding = stride, padding
        v = torch.empty(out_channels, in_channels, kernel_size, kernel_size)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))  # nn.Conv2d's default init
        self.weight_v = nn.Parameter(v)
        # The reference initialises g to ||v|| (so that w == v at initialisation).
        self.weight_g = nn.Parameter(v.flatten(1).norm(dim=1).view(-1, 1, 1, 1).clone())
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self._frozen: Tensor | None = None

    @property
    def weight(self) -> Tensor:
        """The normalised weight ``(C_out, C_in, k, k)``."""
        v = self.weight_v
        return v * (self.weight_g / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight if self._frozen is None else self._frozen
        return F.conv2d(x, w, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        out_ch, in_ch, k, _ = self.weight_v.shape
        return (
            f'{in_ch}, {out_ch}, kernel_size={k}, stride={self.stride}, '
            f'padding={self.padding}, bias={self.bias is not None}'
        )


@contextmanager
def frozen_weight_norm(module: nn.Module) -> Iterator[None]:
    """Compute every :class:`WNConv2d` weight of ``module`` once and reuse it until exit."""
    convs = [m for m in module.modules() if isinstance(m, WNConv2d)]
    for m in convs:
        m._frozen = m.weight
    try:
        yield
    finally:
        for m in convs:
            m._frozen = None


def _conv(in_ch: int, out_ch: int, kernel_size: int, wnorm: bool, stride: int = 1) -> nn.Module:
    pad = kernel_size // 2
    if wnorm:
        return WNConv2d(in_ch, out_ch, kernel_size, stride=stride, padding=pad)
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=pad, bias=False)


def _check_groups(channels: int, groups: int, where: str) -> None:
    if groups < 1 or channels % groups != 0:
        raise ValueError(
            f'GroupNorm in {where}: {channels} channels cannot be split into '
            f'{groups} groups; choose num_groups (and num_groups // 2 for the '
            f'post-fusion norm) dividing every branch width'
        )


class BasicBlock(nn.Module):
    """MDEQ residual block with GroupNorm (reference ``BasicBlock``, MDEQ paper Fig. 2).

    Args:
        channels: Branch width ``C``.
        expansion: Width multiplier of the inner conv (``E*C`` channels).
        num_groups: GroupNorm groups.
        dropout: Variational dropout rate on the second conv's output.
        wnorm: Weight-normalise both convs.
    """

    def __init__(
        self, channels: int, expansion: int, num_groups: int, dropout: float, wnorm: bool
    ) -> None:
        super().__init__()
        inner = expansion * channels
        _check_groups(inner, num_groups, 'BasicBlock.gn1')
        _check_groups(channels, num_groups, 'BasicBlock.gn2')
        self.conv1 = _conv(channels, inner, 3, wnorm)
        self.gn1 = nn.GroupNorm(num_groups, inner, affine=True)
        self.conv2 = _conv(inner, channels, 3, wnorm)
        self.gn2 = nn.GroupNorm(num_groups, channels, affine=True)
        self.gn3 = nn.GroupNorm(num_groups, channels, affine=True)
        self.drop = VariationalDropout2d(dropout)

    def forward(self, x: Tensor, injection: Tensor | None = None) -> Tensor:
        """Args: x, injection (or None) ``(B, C, H, W)``. Returns ``(B, C, H, W)``."""
        out = F.relu(self.gn1(self.conv1(x)))
        out = self.drop(self.conv2(out))
        if injection is not None:
            out = out + injection
        out = self.gn2(out)
        return self.gn3(F.relu(out + x))


class Branch(nn.Module):
    """The residual blocks of one resolution (reference ``BranchNet``); injection enters block 0."""

    def __init__(self, blocks: Sequence[BasicBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor, injection: Tensor | None = None) -> Tensor:
        x = self.blocks[0](x, injection)
        for block in self.blocks[1:]:
            x = block(x)
        return x


class DownsampleFuse(nn.Module):
    """Fusion path from branch ``j`` to a lower resolution ``i > j`` (reference
    ``DownsampleModule``): ``i - j`` stride-2 3x3 convs, each followed by GN, with ReLU between.
    Intermediate convs keep ``C_j`` channels, the last one maps to ``C_i``."""

    def __init__(
        self, num_channels: Sequence[int], in_res: int, out_res: int, num_groups: int
    ) -> None:
        super().__init__()
        steps = out_res - in_res
        in_ch, out_ch = num_channels[in_res], num_channels[out_res]
        layers = []
        for k in range(steps):
            last = k == steps - 1
            mid = out_ch if last else in_ch
            _check_groups(mid, num_groups, 'DownsampleFuse')
            parts: list[tuple[str, nn.Module]] = [
                ('conv', nn.Conv2d(in_ch, mid, 3, stride=2, padding=1, bias=False)),
                ('gnorm', nn.GroupNorm(num_groups, mid, affine=True)),
            ]
            if not last:
                parts.append(('relu', nn.ReLU()))
            layers.append(nn.Sequential(OrderedDict(parts)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        del size  # the strided convs produce the target size by construction
        return self.net(x)


class UpsampleFuse(nn.Module):
    """Fusion path from branch ``j`` to a higher resolution ``i < j`` (reference
    ``UpsampleModule``): 1x1 conv + GN, then nearest-neighbour upsampling to the target size
    (the reference uses ``scale_factor=2**(j-i)``; identical when sizes divide exactly)."""

    def __init__(
        self, num_channels: Sequence[int], in_res: int, out_res: int, num_groups: int
    ) -> None:
        super().__init__()
        out_ch = num_channels[out_res]
        _check_groups(out_ch, num_groups, 'UpsampleFuse')
        self.net = nn.Sequential(
            OrderedDict(
                [
                    ('conv', nn.Conv2d(num_channels[in_res], out_ch, 1, bias=False)),
                    ('gnorm', nn.GroupNorm(num_groups, out_ch, affine=True)),
                ]
            )
        )

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return F.interpolate(self.net(x), size=size, mode='nearest')


class MDEQLayer(nn.Module):
    """The MDEQ layer :math:`f_\\theta(z; x)`: per-resolution residual blocks + multiscale fusion.

    Args:
        num_channels: Width of each branch, highest resolution first.
        num_blocks: Residual blocks per branch.
        expansion: Inner width multiplier of the blocks.
        num_groups: GroupNorm groups (the post-fusion norm uses ``num_groups // 2``).
        dropout: Variational dropout rate inside the blocks.
        wnorm: Weight-normalise the block convs and the post-fusion convs.
    """

    def __init__(
        self,
        num_channels: Sequence[int],
        num_blocks: Sequence[int],
        expansion: int,
        num_groups: int,
        dropout: float,
        wnorm: bool,
    ) -> None:
        super().__init__()
        if len(num_channels) != len(num_blocks):
            raise ValueError(
                f'num_channels {tuple(num_channels)} and num_blocks '
                f'{tuple(num_blocks)} must have one entry per branch'
            )
        if any(b < 1 for b in num_blocks):
            raise ValueError(f'every branch needs at least one block, got {tuple(num_blocks)}')
        self.num_channels = tuple(int(c) for c in num_channels)
        s = len(self.num_channels)
        self.branches = nn.ModuleList(
            Branch([BasicBlock(c, expansion, num_groups, dropout, wnorm) for _ in range(nb)])
            for c, nb in zip(self.num_channels, num_blocks)
        )
        self.fuse_layers = nn.ModuleList()
        if s > 1:
            for i in range(s):
                row = nn.ModuleList()
                for j in range(s):
                    if i == j:
                        row.append(nn.Identity())
                    elif j > i:
                        row.append(UpsampleFuse(self.num_channels, j, i, num_groups))
                    else:
                        row.append(DownsampleFuse(self.num_channels, j, i, num_groups))
                self.fuse_layers.append(row)
        post_groups = num_groups // 2
        self.post_fuse_layers = nn.ModuleList()
        for c in self.num_channels:
            _check_groups(c, post_groups, 'post_fuse_layers (num_groups // 2)')
            self.post_fuse_layers.append(
                nn.Sequential(
                    OrderedDict(
                        [
                            ('relu', nn.ReLU()),
                            ('conv', _conv(c, c, 1, wnorm)),
                            ('gnorm', nn.GroupNorm(post_groups, c, affine=True)),
                        ]
                    )
                )
            )

    def reset_dropout(self, batch: int, device: torch.device, dtype: torch.dtype) -> None:
        """Draw new variational dropout masks for a batch (call once per forward pass)."""
        for c, branch in zip(self.num_channels, self.branches):
            for block in branch.blocks:
                block.drop.reset_mask(batch, c, device, dtype)

    def forward(self, z: Sequence[Tensor], injection: Sequence[Tensor | None]) -> list[Tensor]:
        """Apply :math:`f_\\theta`.

        Args:
            z: S tensors ``(B, C_s, H_s, W_s)``.
            injection: S entries, a tensor ``(B, C_s, H_s, W_s)`` or None (no injection).

        Returns:
            S tensors shaped like ``z``.
        """
        blocks = [branch(z_s, inj) for branch, z_s, inj in zip(self.branches, z, injection)]
        if len(blocks) == 1:
            fused = blocks
        else:
            fused = []
            for i, row in enumerate(self.fuse_layers):
                size = blocks[i].shape[-2:]
                y = blocks[i]
                for j, path in enumerate(row):
                    if j != i:
                        y = y + path(blocks[j], size)
                fused.append(y)
        return [post(y) for post, y in zip(self.post_fuse_layers, fused)]


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


class MDEQNet(nn.Module):
    """Multiscale deep equilibrium network (MDEQ), with optional classification/segmentation head.

    ``features = z*`` where ``z* = f_theta(z*; x)`` is found by a :class:`DEQSolver` (Bai et al.,
    2020, Eq. 5-7); the solver, its iteration limits and the training mode (implicit / unrolled /
    stochastically unrolled) are configured by ``deq_cfg``.

    Args:
        arch: Preset, ``'small'`` or ``'xl'`` (see :data:`MDEQ_PRESETS`).
        task: Preset variant, ``'cls'`` (ImageNet settings) or ``'seg'`` (Cityscapes settings).
            Also decides which head ``with_head`` builds.
        with_head: Build the task head (needed to compare logits with the reference); a backbone
            leaves it off.
        deq_cfg: Keyword arguments of :class:`DEQSolver`. Defaults: ``solver='broyden'``,
            ``train_max_iter=test_max_iter=f_thres``, ``backward_max_iter=b_thres``; given keys
            override them.
        num_classes, num_channels, num_blocks, expansion, num_groups, dropout, wnorm,
        downsample_times, bn_momentum, head_channels, final_chansize, final_conv_kernel, f_thres,
        b_thres: Overrides of the preset (None keeps the preset value), e.g. for a tiny test net.

    Example:
        >>> net = MDEQNet(arch='small', num_channels=(4, 8), num_blocks=(1, 1), expansion=2,
        ...               num_groups=2, with_head=False)
        >>> out = net.eval().forward_features(torch.randn(1, 3, 32, 32), max_iter=4, tol=None)
        >>> [tuple(f.shape) for f in out.features]
        [(1, 4, 8, 8), (1, 8, 4, 4)]
    """

    def __init__(
        self,
        *,
        arch: str = 'small',
        task: str = 'cls',
        with_head: bool = True,
        deq_cfg: dict | None = None,
        num_classes: int | None = None,
        num_channels: Sequence[int] | None = None,
        num_blocks: Sequence[int] | None = None,
        expansion: int | None = None,
        num_groups: int | None = None,
        dropout: float | None = None,
        wnorm: bool | None = None,
        downsample_times: int | None = None,
        bn_momentum: float | None = None,
        head_channels: Sequence[int] | None = None,
        final_chansize: int | None = None,
        final_conv_kernel: int | None = None,
        f_thres: int | None = None,
        b_thres: int | None = None,
    ) -> None:
        super().__init__()
        if arch not in MDEQ_PRESETS:
            raise ValueError(f'unknown MDEQ arch {arch!r}; choose one of {sorted(MDEQ_PRESETS)}')
        if task not in ('cls', 'seg'):
            raise ValueError(f"task must be 'cls' or 'seg', got {task!r}")
        if deq_cfg is not None and not isinstance(deq_cfg, dict):
            raise TypeError(
                f'deq_cfg must be a dict of DEQSolver arguments, got {type(deq_cfg).__name__}'
            )
        cfg = dict(MDEQ_PRESETS[arch][task])
        overrides = dict(
            num_classes=num_classes,
            num_channels=num_channels,
            num_blocks=num_blocks,
            expansion=expansion,
            num_groups=num_groups,
            dropout=dropout,
            wnorm=wnorm,
            downsample_times=downsample_times,
            bn_momentum=bn_momentum,
            head_channels=head_channels,
            final_chansize=final_chansize,
            final_conv_kernel=final_conv_kernel,
            f_thres=f_thres,
            b_thres=b_thres,
        )
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        if num_channels is not None and num_blocks is None:
            cfg['num_blocks'] = (1,) * len(cfg['num_channels'])
        if num_channels is not None and head_channels is None:
            # Keep the preset's ratio head/branch width (rounded, at least 1).
            ratio = (
                MDEQ_PRESETS[arch][task]['head_channels'][0]
                / MDEQ_PRESETS[arch][task]['num_channels'][0]
            )
            cfg['head_channels'] = tuple(max(1, round(c * ratio)) for c in cfg['num_channels'])
        if cfg['downsample_times'] not in (0, 1, 2):
            raise ValueError(f"downsample_times must be 0, 1 or 2, got {cfg['downsample_times']}")
        if len(cfg['num_channels']) < 1:
            raise ValueError('num_channels must list at least one branch width')

        self.arch, self.task, self.cfg = arch, task, cfg
        self.num_channels: tuple[int, ...] = tuple(int(c) for c in cfg['num_channels'])
        self.num_branches = len(self.num_channels)
        self.downsample_times = int(cfg['downsample_times'])
        self.f_thres, self.b_thres = int(cfg['f_thres']), int(cfg['b_thres'])
        # Number of unrolled f applications of the reference's pretraining phase (informative).
        self.pretrain_unroll_iters = int(cfg['num_layers'])
        c0, mom = self.num_channels[0], float(cfg['bn_momentum'])

        s1 = 2 if self.downsample_times >= 1 else 1
        s2 = 2 if self.downsample_times >= 2 else 1
        self.stem = nn.Sequential(
            nn.Conv2d(3, c0, 3, stride=s1, padding=1, bias=False),
            nn.BatchNorm2d(c0, momentum=mom),
            nn.ReLU(),
            nn.Conv2d(c0, c0, 3, stride=s2, padding=1, bias=False),
            nn.BatchNorm2d(c0, momentum=mom),
            nn.ReLU(),
        )
        self.injection = nn.Sequential(
            nn.Conv2d(c0, c0, 1, bias=False), nn.BatchNorm2d(c0, momentum=mom), nn.ReLU()
        )
        self.layer = MDEQLayer(
            self.num_channels,
            cfg['num_blocks'],
            int(cfg['expansion']),
            int(cfg['num_groups']),
            float(cfg['dropout']),
            bool(cfg['wnorm']),
        )

        solver_cfg = dict(
            solver='broyden',
            train_max_iter=self.f_thres,
            test_max_iter=self.f_thres,
            backward_max_iter=self.b_thres,
        )
        solver_cfg.update(deq_cfg or {})
        self.deq_cfg = solver_cfg
        self.deq = DEQSolver(**solver_cfg)

        self.with_head = bool(with_head)
        self.num_classes = int(cfg['num_classes'])
        self.cls_head: MDEQClsHead | None = None
        self.seg_head: MDEQSegHead | None = None
        if self.with_head and task == 'cls':
            self.cls_head = MDEQClsHead(
                self.num_channels,
                cfg['head_channels'],
                int(cfg['final_chansize']),
                self.num_classes,
                mom,
            )
        elif self.with_head:
            self.seg_head = MDEQSegHead(
                self.num_channels, self.num_classes, int(cfg['final_conv_kernel']), mom
            )
        self.init_weights()

    def init_weights(self) -> None:
        """Reference initialisation (``init_weights`` of ``mdeq.py``).

        Plain convs (stem, injection, fusion, heads): ``N(0, 0.01)`` weights and biases;
        BatchNorm: weight 1, bias 0. Weight-normalised convs keep PyTorch's default
        (kaiming-uniform) ``v`` with ``g = ||v||``: the reference's normal init never reaches them
        because their ``weight`` is recomputed from ``g, v``. GroupNorm/Linear keep defaults.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.normal_(m.bias, 0.0, 0.01)
            elif isinstance(m, nn.BatchNorm2d) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ shapes and state
    def state_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """``(C_s, H_s, W_s)`` of each state tensor for an input of ``height x width``."""
        h, w = height, width
        for _ in range(self.downsample_times):
            h, w = _conv_out(h), _conv_out(w)
        shapes = []
        for s, c in enumerate(self.num_channels):
            if s > 0:
                h, w = _conv_out(h), _conv_out(w)
            shapes.append((c, h, w))
        return shapes

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f'MDEQNet expects an image tensor (B, 3, H, W), got {type(x).__name__}')
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f'MDEQNet expects an image tensor (B, 3, H, W), got shape {tuple(x.shape)}'
            )
        if x.shape[0] == 0:
            raise ValueError('MDEQNet got an empty batch (B=0)')

    def init_state(self, x: Tensor) -> list[Tensor]:
        """Zero initial state for input ``x`` ``(B, 3, H, W)``: S tensors ``(B, C_s, H_s, W_s)``."""
        self._check_input(x)
        b = x.shape[0]
        return [x.new_zeros(b, *shape) for shape in self.state_shapes(*x.shape[-2:])]

    def _check_state(self, z0: Any, x: Tensor) -> list[Tensor]:
        if isinstance(z0, Tensor):
            z0 = [z0]
        if not isinstance(z0, (list, tuple)) or not all(isinstance(t, Tensor) for t in z0):
            raise TypeError(
                f'z0 must be a list of {self.num_branches} tensors (see init_state), '
                f'got {type(z0).__name__}'
            )
        expected = [(x.shape[0], *s) for s in self.state_shapes(*x.shape[-2:])]
        got = [tuple(t.shape) for t in z0]
        if got != expected:
            raise ValueError(
                f'z0 shapes {got} do not match the state shapes {expected} of an '
                f'input {tuple(x.shape)}; reset the stream state (init_state) when '
                f'the frame size or batch changes'
            )
        return [t.to(device=x.device, dtype=x.dtype) for t in z0]

    # ------------------------------------------------------------------ forward
    def injection_features(self, x: Tensor) -> list[Tensor | None]:
        """The input injection ``[stage0(stem(x)), None, ...]`` (only the first scale gets one)."""
        return [self.injection(self.stem(x))] + [None] * (self.num_branches - 1)

    def forward_features(
        self,
        x: Tensor,
        z0: Sequence[Tensor] | None = None,
        max_iter: int | None = None,
        tol: float | None = None,
        return_lowest: bool | None = None,
    ) -> MDEQOutput:
        """Solve for the equilibrium of ``f_theta(.; x)``.

        Args:
            x: Images ``(B, 3, H, W)``.
            z0: Initial state (S tensors shaped as :meth:`init_state`); None = zeros (cold start).
                Streaming passes the previous frame's fixed point here.
            max_iter: Iteration limit for this call (None: the configured test/train limit).
            tol: Stopping tolerance for this call (None: the configured one; ``0`` runs exactly
                ``max_iter`` steps).
            return_lowest: Evaluation: return the lowest-residual state (a full solve) or the
                last one (``False``: a streaming budget, ``z^[M]``); None: configured. All three
                are forwarded to :class:`DEQSolver`.

        Returns:
            :class:`MDEQOutput` with ``features``/``z`` (S tensors ``(B, C_s, H_s, W_s)``),
            ``stats`` and ``aux``.
        """
        self._check_input(x)
        z_init = self.init_state(x) if z0 is None else self._check_state(z0, x)
        injection = self.injection_features(x)
        if self.training:
            self.layer.reset_dropout(x.shape[0], x.device, x.dtype)
        layer = self.layer

        def f(z: list[Tensor]) -> list[Tensor]:
            return layer(z, injection)

        with frozen_weight_norm(layer):
            z, stats, aux = self.deq(
                f,
                z_init,
                training=self.training,
                max_iter=max_iter,
                tol=tol,
                return_lowest=return_lowest,
            )
        z = list(z)
        # The reference's output dropout (``iodrop``) has rate 0, i.e. features == z.
        # ``aux`` is the solver's own dict (it records e.g. backward statistics after backward).
        return MDEQOutput(features=list(z), z=z, stats=stats, aux=aux)

    def forward(
        self,
        x: Tensor,
        z0: Sequence[Tensor] | None = None,
        max_iter: int | None = None,
        tol: float | None = None,
    ) -> Tensor | list[Tensor]:
        """Features through the head.

        Returns:
            ``(B, num_classes)`` logits (cls head), ``(B, num_classes, H/4, W/4)`` logits (seg
            head) or, without a head, the list of S feature maps.
        """
        feats = self.forward_features(x, z0, max_iter=max_iter, tol=tol).features
        if self.cls_head is not None:
            return self.cls_head(feats)
        if self.seg_head is not None:
            return self.seg_head(feats)
        return feats
