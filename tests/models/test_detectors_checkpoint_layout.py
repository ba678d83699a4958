"""mmdet model-zoo DetectoRS checkpoints load strictly into the matching configs here.

The reference is mmdet's own model, built from the configs mmdet 3.3 installs
(``mmdet/.mim/configs/detectors/``) exactly as its model-zoo checkpoints were trained: every
parameter and buffer name and shape must match (what ``load_state_dict(strict=True)`` checks).
Nothing is downloaded (``pretrained`` only matters in ``init_weights``, which is not called); the
models are built on the meta device, so no memory is filled.
"""

import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

PAIRS = [
    ('htc_r50-detectors_1x_coco.py', 'detectors_htc-r50_1x_coco.py'),
    ('cascade-rcnn_r50-detectors_1x_coco.py', 'detectors_cascade-rcnn_r50_1x_coco.py'),
]


def _mmdet_config(name):
    import mmdet

    path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'detectors', name)
    if not osp.isfile(path):
        pytest.skip(f'mmdet installs no {path}')
    return Config.fromfile(path)


def _build(scope, cfg):
    from mmvideoeq.registry import MODELS

    with DefaultScope.overwrite_default_scope(scope), torch.device('meta'):
        return MODELS.build(cfg.model)


@pytest.mark.parametrize('ours,theirs', PAIRS, ids=[p[0] for p in PAIRS])
def test_mmdet_checkpoint_layout_loads_strictly(ours, theirs):
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    import mmdet.utils

    mmdet.utils.register_all_modules(init_default_scope=False)
    ref = _build('mmdet', _mmdet_config(theirs))
    mine = _build('mmvideoeq', Config.fromfile(osp.join('configs', 'detectors', ours)))
    ref_sd, mine_sd = ref.state_dict(), mine.state_dict()
    assert len(ref_sd) > 1000  # RFP + SAC backbones, HTC/Cascade heads
    assert {k: tuple(v.shape) for k, v in mine_sd.items()} == {
        k: tuple(v.shape) for k, v in ref_sd.items()
    }
