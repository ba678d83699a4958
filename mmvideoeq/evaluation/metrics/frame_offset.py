"""Aggregate any per-frame quantity by the frame's offset from the start of its clip.

A streaming model warm-starts each frame from the previous one, so its accuracy depends on how far
into the clip a frame is (StreamDEQ reports mAP against the frame index). This module is plain
Python (no OpenMMLab import) so that detection and segmentation metrics share one definition of
"offset" and of the offset buckets:

* the **offset** of a frame is an explicit ``frame_offset`` when the producer gives one (the
  streaming loop writes it), otherwise ``frame_id`` minus the smallest ``frame_id`` seen for the
  same video (the first evaluated frame of that video is offset 0);
* **buckets** are given by their ascending start offsets; the last bucket is open-ended
  (``OffsetBuckets.build(3)`` -> ``'0'``, ``'1'``, ``'2'``, ``'3+'``).

Written here because mmengine/mmdet have no notion of frame offsets.

Example:
    >>> buckets = OffsetBuckets.build([0, 1, 5])
    >>> offsets = frame_offsets(video_ids=[7, 7, 7, 8], frame_ids=[3, 4, 9, 0])
    >>> offsets
    [0, 1, 6, 0]
    >>> aggregate_by_offset([1.0, 2.0, 3.0, 5.0], offsets, buckets)
    {'0': 3.0, '1-4': 2.0, '5+': 3.0}
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    'OffsetBuckets',
    'frame_offsets',
    'group_by_offset',
    'aggregate_by_offset',
]


@dataclass(frozen=True)
class OffsetBuckets:
    """Half-open ranges of frame offsets, the last one unbounded.

    Bucket ``i`` holds offsets ``starts[i] <= offset < starts[i + 1]``; the last bucket holds every
    offset ``>= starts[-1]``. Labels: ``'k'`` for a one-offset bucket, ``'a-b'`` (inclusive) for a
    wider one, ``'k+'`` for the last.

    Attributes:
        starts (tuple[int, ...]): Strictly increasing start offsets, the first one ``0``.
    """

    starts: tuple[int, ...]

    def __post_init__(self) -> None:
        starts = tuple(self.starts)
        if not starts or starts[0] != 0:
            raise ValueError(f'offset bucket starts must begin with 0, got {list(starts)}')
        if any(not isinstance(s, int) or isinstance(s, bool) for s in starts):
            raise ValueError(f'offset bucket starts must be integers, got {list(starts)}')
        if any(b <= a for a, b in zip(starts, starts[1:])):
            raise ValueError(
                f'offset bucket starts must be strictly increasing, got {list(starts)}'
            )
        object.__setattr__(self, 'starts', starts)

    @classmethod
    def build(cls, spec: int | Sequence[int] | OffsetBuckets) -> OffsetBuckets:
        """Build buckets from a config value.

        Args:
            spec (int | Sequence[int] | OffsetBuckets): ``N`` (an int >= 1) gives one bucket per
                offset ``0 .. N-1`` and a last bucket ``'N+'`` for the rest; a sequence gives the
                start offsets themselves (e.g. ``[0, 1, 2, 5, 10]``).

        Returns:
            OffsetBuckets: The buckets.
        """
        if isinstance(spec, OffsetBuckets):
            return spec
        if isinstance(spec, bool):
            raise ValueError(f'offset buckets must be an int or a list of ints, got {spec!r}')
        if isinstance(spec, int):
            if spec < 1:
                raise ValueError(f'offset buckets as an int must be >= 1, got {spec}')
            return cls(tuple(range(spec + 1)))
        if isinstance(spec, Sequence) and not isinstance(spec, str):
            return cls(tuple(spec))
        raise ValueError(f'offset buckets must be an int or a list of ints, got {spec!r}')

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def labels(self) -> list[str]:
        """list[str]: One label per bucket, in order."""
        labels = []
        for i, start in enumerate(self.starts):
            if i == len(self.starts) - 1:
                labels.append(f'{start}+')
            elif self.starts[i + 1] == start + 1:
                labels.append(str(start))
            else:
                labels.append(f'{start}-{self.starts[i + 1] - 1}')
        return labels

    def index(self, offset: int) -> int:
        """Return the bucket index of ``offset``.

        Args:
            offset (int): A frame offset, ``>= 0``.

        Returns:
            int: Index into :attr:`labels`.
        """
        if offset < 0:
            raise ValueError(f'frame offsets must be >= 0, got {offset}')
        return bisect.bisect_right(self.starts, offset) - 1

    def label(self, offset: int) -> str:
        """Return the label of the bucket that holds ``offset``."""
        return self.labels[self.index(offset)]


def frame_offsets(
    video_ids: Sequence[Hashable | None],
    frame_ids: Sequence[int | None],
    explicit: Sequence[int | None] | None = None,
) -> list[int]:
    """Offset of each frame from the first frame of its video among the given frames.

    Args:
        video_ids (Sequence[Hashable | None]): Video id of each frame (``None`` allowed only where
            an explicit offset is given).
        frame_ids (Sequence[int | None]): Frame index of each frame inside its video (same rule).
        explicit (Sequence[int | None], optional): Offsets given by the producer (e.g. the
            streaming loop's ``frame_offset``); where not ``None`` they win over
            ``frame_id - first frame_id``.

    Returns:
        list[int]: One offset per frame, in input order.
    """
    n = len(video_ids)
    if len(frame_ids) != n or (explicit is not None and len(explicit) != n):
        raise ValueError(
            'video_ids, frame_ids and explicit offsets must have the same length, got '
            f'{n}, {len(frame_ids)} and '
            f'{None if explicit is None else len(explicit)}'
        )
    explicit = [None] * n if explicit is None else list(explicit)
    first: dict[Hashable, int] = {}
    for vid, fid in zip(video_ids, frame_ids):
        if vid is not None and fid is not None:
            first[vid] = min(first.get(vid, fid), fid)
    offsets = []
    for i, (vid, fid, off) in enumerate(zip(video_ids, frame_ids, explicit)):
        if off is not None:
            if off < 0:
                raise ValueError(f'frame {i} has a negative explicit frame_offset {off}')
            offsets.append(int(off))
        elif vid is None or fid is None:
            raise KeyError(
                f'frame {i} has no frame_offset and no video_id/frame_id to compute '
                'it from; add video_id and frame_id (or frame_offset) to the data '
                "sample's metainfo (e.g. PackDetInputs meta_keys)"
            )
        else:
            offsets.append(int(fid) - first[vid])
    return offsets


def group_by_offset(offsets: Sequence[int], buckets: OffsetBuckets) -> dict[str, list[int]]:
    """Positions of the frames that fall into each bucket.

    Args:
        offsets (Sequence[int]): Offset of each frame (see :func:`frame_offsets`).
        buckets (OffsetBuckets): The buckets.

    Returns:
        dict[str, list[int]]: Bucket label -> positions into ``offsets``, in bucket order, only
        buckets that hold at least one frame.
    """
    groups: list[list[int]] = [[] for _ in range(len(buckets))]
    for pos, offset in enumerate(offsets):
        groups[buckets.index(offset)].append(pos)
    return {label: group for label, group in zip(buckets.labels, groups) if group}


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values))


def aggregate_by_offset(
    items: Sequence[Any],
    offsets: Sequence[int],
    buckets: OffsetBuckets,
    reduce: Callable[[list[Any]], Any] = _mean,
) -> dict[str, Any]:
    """Reduce per-frame items bucket by bucket.

    Args:
        items (Sequence[Any]): One item per frame (a score, a confusion matrix, an image id...).
        offsets (Sequence[int]): Offset of each frame, same length as ``items``.
        buckets (OffsetBuckets): The buckets.
        reduce (Callable[[list], Any]): Maps the items of one bucket to its value. Defaults to the
            mean (for per-frame scores); pass e.g. a function that sums confusion matrices and
            returns mIoU, or one that evaluates mAP on a set of image ids.

    Returns:
        dict[str, Any]: Bucket label -> reduced value, only non-empty buckets, in bucket order.
    """
    if len(items) != len(offsets):
        raise ValueError(f'got {len(items)} items but {len(offsets)} offsets')
    return {
        label: reduce([items[p] for p in positions])
        for label, positions in group_by_offset(offsets, buckets).items()
    }
