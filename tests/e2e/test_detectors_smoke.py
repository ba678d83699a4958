"""DetectoRS family end to end on the tiny bundled benchmark: the full DetectoRS HTC config (shrunk)
trains one iteration and is evaluated (box/mask AP and PQ); the streaming DetectoRS VID config
trains one iteration and runs ``StreamingTestLoop`` with the streamed RFP recursion, and so does the
streaming DetectoRS trained on carried states (one batch of clips from the clip sampler). (Every
other config is built and run one step in tests/test_configs.py.)"""

import importlib.util
import json
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from benchgen import generate_benchmark
from mmvideoeq.testing import shrink_model_cfg, tiny_data_cfg
from mmvideoeq.testing.detectors import tiny_coco_cfg

ROOT = Path(__file__).resolve().parents[2]
COCO = [ROOT / 'configs' / 'detectors' / 'htc_r26-tiny-detectors_bundled-coco.py']
VID = [
    ROOT / 'configs' / 'detectors' / 'faster-rcnn_r26-tiny-detectors-sur4_16e_bundled-vid.py',
    ROOT / 'configs' / 'detectors' / 'faster-rcnn_r26-tiny-detectors-stream_16e_bundled-vid.py',
]


def _has_pq() -> bool:
    # the generic PQ lives in mmvideoeq.evaluation.functional (the DVPS part of the project)
    try:
        return (
            importlib.util.find_spec('mmvideoeq.evaluation.functional.panoptic_quality') is not None
        )
    except ModuleNotFoundError:
        return False


HAS_PQ = _has_pq()


@pytest.fixture(scope='module', autouse=True)
def plain_config_text():
    """The runner logs, dumps and checkpoints ``cfg.pretty_text``, which yapf-formats the whole
    config: seconds per run for the HTC configs, more than the run itself. A plain repr here."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Config, 'pretty_text', property(lambda self: repr(self.to_dict())))
        yield


@pytest.fixture(scope='module')
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny_detectors')
    generate_benchmark(root, preset='tiny', seed=0, formats=('vid', 'coco'))
    return root


def _train_one_iter(cfg, work_dir):
    cfg.model = shrink_model_cfg(cfg.model.to_dict())
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=100)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert (Path(work_dir) / 'iter_1.pth').is_file()
    return runner


@pytest.mark.slow
@pytest.mark.parametrize('path', COCO, ids=lambda p: p.name)
def test_coco_config_trains_and_evaluates(path, tiny_root, tmp_path):
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    cfg = tiny_coco_cfg(Config.fromfile(str(path)), tiny_root, panoptic=HAS_PQ)
    metrics = _train_one_iter(cfg, tmp_path).test()
    assert 'coco/bbox_mAP' in metrics
    if 'semantic_head' in cfg.model['roi_head']:
        assert 'coco/segm_mAP' in metrics
        if HAS_PQ:
            assert 0 <= metrics['coco_panoptic/PQ'] <= 1


@pytest.mark.slow
@pytest.mark.parametrize('path', VID, ids=lambda p: p.name)
def test_vid_config_streams_rfp(path, tiny_root, tmp_path):
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(str(path))
    clips = cfg.train_dataloader.dataset.type == 'VideoClipDataset'
    cfg = tiny_data_cfg(cfg, tiny_root, 'vid')
    if clips:  # the tiny data in the config's clip loader: 2 clips of 2-3 frames
        frames = cfg.train_dataloader.dataset.to_dict()
        cfg.train_dataloader.batch_sampler = dict(type='VideoClipBatchSampler', clip_len=(2, 3))
        cfg.train_dataloader.dataset = dict(type='VideoClipDataset', dataset=frames)
    runner = _train_one_iter(cfg, tmp_path)
    if clips:  # the iteration trained on a batch of clips
        assert type(runner.train_dataloader.batch_sampler).__name__ == 'VideoClipBatchSampler'
    # the comparison of docs/detectors.md: one streamed step, one step without feedback (cold@1)
    # and the chapter's detector (full: T = 2 from zeros)
    runner._test_loop = dict(type='StreamingTestLoop', iters=[1], full_iters=2, plot=False)
    metrics = runner.test()
    assert 'stream@1/vid/bbox_mAP_50' in metrics
    report = json.loads((tmp_path / 'streaming' / 'results.json').read_text())
    assert list(report['settings']) == ['stream@1', 'cold@1', 'full']
    # no DEQ: the RFP recursion, iterated by the DEQ core's fixed-point solver
    assert report['solver'] == 'fixed_point (DetectoRSFasterRCNN)'
    assert report['settings']['stream@1']['mean_iters'] == 1
    assert report['settings']['full']['mean_iters'] == 2
