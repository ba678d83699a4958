"""Data shared by every floor of mmvideoeq: per-frame metadata keys (plain Python, no imports).

mmdet keeps its ``structures/`` below models, datasets and evaluation; mmvideoeq does the same
for what a frame carries through the stack: why a frame was not evaluated, its offset in its
clip, and what the stream did with it. Datasets, metrics, the engine and the APIs all import the
keys from here, so no floor imports a higher one for a constant.
"""

from .frame_meta import (
    CLIP_INDEX_KEY,
    CLIP_STEP_KEY,
    DIVERGED_KEY,
    FRAME_OFFSET_KEY,
    SKIP_KEY,
    STREAM_EVALS_KEY,
    STREAM_ITERS_KEY,
    STREAM_SETTING_KEY,
    skip_reason,
)

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
