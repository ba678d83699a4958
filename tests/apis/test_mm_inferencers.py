"""mmdet's DetInferencer and mmseg's MMSegInferencer take mmvideoeq's configs and checkpoints.

``DetInferencer(model=CONFIG, weights=CKPT)`` runs in mmdet's default scope: the configs build
their model and dataset in mmvideoeq's scope (``_scope_``) and name mmcv's
``LoadImageFromFile`` unprefixed, the name both inferencers replace by their own loader.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CKPTS = ROOT / 'checkpoints'
HTC = 'configs/detectors/htc_r26-tiny-detectors_bundled-coco.py'
VID = 'configs/streamdeq_vid/faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py'
SEG = 'configs/streamdeq_seg/mdeq-tiny-sur8_800it_bundled-cityscapes.py'


def _ckpt(cfg):
    path = CKPTS / (Path(cfg).stem + '.pth')
    if not path.is_file():
        pytest.skip(f'shipped checkpoint {path.name} absent')
    return str(path)


def _image(h, w, seed=0):
    """A smooth synthetic scene: sky-ish top, ground-ish bottom, a blob."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = (200, 150, 90)  # BGR
    img[h // 2 :] = (60, 120, 80)
    cv2.circle(img, (w // 3, 2 * h // 3), h // 6, (40, 40, 200), -1)
    return np.clip(img + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope='module', autouse=True)
def _registered():
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    torch.manual_seed(0)


def _written(out_dir):
    files = sorted((out_dir / 'vis').glob('*.jpg'))
    assert len(files) == 1, files
    return cv2.imread(str(files[0]))


def _classes(ckpt):
    meta = torch.load(ckpt, map_location='cpu', weights_only=True)['meta']['dataset_meta']
    return tuple(meta['classes'])


@pytest.mark.parametrize('cfg', [HTC, VID])
def test_det_inferencer_takes_the_config(cfg, tmp_path):
    from mmdet.apis import DetInferencer

    ckpt = _ckpt(cfg)
    inferencer = DetInferencer(model=str(ROOT / cfg), weights=ckpt, device='cpu')
    assert tuple(inferencer.model.dataset_meta['classes']) == _classes(ckpt)
    img = _image(128, 192) if cfg == HTC else _image(96, 160)
    out = inferencer(img, out_dir=str(tmp_path), return_datasamples=True, return_vis=True)
    pred = out['predictions'][0]
    labels = pred.pred_instances.labels
    assert labels.numel() > 0 and int(labels.max()) < len(_classes(ckpt))
    if cfg == HTC:  # the semantic map holds COCO-stuff labels beyond the 80 thing colours
        sem = pred.pred_sem_seg.sem_seg
        assert sem.shape[-2:] == (128, 192) and int(sem.max()) >= 80
    drawn = _written(tmp_path)
    assert drawn.shape == img.shape
    vis = out['visualization'][0]  # RGB, the drawing that was written
    assert vis.shape == img.shape and np.abs(vis.astype(int) - img[..., ::-1]).mean() > 5


def test_mmseg_inferencer_takes_the_config(tmp_path):
    from mmseg.apis import MMSegInferencer

    ckpt = _ckpt(SEG)
    inferencer = MMSegInferencer(model=str(ROOT / SEG), weights=ckpt, device='cpu')
    img = _image(64, 128)
    out = inferencer(img, out_dir=str(tmp_path), return_datasamples=True)
    seg = out.pred_sem_seg.data
    assert seg.shape == (1, 64, 128) and int(seg.max()) < 19
    assert tuple(inferencer.visualizer.dataset_meta['classes']) == _classes(ckpt)
    assert _written(tmp_path).shape == img.shape
