"""StreamingInferencer keeps the stream state between calls."""

from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config, ConfigDict

from mmvideoeq.testing import shrink_model_cfg

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / 'configs' / 'streamdeq_vid' / 'faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py'


@pytest.fixture(scope='module')
def inferencer():
    from mmvideoeq.apis import StreamingInferencer
    from mmvideoeq.registry import MODELS
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(str(CFG))
    model = MODELS.build(ConfigDict(shrink_model_cfg(cfg.model.to_dict())))
    model.init_weights()
    return StreamingInferencer(model, cfg=cfg, iters=2)


def _frame(seed):
    return np.random.default_rng(seed).integers(0, 255, (48, 80, 3), dtype=np.uint8)


def test_state_is_kept_between_frames_and_reset(inferencer):
    inferencer.reset()
    pred0 = inferencer(_frame(0))
    assert 'pred_instances' in pred0
    rec0 = inferencer.state.history[-1]
    assert rec0.init == 'zeros' and rec0.iters == 2
    z0 = [t.clone() for t in inferencer.state.z]
    inferencer(_frame(1))
    rec1 = inferencer.state.history[-1]
    assert rec1.init == 'warm' and rec1.frame_id == 1
    assert any((a - b).abs().max() > 0 for a, b in zip(z0, inferencer.state.z))
    assert inferencer.last_ms > 0
    inferencer.reset()
    inferencer(_frame(2))
    assert inferencer.state.history[-1].init == 'zeros'
    assert len(inferencer.state.history) == 1


def test_bad_frame_is_a_clear_error(inferencer):
    with pytest.raises(ValueError, match=r'\(H, W, 3\) BGR array'):
        inferencer(np.zeros((10, 10)))
    with pytest.raises(ValueError, match='frame is empty'):
        inferencer(np.zeros((0, 0, 3), dtype=np.uint8))


def test_history_is_bounded(inferencer):
    inferencer.reset()
    limit = inferencer.policy.max_history
    assert limit == 1000  # the default: a live stream runs in constant memory
    inferencer.policy.max_history = 3
    try:
        for t in range(5):
            inferencer(_frame(t))
        assert [r.frame_id for r in inferencer.state.history] == [2, 3, 4]
    finally:
        inferencer.policy.max_history = limit


CKPT = ROOT / 'checkpoints' / 'faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.pth'


def test_class_names_from_the_checkpoint_and_drawing(tmp_path):
    """The names are the checkpoint's ``meta.dataset_meta`` (as mmdet's inferencers take them);
    without a checkpoint, the config's test dataset's."""
    import cv2
    import torch

    from mmvideoeq.apis import StreamingInferencer
    from mmvideoeq.datasets import ImagenetVIDDataset

    if not CKPT.is_file():
        pytest.skip('shipped checkpoint absent')
    saved = torch.load(CKPT, map_location='cpu', weights_only=True)['meta']['dataset_meta']
    infer = StreamingInferencer(str(CFG), str(CKPT), iters=1)
    assert infer.classes == tuple(saved['classes']) and len(infer.classes) == 30
    assert infer.model.dataset_meta is infer.dataset_meta
    frame = _frame(3)
    pred = infer(frame)
    drawn = infer.visualize(frame, pred, score_thr=0.0, out_file=str(tmp_path / 'd.png'))
    assert drawn.shape == frame.shape and drawn.dtype == np.uint8
    assert (cv2.imread(str(tmp_path / 'd.png')) == drawn).all()  # BGR, what was written
    assert (drawn != frame).any()  # boxes drawn (score_thr 0: every box)
    cfg = Config.fromfile(str(CFG))
    assert infer.dataset_meta == {'classes': tuple(saved['classes'])}
    from mmvideoeq.apis.inferencer import dataset_meta_of

    assert dataset_meta_of(None, cfg)['classes'] == ImagenetVIDDataset.METAINFO['classes']
