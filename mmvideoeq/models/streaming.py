"""The streaming protocol shared by mmvideoeq's detectors and segmentors.

A streaming model exposes two methods (``docs/architecture.md`` section 3):

* ``stream_step(inputs, data_samples, z0, max_iter=None, tol=None) -> (preds, z, stats)``: one
  frame (or a batch of frames of different streams) with the DEQ solver started from ``z0`` (a
  list of tensors with batch dim B, or ``None`` for a cold start) and a budget of ``max_iter``
  steps (``None``: the backbone's configured full solve);
* ``stream_zero_state(inputs) -> list[Tensor]``: the cold state of a batch (used when cold and
  warm streams are solved together);
* optionally ``stream_has_solver`` (default True): False for a per-frame network whose state is
  only a memory (ViP-DeepLab on a ResNet); ``StreamingTestLoop`` then runs one setting,
  ``stream``, instead of a budget sweep.

The model holds no stream state: the caller (``StreamingTestLoop``, ``StreamingInferencer``) owns
the states and decides resets, as StreamDEQ (thesis ch. 3.2) prescribes. Only the backbone's
feature extraction differs between the per-frame and the streaming path; the heads are the
model's own.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mmvideoeq.deq import FULL_SOLVE, Budget


class StreamingMixin:
    """Adds the streaming protocol to a model whose backbone has ``forward_stream``.

    Subclasses implement :meth:`predict_from_feats` (the model's ``predict`` after the backbone).
    """

    def _check_streamable(self) -> None:
        if not hasattr(self.backbone, 'forward_stream'):
            raise TypeError(
                f'{type(self.backbone).__name__} has no forward_stream(); streaming needs a DEQ '
                'backbone such as mmvideoeq.MDEQ'
            )

    @torch.no_grad()
    def stream_step(
        self,
        inputs: Tensor,
        data_samples: Sequence,
        z0: list[Tensor] | None,
        max_iter: int | None = None,
        tol: float | None = None,
    ):
        """Run one streaming step on a batch of frames.

        Args:
            inputs: Preprocessed frames ``(B, 3, H, W)`` (after ``data_preprocessor``).
            data_samples: Their data samples (metainfo, ground truth).
            z0: Initial fixed-point estimate: a list of ``(B, C_s, H_s, W_s)`` tensors, or
                ``None`` for a cold (zero) start.
            max_iter: Solver steps for this frame (``None``: the backbone's full solve, with its
                configured tolerance and lowest-residual selection).
            tol: Early-stop tolerance of a budget (``None``: exactly ``max_iter`` steps).

        Returns:
            tuple: ``(preds, z, stats)``: the model's predictions (data samples), the new fixed
            point (detached list of tensors, batch dim B) and the solver statistics.
        """
        self._check_streamable()
        budget = FULL_SOLVE if max_iter is None else Budget(max_iter, tol or 0.0)
        feats, z, stats = self.backbone.forward_stream(inputs, z0, budget)
        preds = self.predict_from_feats(tuple(feats), list(data_samples))
        return preds, [t.detach() for t in z], stats

    def stream_zero_state(self, inputs: Tensor) -> list[Tensor]:
        """The cold (zero) state of a batch of frames ``(B, 3, H, W)``."""
        self._check_streamable()
        return self.backbone.init_stream_state(inputs)

    def predict_from_feats(self, feats: tuple[Tensor, ...], data_samples: list) -> list:
        raise NotImplementedError

    def backbone_aux_losses(self) -> dict[str, Tensor]:
        """Auxiliary DEQ losses of the last training forward (e.g. the Jacobian penalty)."""
        pop = getattr(self.backbone, 'pop_aux_losses', None)
        return dict(pop()) if callable(pop) else {}
