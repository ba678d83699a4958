"""Weight-standardised convolution (ConvAWS) of DetectoRS, with a fast standardisation.

Same module, parameters, buffers and values as mmcv's ``ConvAWS2d`` (``mmcv/cnn/bricks/conv_ws.py``:
``w_hat = gamma (w - mean) / sqrt(var + 1e-5) + beta`` per output channel, ``var`` unbiased),
registered under the same name ``ConvAWS`` in the ``mmvideoeq`` scope so that the configs'
``conv_cfg=dict(type='ConvAWS')`` builds it. What it changes, and why it is not mmcv's class:

* the standardisation is two-pass (mean, then the centred squares) and fused into one
  ``addcmul``; on CPU ``Tensor.var(dim)`` takes a slow path that made the standardisation of a
  256x256x3x3 kernel cost about twice the convolution itself at detection feature-map sizes
  (``docs/detectors.md``, "Speed");
* without autograd (evaluation, streaming) the standardised weight is kept while ``weight``,
  ``weight_gamma`` and ``weight_beta`` are unchanged (keyed on their storage and in-place version
  counters, so an optimizer step, ``load_state_dict`` or ``.to()`` invalidates it; ``train()``
  clears it), with :func:`~mmvideoeq.deq.mdeq.layers.cached_weight`, as
  :class:`~mmvideoeq.deq.mdeq.layers.WNConv2d` does for weight normalisation.

mmcv's ``_load_from_state_dict`` (recovering ``gamma``/``beta`` from a plain-conv checkpoint) is
inherited unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvAWS2d as _MMCVConvAWS2d
from torch import Tensor

from mmvideoeq.registry import MODELS
from mmvideoeq.utils.weight_cache import cached_weight

__all__ = ['ConvAWS2d', 'standardise_weight']


def standardise_weight(weight: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    """``gamma (w - mean) / sqrt(var + eps) + beta`` per output channel (``var`` unbiased).

    ``weight`` is ``(C_out, ...)``; ``gamma`` and ``beta`` hold ``C_out`` values each.
    """
    flat = weight.flatten(1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    var = centred.square().sum(dim=1, keepdim=True) / (flat.shape[1] - 1)
    scale = gamma.reshape(-1, 1) * torch.rsqrt(var + eps)
    return torch.addcmul(beta.reshape(-1, 1), centred, scale).view_as(weight)


@MODELS.register_module(name='ConvAWS')
class ConvAWS2d(_MMCVConvAWS2d):
    """mmcv's ``ConvAWS2d`` with the fast and cached standardisation of the module docstring."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._cache: tuple[tuple, Tensor] | None = None

    #: Keep the standardised weight between calls without autograd (benchmarks switch it off).
    cache_standardised: bool = True

    def _get_weight(self, weight: Tensor) -> Tensor:
        return standardise_weight(weight, self.weight_gamma, self.weight_beta)

    def standardised_weight(self) -> Tensor:
        """The standardised ``weight`` (cached without autograd, see the module docstring)."""
        w = self.weight
        if (torch.is_grad_enabled() and w.requires_grad) or not self.cache_standardised:
            return self._get_weight(w)
        self._cache, std = cached_weight(
            self._cache, (w, self.weight_gamma, self.weight_beta), lambda: self._get_weight(w)
        )
        return std

    def train(self, mode: bool = True) -> ConvAWS2d:
        self._cache = None
        return super().train(mode)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            x,
            self.standardised_weight(),
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )
