"""tools/demo/video_demo.py: it writes the video it says it wrote, or fails with one line."""

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / 'configs' / 'streamdeq_vid' / 'faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py'
CKPT = ROOT / 'checkpoints' / 'faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.pth'


def _load_demo():
    path = ROOT / 'tools' / 'demo' / 'video_demo.py'
    spec = importlib.util.spec_from_file_location('video_demo', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DEMO = _load_demo()


@pytest.fixture
def demo(capsys, monkeypatch):
    def run(*args):
        monkeypatch.setattr(sys, 'argv', ['video_demo.py', *map(str, args)])
        try:
            DEMO.main()
            code = 0
        except SystemExit as exc:
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err.strip()

    return run


@pytest.fixture
def frames(tmp_path):
    folder = tmp_path / 'frames'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for t in range(3):
        cv2.imwrite(str(folder / f'{t:06d}.png'), rng.integers(0, 255, (72, 120, 3), np.uint8))
    return folder


def test_writes_the_video_into_a_new_folder(demo, frames, tmp_path):
    out = tmp_path / 'new' / 'folder' / 'out.mp4'
    code, stdout, err = demo(frames, CFG, CKPT, '--iters', '1', '--out', out)
    assert code == 0, err
    assert out.is_file() and out.stat().st_size > 0
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert 'wrote 3 frames' in stdout and 'model input' in stdout


def test_full_solve_mode(demo, frames, tmp_path):
    code, stdout, err = demo(frames, CFG, CKPT, '--full-solve', '--out', tmp_path / 'full.avi')
    assert code == 0, err
    assert 'full solve' in stdout and (tmp_path / 'full.avi').stat().st_size > 0


def test_bad_outputs_and_inputs_fail_with_one_line(demo, frames, tmp_path):
    code, _, err = demo(frames, CFG, CKPT, '--out', tmp_path / 'noext')
    assert code == 2 and err.splitlines()[-1].startswith('error: ') and '.mp4' in err
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    code, _, err = demo(frames, CFG, CKPT, '--out', blocker / 'out.mp4')
    assert code == 2 and 'cannot create the folder' in err
    (frames / '000003.png').write_bytes(b'')  # an empty frame file
    code, _, err = demo(frames, CFG, CKPT, '--out', tmp_path / 'x.mp4')
    assert code == 2 and 'cannot decode frame' in err and '000003.png' in err
    empty = tmp_path / 'empty'
    empty.mkdir()
    code, _, err = demo(empty, CFG, CKPT, '--out', tmp_path / 'y.mp4')
    assert code == 2 and 'holds no' in err


def test_dvps_model_draws_panoptic_and_depth(demo, frames, tmp_path):
    cfg = (
        ROOT
        / 'configs'
        / 'vip_deeplab'
        / 'vip-deeplab_mdeq-tiny-sur8_600it_bundled-cityscapes-dvps.py'
    )
    ckpt = ROOT / 'checkpoints' / 'vip-deeplab_mdeq-tiny-sur8_600it_bundled-cityscapes-dvps.pth'
    out = tmp_path / 'vip.avi'
    code, stdout, err = demo(frames, cfg, ckpt, '--iters', '1', '--out', out)
    assert code == 0, err
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    ok, first = cap.read()
    assert ok and first.shape == (72, 3 * 120, 3)  # frame | panoptic | depth, side by side
