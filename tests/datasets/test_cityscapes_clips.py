"""Tests of CityscapesClipDataset on tiny generated files named as the real Cityscapes release."""

import os
from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label
from mmcv.transforms import LoadImageFromFile
from mmseg.datasets.transforms import LoadAnnotations, PackSegInputs
from PIL import Image

from mmvideoeq.datasets.cityscapes_clips import CityscapesClipDataset, labelids_to_trainids
from mmvideoeq.registry import DATASETS

H, W = 4, 8
# (city, seq, annotated frame); Cityscapes numbers frames with 6 digits.
ANNOTATED = [('aachen', 1, 19), ('aachen', 7, 24), ('bochum', 3, 44)]
META_KEYS = (
    'img_path',
    'seg_map_path',
    'ori_shape',
    'img_shape',
    'video_id',
    'frame_id',
    'video_length',
    'is_annotated',
    'is_init_frame',
)


def _frame_name(city: str, seq: int, frame: int) -> str:
    return f'{city}_{seq:06d}_{frame:06d}'


def _frame_value(seq: int, frame: int) -> int:
    """The grey value written into a generated frame, so that loaded pixels identify the frame."""
    return (seq * 37 + frame) % 251


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _make_cityscapes(
    root: Path, annotated=ANNOTATED, label_type: str = 'trainIds', seed: int = 0
) -> dict:
    """Write the 30-frame snippet of each annotated frame and its label; return the labels."""
    rng = np.random.default_rng(seed)
    labels = {}
    for city, seq, frame in annotated:
        for number in range(max(frame - 19, 0), frame + 11):  # annotated: the 20th of 30
            value = _frame_value(seq, number)
            img = np.full((H, W, 3), value, dtype=np.uint8)
            _write_png(
                root
                / 'leftImg8bit_sequence'
                / 'val'
                / city
                / f'{_frame_name(city, seq, number)}_leftImg8bit.png',
                img,
            )
        if label_type == 'trainIds':
            label = rng.integers(0, 19, size=(H, W)).astype(np.uint8)
            label[0, 0] = 255
            suffix = '_gtFine_labelTrainIds.png'
        else:
            label = rng.integers(0, 34, size=(H, W)).astype(np.uint8)
            suffix = '_gtFine_labelIds.png'
        _write_png(
            root / 'gtFine' / 'val' / city / f'{_frame_name(city, seq, frame)}{suffix}', label
        )
        labels[_frame_name(city, seq, frame)] = label
    return labels


def _expected_paths(root: Path, city: str, seq: int, frame: int, length: int) -> list:
    return [
        str(
            root
            / 'leftImg8bit_sequence'
            / 'val'
            / city
            / f'{city}_{seq:06d}_{number:06d}_leftImg8bit.png'
        )
        for number in range(frame - length + 1, frame + 1)
    ]


def _dataset(root: Path, **kwargs) -> CityscapesClipDataset:
    return CityscapesClipDataset(data_root=str(root), test_mode=True, **kwargs)


def _infos(dataset) -> list:
    return [dataset.get_data_info(i) for i in range(len(dataset))]


@pytest.mark.parametrize('length', [1, 2, 5, 10, 20])
def test_clips_frames_in_order_annotated_last(tmp_path, length):
    _make_cityscapes(tmp_path)
    dataset = _dataset(tmp_path, clip_length=length)
    infos = _infos(dataset)
    assert len(dataset) == len(ANNOTATED) * length
    # ANNOTATED is already in sorted path order; each clip is `length` consecutive entries.
    for clip_index, (city, seq, frame) in enumerate(ANNOTATED):
        clip = infos[clip_index * length : (clip_index + 1) * length]
        assert [i['img_path'] for i in clip] == _expected_paths(tmp_path, city, seq, frame, length)
        assert [i['frame_id'] for i in clip] == list(range(length))
        assert {i['video_id'] for i in clip} == {_frame_name(city, seq, frame)}
        assert {i['video_length'] for i in clip} == {length}
        assert [i['is_annotated'] for i in clip] == [False] * (length - 1) + [True]
        assert not any(i['is_init_frame'] for i in clip)
        gt = (
            tmp_path
            / 'gtFine'
            / 'val'
            / city
            / (f'{_frame_name(city, seq, frame)}_gtFine_labelTrainIds.png')
        )
        assert [i['seg_map_path'] for i in clip] == [None] * (length - 1) + [str(gt)]


def test_metainfo_is_cityscapes_19_train_classes(tmp_path):
    _make_cityscapes(tmp_path)
    dataset = _dataset(tmp_path, clip_length=1)
    train_labels = sorted(
        (label.trainId, label.name) for label in id2label.values() if 0 <= label.trainId < 255
    )
    assert list(dataset.metainfo['classes']) == [name for _, name in train_labels]
    assert len(dataset.metainfo['palette']) == 19
    assert dataset.ignore_index == 255
    assert dataset.reduce_zero_label is False


def test_registered_and_built_from_config(tmp_path):
    _make_cityscapes(tmp_path)
    dataset = DATASETS.build(
        dict(type='CityscapesClipDataset', data_root=str(tmp_path), clip_length=2, test_mode=True)
    )
    assert isinstance(dataset, CityscapesClipDataset)
    assert len(dataset) == 2 * len(ANNOTATED)


def test_several_clip_lengths_in_one_pass(tmp_path):
    _make_cityscapes(tmp_path)
    infos = _infos(_dataset(tmp_path, clip_length=[1, 3]))
    assert len(infos) == len(ANNOTATED) * (1 + 3)
    city, seq, frame = ANNOTATED[0]
    name = _frame_name(city, seq, frame)
    assert [i['video_id'] for i in infos[:4]] == [f'{name}_len1'] + [f'{name}_len3'] * 3
    assert [i['frame_id'] for i in infos[:4]] == [0, 0, 1, 2]
    assert infos[0]['img_path'] == infos[3]['img_path']  # both end at the annotated frame
    assert [i['is_annotated'] for i in infos[:4]] == [True, False, False, True]


def test_ann_file_selects_frames(tmp_path):
    _make_cityscapes(tmp_path)
    (tmp_path / 'val.txt').write_text('bochum/bochum_000003_000044\n')
    infos = _infos(_dataset(tmp_path, clip_length=2, ann_file='val.txt'))
    assert [i['img_path'] for i in infos] == _expected_paths(tmp_path, 'bochum', 3, 44, 2)


def test_missing_frame_names_file_and_clip(tmp_path):
    _make_cityscapes(tmp_path)
    missing = (
        tmp_path
        / 'leftImg8bit_sequence'
        / 'val'
        / 'aachen'
        / 'aachen_000007_000020_leftImg8bit.png'
    )
    missing.unlink()
    _dataset(tmp_path, clip_length=4)  # frames 21..24: still complete
    with pytest.raises(
        FileNotFoundError,
        match=r'aachen_000007_000020_leftImg8bit\.png.*' r'clip aachen_000007_000024',
    ):
        _dataset(tmp_path, clip_length=5)


def test_clip_before_first_frame_raises(tmp_path):
    _make_cityscapes(tmp_path, annotated=[('ulm', 2, 3)])
    with pytest.raises(ValueError, match=r'ulm_000002_000003.*clip_length <= 4'):
        _dataset(tmp_path, clip_length=5)


@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        (dict(clip_length=0), ValueError, 'positive ints'),
        (dict(clip_length=[2, 2]), ValueError, 'twice'),
        (dict(label_type='color'), ValueError, 'label_type'),
        (dict(init_from='reference'), ValueError, 'init_from'),
        (dict(init_from='image_list'), ValueError, 'init_images'),
        (dict(reduce_zero_label=True), ValueError, 'reduce_zero_label'),
        (dict(data_prefix=dict(img_path='x', seg_map_path='nope')), FileNotFoundError, 'nope'),
        (dict(ann_file='absent.txt'), FileNotFoundError, 'absent.txt'),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, match):
    _make_cityscapes(tmp_path, annotated=[('ulm', 2, 30)])
    with pytest.raises(error, match=match):
        _dataset(tmp_path, **kwargs)


def test_no_annotation_or_bad_name(tmp_path):
    (tmp_path / 'gtFine' / 'val').mkdir(parents=True)
    with pytest.raises(ValueError, match='No annotated frame'):
        _dataset(tmp_path, clip_length=1)
    _write_png(
        tmp_path / 'gtFine' / 'val' / 'x' / 'frame7_gtFine_labelTrainIds.png',
        np.zeros((H, W), np.uint8),
    )
    with pytest.raises(ValueError, match='frame7_gtFine_labelTrainIds.png'):
        _dataset(tmp_path, clip_length=1)


def _pipeline():
    return [LoadImageFromFile(), LoadAnnotations(), PackSegInputs(meta_keys=META_KEYS)]


def test_pipeline_loads_frames_and_only_the_annotated_label(tmp_path):
    labels = _make_cityscapes(tmp_path)
    dataset = _dataset(tmp_path, clip_length=3, pipeline=_pipeline())
    city, seq, frame = ANNOTATED[1]
    for frame_id in range(3):
        out = dataset[3 + frame_id]
        sample = out['data_samples']
        assert sample.frame_id == frame_id
        # The pixels identify the frame: the clip really streams frames f-2, f-1, f.
        assert int(out['inputs'][0, 0, 0]) == _frame_value(seq, frame - 2 + frame_id)
        if frame_id < 2:
            assert 'gt_sem_seg' not in sample
            assert sample.is_annotated is False
        else:
            np.testing.assert_array_equal(
                sample.gt_sem_seg.data[0].numpy(), labels[_frame_name(city, seq, frame)]
            )


def test_label_ids_are_mapped_to_train_ids(tmp_path):
    labels = _make_cityscapes(tmp_path, label_type='labelIds')
    dataset = _dataset(tmp_path, clip_length=1, label_type='labelIds', pipeline=_pipeline())
    for index, (city, seq, frame) in enumerate(ANNOTATED):
        label_ids = labels[_frame_name(city, seq, frame)]
        expected = np.vectorize(
            lambda i: id2label[int(i)].trainId if id2label[int(i)].trainId not in (-1, 255) else 255
        )(label_ids)
        got = dataset[index]['data_samples'].gt_sem_seg.data[0].numpy()
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(labelids_to_trainids(label_ids), expected)


def test_labelids_to_trainids_rejects_bad_input():
    with pytest.raises(ValueError, match='integer'):
        labelids_to_trainids(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match='0..255'):
        labelids_to_trainids(np.array([[300]]))


def test_init_frame_from_other_clip(tmp_path):
    _make_cityscapes(tmp_path)
    length = 3
    infos = _infos(_dataset(tmp_path, clip_length=length, init_from='other_clip', seed=3))
    assert len(infos) == len(ANNOTATED) * (length + 1)
    all_frames = {
        (city, seq): set(_expected_paths(tmp_path, city, seq, frame, length))
        for city, seq, frame in ANNOTATED
    }
    for clip_index, (city, seq, frame) in enumerate(ANNOTATED):
        clip = infos[clip_index * (length + 1) : (clip_index + 1) * (length + 1)]
        init, rest = clip[0], clip[1:]
        assert init['is_init_frame'] is True and init['frame_id'] == -1
        assert init['is_annotated'] is False and init['seg_map_path'] is None
        assert init['video_id'] == _frame_name(city, seq, frame)
        assert [i['frame_id'] for i in rest] == list(range(length))
        assert [i['img_path'] for i in rest] == _expected_paths(tmp_path, city, seq, frame, length)
        # From another sequence's clip frames, and named in init_source.
        sources = [key for key, paths in all_frames.items() if init['img_path'] in paths]
        assert len(sources) == 1 and sources[0] != (city, seq)
        assert init['init_source'] == _frame_name(
            *[(c, s, f) for c, s, f in ANNOTATED if (c, s) == sources[0]][0]
        )


def test_init_frames_are_deterministic_by_seed(tmp_path):
    _make_cityscapes(tmp_path)

    def draw(seed):
        infos = _infos(_dataset(tmp_path, clip_length=5, init_from='other_clip', seed=seed))
        return [i['img_path'] for i in infos if i['is_init_frame']]

    assert draw(0) == draw(0)
    assert len({tuple(draw(seed)) for seed in range(4)}) > 1


def test_init_frame_from_image_list(tmp_path):
    _make_cityscapes(tmp_path)
    other = tmp_path / 'vid' / 'a.png'
    _write_png(other, np.zeros((H, W, 3), np.uint8))
    (tmp_path / 'init.txt').write_text('vid/a.png\n')
    infos = _infos(
        _dataset(tmp_path, clip_length=2, init_from='image_list', init_images='init.txt')
    )
    assert [i['img_path'] for i in infos if i['is_init_frame']] == [str(other)] * len(ANNOTATED)
    with pytest.raises(FileNotFoundError, match='b.png'):
        _dataset(tmp_path, clip_length=2, init_from='image_list', init_images=['vid/b.png'])


def _shared_sample_root() -> Path | None:
    here = Path(__file__).resolve().parents[2]
    for shared in (here.parent / 'shared', Path('/work/shared')):
        root = shared / 'data' / 'cityscapes' / 'pseudo_cityscapes_dataset'
        if root.is_dir():
            return root
    return None


REAL = _shared_sample_root()


def _assert_matches_shipped(converted: np.ndarray, label_ids: np.ndarray, shipped: np.ndarray):
    """Converted train ids against the shipped labelTrainIds file of the real sample.

    The sample (mmsegmentation's tests/data) was downscaled to 256x128 one file at a time, so a
    few pixels on class boundaries (77 of 32768) were resampled differently in the two files.
    Away from boundaries the conversion must be exact, and a wrong table breaks whole regions.
    """
    assert converted.shape == shipped.shape
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(label_ids, 2, mode='edge'), (5, 5))
    interior = windows.min(axis=(2, 3)) == windows.max(axis=(2, 3))  # 5x5 of a single label id
    assert interior.mean() > 0.6  # 70% of this small frame
    np.testing.assert_array_equal(converted[interior], shipped[interior])
    assert (converted == shipped).mean() > 0.995


@pytest.mark.skipif(REAL is None, reason='real Cityscapes sample (../shared) not available')
def test_real_sample_labelids_match_shipped_train_ids():
    gt_dir = REAL / 'gtFine' / 'val' / 'frankfurt'
    label_ids = np.array(Image.open(gt_dir / 'frankfurt_000000_000294_gtFine_labelIds.png'))
    train_ids = np.array(Image.open(gt_dir / 'frankfurt_000000_000294_gtFine_labelTrainIds.png'))
    _assert_matches_shipped(labelids_to_trainids(label_ids), label_ids, train_ids)

    # The same through the dataset (a clip of length 1 over the annotated leftImg8bit frame).
    dataset = CityscapesClipDataset(
        data_root=str(REAL),
        clip_length=1,
        label_type='labelIds',
        test_mode=True,
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=_pipeline(),
    )
    assert len(dataset) == 1
    sample = dataset[0]['data_samples']
    assert sample.video_id == 'frankfurt_000000_000294'
    assert sample.img_path == os.path.join(
        str(REAL), 'leftImg8bit/val', 'frankfurt', 'frankfurt_000000_000294_leftImg8bit.png'
    )
    loaded = sample.gt_sem_seg.data[0].numpy()
    np.testing.assert_array_equal(loaded, labelids_to_trainids(label_ids))
    _assert_matches_shipped(loaded, label_ids, train_ids)
