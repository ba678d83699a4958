"""Faster R-CNN + FPN on a DEQ backbone, with the streaming protocol (thesis ch. 4.2)."""

from __future__ import annotations

from mmdet.models.detectors import FasterRCNN
from torch import Tensor

from mmvideoeq.models.streaming import DEQStreamingMixin, backbone_aux_losses
from mmvideoeq.models.utils.two_stage import two_stage_loss
from mmvideoeq.registry import MODELS


@MODELS.register_module()
class StreamDEQFasterRCNN(DEQStreamingMixin, FasterRCNN):
    """mmdet's ``FasterRCNN`` whose backbone can be warm-started frame to frame.

    Training and per-frame testing are mmdet's own; the DEQ backbone's auxiliary losses (the
    Jacobian regulariser, when enabled) are added to the loss dict. ``stream_step`` (see
    :class:`~mmvideoeq.models.streaming.DEQStreamingMixin`) runs the backbone from a given fixed
    point, then the neck, RPN and RoI heads as :meth:`FasterRCNN.predict` does. Batches of clips
    train on carried states (``clip_train_cfg``, :mod:`mmvideoeq.models.streaming`).
    """

    def loss(self, batch_inputs: Tensor, batch_data_samples: list) -> dict:
        losses = super().loss(batch_inputs, batch_data_samples)
        losses.update(backbone_aux_losses(self.backbone))
        return losses

    def loss_from_feats(self, feats: tuple[Tensor, ...], data_samples: list) -> dict:
        return two_stage_loss(self, self.neck(feats) if self.with_neck else feats, data_samples)

    def predict_from_feats(self, feats: tuple[Tensor, ...], data_samples: list) -> list:
        x = self.neck(feats) if self.with_neck else feats
        rpn_results = self.rpn_head.predict(x, data_samples, rescale=False)
        results = self.roi_head.predict(x, rpn_results, data_samples, rescale=True)
        return self.add_pred_to_datasample(data_samples, results)
