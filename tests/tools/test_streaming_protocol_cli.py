"""A new streaming model is two methods: a toy that implements exactly ``stream_zero_state`` and
``stream_step`` (no mixin, nothing else of the project's; ``toys/toy_stream_user.py``) streams
through ``tools/test.py --streaming`` in a subprocess, as a user's own model in their own package
would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
TOYS = Path(__file__).resolve().parent / 'toys'  # the user's package: toy_stream_user.py

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
    cfg = tmp_path / 'toy_cfg.py'
    cfg.write_text(CONFIG)
    ckpt = tmp_path / 'toy.pth'
    torch.save(dict(state_dict=dict(a=torch.tensor(0.8)), meta=dict()), ckpt)
    env = dict(os.environ, PYTHONPATH=f'{TOYS}{os.pathsep}{ROOT}', OMP_NUM_THREADS='1')
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
    assert err['stream@1'] < 0.7 * err['cold@1'] and err['stream@2'] < 0.7 * err['cold@2']
    assert err['full'] < 1e-6
    # the model's memory is carried in every setting, cold ones included, and restarts per video
    assert all(v['metrics']['counts_match'] == 1.0 for v in settings.values())
    assert settings['stream@2']['mean_iters'] == 2
