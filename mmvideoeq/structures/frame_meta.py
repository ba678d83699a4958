"""Metainfo keys a frame's data sample carries through datasets, streaming loop and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    'SKIP_KEY',
    'FRAME_OFFSET_KEY',
    'DIVERGED_KEY',
    'STREAM_ITERS_KEY',
    'STREAM_EVALS_KEY',
    'STREAM_SETTING_KEY',
    'CLIP_INDEX_KEY',
    'CLIP_STEP_KEY',
    'skip_reason',
]

#: Marks a frame as not evaluated, with the reason: set by the datasets when a frame fails to
#: load and by the streaming loop when a frame's solve diverged. Every by-frame metric leaves such
#: frames out, counts and lists them.
SKIP_KEY = 'eval_skip_reason'

#: Frames since the start of the frame's clip (0-based), written by the streaming loop; metrics
#: group by it (``mmvideoeq.evaluation.metrics.frame_offset``).
FRAME_OFFSET_KEY = 'frame_offset'

#: The solver flagged the frame (non-finite or exploding residual).
DIVERGED_KEY = 'diverged'

#: Solver steps and evaluations of ``f`` the stream spent on the frame.
STREAM_ITERS_KEY = 'stream_iters'
STREAM_EVALS_KEY = 'stream_evals'

#: Name of the streaming setting (``stream@2``, ``cold@1``, ``full``) that produced a prediction.
STREAM_SETTING_KEY = 'stream_setting'

#: Training on carried states: the clip of the batch a training frame belongs to, and its
#: position in that clip (0 = the clip's first frame). Written by the clip dataset wrapper, read by
#: the clip-training models (``mmvideoeq.models.clip_training``).
CLIP_INDEX_KEY = 'clip_index'
CLIP_STEP_KEY = 'clip_step'


def skip_reason(meta: Mapping[str, Any] | Any) -> str | None:
    """The skip reason of a frame (a metainfo mapping or a data sample), or ``None``."""
    if not isinstance(meta, Mapping):
        meta = getattr(meta, 'metainfo', {})
    reason = meta.get(SKIP_KEY)
    return None if not reason else str(reason)
