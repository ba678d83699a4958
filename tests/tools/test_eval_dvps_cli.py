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
