"""DVPS / KITTI depth datasets and transforms on the bundled generator's 'tiny' output.

The files written are checked against the renderer's own ground truth re-rendered here
(``render_benchmark_video``) and against the real datasets' conventions (encodings typed from
ViP-DeepLab's READMEs and deeplab2's dataset definitions), not against the writers' code.
"""

import re
import shutil

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from PIL import Image

from benchgen import generate_benchmark, render_benchmark_video
from benchgen.writers_dvps import lidar_mask
from mmvideoeq.datasets import CityscapesDVPSDataset, KittiDepthDataset, SemKITTIDVPSDataset
from mmvideoeq.datasets.dvps_io import read_png
from mmvideoeq.structures import SKIP_KEY

FORMATS = ('cityscapes_dvps', 'semkitti_dvps', 'kitti_depth', 'kitti')
PIPELINE = [
    dict(type='mmseg.LoadImageFromFile'),
    dict(type='LoadPanopticAnnotation', with_next=True),
    dict(type='LoadKittiDepthAnnotation'),
    dict(type='LoadNextImageFromFile'),
    dict(type='PackDVPSInputs'),
]


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    init_default_scope('mmvideoeq')
    root = tmp_path_factory.mktemp('bench')
    meta = generate_benchmark(root, preset='tiny', seed=0, formats=FORMATS)
    return root, meta


def test_cityscapes_dvps_files_match_the_rendered_video(bench):
    root, meta = bench
    video = render_benchmark_video('cityscapes_dvps', 'val', 0, preset='tiny', seed=0)
    entry = meta['cityscapes_dvps']['val'][0]
    assert entry['source_frames'] == [0, 5, 10, 15, 20, 25] and video.frames.shape[0] == 26
    folder = root / 'cityscapes_dvps' / 'video_sequence' / 'val'
    assert (video.semantic[::5] == 7).any() and (video.semantic[::5] == 3).any()  # person, terrain
    for i, t in enumerate(entry['source_frames']):
        stem = folder / f"000000_{i:06d}_{entry['city']}_000000_{t:06d}"
        pan = read_png(f'{stem}_gtFine_instanceTrainIds.png', bit_depth=16)
        depth = read_png(f'{stem}_depth.png', bit_depth=16)
        # Cityscapes train ids: road 0, sidewalk 1, building 2, vegetation 8, terrain 9, sky 10,
        # person 11 (a thing: 11000 + track id); the animals are 'dynamic' -> void 32000
        sem = video.semantic[t]
        person = sem == 7
        assert np.array_equal(pan[person], 11000 + video.instance[t][person])
        assert (pan[(sem >= 8)] == 32000).all()  # horse, cat, airplane, zebra
        assert (pan[sem == 1] == 0).all() and (pan[sem == 3] == 9000).all()
        expected = np.clip(np.rint(video.depth[t].astype(np.float64) * 256), 0, 65535)
        assert np.array_equal(depth, expected)
        assert np.array_equal(np.array(Image.open(f'{stem}_leftImg8bit.png')), video.frames[t])


def test_cityscapes_dvps_dataset_and_pipeline(bench):
    root, _ = bench
    plain = CityscapesDVPSDataset(data_root=str(root / 'cityscapes_dvps'))
    assert len(plain) == 6 and [plain[i]['frame_id'] for i in range(6)] == list(range(6))
    info = plain.get_data_info(0)
    assert (info['video_id'], info['label_divisor'], info['ignore_label']) == ('000000', 1000, 32)
    ds = CityscapesDVPSDataset(
        data_root=str(root / 'cityscapes_dvps'), with_next_frame=True, pipeline=PIPELINE
    )
    assert len(ds) == 5  # the last frame has no next frame (deeplab2 build_dvps_data.py)
    out = ds[1]
    sample, info = out['data_samples'], ds.get_data_info(1)
    assert out['inputs'].shape == (6, 32, 64) and out['inputs'].dtype.is_floating_point is False
    nxt = np.array(Image.open(info['next_img_path']))[..., ::-1]  # LoadImageFromFile gives BGR
    assert np.array_equal(out['inputs'][3:].permute(1, 2, 0).numpy(), nxt)
    gt = read_png(info['panoptic_path'])
    assert np.array_equal(sample.gt_panoptic.data[0].numpy(), gt)
    assert np.array_equal(
        sample.next_gt_panoptic.data[0].numpy(), read_png(info['next_panoptic_path'])
    )
    sem = sample.gt_sem_seg.data[0].numpy()
    assert np.array_equal(sem, np.where(gt // 1000 == 32, 255, gt // 1000))
    depth = sample.gt_depth.data[0].numpy()
    assert depth.dtype == np.float32 and np.array_equal(depth * 256, read_png(info['depth_path']))
    assert sample.metainfo['video_id'] == '000000' and sample.metainfo['next_frame_id'] == 2


def test_semkitti_dvps_sparse_labels(bench):
    root, meta = bench
    video = render_benchmark_video('semkitti_dvps', 'val', 0, preset='tiny', seed=0)
    ds = SemKITTIDVPSDataset(
        data_root=str(root / 'semkitti_dvps'),
        pipeline=[dict(type='LoadPanopticAnnotation'), dict(type='LoadKittiDepthAnnotation')],
    )
    assert len(ds) == 6
    for t in range(6):
        out = ds[t]
        assert out['focal'] == float(np.float32(video.focal[t]))
        cls, inst = out['gt_panoptic'] // 65536, out['gt_panoptic'] % 65536
        mask = lidar_mask(cls.shape, video.horizon[t], video.focal[t], 2)
        mask &= (video.depth[t] > 0) & (video.depth[t] <= 80)
        labelled = cls != 255
        assert labelled.any() and not (labelled & ~mask).any() and labelled.mean() < 0.5
        # SemanticKITTI classes (0-based): road 8, sidewalk 10, terrain 16, person 5 (a thing)
        assert set(np.unique(cls[labelled])) <= {5, 8, 10, 12, 14, 16}
        person = labelled & (cls == 5)
        assert np.array_equal(inst[person], video.instance[t][person])
        assert (inst[labelled & (cls != 5)] == 0).all()
        depth = out['gt_depth']
        assert (depth[labelled] > 0).all() and not (depth[~mask] > 0).any()
    assert 0 < meta['semkitti_dvps']['val'][0]['labelled_fraction'] < 0.5
    assert (video.semantic == 7).any()  # the drive has people, so the thing branch is checked


def test_kitti_depth_layouts(bench):
    root, _ = bench
    sel = KittiDepthDataset(data_root=str(root / 'kitti_depth'))
    video = render_benchmark_video('kitti_depth', 'val', 0, preset='tiny', seed=0)
    assert len(sel) == 4 and sel[0]['video_id'] == '2000_01_01_drive_0000_sync_image_02'
    assert sel[0]['focal'] == pytest.approx(video.focal[0], rel=1e-6)
    folder = root / 'kitti_depth' / 'depth_selection' / 'val_selection_cropped'
    gt = read_png(folder / 'groundtruth_depth' / sel[0]['depth_path'].split('/')[-1])
    velodyne = read_png(next((folder / 'velodyne_raw').iterdir()))
    assert 0 < (velodyne > 0).sum() < (gt > 0).sum()  # raw scan sparser than the ground truth
    annotated = KittiDepthDataset(
        data_root=str(root / 'kitti'),
        layout='annotated',
        data_prefix=dict(img_path='raw', depth_path='data_depth_annotated/val'),
    )
    assert len(annotated) == 4 and annotated[0]['focal'] is not None


def test_dataset_errors(bench, tmp_path):
    root, _ = bench
    copy = tmp_path / 'cs'
    shutil.copytree(root / 'cityscapes_dvps', copy)
    folder = copy / 'video_sequence' / 'val'
    victim = sorted(folder.glob('*_depth.png'))[2]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=r'000000_000002_.*leftImg8bit\.png has no depth'):
        CityscapesDVPSDataset(data_root=str(copy))
    ds = CityscapesDVPSDataset(data_root=str(copy), require_labels=False)
    assert ds.get_data_info(2)['depth_path'] is None
    # an 8-bit depth map is refused with the file's name: the frame is skipped (test mode) or
    # replaced (training), and the error is raised when every frame fails
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(victim)
    pipeline = [dict(type='LoadKittiDepthAnnotation'), dict(type='PackDVPSInputs')]
    ds = CityscapesDVPSDataset(data_root=str(copy), pipeline=pipeline, test_mode=True)
    reason = ds[2]['data_samples'].metainfo[SKIP_KEY]
    assert re.search(rf'{victim.name}: expected a 16-bit PNG, got 8-bit', reason)
    ds = CityscapesDVPSDataset(data_root=str(copy), pipeline=pipeline, indices=[2])
    with pytest.raises(ValueError, match=rf'{victim.name}: expected a 16-bit PNG, got 8-bit'):
        ds[0]
    with pytest.raises(KeyError, match='with_next_frame=True'):
        CityscapesDVPSDataset(
            data_root=str(copy), pipeline=[dict(type='LoadPanopticAnnotation', with_next=True)]
        )[0]
    with pytest.raises(ValueError, match='holds no'):
        SemKITTIDVPSDataset(data_root=str(copy))
    with pytest.raises(ValueError, match='layout must be one of'):
        KittiDepthDataset(data_root=str(copy), layout='raw')


def test_read_png_modes(tmp_path):
    # a palette class map is read as its indices (not converted to grey through the palette)
    pal = Image.new('P', (2, 2))
    pal.putdata([0, 3, 19, 255])
    pal.putpalette([7] * 768)
    pal.save(tmp_path / 'p.png')
    assert read_png(tmp_path / 'p.png', bit_depth=8, channels=1).tolist() == [[0, 3], [19, 255]]
    # 16-bit values come back signed, whatever Pillow's own dtype
    Image.fromarray(np.array([[1, 65535]], np.uint16)).save(tmp_path / 'd.png')
    depth = read_png(tmp_path / 'd.png', bit_depth=16)
    assert depth.dtype == np.int32 and (depth[0, 0] - depth[0, 1]) == -65534
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / 'rgb.png')
    with pytest.raises(ValueError, match=r'rgb\.png: expected 1 channel\(s\), got 3'):
        read_png(tmp_path / 'rgb.png', channels=1)
    with pytest.raises(FileNotFoundError, match='no such file'):
        read_png(tmp_path / 'missing.png')
