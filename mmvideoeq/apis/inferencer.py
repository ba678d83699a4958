"""``StreamingInferencer``: StreamDEQ inference on a live stream of frames, for user code.

    >>> infer = StreamingInferencer('configs/x.py', 'model.pth', iters=2)
    >>> for frame in frames:              # BGR uint8 arrays (H, W, 3) or image paths
    ...     pred = infer(frame)            # warm-started from the previous frame's fixed point
    >>> infer.reset()                      # a new video

The inferencer owns one :class:`~mmvideoeq.streaming.StreamState` and one
:class:`~mmvideoeq.streaming.StreamPolicy` and drives them through
:func:`~mmvideoeq.streaming.run_stream`; the model stays stateless (the streaming protocol of
``mmvideoeq.streaming.StreamingModel``). The stream keeps the records of its last
``max_history`` frames (1000 by default), so a live stream runs in constant memory. A frame whose
solve diverged comes back with ``pred.metainfo['diverged'] = True``.

Class names and colours come from the checkpoint's ``meta.dataset_meta`` (as mmdet's and mmseg's
inferencers take them), else from the config's test dataset: ``infer.dataset_meta['classes']``
names ``pred.pred_instances.labels`` / ``pred.pred_sem_seg``, and :meth:`visualize` draws a
prediction with the config's visualizer and those names.
"""

from __future__ import annotations

import copy
import inspect
import os.path as osp
import tempfile
import time
from typing import Any

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate

from mmvideoeq.registry import DATASETS, MODELS, VISUALIZERS
from mmvideoeq.streaming import (
    StreamFrame,
    StreamPolicy,
    StreamState,
    check_streaming_model,
    run_stream,
)
from mmvideoeq.utils.checkpoint import load_weights


def _test_pipeline(cfg: Config) -> list[dict]:
    pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    # annotation loaders (mmdet/mmseg LoadAnnotations, LoadPanopticAnnotation, ...) need files
    pipeline = [t for t in pipeline if 'Annotation' not in t['type']]
    if not pipeline or 'LoadImage' not in pipeline[0]['type']:
        raise ValueError(
            'the test pipeline must start with an image loading transform, got ' f'{pipeline[:1]}'
        )
    pipeline[0] = dict(type='mmdet.LoadImageFromNDArray')
    for t in pipeline:
        if 'Pack' in t['type'] and 'meta_keys' in t:
            t['meta_keys'] = tuple(k for k in t['meta_keys'] if k not in ('instances',))
    return pipeline


def dataset_meta_of(checkpoint: dict | None, cfg: Config) -> dict:
    """Class names (and palette, ...) of a model: the checkpoint's, else the test dataset's.

    Args:
        checkpoint: The loaded checkpoint (``meta.dataset_meta`` as mmengine's runner saves it),
            or None.
        cfg: The config; its ``test_dataloader.dataset`` type's ``METAINFO`` updated by the
            dataset's ``metainfo`` (mmengine ``BaseDataset._load_metainfo``) is the fallback.

    Returns:
        The metainfo dict, keys lower-cased as mmdet's ``DetInferencer`` does ({} if none).
    """
    meta = ((checkpoint or {}).get('meta') or {}).get('dataset_meta')
    if meta:
        return {str(k).lower(): v for k, v in meta.items()}
    ds = cfg.get('test_dataloader', {}).get('dataset', {})
    while 'dataset' in ds and 'type' in ds and 'metainfo' not in ds:  # wrappers
        ds = ds['dataset']
    try:
        cls = DATASETS.get(ds['type'])
    except (KeyError, TypeError):
        cls = None
    if cls is None or not hasattr(cls, '_load_metainfo'):
        return dict(ds.get('metainfo') or {})
    return dict(cls._load_metainfo(copy.deepcopy(ds.get('metainfo'))))


class StreamingInferencer:
    """Frame-by-frame StreamDEQ inference keeping the fixed point between calls.

    Args:
        model: A config path / :class:`Config`, or a built model with the streaming protocol.
        checkpoint: Checkpoint to load (config input only).
        device: Torch device.
        iters: Solver steps per frame (a :class:`FixedBudget`), unless ``policy`` is given.
        policy: A :class:`StreamPolicy` config dict (budget, init, shot_change) or instance.
        cfg: The config, when ``model`` is a built model (for the test pipeline).
        max_history: Frame records kept in the stream state (``policy`` dicts only).
        allow_missing_weights: Accept a checkpoint that leaves model weights missing.
    """

    def __init__(
        self,
        model: Any,
        checkpoint: str | None = None,
        *,
        device: str = 'cpu',
        iters: int = 2,
        policy: dict | StreamPolicy | None = None,
        cfg: Config | None = None,
        max_history: int = 1000,
        allow_missing_weights: bool = False,
    ) -> None:
        from mmvideoeq.utils import register_all_modules

        register_all_modules(init_default_scope=True)
        ckpt = None
        if isinstance(model, (str, Config)):
            cfg = Config.fromfile(model) if isinstance(model, str) else model
            model = MODELS.build(cfg.model)
            if checkpoint is not None:  # weights-only, and refused when weights are missing
                ckpt = load_weights(model, checkpoint, allow_missing=allow_missing_weights)
        if cfg is None:
            raise ValueError('pass cfg= (for the test pipeline) together with a built model')
        check_streaming_model(model)
        self.cfg = cfg
        self.model = model.to(device).eval()
        #: class names (``classes``), ``palette``, ...: the checkpoint's, else the config's dataset
        own = getattr(model, 'dataset_meta', None)
        self.dataset_meta = dataset_meta_of(ckpt, cfg) if ckpt is not None or not own else dict(own)
        self.model.dataset_meta = self.dataset_meta
        self._visualizer = None
        self.device = device
        self.pipeline = Compose(_test_pipeline(cfg))
        if policy is None:
            policy = dict(budget=dict(type='FixedBudget', iters=int(iters)))
        if not isinstance(policy, StreamPolicy):
            policy = StreamPolicy.from_cfg(dict(dict(max_history=max_history), **policy))
        self.policy = policy
        self.video = 0
        self.reset()

    def reset(self) -> None:
        """Start a new video: the next frame starts cold (per the policy's ``init``)."""
        self.video += 1
        self.stream_id = f'stream{self.video}'
        self._states: dict[str, StreamState] = {}
        self.frame_index = -1
        self.last_ms = float('nan')

    @property
    def state(self) -> StreamState:
        """The stream's state (cold before the first frame of a video)."""
        return self._states.get(self.stream_id) or self.policy.init_state(self.stream_id)

    @torch.no_grad()
    def __call__(self, frame: np.ndarray | str) -> Any:
        """Predict one frame (BGR ``(H, W, 3)`` uint8 array or an image path)."""
        if isinstance(frame, str):
            import mmcv

            frame = mmcv.imread(frame)
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(
                f'frame must be an (H, W, 3) BGR array or a path, got '
                f'{getattr(frame, "shape", type(frame))}'
            )
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise ValueError(f'frame is empty ({frame.shape[1]}x{frame.shape[0]} pixels)')
        t0 = time.perf_counter()
        self.frame_index += 1
        data = self.pipeline(dict(img=frame, img_id=self.frame_index))
        data = self.model.data_preprocessor(pseudo_collate([data]), False)
        inputs, samples = data['inputs'], data['data_samples']

        frame_in = StreamFrame(inputs, self.stream_id, self.frame_index, payload=samples[0])
        run = run_stream(
            self.model.stream_step,
            [frame_in],
            self.policy,
            states=self._states,
            zeros_like_fn=self.model.stream_zero_state,
        )
        pred = run.outputs[0]
        pred.set_metainfo(dict(diverged=run.records[0].diverged))
        self.last_ms = (time.perf_counter() - t0) * 1000.0
        return pred

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names indexed by label (``()`` when neither checkpoint nor config has them)."""
        return tuple(self.dataset_meta.get('classes') or ())

    def visualize(
        self,
        frame: np.ndarray | str,
        pred: Any,
        *,
        score_thr: float = 0.3,
        out_file: str | None = None,
    ) -> np.ndarray:
        """Draw a prediction on its frame with the config's visualizer and the class names.

        Args:
            frame: The BGR ``(H, W, 3)`` frame (or image path) that was predicted.
            pred: What :meth:`__call__` returned for it.
            score_thr: Boxes below this score are not drawn (detectors).
            out_file: Also write the drawing there.

        Returns:
            The drawing as written, BGR uint8 (``(H, W, 3)`` for detectors and segmentors;
            ViP-DeepLab: image | panoptic | depth over a legend).
        """
        import mmcv

        if self._visualizer is None:
            vis_cfg = copy.deepcopy(
                self.cfg.get('visualizer') or dict(type='DetStuffLocalVisualizer')
            )
            vis_cfg['name'] = f'streaming_inferencer_{id(self)}'
            vis_cfg.pop('save_dir', None)
            vis_cfg['vis_backends'] = None
            self._visualizer = VISUALIZERS.build(vis_cfg)
            self._visualizer.dataset_meta = self.dataset_meta
        image = mmcv.imread(frame) if isinstance(frame, str) else frame
        params = inspect.signature(self._visualizer.add_datasample).parameters
        kw = dict(pred_score_thr=score_thr) if 'pred_score_thr' in params else {}
        # every visualizer writes exactly what it drew (mmcv.imwrite); read that back
        with tempfile.TemporaryDirectory() as tmp:
            path = out_file or osp.join(tmp, 'frame.png')
            self._visualizer.add_datasample(
                'frame',
                np.ascontiguousarray(image[..., ::-1]),
                data_sample=pred,
                draw_gt=False,
                out_file=path,
                **kw,
            )
            return mmcv.imread(path)
