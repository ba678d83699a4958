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

:func:`bootstrap_by_offset` gives each bucket's value a percentile bootstrap interval over whole
videos (frames of one video are not independent, so the video is the resampling unit).

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
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    'OffsetBuckets',
    'frame_offsets',
    'group_by_offset',
    'aggregate_by_offset',
    'bootstrap_by_offset',
    'check_ci_resamples',
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


def check_ci_resamples(value: Any) -> int:
    """A metric's ``ci_resamples`` argument: an int >= 0 (0: no intervals)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f'ci_resamples must be an int >= 0 (0: no intervals), got {value!r}')
    return value


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def bootstrap_by_offset(
    items: Sequence[Any],
    offsets: Sequence[int],
    videos: Sequence[Hashable],
    buckets: OffsetBuckets,
    reduce: Callable[[list[Any]], Any] = _mean,
    *,
    n: int = 200,
    seed: int = 0,
    level: float = 0.95,
    draws: Sequence[Sequence[Hashable]] | None = None,
) -> dict[str, Any]:
    """Percentile bootstrap intervals of the by-offset values, resampling whole videos.

    The cluster (case) bootstrap of Davison & Hinkley, *Bootstrap Methods and their Application*
    (1997), Sec. 3.8, with Efron's percentile interval (Efron & Tibshirani, *An Introduction to
    the Bootstrap*, 1993, Ch. 13): each resample draws as many videos as there are, uniformly
    with replacement; a video drawn twice brings its frames twice (``reduce`` sees each of its
    items twice, so a reduction that counts items, sums areas or accumulates matches counts the
    repeat); each bucket's value is ``reduce`` of the resample's items in that bucket, exactly as
    :func:`aggregate_by_offset` computes it (the items in the videos' order of first appearance,
    whatever the order of the draw, so that each distinct multiset of videos is reduced once).
    The interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (numpy's linear
    interpolation) of the finite values over the resamples in which the bucket holds a frame.
    Deterministic for a given ``seed``. Written here because ``scipy.stats.bootstrap`` resamples
    observations, not clusters whose per-bucket statistic can be undefined in a resample.

    Args:
        items (Sequence[Any]): One item per frame (as :func:`aggregate_by_offset`).
        offsets (Sequence[int]): Offset of each frame.
        videos (Sequence[Hashable]): Video (resampling unit) of each frame.
        buckets (OffsetBuckets): The buckets.
        reduce (Callable[[list], float | Mapping[str, float]]): Items of one bucket -> its value,
            or a mapping of named values (each gets its interval); ``None`` / NaN values are
            left out of the quantiles.
        n (int): Number of resamples (>= 1).
        seed (int): Seed of ``numpy.random.default_rng``.
        level (float): Coverage of the interval, in ``(0, 1)``.
        draws (Sequence[Sequence[Hashable]], optional): Explicit resamples (lists of videos,
            repeats allowed) instead of ``n`` random ones, e.g. every video once to check that
            the bootstrap reproduces the metric.

    Returns:
        dict: For a scalar ``reduce``: bucket label -> ``[lo, hi]`` for the buckets that hold
        frames, in bucket order (``[nan, nan]`` when no resample gave a finite value). For a
        mapping ``reduce``: value name -> such a dict.

    Example:
        >>> buckets = OffsetBuckets.build(1)
        >>> bootstrap_by_offset([1.0, 3.0], [0, 0], ['a', 'b'], buckets, draws=[['a', 'a']])
        {'0': [1.0, 1.0]}
    """
    if not len(items) == len(offsets) == len(videos):
        raise ValueError(
            f'got {len(items)} items, {len(offsets)} offsets and {len(videos)} videos; '
            'give one of each per frame'
        )
    if not 0 < level < 1:
        raise ValueError(f'level must be in (0, 1), got {level}')
    order = list(dict.fromkeys(videos))  # videos in order of first appearance
    positions: dict[Hashable, list[list[int]]] = {v: [[] for _ in buckets.starts] for v in order}
    for pos, (video, offset) in enumerate(zip(videos, offsets)):
        positions[video][buckets.index(offset)].append(pos)
    present = [b for b in range(len(buckets)) if any(positions[v][b] for v in order)]
    if draws is None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f'the number of resamples must be an int >= 1, got {n!r}')
        rng = np.random.default_rng(seed)
        draws = [[order[i] for i in row] for row in rng.integers(0, len(order), (n, len(order)))]
    unknown = {v for draw in draws for v in draw} - set(order)
    if unknown:
        raise ValueError(f'draws name videos {sorted(map(str, unknown))} that have no frame')

    # a resample is a multiset of videos: its items are taken in the videos' order of first
    # appearance, and each distinct multiset (of the videos with frames in the bucket) is
    # reduced once (few videos give few distinct multisets)
    rank = {v: i for i, v in enumerate(order)}
    values: dict[int, list] = {b: [] for b in present}
    cache: dict[tuple, Any] = {}
    for draw in draws:
        ranked = sorted(draw, key=rank.__getitem__)
        for b in present:
            key = (b, *(rank[v] for v in ranked if positions[v][b]))
            if len(key) == 1:
                continue
            if key not in cache:
                cache[key] = reduce([items[p] for v in ranked for p in positions[v][b]])
            values[b].append(cache[key])
    labels = buckets.labels
    quantiles = [50 * (1 - level), 50 * (1 + level)]

    def interval(samples: list) -> list[float]:
        finite = [x for x in map(_finite, samples) if x is not None]
        if not finite:
            return [float('nan'), float('nan')]
        return [float(q) for q in np.percentile(finite, quantiles)]

    first = next((v for b in present for v in values[b]), None)
    if isinstance(first, Mapping):
        keys = list(first)
        return {
            key: {labels[b]: interval([v.get(key) for v in values[b]]) for b in present}
            for key in keys
        }
    return {labels[b]: interval(values[b]) for b in present}
