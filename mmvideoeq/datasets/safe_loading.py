"""Test-time loading that survives a frame that cannot be read.

A corrupt, truncated or zero-byte frame makes mmcv's loader raise deep inside the dataloader, and
the whole (streaming) evaluation stops with a traceback that does not name the file. In test mode
the datasets run their pipeline through :func:`run_pipeline`: when a *loading* transform
(``LoadImage*``, ``LoadAnnotations``, ...) fails, the rest of the pipeline runs on a black image
of the frame's size and the packed sample carries ``eval_skip_reason`` (naming the file and the
error). The streaming loop then records the frame as skipped without solving it, the metrics
leave it out and count it, and the run goes on. An error in any other transform is raised as
before. Written here because mmengine's ``Compose`` has no notion of a skippable frame.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
from mmengine.logging import print_log

from mmvideoeq.structures import SKIP_KEY

__all__ = ['run_pipeline', 'SkipUnreadableFramesMixin']


def _is_loader(transform: Any) -> bool:
    return type(transform).__name__.startswith('Load')


def _samples(packed: dict) -> list:
    samples = packed.get('data_samples')
    return samples if isinstance(samples, (list, tuple)) else [samples]


def run_pipeline(transforms: Sequence[Any], results: dict, shape: tuple[int, int]) -> Any:
    """Run ``transforms`` on ``results``; a failing loader turns the frame into a marked
    placeholder instead of an exception.

    Args:
        transforms: The pipeline's transforms (``Compose.transforms``).
        results: The data info of the frame.
        shape: ``(H, W)`` of the placeholder image when the image itself cannot be read.

    Returns:
        The packed sample; its data sample's metainfo has ``eval_skip_reason`` when a loader
        failed.
    """
    reason = None
    path = results.get('img_path', '?')
    for t in transforms:
        if reason is not None and _is_loader(t):
            if 'img' not in results:  # the placeholder stands in for the image
                results['img'] = np.zeros((*shape, 3), dtype=np.uint8)
                results['img_shape'] = results['ori_shape'] = tuple(shape)
            continue
        try:
            results = t(results)
        except Exception as err:  # noqa: BLE001 - any failure to read a file is a skipped frame
            if not _is_loader(t):
                raise
            reason = f'{type(t).__name__} failed on {path}: {type(err).__name__}: {err}'
            results['img'] = np.zeros((*shape, 3), dtype=np.uint8)
            results['img_shape'] = results['ori_shape'] = tuple(shape)
            print_log(f'frame skipped: {reason}', logger='current', level=logging.WARNING)
        if results is None:
            return None
    if reason is not None:
        for sample in _samples(results):
            sample.set_metainfo({SKIP_KEY: reason})
    return results


class SkipUnreadableFramesMixin:
    """Adds :meth:`run_test_pipeline` to a dataset: :func:`run_pipeline` in test mode, the plain
    pipeline in training (where a broken file should stop the run).

    The placeholder takes the frame's ``height``/``width`` from its data info when known, else
    the size of the last frame that loaded.
    """

    _last_shape: tuple[int, int] = (64, 64)

    def run_test_pipeline(self, pipeline: Any, data_info: dict) -> Any:
        if not self.test_mode:
            return pipeline(data_info)
        shape = (data_info.get('height'), data_info.get('width'))
        if None in shape:
            shape = self._last_shape
        out = run_pipeline(pipeline.transforms, data_info, shape)
        if out is not None and not any(s.metainfo.get(SKIP_KEY) for s in _samples(out)):
            meta = _samples(out)[0].metainfo
            if 'ori_shape' in meta:
                self._last_shape = tuple(meta['ori_shape'][:2])
        return out
