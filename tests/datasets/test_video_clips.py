"""Clips of consecutive frames: VideoClipDataset and VideoClipBatchSampler."""

import random

import numpy as np
import pytest
from mmengine.dataset import DefaultSampler
from mmengine.structures import BaseDataElement

from mmvideoeq.datasets import ClipFrame, VideoClipBatchSampler, VideoClipDataset
from mmvideoeq.datasets.video_clips import consecutive_runs
from mmvideoeq.structures import CLIP_INDEX_KEY, CLIP_STEP_KEY

# (video, frame) of each index: video a has 5 frames, b 2, c lost its frame 2 (a filtered frame)
FRAMES = [('a', f) for f in range(5)] + [('b', 0), ('b', 1)] + [('c', f) for f in (0, 1, 3, 4)]
RUNS = [[0, 1, 2, 3, 4], [5, 6], [7, 8], [9, 10]]


class Frames:
    """A per-frame video dataset whose pipeline makes one draw from each global RNG."""

    metainfo = dict(classes=('x',))

    def __len__(self):
        return len(FRAMES)

    def get_data_info(self, i):
        return dict(video_id=FRAMES[i][0], frame_id=FRAMES[i][1])

    def prepare_data(self, i):
        return dict(
            data_samples=BaseDataElement(metainfo=dict(index=i)),
            flip=np.random.rand() < 0.5,
            draws=(np.random.rand(), random.random()),
        )

    def __getitem__(self, i):
        return self.prepare_data(i)


def _sampler(**kw):
    dataset = VideoClipDataset(dataset=Frames())
    return VideoClipBatchSampler(DefaultSampler(dataset, shuffle=True, seed=3), **kw)


def test_runs_split_at_videos_and_gaps():
    assert consecutive_runs(Frames()) == RUNS

    class NoIds(Frames):
        def get_data_info(self, i):
            return dict(img_id=i)

    with pytest.raises(ValueError, match='no video_id/frame_id'):
        consecutive_runs(NoIds())


def test_batches_are_clips_of_consecutive_frames_of_one_video():
    sampler = _sampler(batch_size=2, clip_len=(2, 3), num_batches=40)
    lengths = set()
    for batch in sampler:
        clips = {}
        for frame in batch:
            assert isinstance(frame, ClipFrame)
            clips.setdefault(frame.clip, []).append(frame)
        assert sorted(clips) == [0, 1]
        asked = max(len(c) for c in clips.values())  # the batch's K (no run is shorter than 2)
        lengths.add(asked)
        for clip in clips.values():
            assert [f.step for f in clip] == list(range(len(clip)))
            assert len({f.seed for f in clip}) == 1
            idx = [f.index for f in clip]
            run = next(r for r in RUNS if idx[0] in r)
            assert idx == run[run.index(idx[0]) : run.index(idx[0]) + len(idx)]  # consecutive
            assert len(idx) == min(asked, len(run))  # cut short only where the run ends
    assert lengths == {2, 3}  # K is drawn per batch
    assert len(sampler) == 40


def test_draws_follow_seed_and_epoch():
    sampler = _sampler(batch_size=2, clip_len=(1, 4))
    # default epoch: about as many frames as the sampler yields (11 / (2 * 2.5) -> 3 batches)
    assert len(sampler) == 3 == len(list(sampler))
    first = list(sampler)
    assert list(sampler) == first
    sampler.sampler.set_epoch(1)
    assert list(sampler) != first


def test_clip_frames_share_the_random_augmentation():
    dataset = VideoClipDataset(dataset=Frames())
    np.random.seed(0)
    state = np.random.get_state()
    a0 = dataset[ClipFrame(0, 0, 0, seed=11)]
    a1 = dataset[ClipFrame(1, 0, 1, seed=11)]
    b0 = dataset[ClipFrame(5, 1, 0, seed=12)]
    assert a0['draws'] == a1['draws'] and a0['draws'] != b0['draws']
    assert a1['data_samples'].metainfo == {'index': 1, CLIP_INDEX_KEY: 0, CLIP_STEP_KEY: 1}
    # the global RNG is left as it was
    after = np.random.rand()
    np.random.set_state(state)
    assert after == np.random.rand()
    # an integer index is an ordinary frame, without clip metainfo
    assert CLIP_INDEX_KEY not in dataset[3]['data_samples'].metainfo


def test_errors():
    with pytest.raises(TypeError, match='wrap the dataset'):
        VideoClipBatchSampler(DefaultSampler(Frames(), shuffle=False), batch_size=2)
    with pytest.raises(ValueError, match='clip_len'):
        _sampler(batch_size=2, clip_len=(3, 2))
    with pytest.raises(ValueError, match='batch_size'):
        _sampler(batch_size=0)
    with pytest.raises(TypeError, match='wraps a dataset'):
        VideoClipDataset(dataset=[1, 2])

    class Drops(Frames):
        def prepare_data(self, i):
            return None

    with pytest.raises(ValueError, match='cannot skip a frame'):
        VideoClipDataset(dataset=Drops())[ClipFrame(0, 0, 0, 1)]
