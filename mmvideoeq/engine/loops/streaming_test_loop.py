"""``StreamingTestLoop``: StreamDEQ evaluation of any model with the streaming protocol.

For every setting of a sweep (thesis Figures 4.1/4.2/4.6-4.9 and Table 4.3):

* ``stream@M``: frames walked in order, each solve warm-started from the previous frame's fixed
  point with a budget of M iterations (Eq. 3.5, or Eq. 3.4 with ``init='reference'``);
* ``cold@M``: the non-streaming baseline, every frame from zeros with M iterations;
* ``full``: every frame from zeros with the backbone's full test solve;

the loop walks the whole test set, feeds the evaluator frame by frame with each prediction's
``frame_offset`` (frames since the clip start) and collects the metrics overall and by frame
offset. Results are written after every setting to ``<work_dir>/streaming/results.json`` (a crash
leaves the finished settings readable), then a table goes to the log and the curves to
``curves.png``.

The loop owns the stream states (one :class:`~mmvideoeq.streaming.StreamState` per video) and
asks one :class:`~mmvideoeq.streaming.StreamPolicy` per setting where each frame starts and how
many iterations it gets; boundaries (new video, shot change) are decided there only.
"""

from __future__ import annotations

import json
import math
import os
import os.path as osp
import time
from typing import Any, Sequence

import torch
from mmengine.runner import BaseLoop, autocast
from mmengine.utils import ProgressBar

from mmvideoeq.registry import LOOPS
from mmvideoeq.streaming import StreamPolicy, StreamState, split_state, split_stats, stack_states


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


def _flat_scalar_metrics(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


@LOOPS.register_module()
class StreamingTestLoop(BaseLoop):
    """Sweep of streaming / cold / full-solve evaluations in one run.

    Args:
        runner: The runner.
        dataloader: Test dataloader; frames of each video must come in increasing ``frame_id``
            (an unshuffled sampler; ``VideoInterleavedSampler`` to batch several videos).
        evaluator: Test evaluator (its metrics should accept ``frame_offset`` metainfo).
        iters: Budgets M to sweep.
        warm_start: Run the streaming settings ``stream@M``.
        baseline: Run the cold-start settings ``cold@M``.
        full_solve: Run the ``full`` setting.
        full_iters: Iterations of the full solve (``None``: the backbone's test setting).
        init: ``'zeros'`` (Eq. 3.5) or ``'reference'`` (Eq. 3.4) for the first frame.
        reference_iters: Iterations of the reference solve (``None``: ``full_iters`` or 26).
        budget: ``'fixed'`` (M iterations), ``'adaptive'`` (stop at ``tol``, at most M) or
            ``'time'`` (``ms_per_frame``; M is the upper bound).
        tol: Relative-residual tolerance of the adaptive budget.
        ms_per_frame: Per-frame time budget of ``budget='time'``.
        shot_change: ``None``/``'none'``, ``'extra_iters'`` or ``'reset'``.
        shot_change_cfg: Further :class:`~mmvideoeq.streaming.ShotChangeDetector` arguments.
        out_dir: Where results go (default ``<work_dir>/streaming``).
        plot: Write ``curves.png``.
        fp16: Run under autocast.
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
        out_dir: str | None = None,
        plot: bool = True,
        fp16: bool = False,
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
        if budget not in ('fixed', 'adaptive', 'time'):
            raise ValueError(f"budget must be 'fixed', 'adaptive' or 'time', got {budget!r}")
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
        self.out_dir = out_dir
        self.plot = plot
        self.fp16 = fp16

    # ------------------------------------------------------------------ settings
    def _full_iters(self) -> int:
        if self.full_iters is not None:
            return int(self.full_iters)
        n = getattr(getattr(self.runner.model, 'backbone', None), 'test_max_iter', None)
        if not isinstance(n, int):
            raise ValueError(
                'full_iters is not set and the backbone has no test_max_iter; set '
                'test_cfg.full_iters (streaming_test_cfg.full_iters)'
            )
        return n

    def _budget_cfg(self, m: int) -> dict:
        if self.budget == 'adaptive':
            return dict(type='AdaptiveBudget', tol=self.tol, max_iter=m)
        if self.budget == 'time':
            return dict(type='TimeBudget', ms_per_frame=self.ms_per_frame, max_iter=m)
        return dict(type='FixedBudget', iters=m)

    def settings(self) -> list[dict]:
        """The runs of the sweep, in order: name, policy config, warm start or not."""
        out = []
        shot = None
        if self.shot_change is not None:
            shot = dict(self.shot_change_cfg, response=self.shot_change)
        ref_iters = self.reference_iters or self._full_iters()
        for m in self.iters:
            if self.warm_start:
                out.append(
                    dict(
                        name=f'stream@{m}',
                        iters=m,
                        warm=True,
                        policy=dict(
                            budget=self._budget_cfg(m),
                            init=self.init,
                            reference_iters=ref_iters,
                            shot_change=shot,
                        ),
                    )
                )
        for m in self.iters:
            if self.baseline:
                out.append(
                    dict(
                        name=f'cold@{m}',
                        iters=m,
                        warm=False,
                        policy=dict(budget=dict(type='FixedBudget', iters=m)),
                    )
                )
        if self.full_solve:
            n = self._full_iters()
            out.append(
                dict(
                    name='full',
                    iters=n,
                    warm=False,
                    policy=dict(budget=dict(type='FixedBudget', iters=n)),
                )
            )
        return out

    # ------------------------------------------------------------------ running
    def run(self) -> dict:
        """Run every setting; return the flat metrics (``<setting>/<metric>``)."""
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        self.runner.model.eval()
        out_dir = self.out_dir or osp.join(self.runner.work_dir, 'streaming')
        os.makedirs(out_dir, exist_ok=True)
        json_path = osp.join(out_dir, 'results.json')
        report: dict[str, Any] = dict(settings={}, status='running')
        flat: dict[str, float] = {}
        for setting in self.settings():
            res = self.run_setting(setting)
            report['settings'][setting['name']] = res
            for k, v in _flat_scalar_metrics(res['metrics']).items():
                flat[f"{setting['name']}/{k}"] = v
            self._write_json(json_path, report)  # partial results stay readable
        report['status'] = 'done'
        self._write_json(json_path, report)
        self.runner.logger.info('\n' + self.format_table(report))
        if self.plot:
            png = self.plot_curves(report, osp.join(out_dir, 'curves.png'))
            if png:
                self.runner.logger.info(f'frame-offset curves written to {png}')
        self.runner.logger.info(f'streaming results written to {json_path}')
        self.runner.call_hook('after_test_epoch', metrics=flat)
        self.runner.call_hook('after_test')
        return flat

    @staticmethod
    def _write_json(path: str, report: dict) -> None:
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(report, f, indent=1, default=float)
        os.replace(tmp, path)

    def run_setting(self, setting: dict) -> dict:
        """Walk the test set once under one setting; return metrics and per-frame stats."""
        model = self.runner.model
        policy = StreamPolicy.from_cfg(setting['policy'])
        states: dict[Any, StreamState] = {}
        positions: dict[Any, tuple[int, int]] = {}
        frames, iters_used, ms_used, resets = 0, 0, 0.0, 0
        self.runner.logger.info(f"streaming test: {setting['name']}")
        bar = ProgressBar(len(self.dataloader)) if len(self.dataloader) > 20 else None
        for idx, data_batch in enumerate(self.dataloader):
            self.runner.call_hook('before_test_iter', batch_idx=idx, data_batch=data_batch)
            with autocast(enabled=self.fp16):
                preds, records = self.run_batch(
                    model, policy, states, positions, data_batch, warm=setting['warm']
                )
            for pred, rec in zip(preds, records):
                pred.set_metainfo(dict(frame_offset=rec['offset'], stream_iters=rec['iters']))
                frames += 1
                iters_used += rec['iters']
                ms_used += rec['ms']
                resets += int(rec['reset'] and rec['offset'] > 0)
            self.evaluator.process(data_samples=preds, data_batch=data_batch)
            self.runner.call_hook(
                'after_test_iter', batch_idx=idx, data_batch=data_batch, outputs=preds
            )
            if bar is not None:
                bar.update()
        if frames == 0:
            raise ValueError('the test dataloader produced no frame')
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        return dict(
            iters=setting['iters'],
            warm=setting['warm'],
            metrics=metrics,
            frames=frames,
            mean_iters=iters_used / frames,
            mean_ms=ms_used / frames,
            mid_stream_resets=resets,
        )

    @torch.no_grad()
    def run_batch(
        self,
        model,
        policy: StreamPolicy,
        states: dict,
        positions: dict,
        data_batch: dict,
        *,
        warm: bool,
    ) -> tuple[list, list[dict]]:
        """One batch of frames (of different videos): plan, solve (grouped), record.

        ``states`` maps video id -> stream state (warm runs only); ``positions`` maps video id ->
        ``(last frame_id, frames seen)``, for the order check and the frame offset of every run.
        """
        data = model.data_preprocessor(data_batch, False)
        inputs, samples = data['inputs'], data['data_samples']
        n = inputs.shape[0]
        ids = [_metainfo_ids(s, i) for i, s in enumerate(samples)]
        if len({v for v, _ in ids}) < n:
            raise ValueError(
                'a batch holds two frames of the same video; a frame needs the '
                "previous one's fixed point: batch frames of different videos "
                '(VideoInterleavedSampler) or use batch_size=1'
            )
        own: list[StreamState] = []
        offsets: list[int] = []
        for i, (vid, fid) in enumerate(ids):
            last = positions.get(vid)
            if last is not None and fid <= last[0]:
                raise ValueError(
                    f'frame_id {fid} of video {vid!r} arrived after frame_id {last[0]}: frames '
                    'of a video must come in increasing frame_id order (unshuffled sampler)'
                )
            # frames since the clip start; a shot-change init frame (``is_init_frame``: a frame of
            # another clip put in front of this one) gets offset -1, so the clip starts at 0
            if samples[i].metainfo.get('is_init_frame', False):
                offsets.append(-1)
            else:
                offsets.append(0 if last is None else last[1])
            positions[vid] = (fid, offsets[-1] + 1)
            state = states.get(vid) if warm else None
            if state is None:
                state = policy.init_state(vid)
                if warm:
                    states[vid] = state
            own.append(state)
        plans = [
            policy.begin_frame(st, inputs[i : i + 1], vid, fid)
            for i, (st, (vid, fid)) in enumerate(zip(own, ids))
        ]
        preds: list = [None] * n
        results: list = [None] * n
        self._solve_groups(model, policy, inputs, samples, plans, preds, results)
        extra = [policy.followup(own[i], plans[i], *results[i][:2]) for i in range(n)]
        if any(e is not None for e in extra):
            todo = [i for i in range(n) if extra[i] is not None]
            sub_preds: list = [None] * n
            sub_res: list = [None] * n
            self._solve_groups(model, policy, inputs, samples, extra, sub_preds, sub_res, only=todo)
            for i in todo:
                plans[i], preds[i] = extra[i], sub_preds[i]
                results[i] = (sub_res[i][0], sub_res[i][1], results[i][2] + sub_res[i][2])
        records = []
        for i in range(n):
            z, stats, ms = results[i]
            st = policy.end_frame(own[i], plans[i], z, stats, ms, update_budget=False)
            records.append(dict(st.history[-1], offset=offsets[i]))
            length = samples[i].metainfo.get('video_length')
            if warm and length is not None and ids[i][1] >= int(length) - 1:
                states.pop(ids[i][0], None)  # last frame of its video: free the fixed point
        return preds, records

    def _solve_groups(
        self, model, policy, inputs, samples, plans, preds, results, only: list[int] | None = None
    ) -> None:
        """Solve frames with equal (max_iter, tol) together; fill ``preds``/``results``."""
        groups: dict[tuple, list[int]] = {}
        for i in only if only is not None else range(len(plans)):
            groups.setdefault((plans[i].max_iter, plans[i].tol), []).append(i)
        backbone = model.backbone
        for (max_iter, tol), idx in groups.items():
            sub = inputs[idx]
            if all(plans[i].z0 is None for i in idx):
                z0 = None
            else:
                z0 = stack_states(
                    [plans[i].z0 for i in idx],
                    zeros_like_fn=lambda j, idx=idx: backbone.init_stream_state(
                        inputs[idx[j] : idx[j] + 1]
                    ),
                )
            t0 = time.perf_counter()
            out, z, stats = model.stream_step(
                sub, [samples[i] for i in idx], z0, max_iter=max_iter, tol=tol
            )
            ms = (time.perf_counter() - t0) * 1000.0
            policy.observe(stats, ms)
            zs, ss = split_state(z, len(idx)), split_stats(stats, len(idx))
            for k, i in enumerate(idx):
                preds[i] = out[k]
                results[i] = (zs[k], ss[k], ms / len(idx))

    # ------------------------------------------------------------------ reporting
    @staticmethod
    def curve_of(metrics: dict) -> tuple[str, list[str], list[float]] | None:
        """The first by-frame-offset curve among the metrics: ``(name, x labels, values)``.

        Metrics report curves as ``<prefix>offset_curve/<name>``: a dict ``{offset label: value}``
        (``'0'``, ``'1'``, ..., ``'20+'``) or a list indexed by offset. ``num_frames`` curves
        (frame counts) are not plotted.
        """
        for k, v in metrics.items():
            if 'offset_curve/' not in k or k.endswith('num_frames'):
                continue
            name = k.split('offset_curve/')[-1]
            if isinstance(v, dict):
                return (
                    name,
                    [str(x) for x in v],
                    [float('nan') if y is None else float(y) for y in v.values()],
                )
            if isinstance(v, (list, tuple)):
                return name, [str(i) for i in range(len(v))], [float(y) for y in v]
        return None

    @staticmethod
    def format_table(report: dict) -> str:
        """A plain-text table: one row per setting, the scalar metrics and the solver cost."""
        rows = []
        keys: list[str] = []
        for res in report['settings'].values():
            for k in _flat_scalar_metrics(res['metrics']):
                if k not in keys and 'num_' not in k:
                    keys.append(k)
        keys = keys[:5]
        head = ['setting', *keys, 'iters/frame', 'ms/frame']
        for name, res in report['settings'].items():
            m = res['metrics']
            rows.append(
                [
                    name,
                    *(f'{m[k]:.4f}' if k in m else '-' for k in keys),
                    f"{res['mean_iters']:.2f}",
                    f"{res['mean_ms']:.1f}",
                ]
            )
        widths = [max(len(str(r[c])) for r in [head, *rows]) for c in range(len(head))]
        line = lambda r: '| ' + ' | '.join(str(x).ljust(w) for x, w in zip(r, widths)) + ' |'
        sep = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
        return '\n'.join([line(head), sep, *map(line, rows)])

    @classmethod
    def plot_curves(cls, report: dict, path: str) -> str | None:
        """Plot metric vs frame offset for every setting that reports a curve."""
        curves = {n: cls.curve_of(r['metrics']) for n, r in report['settings'].items()}
        curves = {n: c for n, c in curves.items() if c is not None}
        if not curves:
            return None
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        labels: list[str] = []
        for name, (metric, xs, ys) in curves.items():
            if len(xs) > len(labels):
                labels = xs
            keep = [i for i, y in enumerate(ys) if not math.isnan(y)]
            style = '-' if name.startswith('stream') else ('--' if name.startswith('cold') else ':')
            ax.plot(keep, [ys[i] for i in keep], style, marker='o', ms=3, label=name)
            ax.set_ylabel(metric)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_xlabel('frame offset from clip start')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
