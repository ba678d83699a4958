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

Training on carried states (a streaming-aware SUR, :mod:`mmvideoeq.models.clip_training`): for a
batch of clips the first frame of each clip is solved from zeros with the configured training
solve (e.g. SUR's drawn unroll depth), every later frame is warm-started from the previous
frame's fixed point with ``stream_steps`` unrolled steps, as ``stream@M`` runs it, and the loss is
taken on every frame, with backpropagation through the carried state truncated every
``truncate`` frames. A batch without clip metainfo trains per frame as before.

``stream_stages()`` gives the same step cut into stem / solve / heads
(:class:`~mmvideoeq.streaming.pipeline.StreamStages`), which a
:class:`~mmvideoeq.streaming.pipeline.PipelinedStream` runs concurrently on consecutive frames;
``stream_step`` is those stages composed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmvideoeq.deq import FULL_SOLVE, Budget
from mmvideoeq.models.clip_training import (
    ClipTrainConfig,
    ClipTrainingMixin,
    draw_steps,
)
from mmvideoeq.streaming import StepOutput
from mmvideoeq.streaming.pipeline import StreamStages

__all__ = ['DEQStreamingMixin', 'backbone_aux_losses']


def backbone_aux_losses(backbone: nn.Module) -> dict[str, Tensor]:
    """Auxiliary DEQ losses of the backbone's last training forward (e.g. the Jacobian penalty);
    empty for a backbone without them."""
    pop = getattr(backbone, 'pop_aux_losses', None)
    return dict(pop()) if callable(pop) else {}


class DEQStreamingMixin(ClipTrainingMixin):
    """The streaming protocol for a model whose backbone has ``forward_stream`` (MDEQ).

    Subclasses implement :meth:`predict_from_feats` (the model's ``predict`` after the backbone)
    and, to be trained on clips, :meth:`loss_from_feats`. The model keeps no memory between frames
    (``memory`` entries come back ``None``).

    Args:
        clip_train_cfg: :class:`~mmvideoeq.models.clip_training.ClipTrainConfig` fields for
            batches of clips (``None``: the defaults).
        **kwargs: The model's own arguments.
    """

    def _check_clip_trainable(self) -> None:
        self._check_streamable()

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

    # ------------------------------------------------------------------ training on clips
    def clip_train_step(
        self, inputs: Tensor, z0: list[Tensor] | None, cfg: ClipTrainConfig
    ) -> tuple[list[Tensor], tuple[Tensor, ...], dict[str, Tensor]]:
        """One warm-started training solve, with autograd through the carried state.

        Args:
            inputs: Frames ``(n, 3, H, W)``.
            z0: The previous frames' fixed points (``S`` tensors ``(n, C_s, H_s, W_s)``) or
                ``None``: a cold start with the configured training solve (``cfg.cold_steps``
                unrolled steps instead, when given).
            cfg: The clip-training configuration.

        Returns:
            tuple: the new state (autograd reaches ``z0`` in the unrolled train modes; the
            implicit gradient does not depend on the start), the backbone's selected features
            and the solver's losses (e.g. the weighted Jacobian penalty).
        """
        if z0 is None:
            cold = cfg.cold_steps
            budget = FULL_SOLVE if cold is None else Budget.steps(draw_steps(cold))
        else:
            budget = Budget.steps(draw_steps(cfg.stream_steps))
        backbone = self.backbone
        out = backbone.net.forward_features(inputs, z0, budget)
        feats = tuple(out.features[i] for i in backbone.out_indices)
        extra = {k: v for k, v in out.aux.items() if 'loss' in k and isinstance(v, Tensor)}
        return list(out.z), feats, extra

    def loss_from_feats(self, feats: tuple[Tensor, ...], data_samples: list) -> dict:
        """The model's losses from backbone features ``(B, C_k, H_k, W_k)``."""
        raise NotImplementedError(
            f'{type(self).__name__} cannot be trained on clips: it implements no loss_from_feats'
        )
