"""write_dvps_predictions.py: the streamed predictions, in the files eval_dvps.py reads."""

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from benchgen import generate_benchmark
from mmvideoeq.apis.prediction_folders import evaluate_folders, iter_frames
from mmvideoeq.deq import Budget
from mmvideoeq.registry import MODELS
from mmvideoeq.utils.checkpoint import load_weights

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / 'configs/vip_deeplab/vip-deeplab_mdeq-tiny-sur8_600it_bundled-cityscapes-dvps.py'
CKPT = ROOT / 'checkpoints/vip-deeplab_mdeq-tiny-sur8_600it_bundled-cityscapes-dvps.pth'


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'write_dvps_predictions', ROOT / 'tools/analysis_tools/write_dvps_predictions.py'
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = _load_tool()


@pytest.fixture(scope='module')
def bundled(tmp_path_factory):
    root = tmp_path_factory.mktemp('bundled')
    generate_benchmark(root, preset='tiny', seed=0, formats=('cityscapes_dvps',))
    return root / 'cityscapes_dvps'


def test_written_predictions_are_the_streamed_ones(bundled, tmp_path, capsys):
    if not CKPT.is_file():
        pytest.skip(f'{CKPT} not shipped in this checkout')
    opts = [f'test_dataloader.dataset.data_root={bundled}/']
    out = tmp_path / 'pred'
    rc = TOOL.main.__wrapped__(
        [str(CFG), str(CKPT), '--iters', '2', '--out-dir', str(out), '--cfg-options', *opts]
    )
    assert rc == 0
    assert 'wrote 6 frames (cityscapes_dvps)' in capsys.readouterr().out
    gt = bundled / 'video_sequence' / 'val'
    written = {
        (s['video_id'], s['frame_id']): s['pred_panoptic']
        for s in iter_frames('cityscapes_dvps', gt, out / 'panoptic')
    }
    # the same frames streamed by hand through the model's protocol
    cfg = TOOL.load_config(str(CFG), {'test_dataloader.dataset.data_root': f'{bundled}/'})
    model = MODELS.build(copy.deepcopy(cfg.model))
    load_weights(model, str(CKPT))
    model.eval()
    z, memory = None, [None]
    for batch in TOOL.build_loader(cfg):
        data = model.data_preprocessor(batch, False)
        step = model.stream_step(data['inputs'], z, memory, Budget.steps(2), data['data_samples'])
        z, memory = step.z, step.memory
        meta = step.outputs[0].metainfo
        ours = step.outputs[0].pred_panoptic.data[0].numpy()
        np.testing.assert_array_equal(written[(meta['video_id'], meta['frame_id'])], ours)
    res = evaluate_folders('cityscapes_dvps', gt, out / 'panoptic', out / 'depth', average='valid')
    assert res['num_frames'] == 6 and 0 < res['dvpq']['DVPQ'] < 100
    with pytest.raises(FileExistsError, match='already holds files'):
        TOOL.main.__wrapped__([str(CFG), str(CKPT), '--out-dir', str(out), '--cfg-options', *opts])
