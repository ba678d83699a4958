"""tools/analysis_tools/eval_dvps.py: numbers on the parity fixtures, one error per bad input."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchgen import generate_benchmark

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / 'tests' / 'data' / 'dvps'
REF = json.loads((DATA / 'reference_outputs.json').read_text())


def _load_cli():
    spec = importlib.util.spec_from_file_location(
        'eval_dvps', ROOT / 'tools/analysis_tools/eval_dvps.py'
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLI = _load_cli()


def _run(capsys, *args):
    rc = CLI.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err.strip()


def _cityscapes_args(root):
    return ('cityscapes_dvps', root / 'video_sequence' / 'val', '--pan-dir', root / 'pred_pan',
            '--depth-dir', root / 'pred_depth')  # fmt: skip


def test_cityscapes_dvps_folder(capsys, tmp_path):
    rc, out, err = _run(
        capsys, *_cityscapes_args(DATA / 'cityscapes'), '--out', tmp_path / 'r.json'
    )
    assert rc == 0, err
    res = json.loads((tmp_path / 'r.json').read_text())
    assert res['num_frames'] == 12
    # k=2, lambda=0.5: the reference printed '62.08 38.60 79.15'
    ref = next(
        r for r in REF['runs']['cityscapes'] if (r['eval_frames'], r['depth_thres']) == (2, 0.5)
    )
    ours = [res['dvpq'][f'DVPQ_k2_l0.5{s}'] for s in ('', '_th', '_st')]
    assert ' '.join(f'{v:.2f}' for v in ours) == ref['printed']
    assert res['dvpq/per_window']['k2_l0.5']['tp'] == [int(v) for v in ref['full']['tp'][:19]]
    assert {'STQ', 'DSTQ', 'DQ@1.1'} <= set(res['stq']) and 'pixel/silog' in res['depth']
    assert 'DVPQ_k2_l0.5' in out and '12 frames' in out


def test_semkitti_dvps_vpq_only(capsys, tmp_path):
    root = DATA / 'semkitti'
    rc, out, err = _run(
        capsys, 'semkitti_dvps', root / 'video_sequence' / 'val', '--pan-dir', root / 'pred_pan',
        '--metrics', 'dvpq', '--eval-frames', '1', '5', '--out', tmp_path / 'r.json',
    )  # fmt: skip
    assert rc == 0, err
    res = json.loads((tmp_path / 'r.json').read_text())['dvpq']
    assert 'DVPQ' not in res  # no depth folder: VPQ only
    for run in REF['runs']['semkitti']:
        if run['depth_thres'] == 0 and run['eval_frames'] in (1, 5):
            k = run['eval_frames']
            got = ' '.join(f"{res[f'VPQ_k{k}{s}']:.1f}" for s in ('', '_th', '_st'))
            assert got == run['printed']


def test_kitti_depth_selection_perfect_prediction(capsys, tmp_path):
    generate_benchmark(tmp_path / 'b', preset='tiny', seed=0, formats=('kitti_depth',))
    sel = tmp_path / 'b' / 'kitti_depth' / 'depth_selection' / 'val_selection_cropped'
    pred = tmp_path / 'pred'
    pred.mkdir()
    for f in (sel / 'groundtruth_depth').iterdir():  # named like the images, dense
        depth = np.array(Image.open(f)).astype(np.uint16)
        depth[depth == 0] = 2560
        Image.fromarray(depth).save(pred / f.name.replace('groundtruth_depth', 'image'))
    rc, out, err = _run(
        capsys,
        'kitti_depth',
        sel / 'groundtruth_depth',
        '--depth-dir',
        pred,
        '--out',
        tmp_path / 'r.json',
    )
    assert rc == 0, err
    res = json.loads((tmp_path / 'r.json').read_text())
    assert res['num_frames'] == 4
    assert res['depth']['image/abs_rel'] == 0.0 and res['depth']['pixel/delta1'] == 1.0


@pytest.fixture
def broken(tmp_path):
    root = tmp_path / 'cs'
    shutil.copytree(DATA / 'cityscapes', root)
    return root


def _assert_one_line(rc, err, pattern):
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith('error: '), err
    assert pytest.importorskip('re').search(pattern, err), err


def test_missing_prediction_frame(capsys, broken):
    victim = sorted((broken / 'pred_pan').iterdir())[3]
    victim.unlink()
    rc, _, err = _run(capsys, *_cityscapes_args(broken))
    _assert_one_line(rc, err, rf'pan files .*1 missing \(prediction for {victim.name[:13]}.*gtFine')


def test_extra_prediction_frame(capsys, broken):
    extra = broken / 'pred_depth' / '000005_000000_testcity_000000_000000_leftImg8bit.png'
    shutil.copy(next((broken / 'pred_depth').iterdir()), extra)
    rc, _, err = _run(capsys, *_cityscapes_args(broken))
    _assert_one_line(rc, err, rf'depth files .*1 extra \({extra.name}\)')


def test_predicted_class_out_of_range(capsys, broken):
    victim = sorted((broken / 'pred_pan').iterdir())[5]
    rgb = np.array(Image.open(victim))
    rgb[0, 0, 0] = 25
    Image.fromarray(rgb).save(victim)
    rc, _, err = _run(capsys, *_cityscapes_args(broken))
    _assert_one_line(rc, err, rf'{victim.name} \(prediction\): predicted class id\(s\) \[25\]')


def test_depth_png_of_the_wrong_bit_depth(capsys, broken):
    victim = sorted((broken / 'pred_depth').iterdir())[0]
    Image.fromarray(np.zeros((24, 40), np.uint8)).save(victim)
    rc, _, err = _run(capsys, *_cityscapes_args(broken))
    _assert_one_line(rc, err, rf'{victim.name}: expected a 16-bit PNG, got 8-bit')


def test_prediction_of_another_size(capsys, broken):
    victim = sorted((broken / 'pred_pan').iterdir())[1]
    Image.fromarray(np.array(Image.open(victim))[:, :30]).save(victim)
    rc, _, err = _run(capsys, *_cityscapes_args(broken))
    _assert_one_line(rc, err, rf'{victim.name}: maps of different sizes')


@pytest.fixture(scope='module')
def perfect(tmp_path_factory):
    """The bundled (tiny) Cityscapes-DVPS val split with predictions equal to its ground truth."""
    root = tmp_path_factory.mktemp('bundled')
    generate_benchmark(root / 'b', preset='tiny', seed=0, formats=('cityscapes_dvps',))
    gt_dir = root / 'b' / 'cityscapes_dvps' / 'video_sequence' / 'val'
    pan, depth = root / 'pan', root / 'depth'
    pan.mkdir()
    depth.mkdir()
    present = set()
    for f in sorted(gt_dir.glob('*_gtFine_instanceTrainIds.png')):
        ids = np.array(Image.open(f)).astype(np.int64)
        present |= set((ids // 1000).ravel().tolist())
        rgb = np.stack([ids // 1000, ids % 1000, np.zeros_like(ids)], -1).astype(np.uint8)
        stem = f.name.replace('_gtFine_instanceTrainIds.png', '')
        Image.fromarray(rgb).save(pan / f'{stem}_leftImg8bit.png')
        shutil.copy(gt_dir / f'{stem}_depth.png', depth / f'{stem}_leftImg8bit.png')
    from mmvideoeq.class_names import CITYSCAPES_DVPS_CLASSES

    absent = [name for c, name in enumerate(CITYSCAPES_DVPS_CLASSES) if c not in present]
    assert absent  # the tiny split lacks some classes: the case this test is about
    return gt_dir, pan, depth, absent


def test_perfect_prediction_reference_average_is_nan_and_warns(capsys, tmp_path, perfect):
    gt_dir, pan, depth, absent = perfect
    args = ('cityscapes_dvps', gt_dir, '--pan-dir', pan, '--depth-dir', depth, '--metrics', 'dvpq')
    rc, out, err = _run(capsys, *args, '--out', tmp_path / 'all.json')
    assert rc == 0
    res = json.loads((tmp_path / 'all.json').read_text())
    # ViP-DeepLab's eval_dvpq.py: mean over all 19 classes with epsilon 0 -> NaN
    assert np.isnan(res['dvpq']['PQ']) and np.isnan(res['dvpq']['DVPQ'])
    assert res['dvpq/absent_classes'] == absent
    lines = [line for line in err.splitlines() if 'classes are absent' in line]
    assert len(lines) == 1, err
    warning = lines[0]
    assert warning.startswith('warning: ') and ', '.join(absent) in warning
    assert 'NaN (epsilon 0)' in warning and 'average valid' in warning

    rc, out, err = _run(capsys, *args, '--average', 'valid', '--out', tmp_path / 'valid.json')
    assert rc == 0
    res = json.loads((tmp_path / 'valid.json').read_text())['dvpq']
    assert res['PQ'] == res['VPQ'] == res['DVPQ'] == 100.0  # the classes present, all perfect
    assert 'left out of the class means' in err


def test_truncated_png_names_the_file(capsys, broken):
    victim = sorted((broken / 'pred_pan').iterdir())[2]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    rc, _, err = _run(capsys, *_cityscapes_args(broken))
    _assert_one_line(rc, err, rf'{victim}: cannot decode the PNG .*truncated')

    victim = sorted((broken / 'video_sequence' / 'val').glob('*_depth.png'))[1]
    victim.write_bytes(victim.read_bytes()[:40])  # the ground truth, cut inside its header
    rc, _, err = _run(capsys, *_cityscapes_args(broken))
    _assert_one_line(rc, err, rf'{victim}: cannot decode the PNG')


def test_out_into_a_missing_folder_fails_before_evaluating(capsys, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError('the evaluation ran before --out was checked')

    monkeypatch.setattr(CLI, 'evaluate_folders', never)
    out = tmp_path / 'missing' / 'r.json'
    rc, _, err = _run(capsys, *_cityscapes_args(DATA / 'cityscapes'), '--out', out)
    _assert_one_line(rc, err, rf'--out {out}: folder {out.parent} does not exist')


def test_all_zero_depth_prediction_names_the_depth_file(capsys, broken):
    victim = sorted((broken / 'pred_depth').iterdir())[2]
    Image.fromarray(np.zeros((24, 40), np.uint16)).save(victim)
    rc, _, err = _run(capsys, *_cityscapes_args(broken), '--metrics', 'depth')
    _assert_one_line(rc, err, rf'{victim}: \d+ pixel\(s\) with ground-truth depth have a predicted')
    rc, _, err = _run(capsys, *_cityscapes_args(broken))  # all metrics: the same file named
    _assert_one_line(rc, err, rf'{victim}: \d+ pixel\(s\) with ground-truth depth')
