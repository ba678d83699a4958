"""Tests of ImagenetVIDDataset on tiny CocoVID / COCO files written in tmp_path.

The files mimic OpenMMLab's ImageNet VID/DET conversion (``imagenet2coco_{vid,det}.py``): a
``videos`` list, images with ``video_id``/``frame_id``/``is_vid_train_frame``, annotations with
``instance_id``; DET with 31 categories (the 30 VID classes + ``other_categeries``) and no videos.
Expected values are written out by hand from the generated records below.
"""

import json
import os.path as osp

import numpy as np
import pytest

from mmvideoeq.datasets import IMAGENET_VID_CLASSES, ImagenetVIDDataset
from mmvideoeq.datasets.imagenet_vid import uniform_frame_positions
from mmvideoeq.registry import DATASETS

W, H = 64, 48


def _vid_json():
    """Two videos; the images list is deliberately out of frame order."""
    categories = [dict(id=1, name='airplane'), dict(id=3, name='bear'), dict(id=9, name='dog')]
    videos = [dict(id=10, name='train/a'), dict(id=20, name='train/b')]
    # (image id, video id, frame id, is_vid_train_frame)
    frames = [
        (3, 10, 2, True),
        (1, 10, 0, False),
        (5, 10, 4, False),
        (2, 10, 1, False),
        (4, 10, 3, True),
        (7, 20, 1, True),
        (6, 20, 0, False),
        (8, 20, 2, False),
    ]
    images = [
        dict(
            id=i,
            video_id=v,
            frame_id=f,
            is_vid_train_frame=t,
            width=W,
            height=H,
            file_name=f"{'a' if v == 10 else 'b'}/{f:06d}.JPEG",
        )
        for i, v, f, t in frames
    ]
    annotations = [
        # image 1 (video 10, frame 0): a dog (track 5) and a bear (track 0: id 0 must be kept)
        dict(
            id=1,
            image_id=1,
            category_id=9,
            instance_id=5,
            bbox=[2, 3, 10, 12],
            area=120,
            iscrowd=False,
        ),
        dict(
            id=2,
            image_id=1,
            category_id=3,
            instance_id=0,
            bbox=[20, 5, 8, 8],
            area=64,
            iscrowd=False,
        ),
        # image 2 (frame 1): the dog again, plus a degenerate box (w < 1) that is dropped
        dict(
            id=3,
            image_id=2,
            category_id=9,
            instance_id=5,
            bbox=[4, 3, 10, 12],
            area=120,
            iscrowd=False,
        ),
        dict(
            id=4,
            image_id=2,
            category_id=1,
            instance_id=6,
            bbox=[30, 30, 0.5, 5],
            area=2.5,
            iscrowd=False,
        ),
        # image 3 (frame 2): an airplane marked crowd
        dict(
            id=5,
            image_id=3,
            category_id=1,
            instance_id=7,
            bbox=[1, 1, 30, 20],
            area=600,
            iscrowd=True,
        ),
        # image 6 (video 20, frame 0): an airplane
        dict(
            id=6,
            image_id=6,
            category_id=1,
            instance_id=8,
            bbox=[10, 10, 20, 10],
            area=200,
            iscrowd=False,
        ),
    ]
    return dict(categories=categories, videos=videos, images=images, annotations=annotations)


def _det_json():
    """ImageNet DET as converted: 31 categories, no videos, no frame ids."""
    categories = [dict(id=k, name=n) for k, n in enumerate(IMAGENET_VID_CLASSES, 1)]
    categories.append(dict(id=31, name='other_categeries'))
    images = [
        dict(id=1, file_name='train/x/1.JPEG', width=W, height=H, is_vid_train_frame=True),
        dict(id=2, file_name='train/x/2.JPEG', width=W, height=H, is_vid_train_frame=False),
        dict(id=3, file_name='train/x/3.JPEG', width=W, height=H, is_vid_train_frame=True),
    ]
    annotations = [
        dict(id=1, image_id=1, category_id=30, bbox=[1, 2, 10, 10], area=100, iscrowd=False),
        dict(id=2, image_id=1, category_id=31, bbox=[5, 5, 10, 10], area=100, iscrowd=False),
        dict(id=3, image_id=3, category_id=2, bbox=[0, 0, 20, 30], area=600, iscrowd=False),
    ]
    return dict(categories=categories, images=images, annotations=annotations)


def _write(tmp_path, name, content):
    path = tmp_path / 'annotations' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return str(path)


def _build(tmp_path, content, name='vid.json', **kwargs):
    _write(tmp_path, name, content)
    kwargs.setdefault('data_prefix', dict(img_path='Data/VID'))
    return ImagenetVIDDataset(ann_file=f'annotations/{name}', data_root=str(tmp_path), **kwargs)


def _frames(ds):
    return [ds.get_data_info(i) for i in range(len(ds))]


def test_uniform_frame_positions():
    # segment centres: 5 frames / 2 -> 1.25, 3.75 ; 300 / 15 -> 10, 30, ..., 290
    assert uniform_frame_positions(5, 2) == [1, 3]
    assert uniform_frame_positions(300, 15) == list(range(10, 300, 20))
    assert uniform_frame_positions(3, 15) == [0, 1, 2]
    with pytest.raises(ValueError, match='num_frames_per_video'):
        uniform_frame_positions(3, 0)


def test_vid_frame_mode_test(tmp_path):
    ds = _build(
        tmp_path, _vid_json(), test_mode=True, metainfo=dict(classes=('dog', 'airplane', 'bear'))
    )
    frames = _frames(ds)
    # every frame, videos in file order, frames ordered by frame_id
    assert [(f['video_id'], f['frame_id']) for f in frames] == [
        (10, 0),
        (10, 1),
        (10, 2),
        (10, 3),
        (10, 4),
        (20, 0),
        (20, 1),
        (20, 2),
    ]
    assert [f['img_id'] for f in frames] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [f['video_length'] for f in frames] == [5] * 5 + [3] * 3
    assert [f['ori_video_length'] for f in frames] == [5] * 5 + [3] * 3
    assert frames[0]['img_path'] == osp.join(str(tmp_path), 'Data/VID', 'a/000000.JPEG')
    assert (frames[0]['height'], frames[0]['width']) == (H, W)
    # labels follow the metainfo order (dog=0, airplane=1, bear=2), not the file's id order
    assert frames[0]['instances'] == [
        dict(bbox=[2.0, 3.0, 12.0, 15.0], bbox_label=0, instance_id=5, ignore_flag=0),
        dict(bbox=[20.0, 5.0, 28.0, 13.0], bbox_label=2, instance_id=0, ignore_flag=0),
    ]
    # the w < 1 box is dropped; the crowd box is kept as ignored
    assert frames[1]['instances'] == [
        dict(bbox=[4.0, 3.0, 14.0, 15.0], bbox_label=0, instance_id=5, ignore_flag=0)
    ]
    assert frames[2]['instances'] == [
        dict(bbox=[1.0, 1.0, 31.0, 21.0], bbox_label=1, instance_id=7, ignore_flag=1)
    ]
    assert ds.cat_ids == [9, 1, 3]
    assert ds.get_cat_ids(0) == [0, 2]
    assert ds.num_all_imgs == 8


def test_class_subset_drops_other_categories(tmp_path):
    ds = _build(tmp_path, _vid_json(), test_mode=True, metainfo=dict(classes=('airplane',)))
    frames = _frames(ds)
    assert frames[0]['instances'] == []  # the dog and the bear are not in the subset
    assert frames[5]['instances'] == [
        dict(bbox=[10.0, 10.0, 30.0, 20.0], bbox_label=0, instance_id=8, ignore_flag=0)
    ]


def test_train_frame_sampling(tmp_path):
    classes = dict(classes=('airplane', 'bear', 'dog'))
    flag = _build(tmp_path, _vid_json(), metainfo=classes)
    # is_vid_train_frame: video 10 frames 2, 3 (images 3, 4); video 20 frame 1 (image 7)
    assert [(f['video_id'], f['frame_id']) for f in _frames(flag)] == [(10, 2), (10, 3), (20, 1)]
    assert [f['video_length'] for f in _frames(flag)] == [2, 2, 1]
    assert [f['ori_video_length'] for f in _frames(flag)] == [5, 5, 3]

    uniform = _build(
        tmp_path,
        _vid_json(),
        metainfo=classes,
        train_frame_sampling='uniform',
        num_frames_per_video=2,
    )
    # 5 frames -> positions 1, 3; 3 frames -> positions 0, 2 (int(0.75), int(2.25))
    assert [(f['video_id'], f['frame_id']) for f in _frames(uniform)] == [
        (10, 1),
        (10, 3),
        (20, 0),
        (20, 2),
    ]
    every = _build(tmp_path, _vid_json(), metainfo=classes, train_frame_sampling='all')
    assert len(every) == 8

    # filter_cfg: frames without a kept instance go (frame 3 of video 10 has none)
    filtered = _build(
        tmp_path, _vid_json(), metainfo=classes, filter_cfg=dict(filter_empty_gt=True)
    )
    assert [(f['video_id'], f['frame_id']) for f in _frames(filtered)] == [(10, 2)]
    assert _frames(filtered)[0]['video_length'] == 1


def test_flag_sampling_needs_the_flag(tmp_path):
    content = _vid_json()
    for img in content['images']:
        del img['is_vid_train_frame']
    with pytest.raises(ValueError, match="is_vid_train_frame.*train_frame_sampling='uniform'"):
        _build(tmp_path, content, metainfo=dict(classes=('dog',)))


def test_video_mode(tmp_path):
    from mmdet.datasets.samplers import TrackImgSampler

    ds = _build(
        tmp_path,
        _vid_json(),
        test_mode=True,
        mode='video',
        metainfo=dict(classes=('airplane', 'bear', 'dog')),
    )
    assert len(ds) == 2
    videos = [ds.get_data_info(i) for i in range(2)]
    assert [v['video_id'] for v in videos] == [10, 20]
    assert [v['video_length'] for v in videos] == [5, 3]
    assert [img['frame_id'] for img in videos[0]['images']] == [0, 1, 2, 3, 4]
    assert ds.get_len_per_video(1) == 3
    assert ds.num_all_imgs == 8
    assert ds.get_cat_ids((0, 0)) == [2, 1]
    # mmdet's TrackImgSampler (test mode) walks every frame of each video in order
    sampler = TrackImgSampler(ds, seed=0)
    assert list(sampler) == [(0, f) for f in range(5)] + [(1, f) for f in range(3)]

    frame_mode = _build(
        tmp_path, _vid_json(), test_mode=True, metainfo=dict(classes=('airplane', 'bear', 'dog'))
    )
    with pytest.raises(ValueError, match="mode='video'"):
        frame_mode.get_len_per_video(0)


def test_det_as_one_frame_videos(tmp_path):
    ds = _build(
        tmp_path,
        _det_json(),
        name='imagenet_det_30plus1cls.json',
        ann_format='coco',
        data_prefix=dict(img_path='Data/DET'),
    )
    frames = _frames(ds)
    # training: only is_vid_train_frame images; each is a one-frame video
    assert [f['img_id'] for f in frames] == [1, 3]
    assert [(f['video_id'], f['frame_id'], f['video_length']) for f in frames] == [
        (1, 0, 1),
        (3, 0, 1),
    ]
    assert frames[0]['img_path'] == osp.join(str(tmp_path), 'Data/DET', 'train/x/1.JPEG')
    # 'other_categeries' (id 31) is ignored; zebra (id 30) is label 29; annotation id as instance
    assert frames[0]['instances'] == [
        dict(bbox=[1.0, 2.0, 11.0, 12.0], bbox_label=29, instance_id=1, ignore_flag=0)
    ]
    assert frames[1]['instances'] == [
        dict(bbox=[0.0, 0.0, 20.0, 30.0], bbox_label=1, instance_id=3, ignore_flag=0)
    ]


def test_not_cocovid(tmp_path):
    with pytest.raises(
        ValueError, match=r"imagenet_det_30plus1cls.json has no 'videos' key.*" r"ann_format='coco'"
    ):
        _build(tmp_path, _det_json(), name='imagenet_det_30plus1cls.json')
    content = _vid_json()
    del content['images'][4]['frame_id']
    with pytest.raises(ValueError, match=r"vid.json: image 4 .*has no 'frame_id' key"):
        _build(tmp_path, content, metainfo=dict(classes=('dog',)))
    content = _vid_json()
    content['images'][0]['video_id'] = 99
    with pytest.raises(ValueError, match="video_id 99, which is not in 'videos'"):
        _build(tmp_path, content, metainfo=dict(classes=('dog',)))
    with pytest.raises(ValueError, match="no 'images' key"):
        _build(tmp_path, dict(categories=[]), metainfo=dict(classes=('dog',)))
    with pytest.raises(FileNotFoundError, match='nothere.json does not exist'):
        ImagenetVIDDataset(ann_file='annotations/nothere.json', data_root=str(tmp_path))


def test_class_list_mismatch(tmp_path):
    # the default metainfo is the 30 VID classes; this file only has three of them
    with pytest.raises(
        ValueError, match=r'class list does not match: metainfo classes ' r"\['antelope', 'bicycle'"
    ):
        _build(tmp_path, _vid_json())
    with pytest.raises(
        ValueError, match=r'class list does not match: metainfo classes ' r"\['cat'\]"
    ):
        _build(tmp_path, _vid_json(), metainfo=dict(classes=('dog', 'cat')))


def test_missing_image_files(tmp_path):
    content = _vid_json()
    present = {'a/000000.JPEG', 'a/000001.JPEG', 'a/000002.JPEG', 'b/000000.JPEG'}
    for name in present:
        path = tmp_path / 'Data' / 'VID' / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b'')
    kwargs = dict(test_mode=True, metainfo=dict(classes=('dog',)), check_files=True)
    with pytest.raises(FileNotFoundError) as err:
        _build(tmp_path, content, **kwargs)
    msg = str(err.value)
    assert '4 of 8 image files' in msg and 'skip_missing_files=True' in msg
    for name in ('a/000003.JPEG', 'a/000004.JPEG', 'b/000001.JPEG', 'b/000002.JPEG'):
        assert osp.join(str(tmp_path), 'Data/VID', name) in msg

    ds = _build(tmp_path, content, skip_missing_files=True, **kwargs)
    assert [(f['video_id'], f['frame_id']) for f in _frames(ds)] == [
        (10, 0),
        (10, 1),
        (10, 2),
        (20, 0),
    ]
    assert sorted(ds.missing_files) == sorted(
        osp.join(str(tmp_path), 'Data/VID', n)
        for n in ('a/000003.JPEG', 'a/000004.JPEG', 'b/000001.JPEG', 'b/000002.JPEG')
    )
    assert [f['video_length'] for f in _frames(ds)] == [3, 3, 3, 1]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='mode must be one of'):
        _build(tmp_path, _vid_json(), mode='clip')
    with pytest.raises(ValueError, match='train_frame_sampling must be one of'):
        _build(tmp_path, _vid_json(), train_frame_sampling='random')


def test_pipeline_and_registry(tmp_path):
    """A frame goes through mmdet's image pipeline and keeps its video metainfo."""
    import mmcv
    from mmdet.datasets.transforms import LoadAnnotations, PackDetInputs
    from mmengine.registry import init_default_scope

    init_default_scope('mmvideoeq')
    img = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    mmcv.imwrite(img, str(tmp_path / 'Data' / 'VID' / 'a' / '000001.JPEG'))
    _write(tmp_path, 'vid.json', _vid_json())
    ds = DATASETS.build(
        dict(
            type='ImagenetVIDDataset',
            data_root=str(tmp_path),
            ann_file='annotations/vid.json',
            data_prefix=dict(img_path='Data/VID'),
            test_mode=True,
            check_files=False,
            metainfo=dict(classes=('airplane', 'bear', 'dog')),
            pipeline=[
                dict(type='mmdet.LoadImageFromFile'),
                LoadAnnotations(with_bbox=True),
                PackDetInputs(
                    meta_keys=(
                        'img_id',
                        'img_path',
                        'ori_shape',
                        'img_shape',
                        'video_id',
                        'frame_id',
                        'video_length',
                    )
                ),
            ],
        )
    )
    assert isinstance(ds, ImagenetVIDDataset)
    out = ds[1]
    sample = out['data_samples']
    assert out['inputs'].shape == (3, H, W)
    assert (sample.video_id, sample.frame_id, sample.video_length, sample.img_id) == (10, 1, 5, 2)
    np.testing.assert_allclose(sample.gt_instances.bboxes.numpy(), [[4.0, 3.0, 14.0, 15.0]])
    assert sample.gt_instances.labels.tolist() == [2]


def test_incomplete_or_empty_annotation_files_are_named(tmp_path, monkeypatch):
    content = _vid_json()
    del content['images'][2]['width']
    with pytest.raises(ValueError, match=r"image 5 \(a/000004.JPEG\) has no \['width'\] key"):
        _build(tmp_path, content, metainfo=dict(classes=('dog',)))
    # every frame filtered away: a message, not numpy's 'need at least one array to concatenate'
    with pytest.raises(ValueError, match='no frame of .*vid.json is left after filtering'):
        _build(
            tmp_path,
            _vid_json(),
            metainfo=dict(classes=('dog',)),
            filter_cfg=dict(min_size=1000),
            check_files=False,
        )
    content = _vid_json()
    content['annotations'] = []
    import mmvideoeq.datasets.imagenet_vid as module

    logged = []
    monkeypatch.setattr(module, 'print_log', lambda msg, **kw: logged.append(msg))
    _build(tmp_path, content, test_mode=True, metainfo=dict(classes=('dog',)), check_files=False)
    assert any('holds no annotations' in m for m in logged)


def test_unreadable_frame_becomes_a_marked_placeholder(tmp_path):
    """In test mode a zero-byte or corrupt frame does not stop the run: the sample is a black
    image of the frame's size marked eval_skip_reason (naming the file); in training another
    frame is drawn."""
    import cv2

    from mmvideoeq.structures import SKIP_KEY

    root = tmp_path / 'Data' / 'VID'
    for f in range(5):
        (root / 'a').mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / 'a' / f'{f:06d}.JPEG'), np.full((H, W, 3), 100, np.uint8))
    (root / 'a' / '000002.JPEG').write_bytes(b'')  # zero bytes
    (root / 'a' / '000003.JPEG').write_bytes(b'\xff\xd8 not a jpeg')  # corrupt
    content = _vid_json()
    content['images'] = [i for i in content['images'] if i['video_id'] == 10]
    content['annotations'] = [a for a in content['annotations'] if a['image_id'] <= 5]
    pipeline = [
        dict(type='mmdet.LoadImageFromFile'),
        dict(type='mmdet.LoadAnnotations', with_bbox=True),
        dict(
            type='mmdet.PackDetInputs',
            meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'video_id', 'frame_id'),
        ),
    ]
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    ds = _build(
        tmp_path,
        content,
        test_mode=True,
        pipeline=pipeline,
        metainfo=dict(classes=('dog', 'airplane', 'bear')),
    )
    out = [ds[i] for i in range(len(ds))]
    reasons = [o['data_samples'].metainfo.get(SKIP_KEY) for o in out]
    assert reasons[:2] == [None, None] and reasons[4] is None
    assert '000002.JPEG' in reasons[2] and '000003.JPEG' in reasons[3]
    assert tuple(out[2]['inputs'].shape) == (3, H, W) and out[2]['inputs'].sum() == 0
    train = _build(
        tmp_path,
        content,
        pipeline=pipeline,
        train_frame_sampling='all',
        metainfo=dict(classes=('dog', 'airplane', 'bear')),
    )
    idx = next(i for i in range(len(train)) if train.get_data_info(i)['frame_id'] == 2)
    out = train[idx]  # training draws another frame instead of stopping
    assert out['data_samples'].frame_id not in (2, 3)


def test_mmtracking_dataset_keys(tmp_path):
    """mmtracking configs: load_as_video maps to ann_format; ref_img_sampler gets a pointer."""
    ds = _build(tmp_path, _det_json(), name='det.json', load_as_video=False, test_mode=True)
    assert ds.ann_format == 'coco' and len(ds) == 3
    ds = _build(
        tmp_path,
        _vid_json(),
        load_as_video=True,
        test_mode=True,
        metainfo=dict(classes=('dog', 'airplane', 'bear')),
    )
    assert ds.ann_format == 'cocovid'
    with pytest.raises(ValueError, match='UniformRefFrameSample'):
        _build(tmp_path, _vid_json(), ref_img_sampler=dict(num_ref_imgs=2, frame_range=9))
