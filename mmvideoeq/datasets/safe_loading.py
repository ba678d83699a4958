"""Loading that survives a frame that cannot be read, in testing and in training.

A corrupt, truncated, missing or zero-byte file (image or ground truth) makes a loader raise deep
inside the dataloader, and the whole run stops, often with a traceback that does not name the
file. The datasets run their pipeline through :meth:`SkipUnreadableFramesMixin.run_test_pipeline`
instead:

* in test mode, when a *loading* transform (``LoadImage*``, ``LoadAnnotations``,
  ``LoadPanopticAnnotation``, ...) fails, the rest of the pipeline runs on a black image of the
  frame's size and the packed sample carries ``eval_skip_reason``
  (:data:`mmvideoeq.structures.SKIP_KEY`, naming the file and the error). The streaming loop
  records the frame as skipped without solving it, the metrics leave it out and count it, and
  the run goes on;
* in training, the frame is dropped with a warning naming the file: ``prepare_data`` returns
  ``None`` and mmengine's ``BaseDataset`` draws another index. When
  :attr:`SkipUnreadableFramesMixin.max_consecutive_drops` frames in a row fail (a wrong path,
  format or pipeline rather than a few bad files), the last error is raised.

What counts as unreadable is the error a reader gives on a bad file (``OSError`` with
``FileNotFoundError``, ``ValueError``, ``AssertionError``, ``EOFError``, ``cv2.error``) raised by
a loading transform; an image whose size differs from the ``height``/``width`` its annotation
file lists (a placeholder or a wrong file under the right name) counts too: its boxes, masks and
maps would not fit it. Any other error (a ``KeyError`` of a pipeline that does not fit the
dataset, an error in another transform) is raised as before. Written here because
mmengine's ``Compose`` has no notion of a skippable frame.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import cv2
import numpy as np
from mmengine.logging import print_log

from mmvideoeq.structures import SKIP_KEY

__all__ = ['run_pipeline', 'run_train_pipeline', 'check_image_size', 'SkipUnreadableFramesMixin']


#: Errors of reading a bad file (cv2.error: OpenCV's decoder on an empty buffer).
READ_ERRORS = (OSError, ValueError, AssertionError, EOFError, SyntaxError, cv2.error)


def _is_loader(transform: Any) -> bool:
    return type(transform).__name__.startswith('Load')


def _samples(packed: dict) -> list:
    samples = packed.get('data_samples')
    return samples if isinstance(samples, (list, tuple)) else [samples]


def check_image_size(results: dict) -> None:
    """Raise ``ValueError`` when the loaded ``img`` is not the ``height`` x ``width`` the data
    info lists (either orientation passes: a decoder may apply EXIF rotation)."""
    img, h, w = results.get('img'), results.get('height'), results.get('width')
    if img is None or h is None or w is None:
        return
    got = tuple(int(v) for v in img.shape[:2])
    if got not in ((int(h), int(w)), (int(w), int(h))):
        raise ValueError(
            f'{results.get("img_path", "?")} is {got[1]}x{got[0]} (WxH) but the annotation file '
            f'lists {w}x{h}: a wrong or placeholder file; its annotations would not fit it'
        )


def _load(t: Any, results: dict) -> Any:
    """``t(results)``; the image is checked against its listed size by the loader that reads it
    (later transforms, e.g. a resize, change its size on purpose)."""
    had_img = 'img' in results
    out = t(results)
    if out is not None and not had_img and _is_loader(t):
        check_image_size(out)
    return out


def _reason(t: Any, path: str, err: BaseException) -> str:
    return f'{type(t).__name__} failed on {path}: {type(err).__name__}: {err}'


def run_pipeline(transforms: Sequence[Any], results: dict, shape: tuple[int, int]) -> Any:
    """Run ``transforms`` on ``results`` (test mode); a failing loader turns the frame into a
    marked placeholder instead of an exception.

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
            results = _load(t, results)
        except READ_ERRORS as err:  # a file that cannot be read: a skipped frame
            if not _is_loader(t):
                raise
            reason = _reason(t, path, err)
            results['img'] = np.zeros((*shape, 3), dtype=np.uint8)
            results['img_shape'] = results['ori_shape'] = tuple(shape)
            print_log(f'frame skipped: {reason}', logger='current', level=logging.WARNING)
        if results is None:
            return None
    if reason is not None:
        for sample in _samples(results):
            sample.set_metainfo({SKIP_KEY: reason})
    return results


class LoadFailure(Exception):
    """A loading transform failed on a training frame (``reason`` names the file)."""

    def __init__(self, reason: str, error: BaseException) -> None:
        super().__init__(reason)
        self.reason, self.error = reason, error


def run_train_pipeline(transforms: Sequence[Any], results: dict) -> Any:
    """Run ``transforms`` (training).

    Raises:
        LoadFailure: A loader failed (the caller drops the frame); other errors propagate.
    """
    for t in transforms:
        try:
            results = _load(t, results)
        except READ_ERRORS as err:  # a file that cannot be read: the frame is dropped
            if not _is_loader(t):
                raise
            raise LoadFailure(_reason(t, results.get('img_path', '?'), err), err) from None
        if results is None:
            return None
    return results


class SkipUnreadableFramesMixin:
    """Adds :meth:`run_test_pipeline` to a dataset: :func:`run_pipeline` in test mode,
    :func:`run_train_pipeline` in training.

    The placeholder takes the frame's ``height``/``width`` from its data info when known, else
    the size of the last frame that loaded.

    Attributes:
        max_consecutive_drops (int): In training, raise the loader's error when this many
            frames in a row could not be loaded.
    """

    _last_shape: tuple[int, int] = (64, 64)
    max_consecutive_drops: int = 20
    _drops: int = 0

    def run_test_pipeline(self, pipeline: Any, data_info: dict) -> Any:
        if not self.test_mode:
            try:
                out = run_train_pipeline(pipeline.transforms, data_info)
            except LoadFailure as fail:
                self._drops += 1
                if self._drops >= self.max_consecutive_drops or len(self) == 1:
                    self._drops = 0
                    raise ValueError(
                        f'no training frame could be loaded ({self.max_consecutive_drops} in a '
                        f'row, or the only one, failed); check data_root, the files and the '
                        f'pipeline. The last: {fail.reason}'
                    ) from fail.error
                print_log(
                    f'training frame dropped (another one is drawn): {fail.reason}',
                    logger='current',
                    level=logging.WARNING,
                )
                return None
            self._drops = 0
            return out
        shape = (data_info.get('height'), data_info.get('width'))
        if None in shape:
            shape = self._last_shape
        out = run_pipeline(pipeline.transforms, data_info, shape)
        if out is not None and not any(s.metainfo.get(SKIP_KEY) for s in _samples(out)):
            meta = _samples(out)[0].metainfo
            if 'ori_shape' in meta:
                self._last_shape = tuple(meta['ori_shape'][:2])
        return out

    def prepare_data(self, idx: int) -> Any:
        """The frame's pipeline output, through :meth:`run_test_pipeline` (mmengine's
        ``BaseDataset.prepare_data`` with safe loading)."""
        return self.run_test_pipeline(self.pipeline, self.get_data_info(idx))
