"""mmseg's ``SegDataPreProcessor`` for frames stacked on channels (``(3 * T, H, W)``).

ViP-DeepLab trains on frame pairs stacked on channels (deeplab2's input layout, written by
``PackDVPSInputs``). mmseg's preprocessor converts BGR to RGB only for 3-channel inputs and
normalises with one mean per channel; this one applies the conversion and the 3-value
mean/std to every frame of the stack, then pads and stacks exactly as mmseg does
(``mmseg.utils.stack_batch``).
"""

from __future__ import annotations

from typing import Any

import torch
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.utils import stack_batch

from mmvideoeq.registry import MODELS

__all__ = ['FramesDataPreprocessor']


@MODELS.register_module()
class FramesDataPreprocessor(SegDataPreProcessor):
    """Normalise every frame of ``(3 * T, H, W)`` inputs, then pad and stack (mmseg).

    Takes ``SegDataPreProcessor``'s arguments; ``mean``/``std`` have 3 values (one frame).
    """

    def _frames(self, x: torch.Tensor, i: int) -> torch.Tensor:
        if x.dim() != 3 or x.shape[0] % 3 != 0:
            raise ValueError(
                f'input {i} has shape {tuple(x.shape)}: expected (3 * T, H, W) frames stacked '
                'on channels'
            )
        frames = list(x.float().split(3))
        if self.channel_conversion:
            frames = [f[[2, 1, 0]] for f in frames]
        if self._enable_normalize:
            frames = [(f - self.mean) / self.std for f in frames]
        return torch.cat(frames)

    def forward(self, data: dict, training: bool = False) -> dict[str, Any]:
        data = self.cast_data(data)
        inputs = [self._frames(x, i) for i, x in enumerate(data['inputs'])]
        samples = data.get('data_samples', None)
        if training:
            if samples is None:
                raise ValueError('training needs data_samples')
            batch, samples = stack_batch(
                inputs=inputs,
                data_samples=samples,
                size=self.size,
                size_divisor=self.size_divisor,
                pad_val=self.pad_val,
                seg_pad_val=self.seg_pad_val,
            )
            if self.batch_augments is not None:
                batch, samples = self.batch_augments(batch, samples)
            return dict(inputs=batch, data_samples=samples)
        if len({tuple(x.shape) for x in inputs}) != 1:
            shapes = [tuple(x.shape) for x in inputs]
            raise ValueError(f'the frames of a test batch must have one size, got {shapes}')
        if self.test_cfg:
            batch, pads = stack_batch(
                inputs=inputs,
                size=self.test_cfg.get('size', None),
                size_divisor=self.test_cfg.get('size_divisor', None),
                pad_val=self.pad_val,
                seg_pad_val=self.seg_pad_val,
            )
            for sample, pad in zip(samples or [], pads):
                sample.set_metainfo({**pad})
            return dict(inputs=batch, data_samples=samples)
        return dict(inputs=torch.stack(inputs), data_samples=samples)
