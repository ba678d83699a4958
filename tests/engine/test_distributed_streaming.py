"""Distributed runs on CPU (2 gloo processes through tools/dist_*.sh) equal one process.

Streaming evaluation: whole videos per rank (``VideoDistributedSampler``) and the results gathered
in the one-process order, so every metric (an order-sensitive digest included), the by-offset
curves and the settings' costs equal the one-process run. Training: 2 processes with batch 2
give the weights of 1 process with batch 4 (a model without normalisation layers, a
deterministic pipeline: mmengine's DDP averages the two halves' gradients).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmvideoeq.datasets.samplers import VideoDistributedSampler
from mmvideoeq.utils.checkpoint import safe_load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TOYS = ROOT / 'tests' / 'tools' / 'toys'

STREAM_CFG = """
custom_imports = dict(imports=['toy_stream_user'], allow_failed_imports=False)
default_scope = 'mmvideoeq'
model = dict(type='ToyTwoMethodModel')
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    dataset=dict(type='ToyClips', lengths=(6, 3, 5, 2)),
    sampler=dict(type='{sampler}'),
    collate_fn=dict(type='default_collate'),
)
test_evaluator = dict(type='ToyErrorMetric')
test_cfg = dict(type='TestLoop')
default_hooks = dict(logger=dict(type='LoggerHook'))
"""

TRAIN_CFG = """
custom_imports = dict(imports=['toy_stream_user'], allow_failed_imports=False)
default_scope = 'mmvideoeq'
model = dict(type='ToyRegressor')
train_dataloader = dict(
    batch_size={batch},
    num_workers=0,
    dataset=dict(type='ToyRegression'),
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=3, val_interval=100)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1))
default_hooks = dict(
    logger=dict(type='LoggerHook'),
    checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False),
)
randomness = dict(seed=0)
"""


class _Videos:
    """A dataset of videos with the given lengths, frames listed in reverse order."""

    def __init__(self, lengths):
        self.infos = [
            dict(video_id=f'v{v}', frame_id=t) for v, n in enumerate(lengths) for t in range(n)
        ][::-1]

    def __len__(self):
        return len(self.infos)

    def get_data_info(self, i):
        return self.infos[i]


def test_video_sampler_gives_whole_videos_balanced_by_frames_in_order():
    data = _Videos([5, 3, 3, 2])
    ranks = [VideoDistributedSampler(data, num_replicas=2, rank=r) for r in range(2)]
    frames = [[(data.infos[i]['video_id'], data.infos[i]['frame_id']) for i in s] for s in ranks]
    # by hand, longest first to the least loaded rank: v0 (5) -> 0, v1 (3) -> 1, v2 (3) -> 1,
    # v3 (2) -> 0; each rank walks its videos in dataset order (first appearance: v3 first,
    # the list is reversed), frames by frame_id
    assert frames[0] == [('v3', 0), ('v3', 1)] + [('v0', t) for t in range(5)]
    assert frames[1] == [('v2', t) for t in range(3)] + [('v1', t) for t in range(3)]
    one = VideoDistributedSampler(data, num_replicas=1, rank=0)
    assert sorted(one.indices) == list(range(len(data)))
    assert sum(len(s) for s in ranks) == len(data)
    with pytest.raises(ValueError, match='rank 2 is not in'):
        VideoDistributedSampler(data, num_replicas=2, rank=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _env():
    return dict(
        os.environ,
        PYTHONPATH=f'{TOYS}{os.pathsep}{ROOT}',
        OMP_NUM_THREADS='1',
        PORT=str(_free_port()),
        PYTHON=sys.executable,
    )


def _run(cmd, tmp_path):
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout[-4000:] + proc.stderr[-4000:]


def _stream(tmp_path, name, nproc, sampler='VideoDistributedSampler'):
    cfg = tmp_path / f'{name}.py'
    cfg.write_text(STREAM_CFG.replace('{sampler}', sampler))
    ckpt = tmp_path / 'toy.pth'
    torch.save(dict(state_dict=dict(a=torch.tensor(0.8)), meta=dict()), ckpt)
    work = tmp_path / name
    args = ['--streaming', '--iters', '1', '2', '--no-timing', '--work-dir', str(work)]
    args += ['--cfg-options', 'streaming_test_cfg.plot=False']
    if nproc == 1:
        cmd = [sys.executable, str(ROOT / 'tools/test.py'), str(cfg), str(ckpt), *args]
    else:
        cmd = ['bash', str(ROOT / 'tools/dist_test.sh'), str(cfg), str(ckpt), str(nproc), *args]
    rc, out = _run(cmd, tmp_path)
    return rc, out, work / 'streaming'


def test_two_gloo_processes_give_the_one_process_streaming_metrics(tmp_path):
    rc, out, one = _stream(tmp_path, 'one', 1)
    assert rc == 0, out
    rc, out, two = _stream(tmp_path, 'two', 2)
    assert rc == 0, out
    a = json.loads((one / 'results.json').read_text())
    b = json.loads((two / 'results.json').read_text())
    assert (
        list(a['settings'])
        == list(b['settings'])
        == [
            'stream@1',
            'stream@2',
            'cold@1',
            'cold@2',
            'full',
        ]
    )
    for name in a['settings']:
        sa, sb = a['settings'][name], b['settings'][name]
        assert sa['metrics'] == sb['metrics'], name  # digest, curves, counts: all equal
        assert sa['metrics']['frames'] == 16.0
        for key in ('mean_iters', 'mean_evals', 'frames', 'mid_stream_resets', 'diverged'):
            assert sa[key] == sb[key], (name, key)
    # warm starts were never split across ranks: streaming beats cold at equal budgets
    err = {k: v['metrics']['error'] for k, v in b['settings'].items()}
    assert err['stream@1'] < err['cold@1'] and err['stream@2'] < err['cold@2']
    assert [p.name for p in two.iterdir()] == ['results.json']  # rank 0 alone wrote


def test_round_robin_sampler_is_refused_in_distributed_streaming(tmp_path):
    rc, out, _ = _stream(tmp_path, 'rr', 2, sampler='DefaultSampler')
    assert rc != 0
    assert 'needs a video-wise sampler' in out and 'VideoDistributedSampler' in out


def _train(tmp_path, name, nproc, batch):
    cfg = tmp_path / f'{name}.py'
    cfg.write_text(TRAIN_CFG.replace('{batch}', str(batch)))
    work = tmp_path / name
    if nproc == 1:
        cmd = [sys.executable, str(ROOT / 'tools/train.py'), str(cfg), '--work-dir', str(work)]
    else:
        cmd = ['bash', str(ROOT / 'tools/dist_train.sh'), str(cfg), str(nproc)]
        cmd += ['--work-dir', str(work)]
    rc, out = _run(cmd, tmp_path)
    assert rc == 0, out
    return safe_load_checkpoint(str(work / 'iter_3.pth'), map_location='cpu')['state_dict']


def test_two_gloo_processes_train_like_one_with_the_doubled_batch(tmp_path):
    one = _train(tmp_path, 'one', 1, batch=4)
    two = _train(tmp_path, 'two', 2, batch=2)
    assert set(one) == set(two) == {'linear.weight', 'linear.bias'}
    for k in one:
        torch.testing.assert_close(one[k], two[k], rtol=0, atol=1e-6)
    torch.manual_seed(0)
    init = torch.nn.Linear(4, 2).state_dict()
    assert not torch.allclose(one['linear.weight'], init['weight'])  # it did train
