"""The loop's side of the real-time simulation: what it collects from the accuracy passes, its
replay of a setting on the frames a real-time worker takes, stage timing for pipelined rows.

:class:`~.realtime_eval.RealtimeSweep` does the simulation and the scoring; the
``StreamingTestLoop`` feeds it with :func:`frame_logs` during its accuracy passes and then calls
:func:`run_realtime`, which finds the ground truth (:func:`detection_ground_truth`), times the
pipeline stages (:func:`stage_times`) and replays settings (:func:`replay_stream`). For
semantic segmentation (an mmseg ``IoUMetric``, :func:`segmentation_scoring`) the frame logs keep
each frame's predicted and ground-truth label maps and the simulation scores streaming mIoU; for
DVPS (a ``DVPQMetric``, :func:`panoptic_scoring`) they keep each frame's predicted and
ground-truth panoptic ids and depth (:class:`~mmvideoeq.evaluation.metrics.PanopticFrame`) and
the simulation scores streaming PQ / DVPQ.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from mmengine.dist import (
    all_gather_object,
    broadcast_object_list,
    get_world_size,
    is_main_process,
)
from mmengine.runner import autocast

from mmvideoeq.evaluation.metrics.dvps_metric import DVPQMetric, sample_array
from mmvideoeq.evaluation.metrics.streaming_dvpq import DVPQScoring, PanopticFrame
from mmvideoeq.evaluation.metrics.streaming_miou import IoUScoring
from mmvideoeq.streaming import (
    FixedBudget,
    PipelinedStream,
    StreamFrame,
    StreamPolicy,
    run_stream,
)
from mmvideoeq.structures import SKIP_KEY

from .realtime_eval import FrameLog, RealtimeSweep

__all__ = [
    'detection_ground_truth',
    'segmentation_scoring',
    'panoptic_scoring',
    'prediction_of',
    'frame_logs',
    'replay_stream',
    'stage_times',
    'device_name',
    'run_realtime',
]


def detection_ground_truth(metrics: Sequence[Any]) -> tuple[Any, list[int]] | None:
    """``(pycocotools COCO, cat_ids)`` of the first evaluated detection metric (after
    ``evaluate``: mmdet's ``CocoMetric`` family keeps ``_coco_api`` and ``cat_ids``), else None."""
    for metric in metrics:
        coco, cat_ids = getattr(metric, '_coco_api', None), getattr(metric, 'cat_ids', None)
        if coco is not None and cat_ids is not None:
            return coco, list(cat_ids)
    return None


def segmentation_scoring(metrics: Sequence[Any]) -> IoUScoring | None:
    """The :class:`IoUScoring` of the first mmseg ``IoUMetric`` (``StreamingIoUMetric``
    included) among ``metrics`` that scores (not ``format_only``), else None."""
    from mmseg.evaluation import IoUMetric

    for metric in metrics:
        if isinstance(metric, IoUMetric) and not metric.format_only:
            return IoUScoring.of(metric)
    return None


def panoptic_scoring(metrics: Sequence[Any]) -> DVPQScoring | None:
    """The :class:`DVPQScoring` of the first ``DVPQMetric`` among ``metrics``, else None."""
    for metric in metrics:
        if isinstance(metric, DVPQMetric):
            return DVPQScoring.of(metric)
    return None


def _numpy(value: Any) -> np.ndarray:
    return np.asarray(value.detach().cpu().numpy() if hasattr(value, 'detach') else value)


def _label_map(pixel_data: Any) -> np.ndarray:
    """A ``(1, H, W)`` / ``(H, W)`` label map as a compact ``(H, W)`` numpy array."""
    arr = _numpy(pixel_data.data if hasattr(pixel_data, 'data') else pixel_data)
    arr = arr.reshape(arr.shape[-2:])
    if arr.size and arr.min() >= 0 and arr.max() < 256:
        return arr.astype(np.uint8)  # label maps of every frame are kept: keep them small
    return arr.astype(np.int32)


def ground_truth_map_of(sample: Any) -> np.ndarray | None:
    """The ``gt_sem_seg`` label map ``(H, W)`` of a frame the segmentation metrics evaluate
    (it has one and its metainfo does not say ``is_annotated=False``), else None."""
    if sample.metainfo.get('is_annotated', True) is False or 'gt_sem_seg' not in sample:
        return None
    return _label_map(sample.gt_sem_seg)


def _panoptic_frame(sample: Any, prefix: str) -> PanopticFrame | None:
    """``<prefix>_panoptic`` (int32) and ``<prefix>_depth`` (float32, or None) as ``(H, W)``
    numpy arrays, compact because every frame's maps are kept; None without panoptic ids."""
    ids = sample_array(sample, f'{prefix}_panoptic')
    if ids is None:
        return None
    depth = sample_array(sample, f'{prefix}_depth')
    compact = np.int32 if ids.size == 0 or ids.max() < 2**31 else np.int64
    return PanopticFrame(
        ids.astype(compact), None if depth is None else depth.astype(np.float32, copy=False)
    )


def ground_truth_panoptic_of(sample: Any) -> PanopticFrame | None:
    """The ``gt_panoptic`` and ``gt_depth`` of a frame (DVPS), else None."""
    return _panoptic_frame(sample, 'gt')


def prediction_of(
    sample: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | np.ndarray | PanopticFrame | None:
    """The detections of a data sample as numpy ``(bboxes, scores, labels)``, its predicted
    panoptic ids and depth (``pred_panoptic``, ``pred_depth``: a :class:`PanopticFrame`, DVPS),
    its predicted label map ``(H, W)`` (``pred_sem_seg``, segmentation), or None."""
    if hasattr(sample, 'get') and sample.get('pred_panoptic') is not None:
        return _panoptic_frame(sample, 'pred')
    if hasattr(sample, 'get') and sample.get('pred_sem_seg') is not None:
        return _label_map(sample.get('pred_sem_seg'))
    pred = sample.get('pred_instances') if hasattr(sample, 'get') else None
    if pred is None:
        return None
    out = []
    for key in ('bboxes', 'scores', 'labels'):
        v = pred[key]
        out.append(np.asarray(v.detach().cpu().numpy() if hasattr(v, 'detach') else v))
    return out[0].reshape(-1, 4), out[1].reshape(-1), out[2].reshape(-1)


def frame_logs(preds: list, recs: list, arrivals: dict, pre_ms: float) -> list[FrameLog]:
    """The batch's frames for the real-time simulation: arrival index in their video,
    image id, ms (the model step and a share of the batch's pre-processing), detections; for
    segmentation (a ``pred_sem_seg``) the predicted and the ground-truth label maps instead of
    detections and image id; for DVPS (a ``pred_panoptic``) the predicted and ground-truth
    panoptic ids and depth (:class:`PanopticFrame`; a skipped frame has no ground truth, as
    ``DVPQMetric`` leaves it out)."""
    logs = []
    for pred, rec in zip(preds, recs):
        img_id = pred.metainfo.get('img_id')
        panoptic = 'pred_panoptic' in pred or 'gt_panoptic' in pred
        segmentation = not panoptic and ('pred_sem_seg' in pred or 'gt_sem_seg' in pred)
        done = rec.skipped is None
        if img_id is None and not (segmentation or panoptic) and done:
            raise ValueError(
                f'frame {rec.frame_id} of video {rec.video_id!r} has no img_id in its '
                "metainfo: the real-time simulation pairs frames with the ground truth's "
                "images; keep img_id in PackDetInputs' meta_keys"
            )
        index = arrivals[rec.video_id] = arrivals.get(rec.video_id, -1) + 1
        logs.append(
            FrameLog(
                rec.video_id,
                index,
                None if img_id is None else int(img_id),
                rec.ms + pre_ms / len(recs),
                prediction_of(pred) if done else None,
                pre_ms / len(recs),
                ground_truth_map_of(pred)
                if segmentation
                else ground_truth_panoptic_of(pred)
                if panoptic and done
                else None,
            )
        )
    return logs


@torch.no_grad()
def replay_stream(
    model: Any, dataloader: Any, setting: dict, plan: dict[Any, dict[int, int | None]]
) -> dict[Any, dict[int, Any]]:
    """Run a setting's stream on the planned frames only (a :data:`ReplayFn` for a loop).

    Walks ``dataloader`` in order and streams, per video, the frames whose arrival index is in
    ``plan[video]``, each warm-started from the previous frame *processed* (the policy's gap
    reset is off: the frames in between were skipped by the real-time worker, not lost), with
    ``FixedBudget(M)`` where the plan gives ``M``. With several processes each replays its own
    videos and the predictions are gathered.

    Returns:
        dict: video -> {frame index: ``(bboxes, scores, labels)``, a label map ``(H, W)``, a
        :class:`PanopticFrame`, or None}.
    """
    policy = StreamPolicy.from_cfg(dict(setting['policy'], gap_response='continue', max_history=0))
    states: dict = {}
    positions: dict[Any, int] = {}
    out: dict[Any, dict[int, Any]] = {}
    for data_batch in dataloader:
        data = model.data_preprocessor(data_batch, False)
        for i, sample in enumerate(data['data_samples']):
            meta = sample.metainfo
            vid = meta['video_id']
            j = positions[vid] = positions.get(vid, -1) + 1
            todo = plan.get(vid)
            if todo is None or j not in todo:
                continue
            if todo[j] is not None:
                policy.budget = FixedBudget(todo[j])
            frame = StreamFrame(
                data['inputs'][i : i + 1], vid, meta['frame_id'], payload=sample,
                skip=meta.get(SKIP_KEY),
            )  # fmt: skip
            run = run_stream(
                model.stream_step, [frame], policy, states=states,
                zeros_like_fn=model.stream_zero_state,
            )  # fmt: skip
            pred = run.outputs[0]
            out.setdefault(vid, {})[j] = None if pred is None else prediction_of(pred)
    if get_world_size() > 1:
        merged: dict[Any, dict[int, Any]] = {}
        for part in all_gather_object(out):
            for vid, preds in part.items():
                merged.setdefault(vid, {}).update(preds)
        out = merged
    return out


@torch.no_grad()
def stage_times(model: Any, setting: dict, batches: list[dict], *, repeats: int = 3) -> list[float]:
    """Median ms per stage (stem / solve / heads, ``model.stream_stages()``) of a setting's
    stream over pre-processed ``batches``, the stages run one after the other in the calling
    thread (:meth:`~mmvideoeq.streaming.PipelinedStream.run_sequential`), after one warm-up."""
    frames = [
        StreamFrame(
            data['inputs'][i : i + 1], s.metainfo['video_id'], s.metainfo['frame_id'], payload=s
        )
        for data in batches
        for i, s in enumerate(data['data_samples'])
    ]
    per_frame: list[list[float]] = []
    for r in range(repeats + 1):
        pipe = PipelinedStream(
            model.stream_stages(),
            StreamPolicy.from_cfg(setting['policy']),
            zeros_like_fn=model.stream_zero_state,
            intra_op_threads=None,
        )
        run = pipe.run_sequential(copy.deepcopy(frames))
        if r > 0:
            per_frame += run.stage_ms
    return [statistics.median(s) for s in zip(*per_frame)]


def device_name() -> str:
    """The device the latencies are measured on, for a latency table."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    return f'CPU {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} intra-op threads'


def run_realtime(loop: Any, sweep: RealtimeSweep) -> dict | None:
    """Play every setting of a ``StreamingTestLoop`` sweep back in real time.

    Every process takes part (the replays gather across processes); rank 0's timings and stage
    times are shared so that all simulate the same schedules; only rank 0 scores.

    Returns:
        dict | None: The ``realtime`` section of ``results.json`` (:meth:`RealtimeSweep.run`) on
        the main process; ``None`` elsewhere, or without a detection metric, an mmseg
        ``IoUMetric`` or a ``DVPQMetric`` (with a warning).
    """
    gt = None
    if is_main_process():
        metrics = loop.evaluator.metrics
        # DVPS samples carry a pred_sem_seg too: their panoptic metric goes first
        gt = (
            detection_ground_truth(metrics)
            or panoptic_scoring(metrics)
            or segmentation_scoring(metrics)
        )
    found = [gt is not None]
    if get_world_size() > 1:
        broadcast_object_list(found)
    if not found[0]:
        loop.runner.logger.warning(
            'real-time simulation skipped: it scores detections (streaming AP, a metric with '
            'COCO ground truth, e.g. VIDMetric), semantic segmentation (streaming mIoU, an '
            'mmseg IoUMetric such as StreamingIoUMetric) or depth-aware video panoptic '
            'segmentation (streaming PQ / DVPQ, a DVPQMetric); the evaluator has none of them'
        )
        return None
    loop.runner.logger.info(f'real-time simulation at {sweep.fps} fps (eta {sweep.eta})')
    model = loop.model
    batches = getattr(loop, '_timing_batches', None)
    if sweep.pipeline and batches and hasattr(model, 'stream_stages'):
        for name, setting in sweep.settings.items():
            if name.startswith('stream@'):  # stage 0 also pre-processes
                stages = stage_times(model, setting, batches)
                pre = statistics.median(f.pre_ms for f in sweep.frames[name])
                stages = [stages[0] + pre, *stages[1:]]
                # the setting's latency split in the measured proportions: the pipeline does
                # the same work, so its stages sum to what the sequential stream costs
                scale = sweep.constant_ms(name) / sum(stages) if sum(stages) > 0 else 1.0
                sweep.set_stages(name, [t * scale for t in stages])
    if get_world_size() > 1:  # every process must simulate the same schedules: rank 0's
        shared = [{n: s.get('timing') for n, s in sweep.settings.items()}, dict(sweep.stage_ms)]
        broadcast_object_list(shared)
        for name, timing in shared[0].items():
            sweep.settings[name]['timing'] = timing
        sweep.stage_ms = shared[1]
    if sweep.save_latency_table and is_main_process():
        sweep.latency_table(device_name()).save(sweep.save_latency_table)

    def replay(setting: dict, plan: dict) -> dict:
        with autocast(enabled=loop.fp16):
            return replay_stream(model, loop.dataloader, setting, plan)

    return sweep.run(gt, replay)
