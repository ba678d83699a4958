"""Refuse a checkpoint that does not fit: another class list, weights missing for the model, or
non-finite weights."""

from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.runner import BaseLoop

from mmvideoeq.registry import HOOKS
from mmvideoeq.utils.checkpoint import MissingWeightsError, check_finite, check_weights


@HOOKS.register_module()
class CheckpointCheckHook(Hook):
    """Checks every loaded checkpoint against the model and the datasets.

    mmengine loads a checkpoint non-strictly: one trained on other classes is accepted (the
    classifier shapes may even agree, e.g. a reordered list) and a checkpoint with an empty or
    foreign ``state_dict`` leaves the model on its random initialisation, with only a warning in
    the log. This hook raises instead:

    * after loading, a ``ValueError`` naming both class lists when the checkpoint's
      ``meta['dataset_meta']['classes']`` differ from a dataset's (checkpoints without
      ``dataset_meta`` pass);
    * after loading, a :class:`~mmvideoeq.utils.checkpoint.NonFiniteWeightsError` naming the
      tensors when weights hold NaN or infinite values (training, resuming or testing on them
      gives nothing but diverged frames);
    * before testing (``tools/test.py``, streaming evaluation), a
      :class:`~mmvideoeq.utils.checkpoint.MissingWeightsError` when the loaded checkpoint left
      model tensors missing or of another shape. Training that starts from a partial checkpoint
      (``load_from`` for fine-tuning) is not affected.

    Args:
        allow_missing_weights: Test even with missing weights (``--allow-missing-weights``).
        allow_nonfinite_weights: Accept NaN/inf weights, with a warning
            (``--allow-nonfinite-weights``).
    """

    priority = 'VERY_HIGH'

    def __init__(
        self, allow_missing_weights: bool = False, allow_nonfinite_weights: bool = False
    ) -> None:
        self.allow_missing_weights = bool(allow_missing_weights)
        self.allow_nonfinite_weights = bool(allow_nonfinite_weights)
        self._weights_error: MissingWeightsError | None = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._check_classes(runner, checkpoint)
        path = getattr(runner, '_load_from', None)
        try:
            check_finite(checkpoint, source=f'checkpoint {path!r}' if path else 'the checkpoint')
        except ValueError as err:
            if not self.allow_nonfinite_weights:
                raise
            runner.logger.warning(f'--allow-nonfinite-weights: {err}')
        try:
            missing = check_weights(
                runner.model,
                checkpoint,
                allow_missing=self.allow_missing_weights,
                source='the loaded checkpoint',
            )
            if missing:
                runner.logger.warning(
                    f'--allow-missing-weights: {len(missing)} model tensors are not in the '
                    'checkpoint and keep their initial values'
                )
            self._weights_error = None
        except MissingWeightsError as err:
            self._weights_error = err

    def before_test(self, runner) -> None:
        if self._weights_error is not None:
            raise self._weights_error

    @staticmethod
    def _check_classes(runner, checkpoint: dict) -> None:
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
                    "classes to the checkpoint's."
                )
