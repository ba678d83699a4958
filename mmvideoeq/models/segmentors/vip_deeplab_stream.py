"""Streaming ViP-DeepLab: warm-started MDEQ solves and video stitching, one frame per step.

The chapter (Sec. 7.3.1.2-7.3.1.3) runs the model on the pair ``(t, t+1)`` and stitches the
right half ``R_t`` onto the next pair's prediction of frame ``t+1``. The semantic, centre and
offset heads of frame ``t`` read frame ``t``'s features only, so the same quantities are
available one frame at a time: at frame ``t`` the step

1. solves the MDEQ of frame ``t`` warm-started from the previous fixed point with ``M``
   iterations (StreamDEQ, thesis Eq. 3.5);
2. predicts frame ``t`` alone (``P_t``: semantic, centres, offsets, depth);
3. runs the next-frame branch on the *stored* high-level feature of ``t-1`` and the features of
   ``t``, and post-processes the pair ``(t-1, t)`` from the stored maps of ``t-1``
   (``P'_{t-1}``, ``R_{t-1}``);
4. carries the sequence ids of ``t-1`` to ``R_{t-1}`` by overlap and stitches ``R_{t-1}`` onto
   ``P_t`` (mutual best IoU, new ids for the rest; :mod:`~mmvideoeq.models.utils.video_stitching`).

This is the chapter's pairing ``(t-1, t)`` evaluated when frame ``t`` arrives: no frame of
latency, and each frame is solved once. The first frame of a video is ``P_0`` alone.

A per-frame backbone (ResNet: no ``forward_stream``) streams the same way without a solver: step
1 is one forward pass, the state holds only the memory, and the statistics are those of
:meth:`~mmvideoeq.deq.SolverStats.single_pass`. This is how its sequence ids (VPQ over windows
``k > 1``) are evaluated: ``StreamingTestLoop`` runs it as one setting, ``stream``.

The state is a list of tensors with batch dimension ``B`` (the streaming protocol's ``z``): the
MDEQ fixed point (``S`` tensors) followed by :data:`MEMORY_KEYS` - the high-level feature, the
semantic ids, centre heatmap and offsets of the previous frame at the network's input size
(padding zeroed), its stitched panoptic ids, the largest instance id used in the video, a
has-previous-frame flag and its ``frame_id``. A step on the same ``frame_id`` again (a driver's
follow-up solve of a frame, e.g. after a detected shot change) carries the stored ids of that
frame to the new prediction instead of pairing the frame with itself.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mmvideoeq.deq import FULL_SOLVE, Budget, SolverStats
from mmvideoeq.models.utils.video_stitching import stitch_frame, stitch_pair_step

__all__ = ['ViPStreamMixin', 'MEMORY_KEYS']

MEMORY_KEYS = (
    'high',
    'semantic',
    'center',
    'offset',
    'panoptic',
    'max_id',
    'has_prev',
    'frame_id',
)


class ViPStreamMixin:
    """``stream_step`` / ``stream_zero_state`` of :class:`ViPDeepLab` (see the module docstring)."""

    @property
    def stream_has_solver(self) -> bool:
        """True for an equilibrium backbone (MDEQ: warm-started solves); False for a per-frame
        backbone (e.g. ResNet), whose stream carries only the stitching memory."""
        return hasattr(self.backbone, 'forward_stream')

    def _check_streamable(self) -> None:
        if self.neck is not None:
            raise TypeError('streaming ViP-DeepLab supports backbones without a neck')

    def _high_feature(self, inputs: Tensor) -> tuple[int, int]:
        """Channels and stride of the high-level feature the next-frame branch reads."""
        high = self.decode_head.high_index
        if self.stream_has_solver:
            return self.backbone.out_channels[high], self.backbone.strides[high]
        if getattr(self, '_probed_high', None) is None:
            # a per-frame backbone states neither: measured once on a small blank input
            size = 256
            training = self.backbone.training
            self.backbone.eval()  # (no BN statistics from the probe)
            with torch.no_grad():
                feat = self.backbone(inputs.new_zeros(1, 3, size, size))[high]
            self.backbone.train(training)
            self._probed_high = (int(feat.shape[1]), size // int(feat.shape[-1]))
        return self._probed_high

    def _memory_shapes(self, inputs: Tensor) -> list[tuple]:
        """Shapes of the memory tensors for frames ``(B, 3, H, W)`` (maps at the input size)."""
        self._check_streamable()
        b, _, h, w = inputs.shape
        c, stride = self._high_feature(inputs)
        maps = [(b, 1, h, w), (b, 1, h, w), (b, 2, h, w), (b, 1, h, w)]
        return [(b, c, -(-h // stride), -(-w // stride)), *maps, (b, 1), (b, 1), (b, 1)]

    def _zero_memory(self, inputs: Tensor) -> list[Tensor]:
        # one dtype for the whole state (the streaming layer requires it): ids are stored as
        # floats, exact below 2^24 in float32 (checked in _to_state)
        return [
            torch.zeros(s, dtype=inputs.dtype, device=inputs.device)
            for s in self._memory_shapes(inputs)
        ]

    @staticmethod
    def _to_state(ids: Tensor, like: Tensor) -> Tensor:
        """Integer ids as the state's float dtype, refusing values it cannot hold exactly."""
        limit = round(2 / torch.finfo(like.dtype).eps)  # integers below it are exact
        if ids.numel() and int(ids.abs().max()) >= limit:
            raise ValueError(
                f'panoptic ids up to {int(ids.abs().max())} cannot be kept exactly in a '
                f'{like.dtype} stream state (limit {limit}); stream in float32 or use a smaller '
                'label divisor'
            )
        return ids.to(like.dtype)

    def stream_zero_state(self, inputs: Tensor) -> list[Tensor]:
        """The cold state of a batch ``(B, 3, H, W)``: zero fixed point and an empty memory."""
        self._check_streamable()
        frame = inputs[:, :3]
        solver = self.backbone.init_stream_state(frame) if self.stream_has_solver else []
        return [*solver, *self._zero_memory(frame)]

    def _split_state(self, z0, frame):
        n = len(MEMORY_KEYS)
        if z0 is None:
            return None, self._zero_memory(frame)
        z0 = list(z0)
        if len(z0) < n or (len(z0) == n) == self.stream_has_solver:
            what = 'the solver state followed by ' if self.stream_has_solver else ''
            raise ValueError(
                f'a ViP-DeepLab stream state of this model has {what}{n} memory tensors '
                f'({", ".join(MEMORY_KEYS)}); got {len(z0)} tensors. Start streams with '
                'z0=None or stream_zero_state()'
            )
        mem = z0[-n:]
        for key, t, shape in zip(MEMORY_KEYS, mem, self._memory_shapes(frame)):
            if tuple(t.shape) != tuple(shape):
                raise ValueError(
                    f'stream state {key!r} has shape {tuple(t.shape)} but this frame needs '
                    f'{tuple(shape)}: frames of a stream must keep one size'
                )
        solver = z0[:-n]
        if not self.test_cfg.get('solver_warm_start', True):
            solver = None
        return solver, mem

    @torch.no_grad()
    def stream_step(
        self,
        inputs: Tensor,
        data_samples: Sequence,
        z0: list[Tensor] | None,
        max_iter: int | None = None,
        tol: float | None = None,
    ):
        """One streaming step (see the module docstring).

        Args:
            inputs: Preprocessed frames ``(B, 3, H, W)`` (a pair input uses its frame ``t``).
            data_samples: Their data samples (``ori_shape``, ``img_shape``, ``padding_size``).
            z0: ``None`` (new streams) or the state of the previous step.
            max_iter: Solver iterations (``None``: the backbone's test setting).
            tol: Early-stop tolerance (``None``: exactly ``max_iter`` iterations).

        Returns:
            ``(preds, z, stats)``: data samples with ``pred_panoptic`` (sequence ids),
            ``pred_sem_seg``, ``pred_depth``; the new state; the solver statistics.
        """
        self._check_streamable()
        frame = inputs[:, :3]
        samples = list(data_samples)
        solver_z0, mem = self._split_state(z0, frame)
        budget = FULL_SOLVE if max_iter is None else Budget(max_iter, tol or 0.0)
        if self.stream_has_solver:
            feats, z, stats = self.backbone.forward_stream(frame, solver_z0, budget)
        else:  # one forward per frame; max_iter and tol do not apply
            feats, z = self.backbone(frame), []
            stats = SolverStats.single_pass(frame.shape[0], frame.device)
        feats = tuple(feats)
        head = self.decode_head
        outs = head(feats)
        maps = self.to_network(outs, frame.shape[-2:], samples)
        if not head.with_panoptic:  # depth only: nothing to stitch
            preds = self.pack_predictions(samples, None, None, maps['depth'])
            return preds, [t.detach() for t in (*z, *mem)], stats
        out, semantic, memory = self._stitch(feats, maps, mem, frame.shape[-2:], samples)
        preds = self.pack_predictions(samples, out, semantic, maps.get('depth'))
        return preds, [t.detach() for t in (*z, *memory)], stats

    def _stitch(self, feats, maps: dict, mem: list, input_size, samples):
        """``P_t``, the pair ``(t-1, t)`` and the stitching; returns ``(ids, semantic, memory)``."""
        head = self.decode_head
        semantic = maps['semantic'].argmax(1)
        current = self.panoptic(semantic, maps['center'], maps['offset'])
        h, w = semantic.shape[-2:]  # stored maps: the input size; used: the unpadded part
        prev_high, prev_ctr, prev_off = mem[0], mem[2][..., :h, :w], mem[3][..., :h, :w]
        prev_sem, prev_pan = (t[..., :h, :w].round().long() for t in (mem[1], mem[4]))
        max_id, prev_fid = mem[5].round().long(), mem[7].round().long()
        has_prev = mem[6]
        has = has_prev.reshape(-1) > 0
        fid = torch.tensor(
            [int(x.metainfo.get('frame_id', -1)) for x in samples], device=semantic.device
        )
        if head.with_next and bool(has.any()):
            nxt = dict(next_offset=head.forward_next(prev_high, feats))
            nxt = self.to_network(nxt, input_size, samples)['next_offset']
            prev = dict(
                semantic=prev_sem[:, 0],
                center=prev_ctr,
                offset=prev_off,
                panoptic=prev_pan[:, 0],
                max_id=max_id.reshape(-1),
                has_prev=has,
            )
            out, new_max = stitch_pair_step(
                prev, semantic, nxt, current, label_divisor=head.label_divisor, **self.pp_kwargs()
            )
        else:  # first frames (or no next-frame branch): P_t with its own ids
            out = current
            new_max = (current % head.label_divisor).reshape(current.shape[0], -1).amax(1)
        same = has & (fid >= 0) & (fid == prev_fid.reshape(-1))  # no frame_id: never the same
        if bool(same.any()):
            # a second solve of the same frame (e.g. a shot-change follow-up): the stored output
            # *is* this frame, so its ids go to the new P_t directly
            again, again_max = stitch_frame(
                prev_pan[:, 0], prev_pan[:, 0], prev_pan[:, 0], current,
                max_id.reshape(-1), same, head.label_divisor,
            )  # fmt: skip
            out = torch.where(same[:, None, None], again, out)
            new_max = torch.where(same, again_max, new_max)
        pad = (0, input_size[1] - w, 0, input_size[0] - h)
        like = maps['center']
        maps_t = [
            self._to_state(semantic[:, None], like),
            maps['center'],
            maps['offset'],
            self._to_state(out[:, None], like),
        ]
        memory = [
            feats[head.high_index],
            *(F.pad(t, pad) for t in maps_t),
            self._to_state(new_max[:, None], like),
            torch.ones_like(has_prev),
            self._to_state(fid[:, None], like),
        ]
        return out, semantic, memory
