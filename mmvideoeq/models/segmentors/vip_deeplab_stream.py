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
never inside the solver state. Because the pair's left half groups exactly as frame ``t-1`` did,
the memory holds that frame's high-level feature, its centres and the sequence id of each of its
instances (``O(K)``, no full-resolution map), plus the stream's :class:`TrackIds`. A follow-up
solve of a frame (a shot change) gets the memory from before the frame again, so it is paired
with frame ``t-1`` as the first solve was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mmvideoeq.models.utils.panoptic_postprocess import pair_groups, panoptic_frame, semantic_ids
from mmvideoeq.models.utils.video_stitching import TrackIds, sequence_panoptic, stitch_frame
from mmvideoeq.streaming import StepOutput

__all__ = ['ViPStreamMixin', 'ViPMemory']


@dataclass
class ViPMemory:
    """What streaming ViP-DeepLab remembers of the last frame of one stream.

    Attributes:
        high: ``(1, C, h', w')`` high-level feature (the next-frame branch's input).
        size: ``(H, W)`` of the frame's maps (the network's input size without padding).
        centers: ``(K, 2)`` int64 instance centres ``(y, x)`` of the frame, in raster order.
        seq_ids: ``(K,)`` int64 sequence panoptic id of each centre's instance (``-1``: none).
        ids: The stream's instance-id bookkeeping (frame index, largest id, ids shown recently).
    """

    high: Tensor
    size: tuple[int, int]
    centers: Tensor
    seq_ids: Tensor
    ids: TrackIds


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
        semantic = semantic_ids(maps['semantic'])
        out, new_memory = self._stitch(feats, maps, semantic, memory, frame.shape[-2:], samples)
        preds = self.pack_predictions(samples, out, semantic, maps.get('depth'))
        return StepOutput(preds, z, new_memory, stats)

    def _next_offsets(self, feats, memory: list, size, input_size, samples) -> Tensor:
        """Next-frame offsets ``(B, 2, H, W)`` from the remembered high-level features."""
        head = self.decode_head
        ref = next(m for m in memory if m is not None)
        for m in memory:
            if m is not None and tuple(m.size) != tuple(size):
                raise ValueError(
                    f'the remembered frame has size {tuple(m.size)} but this frame '
                    f'{tuple(size)}: frames of a stream must keep one size (the stream policy '
                    'restarts the memory when the input size changes; check img_shape/padding)'
                )
        high = torch.cat([m.high if m is not None else torch.zeros_like(ref.high) for m in memory])
        nxt = dict(next_offset=head.forward_next(high, feats))
        return self.to_network(nxt, input_size, samples)['next_offset']

    def _stitch(self, feats, maps: dict, semantic: Tensor, memory: list, input_size, samples):
        """``P_t``, the pair ``(t-1, t)`` and the stitching; returns ``(ids, memory)``."""
        head = self.decode_head
        div = head.label_divisor
        gap = self.test_cfg['id_reuse_gap']
        kw = self.pp_kwargs()
        frames = [
            panoptic_frame(
                semantic[i], maps['center'][i, 0], maps['offset'][i], label_divisor=div, **kw
            )
            for i in range(semantic.shape[0])
        ]
        pairs = head.with_next and any(m is not None for m in memory)
        if pairs:
            nxt = self._next_offsets(feats, memory, semantic.shape[-2:], input_size, samples)
        high = feats[head.high_index]
        outs, new_memory = [], []
        for i, (f, m) in enumerate(zip(frames, memory)):
            if pairs and m is not None:
                right = pair_groups(m.centers, f, nxt[i])
                seq, ids = stitch_frame(
                    f, right, m.seq_ids, m.ids, label_divisor=div, reuse_gap=gap
                )
            else:  # the first frame (or no next-frame branch): P_t with its own ids
                seq, ids = stitch_frame(f, None, None, None, label_divisor=div, reuse_gap=gap)
            outs.append(sequence_panoptic(f, seq))
            new_memory.append(
                ViPMemory(
                    high=high[i : i + 1],
                    size=tuple(semantic.shape[-2:]),
                    centers=f.centers,
                    seq_ids=seq,
                    ids=ids,
                )
            )
        return torch.stack(outs), new_memory

    def stream_memory_bytes(self, memory: Any) -> int:
        """Bytes held by one stream's memory (tensors + 16 per remembered id; for soak tests)."""
        if memory is None:
            return 0
        tensors = (memory.high, memory.centers, memory.seq_ids)
        return sum(t.numel() * t.element_size() for t in tensors) + 16 * len(memory.ids.last_seen)
