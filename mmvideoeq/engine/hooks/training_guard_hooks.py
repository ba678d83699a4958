"""Hooks that make training exactly resumable and stop it at the first non-finite loss."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook

from mmvideoeq.deq import DEQSolver
from mmvideoeq.registry import HOOKS
from mmvideoeq.utils.checkpoint import nonfinite_tensors

__all__ = ['RNGStateHook', 'NonFiniteLossHook']


def _deq_solvers(model: torch.nn.Module) -> dict[str, DEQSolver]:
    """The DEQ solvers (stochastic-unroll draws) of the model's modules, by module name."""
    model = getattr(model, 'module', model)
    return {
        name: m.deq
        for name, m in model.named_modules()
        if isinstance(getattr(m, 'deq', None), DEQSolver)
    }


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Saves every random number generator's state in checkpoints and restores it on resume.

    mmengine resumes the epoch, the iteration and the seed but not the generators' states: a
    resumed run re-seeds them, so augmentation (numpy, ``random``), dropout (torch) and the
    stochastic-unroll draws of :class:`~mmvideoeq.deq.DEQSolver` (a private generator) differ
    from an uninterrupted run. Stored as ``checkpoint['rng_state']`` with plain types (tensors,
    lists, ints) that load under ``weights_only=True``. Only a resume (``--resume``) restores
    them; ``load_from`` (fine-tuning) does not. Dataloader workers are re-seeded by mmengine
    from the seed as usual (with ``num_workers=0`` everything runs in the main process).

    When the states are restored: an epoch-based loop resumes at an epoch boundary, so they are
    restored in ``before_train``. mmengine's ``IterBasedTrainLoop`` instead replays the batches
    the run had consumed (``next(dataloader_iterator)`` ``iter`` times, running the pipeline and
    its augmentations) after ``before_train``; restoring before that replay would hand the
    replay the saved states and the first new batch other ones. The states are therefore
    restored on the loop's first fetch after the replay, by wrapping ``dataloader_iterator``
    once. The replay itself still runs the pipeline, as in the interrupted run, which keeps the
    random states of dataloader workers (their own processes) as they were.
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        np_state = np.random.get_state()
        state: dict[str, Any] = dict(
            torch=torch.get_rng_state(),
            numpy=[np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            python=random.getstate(),
            deq={
                name: deq.generator.get_state()
                for name, deq in _deq_solvers(runner.model).items()
                if deq.generator is not None
            },
        )
        if torch.cuda.is_available():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('rng_state')
        if state is None or not getattr(runner, '_resume', False):
            return
        self._pending = state  # mmengine re-seeds after loading: restore before training

    def before_train(self, runner) -> None:
        state = getattr(self, '_pending', None)
        if state is None:
            return
        self._pending = None
        loop = runner.train_loop
        replayed = int(getattr(loop, 'iter', 0)) if hasattr(loop, 'dataloader_iterator') else 0
        if replayed > 0:  # IterBasedTrainLoop: restore after it replays the consumed batches
            loop.dataloader_iterator = _RestoreAfter(
                loop, replayed, lambda: self._restore(runner, state)
            )
        else:
            self._restore(runner, state)

    @staticmethod
    def _restore(runner, state: dict) -> None:
        torch.set_rng_state(state['torch'])
        kind, keys, *rest = state['numpy']
        np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
        random.setstate(_as_tuple(state['python']))
        solvers = _deq_solvers(runner.model)
        for name, gen_state in state['deq'].items():
            if name in solvers and solvers[name].generator is not None:
                solvers[name].generator.set_state(gen_state)
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])


class _RestoreAfter:
    """Stands in for a loop's ``dataloader_iterator``: passes ``skip`` fetches through, then
    calls ``restore`` right before the next one and puts the real iterator back."""

    def __init__(self, loop, skip: int, restore) -> None:
        self._loop, self._inner = loop, loop.dataloader_iterator
        self._skip, self._restore = skip, restore

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip > 0:
            self._skip -= 1
            return next(self._inner)
        self._restore()
        self._loop.dataloader_iterator = self._inner
        return next(self._inner)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stops training at the first non-finite loss (or skips that step) and never saves
    non-finite weights.

    Without it a NaN loss trains on to the end: the optimizer writes NaN into the weights, the
    checkpoints hold NaN and ``last_checkpoint`` points at them. The check wraps the optimizer
    wrapper's ``update_params``, so it runs before the step (no weight is touched).

    Args:
        action: ``'raise'`` (stop with a clear error; the last saved checkpoint stays the last
            finite one) or ``'skip'`` (drop the step: no update, gradients cleared; logged).
        max_skips: With ``'skip'``, stop anyway after this many skipped steps in a row.
    """

    priority = 'VERY_HIGH'

    def __init__(self, action: str = 'raise', max_skips: int = 10) -> None:
        if action not in ('raise', 'skip'):
            raise ValueError(f"NonFiniteLossHook.action must be 'raise' or 'skip', got {action!r}")
        self.action, self.max_skips = action, int(max_skips)
        self.skipped = 0

    def before_train(self, runner) -> None:
        wrapper = runner.optim_wrapper
        if getattr(wrapper, '_nonfinite_guard', False):
            return
        update = wrapper.update_params
        hook = self

        def guarded_update(loss, *args, **kwargs):
            value = float(loss.detach())
            if math.isfinite(value):
                hook.skipped = 0
                return update(loss, *args, **kwargs)
            where = f'iteration {runner.iter + 1} (epoch {runner.epoch + 1})'
            if hook.action == 'raise' or hook.skipped >= hook.max_skips:
                raise FloatingPointError(
                    f'non-finite training loss ({value}) at {where}: training stopped before the '
                    'update, no non-finite weight was saved. Lower the learning rate, enable '
                    'gradient clipping (optim_wrapper.clip_grad) or check the data; or set '
                    "NonFiniteLossHook(action='skip') to drop such steps"
                )
            hook.skipped += 1
            wrapper.zero_grad()
            runner.logger.warning(f'non-finite loss ({value}) at {where}: step skipped')
            return None

        wrapper.update_params = guarded_update
        wrapper._nonfinite_guard = True

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        bad = nonfinite_tensors(checkpoint.get('state_dict', {}))
        if bad:
            raise FloatingPointError(
                f'refusing to save a checkpoint with non-finite weights ({", ".join(bad[:3])}'
                f'{", ..." if len(bad) > 3 else ""}); the last saved checkpoint is kept'
            )
