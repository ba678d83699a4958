"""Deformable convolution (DCNv1) in plain PyTorch, for machines without mmcv's compiled ops.

Switchable Atrous Convolution (DetectoRS, thesis Sec. 6.4.4) replaces both of its convolutions by
deformable ones (Dai et al., ICCV 2017). mmcv implements that op in its compiled extension
(``mmcv.ops.deform_conv2d``); a machine with a pure-Python mmcv ("mmcv-lite") has no such op. This
module computes the same function with ``torch.nn.functional.grid_sample`` and one matmul, so SAC
runs (slower, and with more memory: it materialises the ``(N, C * k * k, H_out * W_out)`` column
matrix) with nothing but torch.

Conventions follow mmcv's ``deform_conv2d`` (``mmcv/ops/csrc/common/.../deform_conv_*``; Apache-2.0;
no code copied):

* offset channels of deformable group ``g`` and kernel tap ``k = i * k_w + j`` are
  ``2 * (g * k_h * k_w + k)`` (row offset ``dy``) and ``+ 1`` (column offset ``dx``);
* tap ``(i, j)`` of output ``(y, x)`` samples the input at row
  ``y * stride_h - pad_h + i * dilation_h + dy`` and column
  ``x * stride_w - pad_w + j * dilation_w + dx``;
* samples are bilinear with zeros outside the image (mmcv's ``deformable_im2col_bilinear``: a
  corner outside the image contributes 0), which is ``grid_sample(..., padding_mode='zeros',
  align_corners=False)`` at the pixel coordinate ``p`` mapped to ``(2 p + 1) / size - 1``.

``tests/models/test_detectors_layers.py`` checks its values and gradients against mmcv's op on
CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['deform_conv2d_torch', 'deform_conv2d']


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def deform_conv2d_torch(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    deform_groups: int = 1,
) -> Tensor:
    """Deformable convolution without bias, in plain PyTorch (mmcv's ``deform_conv2d``).

    Args:
        x: Input ``(N, C_in, H, W)``.
        offset: Offsets ``(N, 2 * deform_groups * k_h * k_w, H_out, W_out)`` in mmcv's layout.
        weight: Kernel ``(C_out, C_in / groups, k_h, k_w)``.
        stride, padding, dilation: As in ``torch.nn.functional.conv2d``.
        groups: Convolution groups.
        deform_groups: Groups of input channels sharing one offset field.

    Returns:
        Tensor: ``(N, C_out, H_out, W_out)``.

    Raises:
        ValueError: Shapes that do not fit together.
    """
    n, c_in, h, w = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    taps = kh * kw
    if c_per_group * groups != c_in or c_out % groups:
        raise ValueError(
            f'weight {tuple(weight.shape)} does not fit input channels {c_in} with groups={groups}'
        )
    if c_in % deform_groups:
        raise ValueError(
            f'input channels {c_in} are not divisible by deform_groups={deform_groups}'
        )
    if tuple(offset.shape) != (n, 2 * deform_groups * taps, h_out, w_out):
        raise ValueError(
            f'offset must be {(n, 2 * deform_groups * taps, h_out, w_out)}, got '
            f'{tuple(offset.shape)}'
        )
    off = offset.view(n, deform_groups, taps, 2, h_out, w_out)
    dev, dt = x.device, x.dtype
    ki = torch.arange(kh, device=dev, dtype=dt).repeat_interleave(kw) * dh  # (taps,)
    kj = torch.arange(kw, device=dev, dtype=dt).repeat(kh) * dw
    oy = torch.arange(h_out, device=dev, dtype=dt) * sh - ph
    ox = torch.arange(w_out, device=dev, dtype=dt) * sw - pw
    rows = ki.view(taps, 1, 1) + oy.view(1, h_out, 1) + off[:, :, :, 0]  # (n, dg, taps, ho, wo)
    cols = kj.view(taps, 1, 1) + ox.view(1, 1, w_out) + off[:, :, :, 1]
    grid = torch.stack(((2 * cols + 1) / w - 1, (2 * rows + 1) / h - 1), dim=-1)
    grid = grid.view(n * deform_groups, taps * h_out, w_out, 2)
    inp = x.reshape(n * deform_groups, c_in // deform_groups, h, w)
    sampled = F.grid_sample(inp, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
    # (n * dg, C / dg, taps * ho, wo) -> columns (n, groups, C / groups * taps, ho * wo)
    columns = sampled.view(n, c_in, taps, h_out * w_out).view(
        n, groups, c_per_group * taps, h_out * w_out
    )
    kernel = weight.reshape(groups, c_out // groups, c_per_group * taps)
    out = torch.einsum('gok,ngkl->ngol', kernel, columns)
    return out.reshape(n, c_out, h_out, w_out)


def deform_conv2d(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    deform_groups: int = 1,
    *,
    impl: str = 'auto',
) -> Tensor:
    """Deformable convolution through mmcv's compiled op or the plain-PyTorch path.

    Args:
        x, offset, weight, stride, padding, dilation, groups, deform_groups: See
            :func:`deform_conv2d_torch`.
        impl: ``'mmcv'`` (compiled op; error if mmcv has no ops), ``'torch'``
            (:func:`deform_conv2d_torch`) or ``'auto'``: mmcv's op for CUDA tensors when it
            imports, the plain-PyTorch path otherwise (on CPU it measured faster than mmcv's
            CPU kernel, ``docs/results.md``; same values and gradients, tested).

    Returns:
        Tensor: ``(N, C_out, H_out, W_out)``.
    """
    if impl not in ('auto', 'mmcv', 'torch'):
        raise ValueError(f"impl must be 'auto', 'mmcv' or 'torch', got {impl!r}")
    use_mmcv = impl == 'mmcv' or (impl == 'auto' and x.is_cuda)
    op = _mmcv_deform_conv2d() if use_mmcv else None
    if op is None:
        if impl == 'mmcv':
            raise RuntimeError(
                "impl='mmcv' needs mmcv built with its ops (mmcv.ops.deform_conv2d did not "
                "import); install the full mmcv or use impl='torch'"
            )
        return deform_conv2d_torch(
            x, offset, weight, stride, padding, dilation, groups, deform_groups
        )
    return op(x, offset, weight, stride, padding, dilation, groups, deform_groups)


_MMCV_OP: list = []


def _mmcv_deform_conv2d():
    """mmcv's compiled ``deform_conv2d`` or ``None`` (imported once, on first use)."""
    if not _MMCV_OP:
        try:
            from mmcv.ops import deform_conv2d as op
        except Exception:  # mmcv-lite, or no mmcv at all
            op = None
        _MMCV_OP.append(op)
    return _MMCV_OP[0]
