"""A training killed by SIGKILL resumes from its last checkpoint with ``tools/train.py --resume``
and ends with bit-identical weights to an uninterrupted run, epoch-based or iteration-based
(mmengine's ``IterBasedTrainLoop`` replays the consumed batches on resume), although the toy draws
from every generator a training uses (numpy augmentation, torch dropout, the stochastic-unroll
draw of a ``DEQSolver``); a NaN loss stops the training before any non-finite weight is saved."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mmvideoeq.utils.checkpoint import safe_load_checkpoint

ROOT = Path(__file__).resolve().parents[2]

TOY = textwrap.dedent('''
    import os
    import signal

    import numpy as np
    import torch
    from mmengine.dataset import BaseDataset
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel

    from mmvideoeq.deq import DEQSolver
    from mmvideoeq.registry import DATASETS, HOOKS, MODELS


    class SURLayer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 2)
            self.deq = DEQSolver(solver='fixed_point', train_mode='stochastic_unroll',
                                 unroll_max=5, seed=0)

        def forward(self, x):
            z, _, _ = self.deq(lambda z: [torch.tanh(0.5 * self.w(z[0]) + x)],
                               [torch.zeros_like(x)], training=self.training)
            return z[0]


    @MODELS.register_module(force=True)
    class ToyResumeModel(BaseModel):
        def __init__(self):
            super().__init__()
            self.layer = SURLayer()
            self.drop = torch.nn.Dropout(0.3)
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, inputs, targets, mode='loss', **unused):
            pred = self.linear(self.drop(self.layer(inputs)))
            loss = ((pred.squeeze(1) - targets) ** 2).mean()
            step = self.__dict__.get('step', 0)  # training forward calls so far
            if int(os.environ.get('TOY_NAN_AT_ITER', '-1')) == step:
                loss = loss * float('nan')
            self.__dict__['step'] = step + 1
            return dict(loss=loss)


    @DATASETS.register_module(force=True)
    class ToyResumeDataset(BaseDataset):
        def __init__(self, n=16, **kwargs):
            self.n = n
            super().__init__(serialize_data=False, lazy_init=False, **kwargs)

        def load_data_list(self):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(self.n, 2, generator=g)
            return [dict(inputs=x[i], targets=x[i].sum() * 0.5) for i in range(self.n)]

        def prepare_data(self, idx):
            info = dict(self.get_data_info(idx))  # numpy-random augmentation
            info['inputs'] = info['inputs'] + torch.from_numpy(np.random.normal(0, 0.1, 2)).float()
            return info


    @HOOKS.register_module(force=True)
    class KillAtIterHook(Hook):
        """Kills the process with SIGKILL (no clean-up) after the given global iteration."""

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            at = int(os.environ.get('TOY_KILL_AT_ITER', '-1'))
            if runner.iter + 1 == at:
                os.kill(os.getpid(), signal.SIGKILL)
    ''')

CONFIG = textwrap.dedent("""
    default_scope = 'mmvideoeq'
    custom_imports = dict(imports=['toy_resume_modules'], allow_failed_imports=False)
    model = dict(type='ToyResumeModel')
    train_dataloader = dict(
        batch_size=4, num_workers=0,
        dataset=dict(type='ToyResumeDataset', n=16),
        sampler=dict(type='DefaultSampler', shuffle=True),
        collate_fn=dict(type='default_collate'))
    train_cfg = dict(by_epoch=True, max_epochs=4)
    optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9))
    param_scheduler = [dict(type='MultiStepLR', milestones=[2], gamma=0.5, by_epoch=True)]
    default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1),
                         logger=dict(type='LoggerHook', interval=1))
    custom_hooks = [dict(type='KillAtIterHook'), dict(type='RNGStateHook'),
                    dict(type='NonFiniteLossHook')]
    randomness = dict(seed=3)
    """)


#: The same training by iterations: 10 iterations of 4 frames, a checkpoint every 3, the killed
#: run resumes from iteration 6 and replays the 6 consumed batches (one epoch and a half).
ITER_CONFIG = (
    CONFIG.replace(
        'train_cfg = dict(by_epoch=True, max_epochs=4)',
        'train_cfg = dict(by_epoch=False, max_iters=10)',
    )
    .replace(
        'milestones=[2], gamma=0.5, by_epoch=True)',
        'milestones=[5], gamma=0.5, by_epoch=False)',
    )
    .replace(
        "checkpoint=dict(type='CheckpointHook', interval=1)",
        "checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False)",
    )
    + 'log_processor = dict(by_epoch=False)\n'
)

MODES = {
    # config, kill after iteration, checkpoints left, resume log line, final checkpoint
    'epoch': (CONFIG, 10, ['epoch_1.pth', 'epoch_2.pth'], 'resumed epoch: 2, iter: 8', 'epoch_4'),
    'iter': (ITER_CONFIG, 8, ['iter_3.pth', 'iter_6.pth'], 'resumed epoch: 0, iter: 6', 'iter_10'),
}


def _train(cfg_path, work_dir, env, *extra):
    cmd = [
        sys.executable,
        str(ROOT / 'tools' / 'train.py'),
        str(cfg_path),
        '--work-dir',
        str(work_dir),
        *extra,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize('mode', sorted(MODES))
def test_killed_training_resumes_from_last_checkpoint(tmp_path, mode):
    config, kill_at, ckpts, resumed_at, last = MODES[mode]
    (tmp_path / 'toy_resume_modules.py').write_text(TOY)
    cfg = tmp_path / 'toy_resume.py'
    cfg.write_text(config)
    env = dict(os.environ, PYTHONPATH=f'{tmp_path}{os.pathsep}{ROOT}')

    full = _train(cfg, tmp_path / 'full', env)
    assert full.returncode == 0, full.stderr[-3000:]

    killed = _train(cfg, tmp_path / 'killed', dict(env, TOY_KILL_AT_ITER=str(kill_at)))
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / 'killed').glob('*_*.pth')) == ckpts

    resumed = _train(cfg, tmp_path / 'killed', env, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert resumed_at in log

    a = safe_load_checkpoint(str(tmp_path / 'full' / f'{last}.pth'))['state_dict']
    b = safe_load_checkpoint(str(tmp_path / 'killed' / f'{last}.pth'))['state_dict']
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit-identical


@pytest.mark.slow
def test_nan_loss_stops_before_saving_non_finite_weights(tmp_path):
    (tmp_path / 'toy_resume_modules.py').write_text(TOY)
    cfg = tmp_path / 'toy_resume.py'
    cfg.write_text(CONFIG)
    env = dict(os.environ, PYTHONPATH=f'{tmp_path}{os.pathsep}{ROOT}', TOY_NAN_AT_ITER='6')
    run = _train(cfg, tmp_path / 'nan', env)
    assert run.returncode != 0
    assert 'non-finite training loss (nan) at iteration 7 (epoch 2)' in run.stderr
    assert sorted(p.name for p in (tmp_path / 'nan').glob('epoch_*.pth')) == ['epoch_1.pth']
    last = (tmp_path / 'nan' / 'last_checkpoint').read_text().strip()
    state = safe_load_checkpoint(last)['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values())
