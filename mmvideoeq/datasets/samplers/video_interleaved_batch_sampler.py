"""A batch sampler whose batches hold frames of *different* videos, for streaming inference."""

from __future__ import annotations

from typing import Iterator

from torch.utils.data import BatchSampler, Sampler

from mmvideoeq.registry import DATA_SAMPLERS

from .video_distributed_sampler import video_order


@DATA_SAMPLERS.register_module()
class VideoInterleavedBatchSampler(BatchSampler):
    """Batches of frames of ``batch_size`` different videos advancing side by side.

    mmdet's video samplers (``TrackImgSampler``, ``TrackAspectRatioBatchSampler``) keep a video's
    frames together; streaming inference with a batch of B needs the opposite: B *different*
    videos per batch, each frame after its predecessor (its warm start). Videos are assigned to
    ``batch_size`` slots in dataset order; every batch holds the next frame of each busy slot; a
    slot whose video ended takes the next unstarted video. A batch never holds two frames of one
    video; near the end, batches shrink as slots run dry.

    Args:
        sampler: The index sampler: its ``dataset`` and the frames it yields (this rank's, with
            :class:`VideoDistributedSampler`); order is by video, then by ``frame_id``.
        batch_size: Videos processed side by side.
        drop_last: Must be False (every frame is evaluated).
    """

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool = False) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'batch_size must be a positive int, got {batch_size!r}')
        if drop_last:
            raise ValueError('drop_last=True would skip frames; streaming evaluates every frame')
        dataset = getattr(sampler, 'dataset', None)
        if dataset is None:
            raise TypeError(
                'VideoInterleavedBatchSampler needs a sampler with a .dataset '
                '(e.g. VideoDistributedSampler)'
            )
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = False
        mine = set(sampler)  # this rank's frames (every frame in one process)
        self.videos = [v for v in ([i for i in v if i in mine] for v in video_order(dataset)) if v]
        self._len = sum(1 for _ in self._batches())

    def _batches(self) -> Iterator[list[int]]:
        pending = [list(v) for v in self.videos]
        slots: list[list[int]] = []
        while True:
            slots = [s for s in slots if s]
            while len(slots) < self.batch_size and pending:
                slots.append(pending.pop(0))
            if not slots:
                return
            yield [s.pop(0) for s in slots]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        return self._len
