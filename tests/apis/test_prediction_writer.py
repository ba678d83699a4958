"""DVPSPredictionWriter: the reference layouts round-trip through the project's folder evaluator.

The fixtures of ``tests/data/dvps`` hold predictions in the layouts ViP-DeepLab's scripts read
(their README: how they were made and what the reference scripts print on them). Written again
by the writer they decode to the same maps and evaluate to the same numbers; the ground truth
written as a prediction scores perfectly; a long sequence whose ids pass 255 fits the 8-bit
Cityscapes-DVPS format with its tracks intact.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmvideoeq.apis.prediction_folders import evaluate_folders, iter_frames
from mmvideoeq.apis.prediction_writer import DVPSPredictionWriter
from mmvideoeq.datasets.dvps_io import read_two_channel_panoptic

DATA = Path(__file__).resolve().parents[1] / 'data' / 'dvps'
FIXTURES = {
    'cityscapes_dvps': (DATA / 'cityscapes', 1000),
    'semkitti_dvps': (DATA / 'semkitti', 65536),
}


def image_name(fmt: str, sample: dict) -> str:
    """The frame's image name, from the prediction file the reader read."""
    if fmt == 'cityscapes_dvps':
        return Path(sample['img_path']).name  # predictions are named like the images
    return f"{sample['video_id']}_{sample['frame_id']:06d}_leftImg8bit.png"


def gt_dir(root: Path) -> Path:
    return root / 'video_sequence' / 'val'


def strip_names(res: dict) -> dict:
    return {k: v for k, v in res.items() if k != 'num_frames'}


@pytest.mark.parametrize('fmt', list(FIXTURES))
def test_fixture_predictions_written_again_evaluate_the_same(fmt, tmp_path):
    root, div = FIXTURES[fmt]
    writer = DVPSPredictionWriter(fmt, tmp_path)
    src = list(iter_frames(fmt, gt_dir(root), root / 'pred_pan', root / 'pred_depth'))
    for s in src:
        writer.write(
            image_name(fmt, s), torch.from_numpy(s['pred_panoptic']), s['pred_depth'],
            label_divisor=div,
        )  # fmt: skip
    again = list(iter_frames(fmt, gt_dir(root), writer.pan_dir, writer.depth_dir))
    assert len(again) == len(src) > 10
    for a, b in zip(src, again):
        assert (a['video_id'], a['frame_id']) == (b['video_id'], b['frame_id'])
        np.testing.assert_array_equal(b['pred_panoptic'], a['pred_panoptic'])
        np.testing.assert_array_equal(b['pred_depth'], a['pred_depth'])
    ref = evaluate_folders(fmt, gt_dir(root), root / 'pred_pan', root / 'pred_depth')
    ours = evaluate_folders(fmt, gt_dir(root), writer.pan_dir, writer.depth_dir)
    assert ours['dvpq/per_window'] == ref['dvpq/per_window']
    np.testing.assert_equal(ours['dvpq'], ref['dvpq'])  # NaN == NaN here
    np.testing.assert_equal(ours['stq'], ref['stq'])


@pytest.mark.parametrize('fmt', list(FIXTURES))
def test_ground_truth_written_as_prediction_is_perfect(fmt, tmp_path):
    root, div = FIXTURES[fmt]
    writer = DVPSPredictionWriter(fmt, tmp_path)
    for s in iter_frames(fmt, gt_dir(root), root / 'pred_pan'):  # names of the frames
        writer.write(image_name(fmt, s), s['gt_panoptic'], s['gt_depth'], label_divisor=div)
    res = evaluate_folders(fmt, gt_dir(root), writer.pan_dir, writer.depth_dir, average='valid')
    assert res['dvpq']['DVPQ'] == pytest.approx(100.0) and res['dvpq']['PQ'] == pytest.approx(100.0)
    for stats in res['dvpq/per_window'].values():  # every window length and depth threshold
        assert sum(stats['tp']) > 0
        assert not any(stats['fp']) and not any(stats['fn'])
        np.testing.assert_allclose(stats['iou'], stats['tp'])
    assert res['stq']['STQ'] == pytest.approx(100.0)  # percent
    assert res['depth']['image/abs_rel'] == 0.0


def write_gt_frame(folder: Path, name: str, panoptic: np.ndarray) -> None:
    stem = name[: -len('_leftImg8bit.png')]
    Image.fromarray(panoptic.astype(np.uint16)).save(folder / f'{stem}_gtFine_instanceTrainIds.png')
    Image.fromarray(np.full(panoptic.shape, 2560, np.uint16)).save(folder / f'{stem}_depth.png')


def test_long_sequence_ids_fit_eight_bits(tmp_path):
    """60 frames, a new car every frame living 3 frames, sequence ids 241..300 (as a stream's
    stitching hands them out): the file ids fit 8 bits, a track keeps its file id, live tracks
    never share one, an id returns only after 20 frames, and the folder evaluates perfectly
    against ground truth with other ids."""
    gt = tmp_path / 'gt'
    gt.mkdir()
    writer = DVPSPredictionWriter('cityscapes_dvps', tmp_path / 'pred')
    n, life, gap = 60, 3, 20
    tracks = {}
    for t in range(n):
        name = f'000000_{t:06d}_city_000000_{t:06d}_leftImg8bit.png'
        pred = np.zeros((4, 12), np.int64)  # stuff class 0
        gt_map = np.zeros((4, 12), np.int64)
        for b in range(max(0, t - life + 1), t + 1):  # track b: columns 3 * (b % 4) + (0..2)
            cols = slice(3 * (b % 4), 3 * (b % 4) + 3)
            pred[:, cols] = 13 * 1000 + 241 + b
            gt_map[:, cols] = 13 * 1000 + 1 + b % 50
        writer.write(name, pred, np.full(pred.shape, 10.0), label_divisor=1000)
        write_gt_frame(gt, name, gt_map)
        stored = read_two_channel_panoptic(writer.pan_dir / name, 1000)
        live = {}
        for b in range(max(0, t - life + 1), t + 1):
            (fid,) = np.unique(stored[:, 3 * (b % 4) : 3 * (b % 4) + 3])
            assert fid // 1000 == 13 and 0 < fid % 1000 <= 255
            assert tracks.setdefault(b, (fid, t))[0] == fid  # a track keeps its file id
            for other, (ofid, last) in tracks.items():
                if other < b and ofid == fid:
                    assert t - last >= gap or other >= t - life + 1  # reused after the gap only
            tracks[b] = (fid, t)
            live[b] = fid
        assert len(set(live.values())) == len(live)
    assert max(f % 1000 for f, _ in tracks.values()) <= 255
    res = evaluate_folders(
        'cityscapes_dvps', gt, writer.pan_dir, writer.depth_dir, metrics=('dvpq',), average='valid'
    )
    assert res['dvpq']['DVPQ'] == pytest.approx(100.0)
    for stats in res['dvpq/per_window'].values():
        assert stats['tp'][13] > 0 and stats['fp'][13] == 0 and stats['fn'][13] == 0


def test_more_live_ids_than_the_format_holds_names_the_frame(tmp_path):
    writer = DVPSPredictionWriter('cityscapes_dvps', tmp_path)
    pan = 11 * 1000 + np.arange(1, 201).reshape(10, 20)  # 200 cars
    writer.write('000007_000000_c_000000_000000_leftImg8bit.png', pan, label_divisor=1000)
    pan2 = 11 * 1000 + np.arange(300, 360).reshape(6, 10)  # 60 new cars, the 200 seen 1 frame ago
    with pytest.raises(
        ValueError,
        match=r'000007_000001_c_000000_000001_leftImg8bit.png \(frame 1 of sequence 000007\): '
        r'260 instance ids of class 11 are in use within the last 20 frames, the cityscapes_dvps '
        r'format holds 255 per class',
    ):
        writer.write('000007_000001_c_000000_000001_leftImg8bit.png', pan2, label_divisor=1000)


def test_bad_input(tmp_path):
    writer = DVPSPredictionWriter('semkitti_dvps', tmp_path)
    pan = np.zeros((2, 3), np.int64)
    with pytest.raises(ValueError, match=r'frame.png: not a frame of the semkitti_dvps layout'):
        writer.write('frame.png', pan, label_divisor=65536)
    with pytest.raises(ValueError, match='class id 300 does not fit'):
        writer.write('000001_000000_leftImg8bit.png', pan + 300 * 65536, label_divisor=65536)
    with pytest.raises(ValueError, match='NaN or infinite'):
        writer.write(
            '000001_000000_leftImg8bit.png', pan, np.full((2, 3), np.nan), label_divisor=65536
        )
    writer.write('000001_000002_leftImg8bit.png', pan, label_divisor=65536)
    with pytest.raises(ValueError, match='frame 1 of sequence 000001 comes after frame 2'):
        writer.write('000001_000001_leftImg8bit.png', pan, label_divisor=65536)
    with pytest.raises(FileExistsError, match='panoptic already holds files'):
        DVPSPredictionWriter('semkitti_dvps', tmp_path)
    DVPSPredictionWriter('semkitti_dvps', tmp_path, overwrite=True)
    with pytest.raises(ValueError, match='format must be one of'):
        DVPSPredictionWriter('kitti_depth', tmp_path / 'x')
