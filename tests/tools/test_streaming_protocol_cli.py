"""A new streaming model is two methods: a toy that implements exactly ``stream_zero_state`` and
``stream_step`` (no mixin, nothing else of the project's) streams through ``tools/test.py
--streaming`` in a subprocess, as a user's own model in their own package would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]

TOY_MODULE = '''
"""A user's streaming model, dataset and metric (registered into mmvideoeq's registries)."""
import torch
from mmengine.dataset import BaseDataset
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement

from mmvideoeq.deq import solve
from mmvideoeq.registry import DATASETS, METRICS, MODELS
from mmvideoeq.streaming import StepOutput


@MODELS.register_module()
class ToyTwoMethodModel(BaseModel):
    """z = tanh(a z + x): a contraction for |a| < 1. Memory: frames seen in the sequence."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.8))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        raise NotImplementedError('this model only streams')

    # ---- the protocol: these two methods are all a streaming model needs
    def stream_zero_state(self, inputs):
        return [inputs.new_zeros(inputs.shape[0], 4)]

    @torch.no_grad()
    def stream_step(self, inputs, z0, memory, budget, payloads):
        x = inputs.reshape(inputs.shape[0], -1)[:, :4]
        z0 = self.stream_zero_state(inputs) if z0 is None else z0
        f = lambda z: [torch.tanh(self.a * z[0] + x)]
        full = budget.max_iter is None
        z, stats = solve(
            f,
            z0,
            method='fixed_point',
            max_iter=60 if full else budget.max_iter,
            tol=0.0 if full else budget.tol,
            return_lowest=False,
        )
        z_star, _ = solve(f, z0, method='fixed_point', max_iter=200, tol=0.0)
        memory = [1 if m is None else m + 1 for m in memory]
        for s, zi, zs, m in zip(payloads, z[0], z_star[0], memory):
            s.error = float((zi - zs).abs().max())
            s.count = m
        return StepOutput(list(payloads), z, memory, stats)


@DATASETS.register_module()
class ToyClips(BaseDataset):
    def load_data_list(self):
        return [
            dict(video_id=f'v{v}', frame_id=t, video_length=6) for v in range(2) for t in range(6)
        ]

    def prepare_data(self, idx):
        info = self.get_data_info(idx)
        g = torch.Generator().manual_seed(7 + int(info['video_id'][1:]))
        x = torch.randn(1, 2, 2, generator=g) + 0.02 * info['frame_id']
        meta = dict(video_id=info['video_id'], frame_id=info['frame_id'], video_length=6)
        return dict(inputs=x, data_samples=BaseDataElement(metainfo=meta))


@METRICS.register_module()
class ToyErrorMetric(BaseMetric):
    def process(self, data_batch, data_samples):
        for s in data_samples:
            self.results.append((s['error'], s['count'], s['frame_id']))

    def compute_metrics(self, results):
        return dict(
            error=sum(e for e, _, _ in results) / len(results),
            counts_match=float(all(c == f + 1 for _, c, f in results)),
        )
'''

CONFIG = """
custom_imports = dict(imports=['toy_stream_user'], allow_failed_imports=False)
default_scope = 'mmvideoeq'
model = dict(type='ToyTwoMethodModel')
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    dataset=dict(type='ToyClips'),
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
)
test_evaluator = dict(type='ToyErrorMetric')
test_cfg = dict(type='TestLoop')
default_hooks = dict(logger=dict(type='LoggerHook'))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
"""


def test_a_two_method_model_streams_through_tools_test(tmp_path):
    (tmp_path / 'toy_stream_user.py').write_text(textwrap.dedent(TOY_MODULE))
    cfg = tmp_path / 'toy_cfg.py'
    cfg.write_text(CONFIG)
    ckpt = tmp_path / 'toy.pth'
    torch.save(dict(state_dict=dict(a=torch.tensor(0.8)), meta=dict()), ckpt)
    env = dict(os.environ, PYTHONPATH=f'{tmp_path}{os.pathsep}{ROOT}', OMP_NUM_THREADS='1')
    cmd = [sys.executable, str(ROOT / 'tools' / 'test.py'), str(cfg), str(ckpt), '--streaming']
    cmd += ['--iters', '1', '2', '--no-timing', '--work-dir', str(tmp_path / 'work')]
    cmd += ['--cfg-options', 'streaming_test_cfg.plot=False']
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / 'work' / 'streaming' / 'results.json').read_text())
    settings = report['settings']
    assert list(settings) == ['stream@1', 'stream@2', 'cold@1', 'cold@2', 'full']
    assert report['solver'] == 'fixed_point (ToyTwoMethodModel)'
    err = {k: v['metrics']['error'] for k, v in settings.items()}
    # the warm start is what streaming buys: the same budget from the previous frame's state
    # lands much closer to the fixed point than from zeros
    assert err['stream@1'] < 0.5 * err['cold@1'] and err['stream@2'] < 0.5 * err['cold@2']
    assert err['full'] < 1e-6
    # the model's memory is carried in every setting, cold ones included, and restarts per video
    assert all(v['metrics']['counts_match'] == 1.0 for v in settings.values())
    assert settings['stream@2']['mean_iters'] == 2
