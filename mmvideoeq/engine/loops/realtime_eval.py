"""Real-time simulation of a streaming sweep: streaming AP (sAP), streaming mIoU or streaming
PQ / DVPQ next to the offline value.

After the sweep's accuracy passes, every setting is played back in real time at each frame rate
(Li, Wang, Ramanan, *Towards Streaming Perception*, ECCV 2020; the reference simulator and
pairing of github ``mtli/sAP``, :mod:`mmvideoeq.streaming.realtime` and
:mod:`mmvideoeq.evaluation.functional.streaming_ap`): frames of a video arrive every ``1 / fps``;
one worker takes the latest frame whenever it is free and spends the frame's latency on it; every
ground-truth frame is scored with the latest output finished by its time: with COCO AP for
detection (:func:`~mmvideoeq.evaluation.functional.coco_streaming_ap`), with mmseg's mIoU for
semantic segmentation (:func:`~mmvideoeq.evaluation.metrics.streaming_miou`: a frame with no
output yet is scored with an empty label map, every valid pixel missed), with the project's DVPQ
for depth-aware video panoptic segmentation
(:func:`~mmvideoeq.evaluation.metrics.streaming_dvpq`: the paired sequence scored as
``DVPQMetric`` scores a run; a frame with no output yet answered by an empty prediction, void
ids and depth 0; a stale output answers with its own ids).

* **Latency** of a frame, measured by the loop (the model step plus its share of the batch's
  pre-processing; data loading excluded): ``'trace'``, what the accuracy pass measured on that
  very frame; ``'median'``, the median of those per setting; ``'timing'``, the setting's
  timing repeats (median, after warm-up, interleaved with the other settings) plus the median
  pre-processing; ``'auto'`` (default): ``'timing'`` (else ``'median'``) for a setting whose
  cost per frame is constant by design (a fixed budget, the full solve), ``'trace'`` where it
  varies (an adaptive or time budget). Or a :class:`~mmvideoeq.streaming.realtime.LatencyTable`
  file (measured on another device), one constant per setting name (``stream@4``, ``cold@4``,
  ``full``).
* **Which predictions**: a frame the worker takes is processed by a stream that skipped the
  frames in between. With ``replay`` (default) the warm settings (``stream@M``) are re-run on
  exactly the frames taken, each warm-started from the previous frame *taken* (the driver's
  ``replay`` callback); the cold settings and the full solve use the accuracy pass's predictions
  of those frames (a frame of theirs does not depend on the frames before it). Without
  ``replay`` every setting uses the accuracy pass's predictions (a warm start from the previous
  frame, even when a real-time worker skipped it).
* **deadline**: with ``scheduler`` and at least one ``stream@M`` setting, the
  :class:`~mmvideoeq.streaming.DeadlineBudget` picks each frame's ``M`` among the swept ones (its
  estimate of ``M``'s latency: ``stream@M``'s constant latency) or skips the frame; each frame
  then takes the latency of ``stream@M`` (on that frame, with ``'trace'``;
  :class:`~mmvideoeq.streaming.ScheduledLatency`), and the stream is replayed with those
  budgets.
* ``stream@M|pipelined`` (``pipeline``): the same stream run as a depth-parallel pipeline
  (:class:`~mmvideoeq.streaming.PipelinedStream`: the same predictions, only their timing
  changes), timed by :class:`~mmvideoeq.streaming.PipelineLatency` from its stage times: the
  setting's latency split into stem with the pre-processing / solve / heads in the proportions
  measured stage by stage on the timing batches (the same work overlapped): a new frame every
  ``max(stage)``, each ready ``sum(stage)`` (the sequential latency) after it was taken. This
  assumes a core (or a CUDA stream) per stage; ``tools/benchmark_pipeline.py`` measures how
  close a real pipeline comes.
* ``AP`` / ``mIoU`` / ``DVPQ`` (``fps`` ``inf``): the same scorer with every frame answered by
  its own prediction (the offline AP under the sAP protocol's COCO settings; for segmentation
  exactly the evaluator's mIoU, for DVPS the ``DVPQMetric``'s values), to set the streaming
  value beside.

What is scored follows the ground truth the driver finds: a metric exposing pycocotools ground
truth (``VIDMetric``) scores detections; an mmseg ``IoUMetric`` (``StreamingIoUMetric``) scores
label maps against the frames' ``gt_sem_seg`` kept in the :class:`FrameLog`; a ``DVPQMetric``
(:class:`~mmvideoeq.evaluation.metrics.DVPQScoring`) scores panoptic ids and depth
(:class:`~mmvideoeq.evaluation.metrics.PanopticFrame`) against the frames' ``gt_panoptic`` and
``gt_depth``. All use the same pairing (:func:`~mmvideoeq.evaluation.functional.pair_stream`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmvideoeq.evaluation.functional.streaming_ap import StreamingAPResult, coco_streaming_ap
from mmvideoeq.evaluation.metrics.streaming_dvpq import (
    DVPQScoring,
    PanopticFrame,
    StreamingDVPQResult,
    streaming_dvpq,
)
from mmvideoeq.evaluation.metrics.streaming_miou import (
    IoUScoring,
    StreamingIoUResult,
    streaming_miou,
)
from mmvideoeq.streaming import (
    DeadlineBudget,
    PipelineLatency,
    ScheduledLatency,
)
from mmvideoeq.streaming.realtime import (
    LatencyModel,
    LatencyTable,
    RealtimeTrace,
    SequentialLatency,
    simulate_realtime,
)
from mmvideoeq.streaming.record import SequenceRecord

__all__ = ['FrameLog', 'RealtimeSweep', 'LATENCY_SOURCES', 'score_keys', 'task_of']

LATENCY_SOURCES = ('auto', 'trace', 'median', 'timing')
#: Budgets whose cost per frame is constant by design (``'auto'`` uses their timing repeats).
_CONSTANT_COST = ('FixedBudget', 'FullSolve')
#: ``replay(setting, plan) -> predictions``: run a setting's stream on the planned frames only.
#: ``plan``: video -> {frame index: steps M for that frame, or None for the setting's budget};
#: returns video -> {frame index: prediction (bboxes, scores, labels), or a label map (H, W) for
#: segmentation, or a PanopticFrame for DVPS, or None}.
ReplayFn = Callable[[dict, dict[Any, dict[int, int | None]]], dict[Any, dict[int, Any]]]


@dataclass
class FrameLog:
    """One frame of a setting's accuracy pass.

    Attributes:
        video_id: Its video.
        index: Its position in the video (0-based, arrival order).
        img_id: Its image id in the (COCO) ground truth; None for segmentation.
        ms: What it cost (ms): the model step and its share of the pre-processing.
        pre_ms: That share of the pre-processing (ms).
        pred: ``(bboxes (N, 4) x1 y1 x2 y2, scores (N,), labels (N,))`` numpy arrays (labels:
            class indices), or a label map ``(H, W)`` (segmentation), or a
            :class:`~mmvideoeq.evaluation.metrics.PanopticFrame` (panoptic ids and depth,
            DVPS), or ``None`` (the frame was not processed).
        gt: Segmentation: its ground-truth label map ``(H, W)``; DVPS: its ground-truth
            ``PanopticFrame``; None: a frame without annotation (or skipped), not scored.
    """

    video_id: Any
    index: int
    img_id: int | None
    ms: float
    pred: tuple[np.ndarray, np.ndarray, np.ndarray] | np.ndarray | PanopticFrame | None
    pre_ms: float = 0.0
    gt: np.ndarray | PanopticFrame | None = None


def score_keys(gt: Any) -> tuple[str, str]:
    """``('mIoU', 'aAcc')`` for segmentation (an :class:`IoUScoring`), ``('DVPQ', 'PQ')`` for
    DVPS (a :class:`DVPQScoring`; ``VPQ`` without depth thresholds), else ``('sAP',
    'sAP_50')``."""
    if isinstance(gt, DVPQScoring):
        return gt.keys
    return ('mIoU', 'aAcc') if isinstance(gt, IoUScoring) else ('sAP', 'sAP_50')


def task_of(gt: Any) -> str:
    """``'segmentation'`` (an :class:`IoUScoring`), ``'panoptic'`` (a :class:`DVPQScoring`) or
    ``'detection'``."""
    if isinstance(gt, DVPQScoring):
        return 'panoptic'
    return 'segmentation' if isinstance(gt, IoUScoring) else 'detection'


_EMPTY = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))


class RealtimeSweep:
    """Collects the frames of a sweep's settings and plays them back in real time.

    Args:
        fps: Frame rates to simulate.
        eta: The pairing's ``eta`` (0: frame ``i`` is answered when it arrives).
        latency: ``'auto'``, ``'trace'``, ``'median'`` or ``'timing'`` (module docstring).
        latency_table: A latency table file; given, it replaces the measured latencies.
        replay: Re-run the warm settings on the frames the worker takes.
        scheduler: Add the ``deadline`` setting.
        pipeline: Add ``stream@M|pipelined`` (stage times given by :meth:`set_stages`).
        max_dets: COCO ``maxDets`` of the scoring (default mmdet's, as the offline bbox_mAP).
        save_latency_table: Write the settings' constant latencies to this latency table file.
    """

    def __init__(
        self,
        *,
        fps: Sequence[float],
        eta: float = 0.0,
        latency: str = 'auto',
        latency_table: str | None = None,
        replay: bool = True,
        scheduler: bool = True,
        pipeline: bool = False,
        max_dets: Sequence[int] = (100, 300, 1000),
        save_latency_table: str | None = None,
    ) -> None:
        fps = [fps] if isinstance(fps, (int, float)) else list(fps)
        if not fps or any(
            isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < math.inf
            for f in fps
        ):
            raise ValueError(f'realtime fps must be positive frame rates, got {fps}')
        if latency not in LATENCY_SOURCES:
            raise ValueError(f'realtime latency must be one of {LATENCY_SOURCES}, got {latency!r}')
        self.fps = [float(f) for f in fps]
        self.eta = float(eta)
        self.latency = latency
        self.table = None if latency_table is None else LatencyTable.load(latency_table)
        self.replay = bool(replay)
        self.scheduler = bool(scheduler)
        self.pipeline = bool(pipeline)
        self.max_dets = tuple(int(m) for m in max_dets)
        self.save_latency_table = save_latency_table
        self.frames: dict[str, list[FrameLog]] = {}
        self.settings: dict[str, dict] = {}
        self.stage_ms: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ collection
    def add(self, setting: dict, logs: Sequence[FrameLog]) -> None:
        """Record a setting's frames (its accuracy pass)."""
        self.frames[setting['name']] = list(logs)
        self.settings[setting['name']] = dict(setting, timing=None)

    def set_timing(self, name: str, timing: dict) -> None:
        """The setting's timing repeats (``median_ms`` of the model step)."""
        self.settings[name]['timing'] = timing

    def set_stages(self, name: str, stage_ms: Sequence[float]) -> None:
        """Stage times (ms) of setting ``name`` run as a pipeline: adds ``<name>|pipelined``,
        the same stream (the same predictions) under :class:`~mmvideoeq.streaming.
        PipelineLatency`."""
        self.stage_ms[name] = [float(v) for v in stage_ms]

    def videos(self, name: str) -> dict[Any, list[FrameLog]]:
        """The setting's frames by video, in arrival order (indices 0, 1, ... checked)."""
        out: dict[Any, list[FrameLog]] = {}
        for log in self.frames[name]:
            out.setdefault(log.video_id, []).append(log)
        for vid, logs in out.items():
            logs.sort(key=lambda f: f.index)
            if [f.index for f in logs] != list(range(len(logs))):
                raise ValueError(
                    f'setting {name}: the frames of video {vid!r} are not 0..{len(logs) - 1} '
                    '(a frame is missing or repeated)'
                )
        return out

    # ------------------------------------------------------------------ latency
    def source(self, name: str) -> str:
        """Where the latency of setting ``name`` comes from: ``'table'``, ``'trace'``,
        ``'median'`` or ``'timing'`` (``'auto'`` resolved)."""
        if self.table is not None:
            return 'table'
        setting = self.settings[name]
        if self.latency != 'auto':
            src = self.latency
        else:
            budget = (setting.get('policy') or {}).get('budget') or {}
            constant = isinstance(budget, dict) and budget.get('type') in _CONSTANT_COST
            src = 'timing' if constant else 'trace'
        if src == 'timing' and not setting.get('timing'):
            src = 'median'  # no timing repeats ran
        return src

    def constant_ms(self, name: str) -> float:
        """The setting's one latency: the table entry, its timing median plus the median
        pre-processing (``'timing'``), else the median of its frames."""
        src = self.source(name)
        if src == 'table':
            return self.table.get(name)
        done = [f for f in self.frames[name] if f.pred is not None]
        if src == 'timing':
            pre = statistics.median([f.pre_ms for f in done]) if done else 0.0
            return float(self.settings[name]['timing']['median_ms']) + pre
        return statistics.median([f.ms for f in done]) if done else 0.0

    def latency_model(self, name: str) -> LatencyModel:
        """The worker of setting ``name``: per-frame trace, or one constant."""
        lat = self.latency_record(name)
        if not isinstance(lat, dict):
            return SequentialLatency(lat, name=f'{name} ({self.source(name)})')
        traces = list(lat.values())
        return SequentialLatency(traces, per_sequence=True, name=f'{name} (measured per frame)')

    def latency_record(self, name: str) -> float | dict[str, list[float]]:
        """The latencies the simulation of ``name`` uses (for results.json): the constant, or
        per video the ms of every frame."""
        if self.source(name) != 'trace':
            return self.constant_ms(name)
        done = [f.ms for f in self.frames[name] if f.pred is not None]
        fill = statistics.median(done) if done else 0.0  # an unprocessed frame: a typical one
        return {
            str(vid): [f.ms if f.pred is not None else fill for f in logs]
            for vid, logs in self.videos(name).items()
        }

    # ------------------------------------------------------------------ scoring
    def _score(
        self,
        gt: tuple[Any, list[int]] | IoUScoring | DVPQScoring | None,
        videos: dict[Any, list[FrameLog]],
        traces: list[RealtimeTrace],
        preds: dict[Any, dict[int, Any]],
        fps: float,
        eta: float,
    ) -> StreamingAPResult | StreamingIoUResult | StreamingDVPQResult | None:
        if gt is None:  # a process that only takes part in the replays
            return None
        if isinstance(gt, (IoUScoring, DVPQScoring)):
            seg = {
                str(vid): (
                    [f.gt for f in logs],
                    [(t, j, preds[vid].get(j)) for j, t in zip(trace.input_index, trace.finish)],
                )
                for (vid, logs), trace in zip(videos.items(), traces)
            }
            if isinstance(gt, DVPQScoring):
                return streaming_dvpq(seg, gt, fps=fps, eta=eta)
            return streaming_miou(seg, gt, fps=fps, eta=eta)
        sequences = {}
        for (vid, logs), trace in zip(videos.items(), traces):
            rec = SequenceRecord()
            for k, (j, t) in enumerate(zip(trace.input_index, trace.finish)):
                pred = preds[vid].get(j)
                rec.append(t, j, *(_EMPTY if pred is None else pred), where=f'{vid} output {k}')
            sequences[str(vid)] = ([f.img_id for f in logs], rec)
        return coco_streaming_ap(
            gt[0], sequences, fps=fps, eta=eta, cat_ids=gt[1], max_dets=self.max_dets
        )

    def offline(
        self, gt, name: str
    ) -> StreamingAPResult | StreamingIoUResult | StreamingDVPQResult | None:
        """Every frame answered by its own prediction (the scorer's offline AP, mIoU or
        DVPQ)."""
        videos = self.videos(name)
        traces = []
        for logs in videos.values():
            n = len(logs)
            traces.append(RealtimeTrace(n, 1.0, list(range(n)), [], [float(i) for i in range(n)]))
        preds = {vid: {f.index: f.pred for f in logs} for vid, logs in videos.items()}
        return self._score(gt, videos, traces, preds, 1.0, 0.0)

    def simulate(self, name: str, fps: float, model: LatencyModel) -> list[RealtimeTrace]:
        """The real-time schedule of every video of setting ``name``."""
        return [
            simulate_realtime(len(logs), fps, model, sequence=s)
            for s, logs in enumerate(self.videos(name).values())
        ]

    def run(
        self,
        gt: tuple[Any, list[int]] | IoUScoring | DVPQScoring | None,
        replay: ReplayFn | None = None,
    ) -> dict | None:
        """Simulate every setting at every frame rate and score it.

        The simulation is deterministic given the frames, so every process of a distributed
        run computes the same schedules and calls ``replay`` the same number of times (the
        driver's replay may gather across processes); only the process with ``gt`` scores.

        Args:
            gt: ``(COCO, cat_ids)`` (:func:`detection_ground_truth`: streaming AP), an
                :class:`IoUScoring` (``segmentation_scoring``: streaming mIoU of the logs'
                label maps), a :class:`DVPQScoring` (``panoptic_scoring``: streaming PQ / DVPQ
                of the logs' panoptic ids and depth), or ``None`` on a process that only takes
                part in the replays (then nothing is scored: returns None).
            replay: The driver's replay (``ReplayFn``); ``None``: no replay.

        Returns:
            dict: ``task`` (``'detection'``, ``'segmentation'`` or ``'panoptic'``) and ``keys``
            (the result's primary key and tie-break: ``sAP``, ``sAP_50``; ``mIoU``, ``aAcc``;
            ``DVPQ``, ``PQ``);
            ``settings`` -> name -> ``offline`` (the scorer at every frame answered by its own
            prediction) and ``fps`` -> rate -> the result (``as_dict``: sAP and the COCO stats,
            or mmseg's mIoU/aAcc/mAcc in percent, or DVPQMetric's keys in percent; counts,
            traces, the latency trace used);
            ``best_fixed`` -> rate -> the (sequential) setting of highest primary value,
            ``best_fixed_m`` the best ``stream@M``; ``deadline`` rows say whether they beat it
            (``beats_best_fixed_m``).
        """
        task = task_of(gt)
        out: dict[str, Any] = dict(
            task=task,
            keys=list(score_keys(gt)),
            fps=self.fps,
            eta=self.eta,
            latency=('table: ' + self.table.device) if self.table is not None else self.latency,
            replay=bool(self.replay and replay is not None),
            settings={},
        )
        if task == 'detection':
            out['max_dets'] = list(self.max_dets)
        if task == 'panoptic':
            p = gt.protocol
            out['protocol'] = dict(
                windows=list(p.windows), thresholds=list(p.thresholds), average=p.average
            )
        for name, setting in self.settings.items():
            offline = self.offline(gt, name)
            entry = out['settings'][name] = dict(offline=offline and offline.as_dict(False))
            entry['latency_ms'] = self.latency_record(name)
            entry['latency_source'] = self.source(name)
            entry['fps'] = self._play(gt, name, self.latency_model(name), replay)
            if name in self.stage_ms:  # the same stream, pipelined
                stages = self.stage_ms[name]
                out['settings'][f'{name}|pipelined'] = dict(
                    offline=entry['offline'],
                    latency_ms=dict(stages=stages, latency=sum(stages), interval=max(stages)),
                    latency_source='stage times',
                    fps=self._play(gt, name, PipelineLatency(stages, name=name), replay),
                )
        if self.scheduler:
            streams = {
                s['iters']: n
                for n, s in self.settings.items()
                if n.startswith('stream@') and s.get('iters') is not None
            }
            if streams:
                out['settings']['deadline'] = dict(
                    fps={_key(fps): self._deadline(gt, fps, streams, replay) for fps in self.fps}
                )
        if gt is None:
            return None
        key0, key1 = score_keys(gt)
        out['best_fixed'], out['best_fixed_m'] = {}, {}
        for fps in self.fps:
            k = _key(fps)
            fixed = {  # one sequential worker and a fixed setting
                n: e['fps'][k]
                for n, e in out['settings'].items()
                if n != 'deadline' and not n.endswith('|pipelined')
            }
            for key, names in (
                ('best_fixed', list(fixed)),
                ('best_fixed_m', [n for n in fixed if n.startswith('stream@')]),
            ):
                if names:
                    best = max(names, key=lambda n: (fixed[n][key0], fixed[n][key1]))
                    out[key][k] = {'setting': best, key0: fixed[best][key0]}
            d = out['settings'].get('deadline', {}).get('fps', {}).get(k)
            if d and k in out['best_fixed_m']:
                d['beats_best_fixed_m'] = bool(d[key0] > out['best_fixed_m'][k][key0])
        return out

    def _play(self, gt, name: str, model: LatencyModel, replay) -> dict[str, dict | None]:
        """Setting ``name`` under the worker ``model`` at every frame rate: the scorer's
        results."""
        out = {}
        for fps in self.fps:
            traces = self.simulate(name, fps, model)
            preds = self._predictions(name, self.settings[name], traces, replay)
            res = self._score(gt, self.videos(name), traces, preds, fps, self.eta)
            out[_key(fps)] = res and self._as_dict(res, name, traces)
        return out

    def latency_table(self, device: str) -> LatencyTable:
        """The constant latency of every setting as a table (``--save-latency-table``)."""
        return LatencyTable(
            device=device,
            measured='tools/test.py --streaming --realtime-fps: per setting, '
            + ', '.join(f'{n}: {self.source(n)}' for n in self.settings)
            + ' (timing: median of the timing repeats plus the median pre-processing; median: '
            'median per frame of the accuracy pass), batch size of the test dataloader',
            latency_ms={n: self.constant_ms(n) for n in self.settings},
        )

    def _as_dict(
        self,
        res: StreamingAPResult | StreamingIoUResult | StreamingDVPQResult,
        name: str,
        traces: list[RealtimeTrace],
    ) -> dict:
        d = res.as_dict(traces=False)
        d['traces'] = {str(v): t.as_dict() for v, t in zip(self.videos(name), traces)}
        return d

    def _predictions(self, name, setting, traces, replay) -> dict[Any, dict[int, Any]]:
        videos = self.videos(name)
        if self.replay and replay is not None and setting.get('warm'):
            plan = {vid: {j: None for j in t.input_index} for vid, t in zip(videos, traces)}
            return replay(setting, plan)
        return {vid: {f.index: f.pred for f in logs} for vid, logs in videos.items()}

    def _deadline(self, gt, fps: float, streams: dict[int, str], replay) -> dict:
        """The deadline scheduler among the swept stream@M budgets at ``fps``."""
        ms = {m: self.constant_ms(n) for m, n in streams.items()}
        actual = {m: self.latency_model(n) for m, n in streams.items()}
        budget = DeadlineBudget(fps, latency_ms=ms)
        model = ScheduledLatency(budget, actual, name='deadline')
        first = streams[min(streams)]
        videos = self.videos(first)
        traces = self.simulate(first, fps, model)
        plans = {
            vid: {j: m for j, m in dec if m is not None}
            for vid, dec in zip(videos, model.decisions)
        }
        if self.replay and replay is not None:
            setting = dict(self.settings[first], name='deadline')
            preds = replay(setting, plans)
        else:  # each frame's prediction from the stream@M pass of its budget
            by_m = {
                m: {(f.video_id, f.index): f.pred for f in self.frames[n]}
                for m, n in streams.items()
            }
            preds = {
                vid: {j: by_m[m][(vid, j)] for j, m in plan.items()} for vid, plan in plans.items()
            }
        res = self._score(gt, videos, traces, preds, fps, self.eta)
        if res is None:
            return {}
        d = self._as_dict(res, first, traces)
        chosen = [m for plan in plans.values() for m in plan.values()]
        d['budgets'] = {str(m): chosen.count(m) for m in sorted(streams)}
        d['skipped_by_scheduler'] = sum(m is None for dec in model.decisions for _, m in dec)
        d['decisions'] = {str(v): dec for v, dec in zip(videos, model.decisions)}
        d['estimate_ms'] = {str(m): v for m, v in ms.items()}
        return d


def _key(fps: float) -> str:
    return f'{fps:g}'
