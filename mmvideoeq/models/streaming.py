"""The DEQ implementation of the streaming protocol, for models on an equilibrium backbone.

The protocol itself is :class:`mmvideoeq.streaming.StreamingModel` (two methods:
``stream_zero_state`` and ``stream_step``, ``docs/architecture.md``). This module gives its one
DEQ implementation: the backbone (``mmvideoeq.MDEQ``) is solved from the carried fixed point with
the frame's :class:`~mmvideoeq.deq.Budget` (``MDEQ.forward_stream``), then the model's own heads
run on the features. The detectors and segmentors on MDEQ mix it in; other families implement
the protocol themselves (the recursive RFP detectors in ``models/detectors/detectors_rcnn.py``,
ViP-DeepLab with its stitching memory in ``models/segmentors/vip_deeplab_stream.py``).

The model holds no stream state: the caller (``StreamingTestLoop``, ``StreamingInferencer``) owns
the states and the policy decides resets, as StreamDEQ (thesis ch. 3.2) prescribes.

``stream_stages()`` gives the same step cut into stem / solve / heads
(:class:`~mmvideoeq.streaming.pipeline.StreamStages`), which a
:class:`~mmvideoeq.streaming.pipeline.PipelinedStream` runs concurrently on consecutive frames;
``stream_step`` is those stages composed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmvideoeq.deq import Budget
from mmvideoeq.streaming import StepOutput
from mmvideoeq.streaming.pipeline import StreamStages

__all__ = ['DEQStreamingMixin', 'backbone_aux_losses']


def backbone_aux_losses(backbone: nn.Module) -> dict[str, Tensor]:
    """Auxiliary DEQ losses of the backbone's last training forward (e.g. the Jacobian penalty);
    empty for a backbone without them."""
    pop = getattr(backbone, 'pop_aux_losses', None)
    return dict(pop()) if callable(pop) else {}


class DEQStreamingMixin:
    """The streaming protocol for a model whose backbone has ``forward_stream`` (MDEQ).

    Subclasses implement :meth:`predict_from_feats` (the model's ``predict`` after the backbone).
    The model keeps no memory between frames (``memory`` entries come back ``None``).
    """

    def _check_streamable(self) -> None:
        if not hasattr(self.backbone, 'forward_stream'):
            raise TypeError(
                f'{type(self.backbone).__name__} has no forward_stream(); streaming needs a DEQ '
                'backbone such as mmvideoeq.MDEQ'
            )

    def stream_zero_state(self, inputs: Tensor) -> list[Tensor]:
        """The cold (zero) fixed point of a batch of frames ``(B, 3, H, W)``."""
        self._check_streamable()
        return self.backbone.init_stream_state(inputs)

    @torch.no_grad()
    def stream_step(self, inputs, z0, memory, budget, payloads) -> StepOutput:
        """:meth:`StreamingModel.stream_step <mmvideoeq.streaming.StreamingModel.stream_step>`:
        the backbone solved from ``z0`` (the fixed point, ``S`` tensors ``(B, C_s, H_s, W_s)``)
        with ``budget``, then the model's heads on the data samples ``payloads``; no memory. The
        stages of :meth:`stream_stages` composed."""
        return self.stream_stages().step(inputs, z0, memory, budget, payloads)

    def stream_stages(self) -> StreamStages:
        """The streaming step as three stages (each runs without autograd):

        * ``stem(inputs) -> s``: the backbone's per-frame stem and input injection
          (``backbone.stream_stem``; the frames themselves for a backbone without one);
        * ``solve(s, z0, memory, budget) -> (features, z, memory, stats)``: the solver steps
          (``backbone.stream_solve``, or ``forward_stream``), ``z`` detached, ``B`` empty
          memories;
        * ``heads(features, data_samples) -> data samples``: :meth:`predict_from_feats`.
        """
        self._check_streamable()
        backbone = self.backbone
        staged = hasattr(backbone, 'stream_stem') and hasattr(backbone, 'stream_solve')

        @torch.no_grad()
        def stem(inputs: Tensor) -> Any:
            return backbone.stream_stem(inputs) if staged else inputs

        @torch.no_grad()
        def solve(s: Any, z0, memory, budget: Budget):
            if staged:
                feats, z, stats = backbone.stream_solve(s, z0, budget)
            else:
                feats, z, stats = backbone.forward_stream(s, z0, budget)
            return tuple(feats), [t.detach() for t in z], [None] * feats[0].shape[0], stats

        @torch.no_grad()
        def heads(feats: tuple[Tensor, ...], data_samples: list) -> list:
            return self.predict_from_feats(tuple(feats), list(data_samples))

        return StreamStages(stem=stem, solve=solve, heads=heads)

    def predict_from_feats(self, feats: tuple[Tensor, ...], data_samples: list) -> list:
        """The model's predictions from backbone features ``(B, C_k, H_k, W_k)``."""
        raise NotImplementedError
