"""Batches of clips of consecutive video frames, for training on carried states."""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, Sampler

from mmvideoeq.registry import DATA_SAMPLERS

from ..video_clips import ClipFrame, VideoClipDataset, consecutive_runs

__all__ = ['VideoClipBatchSampler']


@DATA_SAMPLERS.register_module()
class VideoClipBatchSampler(BatchSampler):
    """``batch_size`` clips of ``K`` consecutive frames per batch, ``K`` drawn per batch.

    Every batch draws ``K`` uniformly from ``clip_len`` (as SUR-StreamDEQ draws its unroll depth
    per batch) and takes the next ``batch_size`` frames of the wrapped index sampler (mmengine's
    ``DefaultSampler``: shuffled per epoch and split across ranks) as clip anchors: an anchor's
    clip is the ``K`` consecutive frames of its video that start at it, moved back to fit where
    the video (or a run of kept frames) ends; a run shorter than ``K`` gives a shorter clip. The
    batch lists :class:`~mmvideoeq.datasets.ClipFrame` indices, which
    :class:`~mmvideoeq.datasets.VideoClipDataset` turns into frames with clip metainfo and one
    random augmentation per clip.

    Draws are reproducible: they depend on the index sampler's ``seed`` and ``epoch`` (set by
    mmengine's loop), or on ``seed`` and a count of epochs for a sampler without them.

    Args:
        sampler: The index sampler over a :class:`~mmvideoeq.datasets.VideoClipDataset`.
        batch_size: Clips per batch.
        clip_len: ``(lo, hi)``: ``K`` is drawn from ``lo..hi``; or an int for a fixed ``K``.
        num_batches: Batches per epoch; ``None``: as many as hold about as many frames as the
            sampler yields (``ceil(len(sampler) / (batch_size * mean K))``), so an epoch costs
            what a per-frame epoch costs.
        seed: Seed when the sampler has none.

    Raises:
        TypeError: The sampler's dataset is not a ``VideoClipDataset``.
        ValueError: Bad ``batch_size``, ``clip_len`` or ``num_batches``.
    """

    def __init__(
        self,
        sampler: Sampler,
        batch_size: int,
        clip_len: int | Sequence[int] = (1, 4),
        num_batches: int | None = None,
        seed: int = 0,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f'batch_size (clips per batch) must be an int >= 1, got {batch_size!r}'
            )
        if isinstance(clip_len, int) and not isinstance(clip_len, bool):
            clip_len = (clip_len, clip_len)
        lo, hi = tuple(clip_len) if len(tuple(clip_len)) == 2 else (0, -1)
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise ValueError(
                f'clip_len must be an int >= 1 or (lo, hi) with 1 <= lo <= hi, got {clip_len!r}'
            )
        dataset = getattr(sampler, 'dataset', None)
        if not isinstance(dataset, VideoClipDataset):
            raise TypeError(
                'VideoClipBatchSampler yields clip indices that only VideoClipDataset reads: wrap '
                "the dataset, dataset=dict(type='VideoClipDataset', dataset=dict(...)); got "
                f'{type(dataset).__name__}'
            )
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = False
        self.clip_len = (lo, hi)
        self.seed = int(seed)
        self._epochs = 0
        self.runs = consecutive_runs(dataset)
        self.where: dict[int, tuple[int, int]] = {
            idx: (r, pos) for r, run in enumerate(self.runs) for pos, idx in enumerate(run)
        }
        if num_batches is None:
            num_batches = max(1, math.ceil(len(sampler) / (batch_size * (lo + hi) / 2)))
        elif isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
            raise ValueError(f'num_batches must be an int >= 1 or None, got {num_batches!r}')
        self.num_batches = num_batches

    def clip(self, anchor: int, length: int) -> list[int]:
        """The clip of ``length`` consecutive frames from ``anchor`` (moved back to fit)."""
        r, pos = self.where[int(anchor)]
        run = self.runs[r]
        start = max(0, min(pos, len(run) - length))
        return run[start : start + length]

    def __iter__(self) -> Iterator[list[ClipFrame]]:
        epoch = getattr(self.sampler, 'epoch', None)
        if epoch is None:
            epoch, self._epochs = self._epochs, self._epochs + 1
        seed = int(getattr(self.sampler, 'seed', None) or self.seed)
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        lo, hi = self.clip_len
        anchors: Iterator[int] = iter(())
        for _ in range(self.num_batches):
            length = int(torch.randint(lo, hi + 1, (), generator=gen).item())
            batch = []
            for c in range(self.batch_size):
                anchor = next(anchors, None)
                if anchor is None:  # the sampler ran dry: a new pass over it
                    anchors = iter(self.sampler)
                    anchor = next(anchors)
                clip_seed = int(torch.randint(2**31 - 1, (), generator=gen).item())
                for t, idx in enumerate(self.clip(anchor, length)):
                    batch.append(ClipFrame(idx, c, t, clip_seed))
            yield batch

    def __len__(self) -> int:
        return self.num_batches
