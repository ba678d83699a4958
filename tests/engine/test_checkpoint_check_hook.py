"""A checkpoint trained on another class list, or one that leaves weights missing, is refused."""

from types import SimpleNamespace

import pytest
import torch
from mmengine.runner import BaseLoop
from torch import nn

from mmvideoeq.engine.hooks import CheckpointCheckHook
from mmvideoeq.utils.checkpoint import MissingWeightsError, WeightsShapeError


class _Loop(BaseLoop):
    def run(self):
        pass


class _Logger:
    def __init__(self):
        self.warnings = []

    def warning(self, msg):
        self.warnings.append(msg)


def _runner(classes=('a', 'b')):
    loader = SimpleNamespace(dataset=SimpleNamespace(metainfo=dict(classes=classes)))
    runner = SimpleNamespace(_train_loop=None, _val_loop=None, logger=_Logger())
    runner.model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    runner._test_loop = _Loop(runner, loader)
    return runner


def _ckpt(runner, meta=None, drop=()):
    state = {k: v for k, v in runner.model.state_dict().items() if k not in drop}
    return dict(meta=meta or {}, state_dict=state)


def test_matching_checkpoint_passes():
    hook, runner = CheckpointCheckHook(), _runner()
    hook.after_load_checkpoint(runner, _ckpt(runner, dict(dataset_meta=dict(classes=('a', 'b')))))
    hook.after_load_checkpoint(runner, _ckpt(runner))  # no meta: nothing to check
    hook.before_test(runner)


@pytest.mark.parametrize('ckpt_classes', [('a', 'c'), ('b', 'a'), ('a', 'b', 'c')])
def test_mismatching_classes_raise(ckpt_classes):
    runner = _runner()
    with pytest.raises(ValueError, match='class list does not match the checkpoint'):
        CheckpointCheckHook().after_load_checkpoint(
            runner, _ckpt(runner, dict(dataset_meta=dict(classes=ckpt_classes)))
        )


def test_missing_weights_refused_before_testing_unless_allowed():
    runner = _runner()
    hook = CheckpointCheckHook()
    hook.after_load_checkpoint(runner, _ckpt(runner, drop=('0.weight',)))
    with pytest.raises(
        MissingWeightsError, match=r"leaves 1 of the model's .* missing \(0\.weight"
    ):
        hook.before_test(runner)
    hook.after_load_checkpoint(runner, dict(state_dict={}))
    with pytest.raises(
        MissingWeightsError, match='holds no weights at all.*--allow-missing-weights'
    ):
        hook.before_test(runner)
    allowed = CheckpointCheckHook(allow_missing_weights=True)
    allowed.after_load_checkpoint(runner, dict(state_dict={}))
    allowed.before_test(runner)
    assert runner.logger.warnings and 'keep their initial values' in runner.logger.warnings[0]


def test_shape_mismatch_is_refused_even_when_missing_is_allowed():
    runner = _runner()
    state = runner.model.state_dict()
    state['0.weight'] = torch.zeros(3, 1, 1, 1)
    with pytest.raises(WeightsShapeError, match='another shape'):
        CheckpointCheckHook(allow_missing_weights=True).after_load_checkpoint(
            runner, dict(state_dict=state)
        )


def test_non_finite_weights_are_refused_naming_the_tensors_unless_allowed():
    runner = _runner()
    ckpt = _ckpt(runner)
    ckpt['state_dict'] = {k: v.clone() for k, v in ckpt['state_dict'].items()}
    ckpt['state_dict']['0.weight'].fill_(float('nan'))
    ckpt['state_dict']['1.bias'][0] = float('inf')
    with pytest.raises(ValueError, match=r'non-finite .* in 2 tensor\(s\) \(0\.weight, 1\.bias\)'):
        CheckpointCheckHook().after_load_checkpoint(runner, ckpt)
    hook = CheckpointCheckHook(allow_nonfinite_weights=True)
    hook.after_load_checkpoint(runner, ckpt)
    hook.before_test(runner)
    assert '--allow-nonfinite-weights' in runner.logger.warnings[-1]
