"""DVPS family end to end: the streaming ViP-DeepLab config (MDEQ backbone), the ResNet
Cityscapes-DVPS config and the depth-only KITTI config, shrunk, train one iteration on the tiny
rendered DVPS benchmark and are evaluated - through the StreamingTestLoop (warm-started solves +
stitching) for the DEQ backbone, the same loop as one per-frame 'stream' setting (stitching) for
the ResNet, the per-frame TestLoop for depth only. (Every config is built and run one step in
tests/test_configs.py.)"""

import json
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from benchgen import generate_benchmark
from mmvideoeq.testing import shrink_model_cfg, tiny_dvps_data_cfg

ROOT = Path(__file__).resolve().parents[2]
DVPS = [
    ROOT / 'configs' / 'vip_deeplab' / name
    for name in (
        'vip-deeplab_mdeq-tiny-sur8_600it_bundled-cityscapes-dvps.py',
        'vip-deeplab_r50-os32_120k_cityscapes-dvps.py',
        'vip-deeplab_r50-os32-depth_120k_kitti-depth.py',
    )
]


@pytest.fixture(scope='module')
def tiny_dvps(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny_dvps')
    generate_benchmark(
        root, preset='tiny', seed=0, formats=('cityscapes_dvps', 'semkitti_dvps', 'kitti_depth')
    )
    return root


@pytest.mark.slow
@pytest.mark.parametrize('path', DVPS, ids=lambda p: p.name)
def test_dvps_config_trains_and_evaluates(path, tiny_dvps, tmp_path):
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(str(path), format_python_code=False)  # yapf: seconds per runner
    cfg.model = shrink_model_cfg(cfg.model.to_dict(), iters=2)
    cfg = tiny_dvps_data_cfg(cfg, tiny_dvps)
    cfg.test_dataloader.dataset.indices = 3  # three frames of the val sequence: two pairs
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=100)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    streaming = cfg.model['backbone']['type'] == 'MDEQ'
    if streaming:
        cfg.test_cfg = dict(
            type='StreamingTestLoop', iters=[2], baseline=False, full_solve=False, plot=False
        )
    cfg.work_dir = str(tmp_path)
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert (tmp_path / 'iter_1.pth').is_file()
    metrics = runner.test()
    panoptic = cfg.model['decode_head'].get('panoptic', True)
    key = 'dvps/VPQ' if panoptic else 'depth/image/silog'
    if streaming:
        report = json.loads((tmp_path / 'streaming' / 'results.json').read_text())
        assert list(report['settings']) == ['stream@2']
        assert report['settings']['stream@2']['mean_iters'] == 2
        assert report['settings']['stream@2']['frames'] == 3
        assert any('offset_curve_ci/' in k for k in report['settings']['stream@2']['metrics'])
        assert f'stream@2/{key}' in metrics
    elif cfg.test_cfg.get('type') == 'StreamingTestLoop':  # per-frame backbone, stitched
        report = json.loads((tmp_path / 'streaming' / 'results.json').read_text())
        assert list(report['settings']) == ['stream']
        assert report['settings']['stream']['frames'] == 3
        assert report['settings']['stream']['mean_iters'] == 0
        assert f'stream/{key}' in metrics
    else:
        assert key in metrics
