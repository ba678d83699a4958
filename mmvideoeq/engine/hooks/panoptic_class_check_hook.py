"""Refuse to run a panoptic model on a dataset with another class set (mmdet's
``NumClassCheckHook`` pattern: a check is a hook)."""

from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop

from mmvideoeq.registry import HOOKS

__all__ = ['PanopticClassCheckHook']


@HOOKS.register_module()
class PanopticClassCheckHook(Hook):
    """Before training/validation/testing, compare the head's class set with each dataset's.

    The head (``model.decode_head``) must agree with the dataset metainfo on the number of
    ``classes``, the ``thing_ids``, the ``label_divisor`` and the ``ignore_label`` (the keys the
    DVPS datasets publish); a mismatch would silently mislabel or ignore pixels, so it raises a
    ``ValueError`` naming both sides. Datasets without these keys are not checked.
    """

    priority = 'VERY_HIGH'

    @staticmethod
    def _head_spec(runner) -> dict:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        head = getattr(model, 'decode_head', None)
        return dict(
            classes=getattr(head, 'num_classes', None),
            thing_ids=tuple(getattr(head, 'thing_ids', ()) or ()),
            label_divisor=getattr(head, 'label_divisor', None),
            ignore_label=getattr(head, 'ignore_label', None),
        )

    def _check(self, runner, loop_name: str) -> None:
        loop = getattr(runner, loop_name, None)
        if not isinstance(loop, BaseLoop):
            return
        meta = getattr(getattr(loop.dataloader, 'dataset', None), 'metainfo', None) or {}
        spec = self._head_spec(runner)
        data = dict(
            classes=len(meta['classes']) if meta.get('classes') is not None else None,
            thing_ids=tuple(meta['thing_ids']) if meta.get('thing_ids') is not None else None,
            label_divisor=meta.get('label_divisor'),
            ignore_label=meta.get('ignore_label'),
        )
        diff = {
            k: (spec[k], v)
            for k, v in data.items()
            if v is not None and spec[k] is not None and spec[k] != v
        }
        if diff:
            lines = ', '.join(f'{k}: model {a} vs dataset {b}' for k, (a, b) in diff.items())
            raise ValueError(
                f'the class set of the model does not match the {loop_name.strip("_")} dataset '
                f'({lines}). Set decode_head num_classes / thing_ids / label_divisor / '
                "ignore_label from the dataset's metainfo (mmvideoeq.class_names)."
            )

    def before_train(self, runner) -> None:
        self._check(runner, '_train_loop')
        self._check(runner, '_val_loop')

    def before_val(self, runner) -> None:
        self._check(runner, '_val_loop')

    def before_test(self, runner) -> None:
        self._check(runner, '_test_loop')
