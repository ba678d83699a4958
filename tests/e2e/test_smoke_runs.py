"""One end-to-end smoke run per task family: the bundled VID and segmentation configs, shrunk,
train one iteration and run a streaming evaluation on the tiny rendered benchmark. (Every config
is built and run one step in tests/test_configs.py.)"""

import json
from pathlib import Path

import pytest
from matplotlib.image import imread
from mmengine.config import Config
from mmengine.runner import Runner

from benchgen import generate_benchmark
from mmvideoeq.testing import shrink_model_cfg, tiny_data_cfg

ROOT = Path(__file__).resolve().parents[2]
VID = [ROOT / 'configs' / 'streamdeq_vid' / 'faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py']
SEG = [ROOT / 'configs' / 'streamdeq_seg' / 'mdeq-tiny-sur8_800it_bundled-cityscapes.py']


@pytest.fixture(scope='module')
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny_bench')
    generate_benchmark(root, preset='tiny', seed=0, formats=('vid', 'cityscapes'))
    return root


def _runner(path, family, root, work_dir, iters_loop):
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(str(path))
    cfg.model = shrink_model_cfg(cfg.model.to_dict())
    cfg = tiny_data_cfg(cfg, root, family)
    if family == 'vid':
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=100)
        cfg.param_scheduler = []
    else:
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=100)
        cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1, by_epoch=family == 'vid')
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.test_cfg = dict(
        type='StreamingTestLoop',
        iters=iters_loop,
        full_iters=3,
        timing=dict(batches=1, repeats=1, warmup=0),
    )
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'WARNING'
    return Runner.from_cfg(cfg)


def _check_report(work_dir, metric_key):
    report = json.loads((Path(work_dir) / 'streaming' / 'results.json').read_text())
    assert report['status'] == 'done'
    names = list(report['settings'])
    assert names == ['stream@1', 'stream@2', 'cold@1', 'cold@2', 'full']
    for name, res in report['settings'].items():
        assert res['frames'] > 0
        assert any(k.endswith(metric_key) for k in res['metrics']), res['metrics'].keys()
    assert report['settings']['stream@2']['mean_iters'] == 2
    assert report['settings']['full']['mean_iters'] == 3
    # the curves' bootstrap intervals, and the plots (read back: drawn, not blank)
    ci = [k for k in report['settings']['cold@1']['metrics'] if 'offset_curve_ci/' in k]
    assert ci and all(len(v) == 2 for v in report['settings']['cold@1']['metrics'][ci[0]].values())
    for name in ('accuracy_vs_cost.png', 'curves.png'):
        image = imread(str(Path(work_dir) / 'streaming' / name))[..., :3]
        assert image.shape[1] >= 700 and 0.02 < (image < 0.9).any(-1).mean() < 0.6, name


@pytest.mark.slow
@pytest.mark.parametrize('path', VID, ids=lambda p: p.name)
def test_vid_config_trains_and_streams(path, tiny_root, tmp_path):
    runner = _runner(path, 'vid', tiny_root, tmp_path, [1, 2])
    runner.train()
    assert (tmp_path / 'epoch_1.pth').is_file()
    metrics = runner.test()
    assert 'stream@1/vid/bbox_mAP_50' in metrics
    _check_report(tmp_path, 'bbox_mAP_50')


@pytest.mark.slow
@pytest.mark.parametrize('path', SEG, ids=lambda p: p.name)
def test_seg_config_trains_and_streams(path, tiny_root, tmp_path):
    runner = _runner(path, 'seg', tiny_root, tmp_path, [1, 2])
    runner.train()
    metrics = runner.test()
    assert 'stream@1/mIoU' in metrics
    _check_report(tmp_path, 'mIoU')
