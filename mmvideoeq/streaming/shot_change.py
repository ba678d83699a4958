"""Shot-change detection for streaming DEQ inference (plain PyTorch).

StreamDEQ assumes consecutive frames are similar; after an abrupt change (a cut, or two clips
joined together) the previous fixed point is a poor start and the representation needs a few
frames to recover (Ertenli 2022, Sec. 4.1.3). Two cheap signals detect such a change:

* **residual jump**: the relative residual at the initial point of the solve,
  ``stats.rel_trace[:, 0] = ||f(z0) - z0|| / ||f(z0)||``, is small while the video is smooth
  (``z0`` is the previous frame's fixed point) and jumps at a cut. A frame is a change when this
  residual exceeds ``residual_ratio`` times its running average over the stream (and exceeds
  ``min_residual``). It is known only after the first solve of the frame, so acting on it costs a
  follow-up solve.
* **input difference**: the mean absolute difference between the frame and the previous frame,
  both average-pooled to ``thumb_size x thumb_size``, exceeds ``input_diff`` (in the units of the
  model input, e.g. normalised pixels). It is known before the solve.

The detector only decides; :class:`~mmvideoeq.streaming.StreamPolicy` is the one place that acts
on it, with the configured ``response``: ``'extra_iters'`` (spend ``extra_iters`` more iterations
on that frame), ``'reset'`` (restart the frame like the first frame of a video) or ``'none'``
(only record it).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from mmvideoeq.utils.checks import check_positive

__all__ = ['ShotChangeDetector', 'SHOT_RESPONSES']

SHOT_RESPONSES = ('extra_iters', 'reset', 'none')


class ShotChangeDetector:
    """Detects abrupt content changes in a stream from the solver residual and/or the input.

    Args:
        residual_ratio: A frame is a change when its first relative residual exceeds
            ``residual_ratio`` times the running average (``> 1``); ``None`` disables the signal.
        input_diff: A frame is a change when the mean absolute difference of the downsampled frame
            and the previous one exceeds this value; ``None`` disables the signal.
        response: ``'extra_iters'``, ``'reset'`` or ``'none'`` (see the module docstring).
        extra_iters: Iterations added to a changed frame with ``response='extra_iters'``.
        ema_decay: Weight of the previous value in the running residual average, in ``[0, 1)``.
        warmup: Warm frames to average after a reset before the residual signal may fire.
        min_residual: The residual signal fires only when the first relative residual is also above
            this value (avoids flagging ratios of tiny, already-converged residuals).
        thumb_size: Side of the pooled thumbnail used by the input signal.
    """

    def __init__(
        self,
        *,
        residual_ratio: float | None = 3.0,
        input_diff: float | None = None,
        response: str = 'extra_iters',
        extra_iters: int = 4,
        ema_decay: float = 0.9,
        warmup: int = 3,
        min_residual: float = 1e-3,
        thumb_size: int = 16,
    ) -> None:
        self.residual_ratio = check_positive('residual_ratio', residual_ratio, allow_none=True)
        if self.residual_ratio is not None and self.residual_ratio <= 1:
            raise ValueError(
                f'residual_ratio must be > 1 (a jump above the running average), got '
                f'{residual_ratio!r}'
            )
        self.input_diff = check_positive('input_diff', input_diff, allow_none=True)
        if self.residual_ratio is None and self.input_diff is None:
            raise ValueError(
                'ShotChangeDetector needs at least one signal: set residual_ratio '
                'and/or input_diff (or use shot_change=None to disable detection)'
            )
        if response not in SHOT_RESPONSES:
            raise ValueError(f'response must be one of {SHOT_RESPONSES}, got {response!r}')
        self.response = response
        if isinstance(extra_iters, bool) or not isinstance(extra_iters, int) or extra_iters < 1:
            raise ValueError(f'extra_iters must be an int >= 1, got {extra_iters!r}')
        self.extra_iters = extra_iters
        if (
            isinstance(ema_decay, bool)
            or not isinstance(ema_decay, (int, float))
            or not 0 <= ema_decay < 1
        ):
            raise ValueError(f'ema_decay must be in [0, 1), got {ema_decay!r}')
        self.ema_decay = float(ema_decay)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f'warmup must be an int >= 1, got {warmup!r}')
        self.warmup = warmup
        if (
            isinstance(min_residual, bool)
            or not isinstance(min_residual, (int, float))
            or not math.isfinite(min_residual)
            or min_residual < 0
        ):
            raise ValueError(f'min_residual must be a finite number >= 0, got {min_residual!r}')
        self.min_residual = float(min_residual)
        if isinstance(thumb_size, bool) or not isinstance(thumb_size, int) or thumb_size < 1:
            raise ValueError(f'thumb_size must be an int >= 1, got {thumb_size!r}')
        self.thumb_size = thumb_size

    @property
    def uses_input(self) -> bool:
        """Whether the input-difference signal is enabled."""
        return self.input_diff is not None

    @property
    def uses_residual(self) -> bool:
        """Whether the residual-jump signal is enabled."""
        return self.residual_ratio is not None

    def thumbnail(self, frame: Tensor) -> Tensor:
        """Downsample a frame for the input-difference signal.

        Args:
            frame: ``(1, C, H, W)`` or ``(C, H, W)`` image; any other ``(1, ...)`` tensor is used
                flattened, without pooling.

        Returns:
            Tensor: ``(C, thumb_size, thumb_size)`` (float32, detached) for images, else the
            flattened frame.
        """
        if not isinstance(frame, Tensor):
            raise TypeError(
                'the input-difference shot signal needs the frame as a Tensor, got '
                f'{type(frame).__name__}'
            )
        x = frame.detach().float()
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() == 4:
            if x.shape[0] != 1:
                raise ValueError(f'expected one frame (1, C, H, W), got shape {tuple(frame.shape)}')
            return F.adaptive_avg_pool2d(x, self.thumb_size)[0]
        if x.dim() >= 1 and x.shape[0] == 1:
            return x.flatten()
        raise ValueError(
            f'expected one frame (1, C, H, W) or (C, H, W), got shape ' f'{tuple(frame.shape)}'
        )

    def input_score(self, prev_thumb: Tensor | None, thumb: Tensor) -> float | None:
        """Mean absolute difference between two thumbnails (``None`` without a previous one)."""
        if prev_thumb is None:
            return None
        if prev_thumb.shape != thumb.shape:
            raise ValueError(
                f'frame thumbnails differ in shape ({tuple(prev_thumb.shape)} vs '
                f'{tuple(thumb.shape)}): the channel count of a stream changed'
            )
        return float((thumb - prev_thumb.to(thumb.device)).abs().mean())

    def check_input(self, prev_thumb: Tensor | None, thumb: Tensor) -> tuple[bool, float | None]:
        """Input-difference signal.

        Args:
            prev_thumb: Thumbnail of the previous frame of the stream, or ``None``.
            thumb: Thumbnail of the current frame (from :meth:`thumbnail`).

        Returns:
            tuple[bool, float | None]: (change detected, mean absolute difference).
        """
        score = self.input_score(prev_thumb, thumb)
        if self.input_diff is None or score is None:
            return False, score
        return score > self.input_diff, score

    def check_residual(
        self, avg: float | None, count: int, rel0: float
    ) -> tuple[bool, float | None]:
        """Residual-jump signal.

        Args:
            avg: Running average of the first relative residual of the stream (``None`` if none).
            count: Number of frames in the average.
            rel0: First relative residual of the current frame.

        Returns:
            tuple[bool, float | None]: (change detected, ratio ``rel0 / avg`` or ``None`` while the
            average is warming up).
        """
        if self.residual_ratio is None or avg is None or count < self.warmup:
            return False, None
        if not math.isfinite(rel0):
            return True, math.inf
        ratio = rel0 / max(avg, 1e-12)
        return ratio > self.residual_ratio and rel0 > self.min_residual, ratio

    def update_average(self, avg: float | None, count: int, rel0: float) -> tuple[float, int]:
        """Add one warm frame's first relative residual to the running (EMA) average."""
        if avg is None or count == 0:
            return rel0, 1
        return self.ema_decay * avg + (1.0 - self.ema_decay) * rel0, count + 1

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(residual_ratio={self.residual_ratio}, '
            f'input_diff={self.input_diff}, response={self.response!r}, '
            f'extra_iters={self.extra_iters}, ema_decay={self.ema_decay}, '
            f'warmup={self.warmup}, min_residual={self.min_residual}, '
            f'thumb_size={self.thumb_size})'
        )
