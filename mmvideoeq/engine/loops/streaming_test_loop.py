"""``StreamingTestLoop``: StreamDEQ evaluation of any model with the streaming protocol.

For every setting of a sweep (thesis Figures 4.1/4.2/4.6-4.9 and Table 4.3):

* ``stream@M``: frames walked in order, each solve warm-started from the previous frame's state
  with a budget of M solver steps (Eq. 3.5, or Eq. 3.4 with ``init='reference'``);
* ``cold@M``: the non-streaming baseline, every frame from zeros with M steps;
* ``full``: every frame from zeros with the backbone's configured full solve;
* ``stream`` alone, for a model without a solver state (its ``stream_zero_state`` is empty: a
  per-frame network that carries only a memory between frames, e.g. ViP-DeepLab's stitching ids
  on a ResNet, or a tracker), where budgets and cold starts do not apply;

the loop walks the whole test set through :func:`~mmvideoeq.streaming.run_stream` (the one
streaming driver, given the model's ``stream_step`` itself; the loop only turns batches into
frames and predictions into metric input). The model's memory (a tracker's ids) is carried in
every setting; ``cold@M`` and ``full`` restart only the solver state on every frame. The loop
feeds the evaluator frame by frame with each prediction's ``frame_offset`` and collects the
metrics overall and by frame offset. Then every setting is timed on the first batches with
warm-up and repeats, the settings' repeats interleaved. Results go to
``<work_dir>/streaming/results.json`` after every setting (a crash leaves the finished ones
readable); a table goes to the log and plots to
``accuracy_vs_cost.png`` and ``curves.png`` (:mod:`.streaming_report`).

With ``realtime`` (``tools/test.py --realtime-fps``) every setting is then played back in real
time at the given frame rates and scored with streaming AP next to its offline AP (a segmentor:
streaming mIoU next to its mIoU; DVPS: streaming DVPQ and PQ next to DVPQ and PQ)
(:mod:`.realtime_eval`); the ``deadline`` setting adds the
deadline scheduler.

Frames the dataset could not load (metainfo ``eval_skip_reason``, set by the datasets' safe
loading) are not solved: the policy records them as skipped and the stream continues (or
restarts, ``skip_response``); frames whose solve diverged are flagged and left out of the
metrics. Both are listed in ``results.json`` and the log.
"""

from __future__ import annotations

import copy
import os
import os.path as osp
import statistics
import time
from typing import Any, Sequence

import torch
from mmengine.dist import (
    all_gather_object,
    get_world_size,
    is_main_process,
)
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop, autocast
from mmengine.utils import ProgressBar

from mmvideoeq.datasets.samplers import video_order
from mmvideoeq.registry import LOOPS
from mmvideoeq.streaming import (
    StreamFrame,
    StreamPolicy,
    StreamState,
    check_streaming_model,
    run_stream,
)
from mmvideoeq.structures import (
    DIVERGED_KEY,
    FRAME_OFFSET_KEY,
    SKIP_KEY,
    STREAM_EVALS_KEY,
    STREAM_ITERS_KEY,
    STREAM_SETTING_KEY,
)

from .realtime_driver import frame_logs, run_realtime
from .realtime_eval import RealtimeSweep
from .streaming_report import StreamingReport

BUDGETS = ('fixed', 'adaptive', 'time')


def _metainfo_ids(sample: Any, index: int) -> tuple[Any, Any]:
    meta = sample.metainfo
    video_id, frame_id = meta.get('video_id'), meta.get('frame_id')
    if video_id is None or frame_id is None:
        raise ValueError(
            f'sample {index} of the batch ({meta.get("img_path", "?")}) has no '
            f'{"video_id" if video_id is None else "frame_id"} in its metainfo: streaming needs '
            "both; add them to the dataset's data_info and to PackDetInputs/PackSegInputs "
            'meta_keys'
        )
    return video_id, frame_id


@LOOPS.register_module()
class StreamingTestLoop(BaseLoop):
    """Sweep of streaming / cold / full-solve evaluations in one run.

    Args:
        runner: The runner.
        dataloader: Test dataloader; frames of each video must come in increasing ``frame_id``
            (an unshuffled sampler; ``VideoInterleavedBatchSampler`` to batch several videos).
        evaluator: Test evaluator (its metrics should accept ``frame_offset`` metainfo).
        iters: Budgets M (solver steps per frame) to sweep.
        warm_start: Run the streaming settings ``stream@M``.
        baseline: Run the cold-start settings ``cold@M``.
        full_solve: Run the ``full`` setting.
        full_iters: Steps of the ``full`` setting (``None``: the backbone's configured full
            solve with its tolerance and lowest-residual selection).
        init: ``'zeros'`` (Eq. 3.5) or ``'reference'`` (Eq. 3.4) for the first frame.
        reference_iters: Steps of the reference solve (``None``: the backbone's test steps).
        budget: ``'fixed'`` (M steps), ``'adaptive'`` (stop at ``tol``, at most M) or
            ``'time'`` (``ms_per_frame``; M is the upper bound).
        tol: Relative-residual tolerance of the adaptive budget.
        ms_per_frame: Per-frame time budget of ``budget='time'``.
        shot_change: ``None``/``'none'``, ``'extra_iters'`` or ``'reset'``.
        shot_change_cfg: Further :class:`~mmvideoeq.streaming.ShotChangeDetector` arguments.
        skip_response: After a frame that failed to load: ``'continue'`` from the last good
            state, or ``'reset'``.
        timing: ``True`` (= ``dict(batches=8, repeats=3, warmup=1)``) or such a dict: after the
            accuracy passes every setting is re-run ``warmup + repeats`` times on the first
            ``batches`` batches (model step only, fresh streams each time; the settings' repeats
            interleaved) and the median and range of ms/frame over the repeats are reported;
            ``False`` reports only the accuracy pass's mean.
        metric: The metric the table and the cost plot lead with (default: mAP@50, mIoU, DVPQ,
            ... whichever the evaluator reports, see ``streaming_report.PRIMARY``).
        out_dir: Where results go (default ``<work_dir>/streaming``).
        plot: Write the plots.
        fp16: Run under autocast.
        realtime: Simulate every setting in real time (streaming AP, mIoU or PQ / DVPQ):
            ``dict(fps=[30],
            eta=0.0, latency='auto' | 'trace' | 'median' | 'timing', latency_table=None,
            replay=True, scheduler=True, pipeline=False, max_dets=(100, 300, 1000),
            save_latency_table=None)``, see
            :class:`~.realtime_eval.RealtimeSweep`; ``None``: off.
    """

    def __init__(
        self,
        runner,
        dataloader,
        evaluator,
        *,
        iters: Sequence[int] = (1, 2, 4, 8),
        warm_start: bool = True,
        baseline: bool = True,
        full_solve: bool = True,
        full_iters: int | None = None,
        init: str = 'zeros',
        reference_iters: int | None = None,
        budget: str = 'fixed',
        tol: float | None = None,
        ms_per_frame: float | None = None,
        shot_change: str | None = None,
        shot_change_cfg: dict | None = None,
        skip_response: str = 'continue',
        timing: dict | bool = True,
        metric: str | None = None,
        out_dir: str | None = None,
        plot: bool = True,
        fp16: bool = False,
        realtime: dict | None = None,
    ) -> None:
        super().__init__(runner, dataloader)
        self.evaluator = (
            runner.build_evaluator(evaluator) if isinstance(evaluator, (dict, list)) else evaluator
        )
        if getattr(self.dataloader.dataset, 'metainfo', None) is not None:
            self.evaluator.dataset_meta = self.dataloader.dataset.metainfo
        iters = [int(m) for m in iters]
        if not iters or min(iters) < 1:
            raise ValueError(f'iters must be positive integers, got {iters}')
        if budget not in BUDGETS:
            raise ValueError(f'budget must be one of {BUDGETS}, got {budget!r}')
        if budget == 'adaptive' and tol is None:
            raise ValueError("budget='adaptive' needs tol (e.g. --tol 1e-2)")
        if budget == 'time' and ms_per_frame is None:
            raise ValueError("budget='time' needs ms_per_frame (e.g. --ms-per-frame 50)")
        if not (warm_start or baseline or full_solve):
            raise ValueError('nothing to run: warm_start, baseline and full_solve are all off')
        self.iters = iters
        self.warm_start, self.baseline, self.full_solve = warm_start, baseline, full_solve
        self.full_iters = full_iters
        self.init = init
        self.reference_iters = reference_iters
        self.budget, self.tol, self.ms_per_frame = budget, tol, ms_per_frame
        self.shot_change = None if shot_change in (None, 'none') else shot_change
        self.shot_change_cfg = dict(shot_change_cfg or {})
        self.skip_response = skip_response
        defaults = dict(batches=8, repeats=3, warmup=1)
        if timing is True:
            timing = defaults
        self.timing = dict(defaults, **timing) if timing else None
        self.metric = metric
        self.out_dir = out_dir
        self.plot = plot
        self.fp16 = fp16
        if realtime is not None and not isinstance(realtime, dict):
            raise TypeError(f'realtime must be a dict of RealtimeSweep arguments, got {realtime!r}')
        if realtime is not None and budget != 'fixed' and realtime.get('scheduler', True):
            realtime = dict(realtime, scheduler=False)  # it chooses among fixed budgets M
        self.realtime = None if realtime is None else RealtimeSweep(**realtime)

    @property
    def model(self):
        """The streaming model (model wrappers such as DDP unwrapped)."""
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    # ------------------------------------------------------------------ settings
    def _test_steps(self) -> int:
        n = getattr(getattr(self.model, 'backbone', None), 'test_max_iter', None)
        if not isinstance(n, int):
            raise ValueError(
                'reference_iters is not set and the backbone has no test_max_iter; set '
                'test_cfg.reference_iters (streaming_test_cfg.reference_iters)'
            )
        return n

    def _budget_cfg(self, m: int) -> dict:
        if self.budget == 'adaptive':
            return dict(type='AdaptiveBudget', tol=self.tol, max_iter=m)
        if self.budget == 'time':
            return dict(type='TimeBudget', ms_per_frame=self.ms_per_frame, max_iter=m)
        return dict(type='FixedBudget', iters=m)

    def settings(self) -> list[dict]:
        """The runs of the sweep, in order: name, steps, warm start or not, policy config."""
        common = dict(skip_response=self.skip_response, max_history=0)
        if not self._has_solver_state():
            # a per-frame network that streams only a memory (ViP-DeepLab on ResNet: the
            # stitching ids): one setting; budgets and cold baselines do not apply
            policy = dict(budget=dict(type='FullSolve'), init='zeros', **common)
            return [dict(name='stream', iters=None, warm=True, policy=policy)]
        out = []
        if self.warm_start:
            shot = None
            if self.shot_change is not None:
                shot = dict(self.shot_change_cfg, response=self.shot_change)
            ref = dict(init=self.init, shot_change=shot)
            if self.init == 'reference':
                ref['reference_iters'] = self.reference_iters or self._test_steps()
            for m in self.iters:
                policy = dict(budget=self._budget_cfg(m), **ref, **common)
                out.append(dict(name=f'stream@{m}', iters=m, warm=True, policy=policy))
        if self.baseline:
            for m in self.iters:
                policy = dict(budget=dict(type='FixedBudget', iters=m), warm=False, **common)
                out.append(dict(name=f'cold@{m}', iters=m, warm=False, policy=policy))
        if self.full_solve:
            budget = (
                dict(type='FullSolve')
                if self.full_iters is None
                else dict(type='FixedBudget', iters=int(self.full_iters))
            )
            out.append(
                dict(
                    name='full',
                    iters=self.full_iters,
                    warm=False,
                    policy=dict(budget=budget, warm=False, **common),
                )
            )
        return out

    def _has_solver_state(self) -> bool:
        """Whether the model has a solver state: its zero state of the first test frame is not
        empty (a model with only a memory streams as one setting)."""
        if getattr(self, '_solver_state', None) is None:
            data = self.model.data_preprocessor(next(iter(self.dataloader)), False)
            self._solver_state = len(self.model.stream_zero_state(data['inputs'][:1])) > 0
        return self._solver_state

    # ------------------------------------------------------------------ running
    def run(self) -> dict:
        """Run every setting; return the flat metrics (``<setting>/<metric>``)."""
        check_streaming_model(self.model)
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        self.runner.model.eval()
        self._check_distributed_sampler()
        out_dir = self.out_dir or osp.join(self.runner.work_dir, 'streaming')
        main = is_main_process()  # one process writes the report; every one returns the metrics
        if main:
            os.makedirs(out_dir, exist_ok=True)
        report = StreamingReport(out_dir, metric=self.metric)
        settings = self.settings()
        for setting in settings:
            result = self.run_setting(setting)
            report.add(setting['name'], result)
            if report.data.get('solver') is None:
                report.data['solver'] = self._solver_name(result)
            if main:
                report.write_json()  # partial results stay readable
        if getattr(self, '_timing_batches', None):
            for name, timing in self.time_settings(settings, self._timing_batches).items():
                report.data['settings'][name]['timing'] = timing
                if self.realtime is not None:
                    self.realtime.set_timing(name, timing)
        if self.realtime is not None:
            report.data['realtime'] = self.run_realtime()
        if main:
            report.finish(self.runner.logger, plot=self.plot)
        flat = report.flat_metrics()
        self.runner.call_hook('after_test_epoch', metrics=flat)
        self.runner.call_hook('after_test')
        return flat

    # ------------------------------------------------------------------ distributed
    def _check_distributed_sampler(self) -> None:
        """With several processes every video must stay on one rank, frames in order."""
        if get_world_size() == 1:
            return
        loader = self.dataloader
        sampler = getattr(getattr(loader, 'batch_sampler', None), 'sampler', None)
        if not getattr(sampler, 'video_wise', False):
            sampler = getattr(loader, 'sampler', None)
        if not getattr(sampler, 'video_wise', False):
            raise ValueError(
                f'distributed streaming evaluation ({get_world_size()} processes) needs a '
                'video-wise sampler (whole videos per rank, frames in order), got '
                f'{type(sampler).__name__}: set test_dataloader.sampler = '
                "dict(type='VideoDistributedSampler')"
            )

    def _canonical_key(self, video_id: Any, frame_id: int) -> tuple[int, int]:
        """Position of a frame in the one-process order: video (first appearance), frame_id."""
        if getattr(self, '_video_rank', None) is None:
            dataset = self.dataloader.dataset
            self._video_rank = {
                dataset.get_data_info(v[0])['video_id']: k
                for k, v in enumerate(video_order(dataset))
            }
        return self._video_rank.get(video_id, len(self._video_rank)), int(frame_id)

    def _gather_in_order(self, chunks: list, records: list) -> list:
        """Give rank 0 every rank's metric results in the one-process order.

        ``chunks`` holds, per processed batch, its canonical key and the results each metric
        appended for it. mmengine's ``collect_results`` interleaves the ranks' result lists, so
        with whole videos per rank the order would differ from one process; instead rank 0's
        metrics get all results sorted by the key and the other ranks' none, which
        ``collect_results`` then passes through unchanged. Returns the records of all ranks in
        the same order.
        """
        if get_world_size() == 1:
            return records
        every = sorted((c for part in all_gather_object(chunks) for c in part), key=lambda c: c[0])
        metrics = self.evaluator.metrics
        for k, metric in enumerate(metrics):
            metric.results = (
                [r for _, parts in every for r in parts[k]] if is_main_process() else []
            )
        keyed = [
            (self._canonical_key(r.video_id, r.frame_id), r)
            for part in all_gather_object(records)
            for r in part
        ]
        return [r for _, r in sorted(keyed, key=lambda kr: kr[0])]

    def _solver_name(self, result: dict) -> str:
        """The solver the frames report (``SolverStats.method``), with the model's class; a
        model without a solver is named ``none (Model)``."""
        name = type(self.model).__name__
        solver = result.get('solver')
        return f'none ({name})' if solver is None else f'{solver} ({name})'

    def run_setting(self, setting: dict) -> dict:
        """Walk the test set once under one setting; return metrics and per-frame summaries."""
        policy = StreamPolicy.from_cfg(setting['policy'])
        states: dict[Any, StreamState] = {}
        positions: dict[Any, int] = {}
        records, timing_batches, chunks, logs = [], [], [], []
        arrivals: dict[Any, int] = {}
        metrics = self.evaluator.metrics
        distributed = get_world_size() > 1
        n_timing = 0 if self.timing is None else int(self.timing['batches'])
        self.runner.logger.info(f"streaming test: {setting['name']}")
        bar = ProgressBar(len(self.dataloader)) if len(self.dataloader) > 20 else None
        for idx, data_batch in enumerate(self.dataloader):
            self.runner.call_hook('before_test_iter', batch_idx=idx, data_batch=data_batch)
            t0 = time.perf_counter()
            data = self.model.data_preprocessor(data_batch, False)
            pre_ms = (time.perf_counter() - t0) * 1e3
            if idx < n_timing:
                timing_batches.append(copy.deepcopy(data))
            with autocast(enabled=self.fp16):
                preds, recs = self.run_batch(policy, states, positions, data)
            for pred in preds:
                pred.set_metainfo({STREAM_SETTING_KEY: setting['name']})
            records += recs
            if self.realtime is not None:
                logs += frame_logs(preds, recs, arrivals, pre_ms)
            before = [len(m.results) for m in metrics]
            self.evaluator.process(data_samples=preds, data_batch=data_batch)
            if distributed:  # what each metric kept of this batch, for the ordered gather
                key = min(self._canonical_key(r.video_id, r.frame_id) for r in recs)
                chunks.append((key, [m.results[n:] for m, n in zip(metrics, before)]))
            self.runner.call_hook(
                'after_test_iter', batch_idx=idx, data_batch=data_batch, outputs=preds
            )
            if bar is not None:
                bar.update()
        records = self._gather_in_order(chunks, records)
        if not records:
            raise ValueError('the test dataloader produced no frame')
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        result = StreamingReport.summarise(setting, metrics, records)
        result['solver'] = next((r.solver for r in records if r.solver is not None), None)
        self._timing_batches = timing_batches  # timed after all settings (interleaved)
        if self.realtime is not None:
            if distributed:  # every process simulates the same schedules
                logs = [log for part in all_gather_object(logs) for log in part]
            self.realtime.add(setting, logs)
        return result

    # ------------------------------------------------------------------ real time
    def run_realtime(self) -> dict | None:
        """Play every setting back in real time (:func:`~.realtime_driver.run_realtime`)."""
        return run_realtime(self, self.realtime)

    @torch.no_grad()
    def run_batch(
        self, policy: StreamPolicy, states: dict, positions: dict, data: dict
    ) -> tuple[list, list]:
        """One preprocessed batch of frames (of different videos) through ``run_stream``.

        ``states`` maps video id -> stream state; ``positions`` maps video id -> frames of the
        clip seen so far (the ``frame_offset`` the metrics group by). Returns the predictions
        (data samples, skipped and diverged frames marked with ``eval_skip_reason``) and the
        frames' :class:`~mmvideoeq.streaming.FrameRecord`.
        """
        inputs, samples = data['inputs'], data['data_samples']
        ids = [_metainfo_ids(s, i) for i, s in enumerate(samples)]
        if len({v for v, _ in ids}) < len(ids):
            raise ValueError(
                "a batch holds two frames of the same video; a frame needs the previous one's "
                'state: batch frames of different videos (VideoInterleavedBatchSampler) or use '
                'batch_size=1'
            )
        frames, offsets = [], []
        for i, (sample, (vid, fid)) in enumerate(zip(samples, ids)):
            # frames since the clip start; a shot-change init frame (``is_init_frame``: a frame
            # of another clip put in front of this one) gets offset -1, so the clip starts at 0
            init_frame = sample.metainfo.get('is_init_frame', False)
            offsets.append(-1 if init_frame else positions.get(vid, 0))
            positions[vid] = offsets[-1] + 1
            skip = sample.metainfo.get(SKIP_KEY)
            frames.append(StreamFrame(inputs[i : i + 1], vid, fid, payload=sample, skip=skip))
        model = self.model
        run = run_stream(
            model.stream_step,
            [frames],
            policy,
            states=states,
            zeros_like_fn=model.stream_zero_state,
        )
        preds = []
        for frame, out, rec, offset in zip(frames, run.outputs, run.records, offsets):
            pred = frame.payload if out is None else out
            if rec.diverged:
                pred.set_metainfo(
                    {SKIP_KEY: 'diverged: non-finite or exploding residual or state norm'}
                )
            pred.set_metainfo(
                {
                    FRAME_OFFSET_KEY: offset,
                    STREAM_ITERS_KEY: rec.iters,
                    STREAM_EVALS_KEY: rec.n_eval,
                    DIVERGED_KEY: rec.diverged,
                }
            )
            preds.append(pred)
            length = frame.payload.metainfo.get('video_length')
            if length is not None and frame.frame_id >= int(length) - 1:
                states.pop(frame.video_id, None)  # last frame of its video: free the state
                positions.pop(frame.video_id, None)
        return preds, run.records

    def _time_once(self, setting: dict, batches: list[dict]) -> tuple[float, int]:
        """One timed pass of a setting over ``batches`` (fresh streams): ms/frame, frames."""
        policy = StreamPolicy.from_cfg(setting['policy'])
        states: dict = {}
        ms, frames = 0.0, 0
        for data in batches:
            _, recs = self.run_batch(policy, states, {}, copy.deepcopy(data))
            ms += sum(rec.ms for rec in recs)
            frames += sum(rec.skipped is None for rec in recs)
        return ms / max(frames, 1), frames

    def time_settings(self, settings: list[dict], batches: list[dict]) -> dict[str, dict]:
        """ms/frame of the model step of every setting on ``batches``: median and range.

        The repeats are interleaved (setting 1, 2, ..., n, then again), so a slow phase of a
        shared machine spreads over all settings instead of biasing the one that ran during it;
        ``warmup`` rounds of every setting come first.
        """
        warmup, repeats = int(self.timing['warmup']), int(self.timing['repeats'])
        per_repeat: dict[str, list[float]] = {s['name']: [] for s in settings}
        frames = 0
        for r in range(warmup + repeats):
            for setting in settings:
                ms, frames = self._time_once(setting, batches)
                if r >= warmup:
                    per_repeat[setting['name']].append(ms)
        out = {}
        for name, values in per_repeat.items():
            out[name] = dict(
                median_ms=statistics.median(values),
                min_ms=min(values),
                max_ms=max(values),
                repeats=len(values),
                warmup=warmup,
                frames=frames,
                method='model step (stream_step) wall time per frame, fresh streams per repeat, '
                'on the first batches of the test set, after warm-up, repeats of all settings '
                'interleaved; data loading excluded',
            )
        return out
