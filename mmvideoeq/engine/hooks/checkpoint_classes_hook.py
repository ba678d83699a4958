"""Refuse a checkpoint whose class list does not match the dataset's."""

from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.runner import BaseLoop

from mmvideoeq.registry import HOOKS


@HOOKS.register_module()
class CheckpointClassesHook(Hook):
    """After a checkpoint is loaded, compare its ``dataset_meta['classes']`` with the datasets.

    mmengine loads a checkpoint trained on other classes without complaint (the classifier shapes
    may even agree, e.g. a reordered list); the predictions are then silently mislabelled. This hook
    raises a ``ValueError`` naming both lists instead. Checkpoints without ``dataset_meta`` pass.
    """

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = (checkpoint.get('meta') or {}).get('dataset_meta') or {}
        expected = meta.get('classes')
        if not expected:
            return
        for name in ('_train_loop', '_val_loop', '_test_loop'):
            loop = getattr(runner, name, None)
            if not isinstance(loop, BaseLoop):
                continue
            dataset = getattr(loop.dataloader, 'dataset', None)
            classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
            if classes is not None and tuple(classes) != tuple(expected):
                diff = [c for c in classes if c not in expected][:5]
                raise ValueError(
                    f'class list does not match the checkpoint: the {name.strip("_")} dataset has '
                    f'{len(classes)} classes {tuple(classes)[:5]}..., the checkpoint was trained '
                    f'on {len(expected)} {tuple(expected)[:5]}... (not in the checkpoint: {diff}). '
                    'Use the config the checkpoint was trained with, or set the dataset metainfo '
                    'classes to the checkpoint\'s.'
                )
