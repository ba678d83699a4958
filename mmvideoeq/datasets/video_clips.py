"""Clips of consecutive frames for training on carried states (``mmvideoeq.models.clip_training``).

Two pieces, used together:

* :class:`VideoClipDataset` wraps a per-frame video dataset (``ImagenetVIDDataset`` in
  ``mode='frame'``, the bundled ImageNet-VID part, or a ``ConcatDataset`` of them). An integer index
  is an ordinary frame; a :class:`ClipFrame` index is frame ``step`` of clip ``clip`` of the
  batch: the frame's pipeline runs with the clip's random seed, so every frame of a clip gets the
  same random augmentation (flip, scale), and its data sample gets ``clip_index`` / ``clip_step``
  metainfo.
* :class:`~mmvideoeq.datasets.samplers.VideoClipBatchSampler` yields batches of such indices:
  ``batch_size`` clips of ``K`` consecutive frames, ``K`` drawn per batch.

Why not mmdet's video blocks: ``UniformRefFrameSample`` draws reference frames at random inside a
range (not consecutive frames), ``TrackImgSampler`` yields one frame of one video at a time, and
mmdet's ``TrackDataSample`` batches need clips of equal length; clips here have a length drawn
per batch and may be cut short where a video (or a run of frames kept by ``filter_cfg``) ends.
The shared seed gives what mmdet's ``TransformBroadcaster(share_random_params=True)`` gives, with
the per-frame pipeline and ``DetDataSample`` batches unchanged.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Iterator, NamedTuple

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.dataset import ConcatDataset as MMConcatDataset

from mmvideoeq.registry import DATASETS
from mmvideoeq.structures import CLIP_INDEX_KEY, CLIP_STEP_KEY

__all__ = ['ClipFrame', 'VideoClipDataset', 'consecutive_runs']


class ClipFrame(NamedTuple):
    """An index of :class:`VideoClipDataset`: frame ``index`` at position ``step`` of ``clip``.

    Attributes:
        index: The frame's index in the wrapped dataset.
        clip: The clip's number in its batch.
        step: The frame's position in the clip (0 = first).
        seed: The clip's seed for the random transforms.
    """

    index: int
    clip: int
    step: int
    seed: int


def consecutive_runs(dataset: Any) -> list[list[int]]:
    """Runs of dataset indices that are consecutive frames of one video.

    A run ends where the next index is another video or not the next ``frame_id`` (a frame that
    was not kept, e.g. by ``filter_cfg``). Frames of a video must come in increasing ``frame_id``
    (``ImagenetVIDDataset`` orders them so).

    Args:
        dataset: A per-frame dataset whose ``get_data_info(i)`` has ``video_id`` and ``frame_id``.

    Returns:
        list[list[int]]: The runs, in dataset order.

    Raises:
        ValueError: A data info without ``video_id``/``frame_id`` (e.g. a ``mode='video'``
            dataset).
    """
    runs: list[list[int]] = []
    prev = None
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        video, frame = info.get('video_id'), info.get('frame_id')
        if video is None or frame is None:
            raise ValueError(
                f'data info {i} of {type(dataset).__name__} has no video_id/frame_id: clips need '
                "a per-frame video dataset (ImagenetVIDDataset with mode='frame')"
            )
        if prev is not None and video == prev[0] and frame == prev[1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
        prev = (video, frame)
    return runs


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run with Python's and NumPy's global RNGs (the transforms' randomness) seeded, then
    restore them."""
    states = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])


@DATASETS.register_module()
class VideoClipDataset:
    """A per-frame video dataset whose frames can be drawn as clips (see the module docstring).

    Args:
        dataset: The wrapped dataset or its config (frames of a video in ``frame_id`` order).
        lazy_init: Defer loading the wrapped dataset's annotations to :meth:`full_init`.

    Raises:
        TypeError: ``dataset`` is neither a dataset nor a config dict.
    """

    def __init__(self, *, dataset: BaseDataset | dict, lazy_init: bool = False) -> None:
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
        elif not hasattr(dataset, 'get_data_info'):
            raise TypeError(
                f'VideoClipDataset wraps a dataset or a dataset config, got '
                f'{type(dataset).__name__}'
            )
        self.dataset = dataset
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        """The wrapped dataset's metainfo."""
        return self.dataset.metainfo

    def full_init(self) -> None:
        """Load the wrapped dataset."""
        if self._fully_initialized:
            return
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()
        self._fully_initialized = True

    def get_data_info(self, idx: int) -> dict:
        """The wrapped dataset's data info of frame ``idx``."""
        return self.dataset.get_data_info(int(idx))

    def __len__(self) -> int:
        return len(self.dataset)

    def _prepare(self, index: int) -> Any:
        """The frame's pipeline output, without mmengine's retry on another random frame."""
        ds = self.dataset
        if isinstance(ds, MMConcatDataset):
            which, index = ds._get_ori_dataset_idx(index)
            ds = ds.datasets[which]
        out = ds.prepare_data(index) if hasattr(ds, 'prepare_data') else ds[index]
        if out is None:
            raise ValueError(
                f'the pipeline returned None for frame {index} '
                f'({ds.get_data_info(index).get("img_path", "?")}) of a training clip; a clip '
                'cannot skip a frame: remove the filtering transform or filter the frame in '
                'the dataset (filter_cfg)'
            )
        return out

    def __getitem__(self, idx: int | ClipFrame) -> Any:
        """Frame ``idx`` (an int), or a clip's frame (a :class:`ClipFrame`) with clip metainfo."""
        self.full_init()
        if not isinstance(idx, tuple):
            return self.dataset[idx]
        frame = ClipFrame(*idx)
        with _seeded(frame.seed):
            out = self._prepare(frame.index)
        samples = out['data_samples']
        for sample in samples if isinstance(samples, (list, tuple)) else [samples]:
            sample.set_metainfo({CLIP_INDEX_KEY: frame.clip, CLIP_STEP_KEY: frame.step})
        return out
