"""tools/train.py --amp on a machine without an accelerator and tools/test.py --tta."""

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate

ROOT = Path(__file__).resolve().parents[2]
VID = ROOT / 'configs' / 'streamdeq_vid' / 'faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py'
HTC = ROOT / 'configs' / 'detectors' / 'htc_r26-tiny-detectors_bundled-coco.py'


def _load_tool(tool):
    spec = importlib.util.spec_from_file_location(f'tool_{tool[:-3]}_amp', ROOT / 'tools' / tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRAIN, TEST = _load_tool('train.py'), _load_tool('test.py')


def _run(module, capsys, monkeypatch, *args):
    monkeypatch.setattr(sys, 'argv', ['tool.py', *map(str, args)])
    monkeypatch.chdir(ROOT)
    try:
        module.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


@pytest.mark.skipif(torch.cuda.is_available(), reason='--amp trains on this machine')
def test_amp_without_accelerator_is_one_early_message(capsys, monkeypatch, tmp_path):
    code, out, err = _run(TRAIN, capsys, monkeypatch, VID, '--amp', '--work-dir', tmp_path)
    assert code == 2 and err.splitlines() == [err.splitlines()[-1]]  # one line
    assert err.startswith('error: --amp:') and 'drop --amp' in err
    assert out == '' and not any(tmp_path.iterdir())  # nothing started, nothing written


@pytest.mark.parametrize(
    ('cfg', 'extra', 'match'),
    [(HTC, (), 'DetectoRSHTC is not supported'), (VID, ('--streaming',), '--tta and --streaming')],
)
def test_tta_refusals_are_one_line(capsys, monkeypatch, tmp_path, cfg, extra, match):
    ckpt = ROOT / 'checkpoints' / (cfg.stem + '.pth')
    if not ckpt.is_file():
        pytest.skip('shipped checkpoint absent')
    args = (cfg, ckpt, '--tta', '--work-dir', tmp_path, *extra)
    code, _, err = _run(TEST, capsys, monkeypatch, *args)
    assert code == 2 and err.splitlines()[-1].startswith('error: --tta') and match in err


def test_tta_config_runs_flipped_views_and_merges(tmp_path):
    from mmvideoeq.registry import MODELS
    from mmvideoeq.utils import register_all_modules
    from mmvideoeq.utils.checkpoint import load_weights

    register_all_modules()
    cfg = Config.fromfile(str(VID))
    TEST.apply_tta(cfg, streaming=False)
    assert cfg.model['type'] == 'mmdet.DetTTAModel' and cfg.model['module']['type']
    tta = cfg.test_dataloader.dataset.pipeline[-1]
    assert tta['type'] == 'TestTimeAug' and [t['prob'] for t in tta['transforms'][0]] == [1.0, 0.0]
    assert {'flip', 'flip_direction'} <= set(tta['transforms'][1][0]['meta_keys'])
    ckpt = ROOT / 'checkpoints' / (VID.stem + '.pth')
    if not ckpt.is_file():
        pytest.skip('shipped checkpoint absent')
    model = MODELS.build(cfg.model).eval()
    load_weights(model.module, str(ckpt))
    img = np.zeros((96, 160, 3), np.uint8)
    img[20:70, 100:150] = (40, 160, 200)
    cv2.imwrite(str(tmp_path / 'f.png'), img)
    info = dict(img_path=str(tmp_path / 'f.png'), img_id=0, video_id=0, frame_id=0, instances=[])
    for key in ('video_length', 'ori_video_length'):
        info[key] = 1
    data = Compose(cfg.test_dataloader.dataset.pipeline)(info)
    assert len(data['inputs']) == 2  # the image and its flip
    flips = [s.metainfo['flip'] for s in data['data_samples']]
    assert flips == [True, False]
    with torch.no_grad():
        pred = model.test_step(pseudo_collate([data]))[0]
    boxes = pred.pred_instances.bboxes
    assert 0 < len(boxes) <= 100 and torch.isfinite(boxes).all()
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 160 + 1e-3).all()  # original frame
