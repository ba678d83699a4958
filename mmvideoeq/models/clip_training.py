"""Training on carried states: a streaming model trained over video clips as it is streamed.

A streamed model starts each video from its zero state and then carries its state ``z`` from
frame to frame (StreamDEQ, thesis Eq. 3.5; the streamed RFP of ``docs/detectors.md``). Training
per image only ever starts from zeros, so what the carried state does over several frames is
untrained. Here a batch holds ``B`` clips of consecutive frames (``clip_index`` / ``clip_step`` in
each sample's metainfo, written by :class:`~mmvideoeq.datasets.VideoClipDataset` for the batches of
:class:`~mmvideoeq.datasets.VideoClipBatchSampler`) and the model is run along them exactly as the
streamed test runs it:

* the first frame of every clip starts from the zero state with the model's cold budget (the
  configured training solve, or ``cold_steps``),
* frame ``t`` starts from the state of frame ``t - 1`` of the same clip and runs
  ``stream_steps`` steps (the ``stream@M`` setting it is trained for),
* the detection (or other) loss is taken on every frame and averaged over the clip's frames,
* backpropagation is truncated: the carried state is detached every ``truncate`` frames
  (truncated backpropagation through time, Williams and Peng 1990), so a frame's loss reaches the
  frames of its window and no earlier one, and memory grows with ``truncate``, not with the clip.

All frames of one time step go through the model together (the batch of the step is the clips
still running; clips may have different lengths). Plain PyTorch: the model supplies a step and a
loss (:class:`ClipTrainable`); nothing here imports an mm* library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import Tensor

from mmvideoeq.structures import CLIP_INDEX_KEY, CLIP_STEP_KEY

__all__ = [
    'ClipTrainConfig',
    'ClipSchedule',
    'ClipTrainable',
    'ClipTrainingMixin',
    'carried_state_loss',
    'draw_steps',
]

Steps = int | tuple[int, int]


def _check_steps(name: str, value: Any, allow_none: bool = False) -> Steps | None:
    if value is None and allow_none:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f'{name} must be >= 1, got {value}')
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        lo, hi = value
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value) and 1 <= lo <= hi:
            return (lo, hi)
    raise ValueError(
        f'{name} must be an int >= 1 or a pair (lo, hi) with 1 <= lo <= hi'
        + (' or None' if allow_none else '')
        + f', got {value!r}'
    )


def draw_steps(steps: Steps) -> int:
    """``steps`` itself, or a uniform draw from ``[lo, hi]`` (global torch RNG)."""
    if isinstance(steps, int):
        return steps
    lo, hi = steps
    return int(torch.randint(lo, hi + 1, ()).item())


@dataclass(frozen=True)
class ClipTrainConfig:
    """How a model is trained on clips (see the module docstring).

    Args:
        stream_steps: Steps per carried frame (``M`` of the ``stream@M`` it is trained for), or
            ``(lo, hi)``: drawn uniformly per time step.
        cold_steps: Steps of a clip's first frame from the zero state, or ``(lo, hi)`` drawn per
            batch; ``None``: the model's configured training solve (RFP: ``train_steps`` or
            ``rfp_steps``; a DEQ: its train mode, e.g. the SUR draw).
        truncate: Frames per backpropagation window; the carried state is detached after every
            ``truncate`` frames of a clip (``1``: every frame is trained from a constant state).
    """

    stream_steps: Steps = 1
    cold_steps: Steps | None = None
    truncate: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, 'stream_steps', _check_steps('stream_steps', self.stream_steps))
        object.__setattr__(
            self, 'cold_steps', _check_steps('cold_steps', self.cold_steps, allow_none=True)
        )
        if isinstance(self.truncate, bool) or not isinstance(self.truncate, int):
            raise TypeError(f'truncate must be an int >= 1, got {self.truncate!r}')
        if self.truncate < 1:
            raise ValueError(f'truncate must be >= 1 (frames per window), got {self.truncate}')

    @classmethod
    def build(cls, cfg: ClipTrainConfig | dict | None) -> ClipTrainConfig:
        """From a config dict (``None``: the defaults)."""
        if isinstance(cfg, cls):
            return cfg
        if cfg is None:
            return cls()
        if not isinstance(cfg, dict):
            raise TypeError(f'clip_train_cfg must be a dict or None, got {type(cfg).__name__}')
        unknown = sorted(set(cfg) - {'stream_steps', 'cold_steps', 'truncate'})
        if unknown:
            raise ValueError(
                f'clip_train_cfg has unknown keys {unknown}; it takes stream_steps, cold_steps '
                'and truncate'
            )
        return cls(**cfg)


def _meta(sample: Any) -> dict:
    return sample.metainfo if hasattr(sample, 'metainfo') else dict(sample)


@dataclass(frozen=True)
class ClipSchedule:
    """Which samples of a batch run at each time step, and of which clip.

    Attributes:
        steps: Per time step ``t``, the batch indices of the frames at position ``t`` of their
            clips, ordered by clip.
        clips: Per time step, the clip of each of those frames (same order).
        num_clips: Clips in the batch.
    """

    steps: tuple[tuple[int, ...], ...]
    clips: tuple[tuple[int, ...], ...]
    num_clips: int

    @classmethod
    def from_samples(cls, samples: Sequence[Any]) -> ClipSchedule | None:
        """Read ``clip_index`` / ``clip_step`` from the samples' metainfo.

        Returns ``None`` when no sample has them (a per-frame batch).

        Raises:
            ValueError: Some samples have them and others not, a clip's steps are not
                ``0..L-1``, or (when the metainfo has ``video_id``/``frame_id``) a clip's frames
                are not consecutive frames of one video.
        """
        metas = [_meta(s) for s in samples]
        has = [CLIP_INDEX_KEY in m and CLIP_STEP_KEY in m for m in metas]
        if not any(has):
            return None
        if not all(has):
            raise ValueError(
                f'{has.count(False)} of {len(has)} samples have no {CLIP_INDEX_KEY}/'
                f'{CLIP_STEP_KEY} metainfo: a clip batch must come whole from '
                'VideoClipBatchSampler over a VideoClipDataset'
            )
        by_clip: dict[int, dict[int, int]] = {}
        for i, m in enumerate(metas):
            steps = by_clip.setdefault(int(m[CLIP_INDEX_KEY]), {})
            t = int(m[CLIP_STEP_KEY])
            if t in steps:
                raise ValueError(f'clip {m[CLIP_INDEX_KEY]} has step {t} twice in the batch')
            steps[t] = i
        clip_ids = sorted(by_clip)
        length = 0
        for c in clip_ids:
            steps = by_clip[c]
            if sorted(steps) != list(range(len(steps))):
                raise ValueError(
                    f'clip {c} has steps {sorted(steps)}; a clip must hold steps 0..L-1'
                )
            frames = [metas[steps[t]] for t in range(len(steps))]
            for a, b in zip(frames, frames[1:]):
                ids = ('video_id', 'frame_id')
                if all(k in a and k in b for k in ids) and (
                    a['video_id'] != b['video_id'] or b['frame_id'] != a['frame_id'] + 1
                ):
                    raise ValueError(
                        f'clip {c} is not consecutive frames of one video: frame '
                        f'{a["video_id"]}/{a["frame_id"]} is followed by '
                        f'{b["video_id"]}/{b["frame_id"]}'
                    )
            length = max(length, len(steps))
        step_idx, step_clips = [], []
        for t in range(length):
            running = [c for c in clip_ids if t in by_clip[c]]
            step_idx.append(tuple(by_clip[c][t] for c in running))
            step_clips.append(tuple(clip_ids.index(c) for c in running))
        return cls(tuple(step_idx), tuple(step_clips), len(clip_ids))


class ClipTrainingMixin:
    """Training on carried states for a streaming model, mixed in before the mmdet / mmseg model.

    Adds the ``clip_train_cfg`` argument and a ``loss`` that trains a batch of clips (samples
    with ``clip_index`` / ``clip_step`` metainfo, :class:`ClipSchedule`) with
    :func:`carried_state_loss` and any other batch per frame with the model's own ``loss``. The
    model implements :class:`ClipTrainable` and :meth:`_check_clip_trainable`.

    Args:
        clip_train_cfg: :class:`ClipTrainConfig` fields for batches of clips (``None``: the
            defaults).
        **kwargs: The model's own arguments.
    """

    def __init__(self, *, clip_train_cfg: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clip_train_cfg = ClipTrainConfig.build(clip_train_cfg)

    def _check_clip_trainable(self) -> None:
        """Raise when this model cannot run a streamed step (checked before a batch of clips)."""

    def loss(self, batch_inputs: Tensor, batch_data_samples: list) -> dict:
        """The model's per-frame loss, or, for a batch of clips, the loss on carried states
        (averaged over the frames)."""
        schedule = ClipSchedule.from_samples(batch_data_samples)
        if schedule is None:
            return super().loss(batch_inputs, batch_data_samples)
        self._check_clip_trainable()
        return carried_state_loss(
            self, batch_inputs, batch_data_samples, schedule, self.clip_train_cfg
        )


class ClipTrainable(Protocol):
    """What a model implements to be trained on carried states."""

    def clip_train_step(
        self, inputs: Tensor, z0: list[Tensor] | None, cfg: ClipTrainConfig
    ) -> tuple[list[Tensor], Any, dict[str, Tensor]]:
        """One differentiable streamed step of ``n`` frames.

        Args:
            inputs: Frames ``(n, C, H, W)``.
            z0: Their clips' carried states (``S`` tensors ``(n, ...)``), or ``None`` (first
                frames: start from the zero state with the cold budget).
            cfg: The clip-training configuration.

        Returns:
            tuple: the new state (``S`` tensors ``(n, ...)``, with autograd), the features the
            loss takes, and extra losses of the step (e.g. a regulariser; may be empty).
        """
        ...

    def loss_from_feats(self, feats: Any, data_samples: list) -> dict:
        """The model's training losses on given features (mmdet's loss dict)."""
        ...


def _add(total: dict, losses: dict, weight: float) -> None:
    for key, value in losses.items():
        if isinstance(value, (list, tuple)):
            scaled = [v * weight for v in value]
            total[key] = scaled if key not in total else [a + b for a, b in zip(total[key], scaled)]
        elif isinstance(value, Tensor):
            total[key] = value * weight if key not in total else total[key] + value * weight


def carried_state_loss(
    model: ClipTrainable,
    inputs: Tensor,
    data_samples: Sequence[Any],
    schedule: ClipSchedule,
    cfg: ClipTrainConfig,
    *,
    on_step: Callable[[int, list[Tensor]], None] | None = None,
) -> dict:
    """The losses of a batch of clips, run as the streamed test runs them.

    Args:
        model: A :class:`ClipTrainable` model.
        inputs: All frames of the batch ``(N, C, H, W)`` (any order; ``schedule`` indexes it).
        data_samples: Their ``N`` data samples.
        schedule: Which frames run at each time step (:meth:`ClipSchedule.from_samples`).
        cfg: Steps and truncation.
        on_step: Called as ``on_step(t, z)`` with each step's new state (for inspection).

    Returns:
        dict: Every loss of the model, averaged over all ``N`` frames (a time step's losses,
        which the model averages over its frames, are weighted by its number of frames), plus the
        steps' extra losses averaged the same way.
    """
    total: dict = {}
    n_frames = sum(len(idx) for idx in schedule.steps)
    carried: list[list[Tensor] | None] = [None] * schedule.num_clips
    for t, (idx, clips) in enumerate(zip(schedule.steps, schedule.clips)):
        x = inputs[list(idx)]
        if t == 0:
            z0 = None
        else:
            states = [carried[c] for c in clips]
            z0 = [torch.cat(level, dim=0) for level in zip(*states)]
        z, feats, extra = model.clip_train_step(x, z0, cfg)
        samples = [data_samples[i] for i in idx]
        weight = len(idx) / n_frames
        _add(total, model.loss_from_feats(feats, samples), weight)
        _add(total, extra, weight)
        if on_step is not None:
            on_step(t, z)
        if (t + 1) % cfg.truncate == 0:  # end of a window: later frames get no gradient here
            z = [level.detach() for level in z]
        for row, c in enumerate(clips):
            carried[c] = [level[row : row + 1] for level in z]
    return total
