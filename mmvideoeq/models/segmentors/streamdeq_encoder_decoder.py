"""mmseg ``EncoderDecoder`` on a DEQ backbone, with the streaming protocol (thesis ch. 4.1)."""

from __future__ import annotations

from mmseg.models.segmentors import EncoderDecoder
from torch import Tensor

from mmvideoeq.models.streaming import DEQStreamingMixin, backbone_aux_losses
from mmvideoeq.registry import MODELS


@MODELS.register_module()
class StreamDEQEncoderDecoder(DEQStreamingMixin, EncoderDecoder):
    """MDEQ segmentation model: backbone + decode head, warm-startable frame to frame.

    With the MDEQ backbone and ``mmseg.FCNHead(input_transform='resize_concat', num_convs=1,
    kernel_size=1, concat_input=False)`` this is the reference MDEQ segmentation model (all scales
    upsampled to the highest resolution, concatenated, 1x1 conv + BN + ReLU, 1x1 classifier).
    Streaming uses whole-image inference (a sliding window would mix the state of crops).

    Args:
        upsample_align_corners: ``align_corners`` of the bilinear upsampling of the logits to
            the label size before the argmax (``None``: the decode head's). locuslab/mdeq's
            ``validate()`` (``lib/core/seg_function.py``), which produced its reported mIoU,
            uses ``True``; its test-time ``inference()`` (``lib/datasets/base_dataset.py``)
            upsamples with the default, ``False``. The shipped configs keep the ``validate()``
            value.
        **kwargs: mmseg's ``EncoderDecoder`` arguments.
    """

    def __init__(self, *, upsample_align_corners: bool | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if upsample_align_corners is not None:
            # mmseg's postprocess_result resizes the logits with ``self.align_corners``
            self.align_corners = bool(upsample_align_corners)

    def loss(self, inputs: Tensor, data_samples: list) -> dict:
        losses = super().loss(inputs, data_samples)
        losses.update(backbone_aux_losses(self.backbone))
        return losses

    def predict_from_feats(self, feats: tuple[Tensor, ...], data_samples: list) -> list:
        if self.test_cfg is not None and self.test_cfg.get('mode', 'whole') != 'whole':
            raise ValueError(
                "streaming needs test_cfg.mode='whole' (got "
                f"{self.test_cfg.get('mode')!r}); set model.test_cfg.mode='whole'"
            )
        x = self.neck(feats) if self.with_neck else feats
        metas = [s.metainfo for s in data_samples]
        seg_logits = self.decode_head.predict(x, metas, self.test_cfg)
        return self.postprocess_result(seg_logits, data_samples)
