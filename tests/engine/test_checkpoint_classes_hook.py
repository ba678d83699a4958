"""A checkpoint trained on another class list is refused (issue 6, bad input)."""

from types import SimpleNamespace

import pytest
from mmengine.runner import BaseLoop

from mmvideoeq.engine.hooks import CheckpointClassesHook


class _Loop(BaseLoop):
    def run(self):
        pass


def _runner(classes):
    loader = SimpleNamespace(dataset=SimpleNamespace(metainfo=dict(classes=classes)))
    runner = SimpleNamespace(_train_loop=None, _val_loop=None)
    runner._test_loop = _Loop(runner, loader)
    return runner


def test_matching_classes_pass():
    hook = CheckpointClassesHook()
    hook.after_load_checkpoint(
        _runner(('a', 'b')), dict(meta=dict(dataset_meta=dict(classes=('a', 'b'))))
    )
    hook.after_load_checkpoint(_runner(('a', 'b')), dict(meta=dict()))  # no meta: nothing to check


@pytest.mark.parametrize('ckpt_classes', [('a', 'c'), ('b', 'a'), ('a', 'b', 'c')])
def test_mismatching_classes_raise(ckpt_classes):
    with pytest.raises(ValueError, match='class list does not match the checkpoint'):
        CheckpointClassesHook().after_load_checkpoint(
            _runner(('a', 'b')), dict(meta=dict(dataset_meta=dict(classes=ckpt_classes)))
        )
