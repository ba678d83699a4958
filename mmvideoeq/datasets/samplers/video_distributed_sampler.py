"""A sampler that gives every rank whole videos, frames in order, for streaming evaluation."""

from __future__ import annotations

from typing import Any, Iterator

from mmengine.dist import get_dist_info
from torch.utils.data import Sampler

from mmvideoeq.registry import DATA_SAMPLERS

__all__ = ['VideoDistributedSampler', 'video_order']


def video_order(dataset: Any) -> list[list[int]]:
    """The dataset's videos in first-appearance order, each its indices sorted by ``frame_id``.

    Raises:
        ValueError: If a data info has no ``video_id`` or ``frame_id`` (naming the index).
    """
    videos: dict = {}
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        if info.get('video_id') is None or info.get('frame_id') is None:
            raise ValueError(
                f'data_info {i} of {type(dataset).__name__} has no video_id/frame_id: streaming '
                'samplers need a video dataset'
            )
        videos.setdefault(info['video_id'], []).append((info['frame_id'], i))
    return [[i for _, i in sorted(frames)] for frames in videos.values()]


@DATA_SAMPLERS.register_module()
class VideoDistributedSampler(Sampler):
    """Whole videos per rank, balanced by frame count, frames of each video in order.

    mmengine's ``DefaultSampler(shuffle=False)`` deals frames round-robin, so with ``N`` ranks
    each rank sees every ``N``-th frame of a video and a streamed frame would be warm-started
    from a frame ``N`` steps back. Streaming needs each video on one rank: videos are assigned
    greedily, longest first, to the rank with the fewest frames so far (ties: the lower rank),
    and each rank walks its videos in dataset order, frames by ``frame_id``. Nothing is padded
    or repeated: ranks may get different numbers of frames (the streaming loop gathers the
    results in the one-process order, so ``N`` ranks give the one-process metrics). With one
    process this is every frame, video by video.

    Args:
        dataset: A video dataset (data infos with ``video_id`` and ``frame_id``).
        seed: Unused (no shuffling); accepted because mmengine passes it to samplers.
        num_replicas, rank: Override the distributed world (tests); default: mmengine's.
    """

    video_wise = True

    def __init__(
        self,
        dataset: Any,
        seed: int | None = None,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        dist_rank, world = get_dist_info()
        self.rank = dist_rank if rank is None else int(rank)
        self.world_size = world if num_replicas is None else int(num_replicas)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f'rank {self.rank} is not in [0, {self.world_size})')
        self.dataset = dataset
        self.videos = video_order(dataset)
        load = [0] * self.world_size
        owner = [0] * len(self.videos)
        for v in sorted(range(len(self.videos)), key=lambda v: (-len(self.videos[v]), v)):
            r = min(range(self.world_size), key=lambda k: (load[k], k))
            owner[v] = r
            load[r] += len(self.videos[v])
        self.rank_videos = [[v for v in range(len(self.videos)) if owner[v] == r] for r in range(
            self.world_size
        )]  # fmt: skip
        self.indices = [i for v in self.rank_videos[self.rank] for i in self.videos[v]]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        """No-op (the order never changes); kept for mmengine's loops."""
