"""Streaming ViP-DeepLab: warm-started solves and video stitching, one frame per step.

The chapter (Sec. 7.3.1.2-7.3.1.3) runs the model on the pair ``(t, t+1)`` and stitches the
right half ``R_t`` onto the next pair's prediction of frame ``t+1``. The semantic, centre and
offset heads of frame ``t`` read frame ``t``'s features only, so the same quantities are
available one frame at a time: at frame ``t`` the step

1. computes the features of frame ``t``: an equilibrium backbone (MDEQ) is solved from the
   carried fixed point with the frame's budget (StreamDEQ, thesis Eq. 3.5); a per-frame backbone
   (ResNet) runs one forward pass;
2. predicts frame ``t`` alone (``P_t``: semantic, centres, offsets, depth);
3. runs the next-frame branch on the *remembered* high-level feature of ``t-1`` and the features
   of ``t``, and post-processes the pair ``(t-1, t)`` from the remembered maps of ``t-1``
   (``P'_{t-1}``, ``R_{t-1}``);
4. carries the sequence ids of ``t-1`` to ``R_{t-1}`` by overlap and stitches ``R_{t-1}`` onto
   ``P_t`` (mutual best IoU, new ids for the rest; :mod:`~mmvideoeq.models.utils.video_stitching`).

This is the chapter's pairing ``(t-1, t)`` evaluated when frame ``t`` arrives: no frame of
latency, and each frame is solved once. The first frame of a sequence is ``P_0`` alone.

The stream state follows the protocol (:class:`mmvideoeq.streaming.StreamingModel`): the solver
state ``z`` is the MDEQ fixed point (``[]`` for a per-frame backbone), and the memory is one
:class:`ViPMemory` per stream, kept as the model's own objects (ids and classes as integers),
never inside the solver state. A follow-up solve of a frame (a shot change) gets the memory from
before the frame again, so it is paired with frame ``t-1`` as the first solve was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mmvideoeq.models.utils.video_stitching import stitch_pair_step
from mmvideoeq.streaming import StepOutput

__all__ = ['ViPStreamMixin', 'ViPMemory']


@dataclass
class ViPMemory:
    """What streaming ViP-DeepLab remembers of the last frame of one stream.

    Maps are at the network's input size without padding (``img_shape``), batch 1.

    Attributes:
        high: ``(1, C, h', w')`` high-level feature (the next-frame branch's input).
        semantic: ``(1, H, W)`` int64 class ids.
        center: ``(1, 1, H, W)`` centre heatmap.
        offset: ``(1, 2, H, W)`` centre offsets.
        panoptic: ``(1, H, W)`` int64 stitched panoptic ids (sequence-consistent).
        max_id: Largest instance id used so far in the sequence.
    """

    high: Tensor
    semantic: Tensor
    center: Tensor
    offset: Tensor
    panoptic: Tensor
    max_id: int


def _stack_memory(memory: list[ViPMemory | None], like: dict[str, Tensor]) -> dict[str, Tensor]:
    """The batch's memories as ``stitch_pair_step``'s ``prev`` dict (zeros where none)."""
    b, _, h, w = like['center'].shape
    has = torch.tensor([m is not None for m in memory], device=like['center'].device)
    ref = next(m for m in memory if m is not None)
    for m in memory:
        if m is not None and tuple(m.semantic.shape[-2:]) != (h, w):
            raise ValueError(
                f'the remembered frame has size {tuple(m.semantic.shape[-2:])} but this frame '
                f'{(h, w)}: frames of a stream must keep one size (the stream policy restarts '
                'the memory when the input size changes; check img_shape/padding)'
            )

    def stack(key: str) -> Tensor:
        t = getattr(ref, key)
        return torch.cat(
            [getattr(m, key) if m is not None else torch.zeros_like(t) for m in memory]
        )

    return dict(
        high=stack('high'),
        semantic=stack('semantic'),
        center=stack('center'),
        offset=stack('offset'),
        panoptic=stack('panoptic'),
        max_id=torch.tensor(
            [0 if m is None else m.max_id for m in memory], device=has.device, dtype=torch.long
        ),
        has_prev=has,
    )


class ViPStreamMixin:
    """``stream_step`` / ``stream_zero_state`` of :class:`ViPDeepLab` (see the module docstring)."""

    @property
    def _has_solver(self) -> bool:
        return hasattr(self.backbone, 'forward_stream')

    def _check_streamable(self) -> None:
        if self.neck is not None:
            raise TypeError('streaming ViP-DeepLab supports backbones without a neck')

    def stream_zero_state(self, inputs: Tensor) -> list[Tensor]:
        """The cold solver state of frames ``(B, 3, H, W)``: the zero MDEQ fixed point, or ``[]``
        for a per-frame backbone."""
        self._check_streamable()
        frame = inputs[:, :3]
        return self.backbone.init_stream_state(frame) if self._has_solver else []

    @torch.no_grad()
    def stream_step(self, inputs, z0, memory, budget, payloads) -> StepOutput:
        """:meth:`StreamingModel.stream_step <mmvideoeq.streaming.StreamingModel.stream_step>`
        (see the module docstring): frame ``t`` of ``inputs`` (a pair input uses its first
        frame) solved from the MDEQ fixed point ``z0`` with ``budget`` (a per-frame backbone:
        one forward, ``stats`` ``None``), paired and stitched with the :class:`ViPMemory` of
        frame ``t-1`` (``None``: a new sequence). Predictions: ``pred_panoptic`` (sequence ids),
        ``pred_sem_seg`` and ``pred_depth`` at each sample's ``ori_shape``."""
        self._check_streamable()
        frame = inputs[:, :3]
        samples = list(payloads)
        memory = list(memory) if memory is not None else [None] * frame.shape[0]
        if len(memory) != frame.shape[0]:
            raise ValueError(f'{len(memory)} memories for a batch of {frame.shape[0]} frames')
        if self._has_solver:
            feats, z, stats = self.backbone.forward_stream(frame, z0, budget)
            z = [t.detach() for t in z]
        else:  # one forward per frame; the budget does not apply
            feats, z, stats = self.backbone(frame), [], None
        feats = tuple(feats)
        head = self.decode_head
        maps = self.to_network(head(feats), frame.shape[-2:], samples)
        if not head.with_panoptic:  # depth only: nothing to remember
            preds = self.pack_predictions(samples, None, None, maps['depth'])
            return StepOutput(preds, z, [None] * frame.shape[0], stats)
        out, semantic, new_memory = self._stitch(feats, maps, memory, frame.shape[-2:], samples)
        preds = self.pack_predictions(samples, out, semantic, maps.get('depth'))
        return StepOutput(preds, z, new_memory, stats)

    def _stitch(self, feats, maps: dict, memory: list, input_size, samples):
        """``P_t``, the pair ``(t-1, t)`` and the stitching; returns ``(ids, semantic, memory)``."""
        head = self.decode_head
        div = head.label_divisor
        semantic = maps['semantic'].argmax(1)
        current = self.panoptic(semantic, maps['center'], maps['offset'])
        high = feats[head.high_index]
        if head.with_next and any(m is not None for m in memory):
            prev = _stack_memory(memory, maps)
            nxt = dict(next_offset=head.forward_next(prev['high'], feats))
            nxt = self.to_network(nxt, input_size, samples)['next_offset']
            out, new_max = stitch_pair_step(
                prev, semantic, nxt, current, label_divisor=div, **self.pp_kwargs()
            )
        else:  # first frames (or no next-frame branch): P_t with its own ids
            out = current
            new_max = (current % div).reshape(current.shape[0], -1).amax(1)
        new_memory = [
            ViPMemory(
                high=high[i : i + 1],
                semantic=semantic[i : i + 1],
                center=maps['center'][i : i + 1],
                offset=maps['offset'][i : i + 1],
                panoptic=out[i : i + 1],
                max_id=int(new_max[i]),
            )
            for i in range(out.shape[0])
        ]
        return out, semantic, new_memory

    def stream_memory_bytes(self, memory: Any) -> int:
        """Bytes held by one stream's memory (for soak tests and reports)."""
        if memory is None:
            return 0
        return sum(
            t.numel() * t.element_size()
            for t in (memory.high, memory.semantic, memory.center, memory.offset, memory.panoptic)
        )
