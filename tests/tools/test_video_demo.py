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
    # trained at 64x128, tested at the dataset's size (no test Resize): 120x72 frames are fit in
    # 128x64 (mmcv's keep-ratio rescale: factor min(128/120, 64/72) -> 107x64)
    assert "model input 107x64 for 120x72 frames (the training pipeline's size" in stdout
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    ok, first = cap.read()
    # frame | panoptic | depth side by side at the input's size, over a legend / colour bar
    assert ok and first.shape[1] == 3 * 120 and first.shape[0] > 72
    code, stdout, err = demo(
        frames, cfg, ckpt, '--iters', '1', '--keep-input-size', '--out', tmp_path / 'k.avi'
    )
    assert code == 0, err
    assert 'model input 120x72 for 120x72 frames (the input size (--keep-input-size))' in stdout


def test_model_size_from_the_config():
    from mmengine.config import Config

    vip = Config.fromfile(
        str(
            ROOT
            / 'configs'
            / 'vip_deeplab'
            / 'vip-deeplab_mdeq-tiny-sur8_600it_bundled-cityscapes-dvps.py'
        )
    )
    note = DEMO.set_model_size(vip, keep_input_size=False)
    pipeline = vip.test_dataloader.dataset.pipeline
    assert pipeline[1] == dict(type='mmseg.Resize', scale=(128, 64), keep_ratio=True)
    assert 'training pipeline' in note
    vid = Config.fromfile(str(CFG))
    assert "test pipeline's resize to fit 240x144" in DEMO.set_model_size(vid, False)
    DEMO.set_model_size(vid, keep_input_size=True)
    assert not any('Resize' in t['type'] for t in vid.test_dataloader.dataset.pipeline)


def _pred(label):
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    pred = DetDataSample()
    pred.pred_instances = InstanceData(
        bboxes=torch.tensor([[150.0, 60.0, 159.0, 90.0]]),  # at the right edge of a 160 frame
        scores=torch.tensor([0.9]),
        labels=torch.tensor([label]),
    )
    return pred


def test_boxes_are_drawn_with_class_names_inside_the_frame():
    frame = np.full((96, 160, 3), 128, np.uint8)
    meta = dict(classes=('horse', 'zebra'))
    named = DEMO.draw(frame, _pred(1), meta, 0.3, '')
    scale = max(0.4, 96 / 720 * 0.7) * 0.8
    (w, _), _ = cv2.getTextSize('zebra 0.90', cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    row = int(np.flatnonzero((named[:, :, :] == 0).all(axis=2).sum(axis=1) > 20)[-1])
    cols = np.flatnonzero((named[row] == 0).all(axis=1))  # the label's black background
    assert cols.max() <= 159 and cols.max() - cols.min() + 1 >= w  # whole, inside the frame
    unnamed = DEMO.draw(frame, _pred(1), {}, 0.3, '')  # no names: the label number
    assert (unnamed != named).any()


_REAL_WRITER = cv2.VideoWriter


class _DroppingWriter:
    """cv2.VideoWriter that loses every frame after the first (a disk that filled up)."""

    def __init__(self, *args, keep=1):
        self._writer = _REAL_WRITER(*args)
        self._left = keep

    def isOpened(self):  # noqa: N802 (cv2's name)
        return self._writer.isOpened()

    def write(self, img):
        if self._left > 0:
            self._writer.write(img)
        self._left -= 1

    def release(self):
        self._writer.release()


@pytest.mark.parametrize('keep', [1, 0])
def test_a_video_with_lost_frames_is_an_error(demo, frames, tmp_path, monkeypatch, keep):
    monkeypatch.setattr(DEMO.cv2, 'VideoWriter', lambda *a: _DroppingWriter(*a, keep=keep))
    out = tmp_path / 'lost.avi'
    code, stdout, err = demo(frames, CFG, CKPT, '--iters', '1', '--out', out)
    assert code == 2 and 'wrote 3 frames' not in stdout
    assert f'holds {keep} readable frame(s) of the 3 written' in err and 'lost.avi' in err
