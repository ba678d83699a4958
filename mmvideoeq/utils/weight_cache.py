"""A weight derived from parameters (normalised, standardised), kept while they are unchanged.

Plain PyTorch. Used by the MDEQ weight-normalised convolution (``mmvideoeq.deq.mdeq.layers``)
and DetectoRS's weight-standardised convolution (``mmvideoeq.models.layers.conv_aws``): without
autograd (evaluation, streaming) a frame of a few solver steps would otherwise spend a large part
of its time re-deriving the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ['cached_weight']


def cached_weight(
    cache: tuple[tuple, Tensor] | None, params: Sequence[Tensor], compute: Callable[[], Tensor]
) -> tuple[tuple[tuple, Tensor], Tensor]:
    """A weight derived from ``params`` by ``compute()``, kept while they are unchanged.

    Returns ``(cache, weight)``: the caller stores ``cache`` (``None`` at first, and after
    anything it does not track, e.g. ``train()``) and passes it back on the next call. ``compute``
    runs without autograd, again whenever a tensor of ``params`` has a new storage or in-place
    version counter (an optimizer step, ``load_state_dict``, ``.to()``), dtype or device, or the
    inference mode changed (a tensor made under ``torch.inference_mode()`` must not reach autograd
    later).
    """
    first = params[0]
    key = tuple((t.data_ptr(), t._version) for t in params)
    key += (first.dtype, first.device, torch.is_inference_mode_enabled())
    if cache is None or cache[0] != key:
        with torch.no_grad():
            cache = (key, compute())
    return cache, cache[1]
