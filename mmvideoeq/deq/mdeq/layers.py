"""The MDEQ layer ``f_theta``: weight-normalised residual blocks, multiscale fusion, dropout.

Follows locuslab/mdeq ``lib/models/mdeq_core.py`` (MIT); see :mod:`mmvideoeq.deq.mdeq`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmvideoeq.utils.weight_cache import cached_weight

__all__ = [
    'VariationalDropout2d',
    'WNConv2d',
    'frozen_weight_norm',
    'BasicBlock',
    'Branch',
    'DownsampleFuse',
    'UpsampleFuse',
    'MDEQLayer',
]


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

    Without autograd (evaluation, streaming) the normalised weight is also kept *between* solves
    while ``g`` and ``v`` are unchanged: a streaming frame of a few solver steps would otherwise
    spend a large part of its time re-normalising the whole layer (``docs/mdeq.md`` has the
    measurement). The cache is keyed on the parameters' storage and in-place version counters, so
    any update (an optimizer step, ``load_state_dict``, ``.to()``) invalidates it; :meth:`train`
    clears it too.

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
        self._cache: tuple[tuple, Tensor] | None = None

    def _normalised(self) -> Tensor:
        v = self.weight_v
        return v * (self.weight_g / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1))

    #: Keep the normalised weight between solves without autograd (benchmarks switch it off).
    cache_between_solves: bool = True

    @property
    def weight(self) -> Tensor:
        """The normalised weight ``(C_out, C_in, k, k)`` (cached without autograd)."""
        grad = self.weight_g.requires_grad or self.weight_v.requires_grad
        if (torch.is_grad_enabled() and grad) or not self.cache_between_solves:
            return self._normalised()
        self._cache, w = cached_weight(
            self._cache, (self.weight_g, self.weight_v), self._normalised
        )
        return w

    def train(self, mode: bool = True) -> 'WNConv2d':
        self._cache = None
        return super().train(mode)

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
