"""Reports of the streaming sweep: ``results.json``, the log table and the plots.

``results.json`` holds, per setting, the metrics (as the evaluator returned them), the cost
(solver steps and evaluations of ``f`` per frame, ms per frame of the accuracy pass and of the
timing repeats), the counts of resets, skipped, diverged and residual-outlier frames, and the
list of skipped and diverged frames with their reasons. Plots:

* ``accuracy_vs_cost.png``: the first scalar metric against evaluations of ``f`` per frame and
  against ms per frame, streamed vs cold vs full solve, each point labelled with its frames;
* ``curves.png``: the first by-frame-offset curve of the streamed settings and the full solve;
* ``sap_vs_fps.png`` (with the real-time simulation): streaming AP of every setting against the
  frame rate, the offline AP beside it.

With the real-time simulation, ``results.json`` has a ``realtime`` section
(:meth:`~.realtime_eval.RealtimeSweep.run`): per setting the offline AP of the sAP scorer, the
latencies used and, per frame rate, sAP and the COCO statistics, ``in_time``/``miss``/
``mismatch``, and per video the simulated trace (input frame, start and finish of every output);
the ``deadline`` setting adds its decisions; ``best_fixed`` names the best setting per rate,
``best_fixed_m`` the best ``stream@M`` (which the scheduler chooses among).
"""

from __future__ import annotations

import json
import math
import os
import os.path as osp
import statistics
from typing import Any

__all__ = ['StreamingReport']


def _scalars(metrics: dict) -> dict:
    return {
        k: v
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and 'num_' not in k
    }


#: The metric a report leads with, by preference (the first one the metrics have).
PRIMARY = ('exact/bbox_mAP_50', 'bbox_mAP_50', 'mIoU', 'DVPQ', 'VPQ', 'PQ', 'bbox_mAP')


def primary_metric(keys: list[str], wanted: str | None = None) -> str | None:
    """The key a report leads with: ``wanted`` (a key or its suffix), else the first of
    :data:`PRIMARY` present, else the first key."""
    for name in ([wanted] if wanted else []) + list(PRIMARY):
        match = [k for k in keys if k == name or k.endswith('/' + name)]
        if match:
            return match[0]
    return keys[0] if keys else None


class StreamingReport:
    """Collects the settings' results and writes them out.

    Args:
        out_dir: Folder of ``results.json`` and the plots.
        solver: Name of the backbone's solver (shown in the table).
        metric: The metric to lead the table and the plot with (a key or its last part);
            default: the first of :data:`PRIMARY` the metrics have.
    """

    def __init__(self, out_dir: str, solver: str | None = None, metric: str | None = None) -> None:
        self.out_dir = out_dir
        self.metric = metric
        self.data: dict[str, Any] = dict(settings={}, status='running', solver=solver)

    def _keys(self) -> list[str]:
        """Scalar metric keys, the primary one first."""
        keys: list[str] = []
        for res in self.data['settings'].values():
            keys += [k for k in _scalars(res['metrics']) if k not in keys]
        first = primary_metric(keys, self.metric)
        return ([first] if first else []) + [k for k in keys if k != first]

    @property
    def json_path(self) -> str:
        return osp.join(self.out_dir, 'results.json')

    @staticmethod
    def summarise(setting: dict, metrics: dict, records: list) -> dict:
        """The per-setting entry from the metrics and the frames' ``FrameRecord``."""
        done = [r for r in records if r.skipped is None]
        n = max(len(done), 1)
        skipped = [
            dict(video_id=r.video_id, frame_id=r.frame_id, reason=r.skipped)
            for r in records
            if r.skipped is not None
        ]
        diverged = [dict(video_id=r.video_id, frame_id=r.frame_id) for r in done if r.diverged]
        return dict(
            iters=setting['iters'],
            warm=setting['warm'],
            metrics=metrics,
            frames=len(done),
            mean_iters=sum(r.iters for r in done) / n,
            mean_evals=sum(r.n_eval for r in done) / n,
            mean_ms=sum(r.ms for r in done) / n,
            mid_stream_resets=sum(r.reset and r.offset > 0 for r in done),
            skipped=skipped,
            diverged=diverged,
            residual_outliers=sum(r.residual_outlier for r in done),
        )

    def add(self, name: str, result: dict) -> None:
        self.data['settings'][name] = result

    def write_json(self) -> str:
        """Write ``results.json`` atomically (the previous version stays until replaced)."""
        tmp = self.json_path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.data, f, indent=1, default=float)
        os.replace(tmp, self.json_path)
        return self.json_path

    def flat_metrics(self) -> dict[str, float]:
        """``<setting>/<metric>`` for every scalar metric, and ``<setting>/sAP@<fps>fps``,
        ``<setting>/sAP_50@<fps>fps`` of the real-time simulation."""
        flat = {
            f'{name}/{k}': v
            for name, res in self.data['settings'].items()
            for k, v in res['metrics'].items()
            if isinstance(v, (int, float))
        }
        for name, res in ((self.data.get('realtime') or {}).get('settings') or {}).items():
            for fps, r in res['fps'].items():
                if r:
                    flat[f'{name}/sAP@{fps}fps'] = r['sAP']
                    flat[f'{name}/sAP_50@{fps}fps'] = r['sAP_50']
        return flat

    def finish(self, logger, plot: bool = True) -> None:
        """Mark the report done, write it, log the table and problems, draw the plots."""
        self.data['status'] = 'done'
        self.write_json()
        logger.info('\n' + self.format_table())
        if self.data.get('realtime'):
            logger.info('\n' + self.format_realtime_table())
        for name, res in self.data['settings'].items():
            for key, what in (('skipped', 'skipped (not evaluated)'), ('diverged', 'diverged')):
                if res[key]:
                    shown = ', '.join(
                        f"{f['video_id']}/{f['frame_id']}"
                        + (f" ({f['reason']})" if 'reason' in f else '')
                        for f in res[key][:10]
                    )
                    logger.warning(f'{name}: {len(res[key])} frame(s) {what}: {shown}')
        if plot:
            for path in (self.plot_cost(), self.plot_curves(), self.plot_sap()):
                if path:
                    logger.info(f'plot written to {path}')
        logger.info(f'streaming results written to {self.json_path}')

    # ------------------------------------------------------------------ table
    def format_table(self) -> str:
        """One row per setting: scalar metrics, solver steps and f evaluations per frame,
        ms/frame (timing median [min, max] when timed), frames."""
        settings = self.data['settings']
        keys = [k for k in self._keys() if 'exact/' not in k or k == self._keys()[0]][:4]
        head = ['setting', *keys, 'steps/frame', 'f evals/frame', 'ms/frame', 'frames']
        rows = []
        for name, res in settings.items():
            m = res['metrics']
            t = res.get('timing')
            ms = (
                f"{t['median_ms']:.1f} [{t['min_ms']:.1f}, {t['max_ms']:.1f}]"
                if t
                else f"{res['mean_ms']:.1f}"
            )
            rows.append(
                [
                    name,
                    *(f'{m[k]:.4f}' if k in m else '-' for k in keys),
                    f"{res['mean_iters']:.2f}",
                    f"{res['mean_evals']:.2f}",
                    ms,
                    str(res['frames']),
                ]
            )
        widths = [max(len(str(r[c])) for r in [head, *rows]) for c in range(len(head))]
        line = lambda r: '| ' + ' | '.join(str(x).ljust(w) for x, w in zip(r, widths)) + ' |'
        sep = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
        title = f"solver: {self.data.get('solver') or '?'}; ms/frame: " + (
            'median [min, max] of the timing repeats'
            if any('timing' in r for r in settings.values())
            else 'mean of the accuracy pass'
        )
        return '\n'.join([title, line(head), sep, *map(line, rows)])

    def format_realtime_table(self) -> str:
        """One row per setting: offline AP and AP@50 of the sAP scorer, ms per frame, then per
        frame rate sAP, sAP@50 and in_time / miss / mismatch; then the best setting per rate."""
        rt = self.data['realtime']
        head = ['setting', 'AP', 'AP@50', 'ms/frame']
        for fps in rt['fps']:
            head += [f'{fps:g} fps: sAP', 'sAP@50', 'in time/miss/mismatch']
        rows = []
        for name, res in rt['settings'].items():
            off, lat = res.get('offline'), res.get('latency_ms')
            if isinstance(lat, dict) and 'stages' in lat:  # a pipeline: latency, interval
                ms = f"{lat['latency']:.1f} (a frame every {lat['interval']:.1f})"
            elif isinstance(lat, dict):  # per-frame traces
                ms = f'{statistics.median(v for trace in lat.values() for v in trace):.1f}'
            else:
                ms = '-' if lat is None else f'{lat:.1f}'
            row = [name]
            row += [f"{off['sAP']:.4f}", f"{off['sAP_50']:.4f}"] if off else ['-', '-']
            row.append(ms)
            for fps in rt['fps']:
                r = res['fps'].get(f'{fps:g}')
                c = r['counts'] if r else None
                row += (
                    [f"{r['sAP']:.4f}", f"{r['sAP_50']:.4f}"]
                    + [f"{c['in_time']}/{c['miss']}/{c['mismatch']}"]
                    if r
                    else ['-'] * 3
                )
            rows.append(row)
        widths = [max(len(str(r[c])) for r in [head, *rows]) for c in range(len(head))]
        line = lambda r: '| ' + ' | '.join(str(x).ljust(w) for x, w in zip(r, widths)) + ' |'
        sep = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
        title = (
            f"real time: eta {rt['eta']:g}, latency {rt['latency']}, warm settings "
            f"{'replayed on the frames taken' if rt['replay'] else 'from the accuracy pass'}; "
            f"COCO maxDets {rt['max_dets']}; AP: every frame answered by its own prediction"
        )
        notes = []
        for fps, best in rt.get('best_fixed', {}).items():
            note = f"{fps} fps: best setting {best['setting']} (sAP {best['sAP']:.4f})"
            best_m = rt.get('best_fixed_m', {}).get(fps)
            if best_m:
                note += f"; best fixed M {best_m['setting']} (sAP {best_m['sAP']:.4f})"
            d = rt['settings'].get('deadline', {}).get('fps', {}).get(fps)
            if d and 'beats_best_fixed_m' in d:
                note += (
                    f"; deadline scheduler sAP {d['sAP']:.4f} "
                    f"({'beats' if d['beats_best_fixed_m'] else 'does not beat'} it; budgets "
                    f"{d['budgets']}, {d['skipped_by_scheduler']} frames skipped)"
                )
            notes.append(note)
        return '\n'.join([title, line(head), sep, *map(line, rows), *notes])

    # ------------------------------------------------------------------ plots
    @staticmethod
    def curve_of(metrics: dict) -> tuple[str, list[str], list[float]] | None:
        """The first by-frame-offset curve among the metrics: ``(name, x labels, values)``.

        Metrics report curves as ``<prefix>offset_curve/<name>``: a dict ``{offset label: value}``
        or a list indexed by offset; ``num_frames`` curves are not plotted.
        """
        for k, v in metrics.items():
            if 'offset_curve/' not in k or k.endswith('num_frames'):
                continue
            name = k.split('offset_curve/')[-1]
            if isinstance(v, dict):
                ys = [float('nan') if y is None else float(y) for y in v.values()]
                return name, [str(x) for x in v], ys
            if isinstance(v, (list, tuple)):
                return name, [str(i) for i in range(len(v))], [float(y) for y in v]
        return None

    def _pyplot(self):
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        return plt

    def plot_cost(self) -> str | None:
        """Metric against f evaluations and ms per frame: streamed, cold, full."""
        settings = self.data['settings']
        keys = self._keys()
        if not keys:
            return None
        metric = keys[0]
        plt = self._pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        groups = {'stream': [], 'cold': [], 'full': []}
        for name, res in settings.items():
            if metric in res['metrics']:
                groups[name.split('@')[0] if '@' in name else 'full'].append((name, res))
        styles = {
            'stream': ('-o', 'streamed (warm start)'),
            'cold': ('--s', 'cold start'),
            'full': ('*', 'full solve'),
        }
        for ax, (xkey, xlabel) in zip(
            axes, [('evals', 'evaluations of f per frame'), ('ms', 'ms per frame')]
        ):
            for group, entries in groups.items():
                if not entries:
                    continue
                xs = [
                    res['mean_evals']
                    if xkey == 'evals'
                    else (res['timing']['median_ms'] if res.get('timing') else res['mean_ms'])
                    for _, res in entries
                ]
                ys = [res['metrics'][metric] for _, res in entries]
                fmt, label = styles[group]
                ax.plot(xs, ys, fmt, ms=10 if group == 'full' else 5, label=label)
                for (name, res), x, y in zip(entries, xs, ys):
                    ax.annotate(
                        f"{name} (n={res['frames']})",
                        (x, y),
                        fontsize=6,
                        textcoords='offset points',
                        xytext=(3, 3),
                    )
            ax.set_xlabel(xlabel)
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
        axes[0].set_title(f'{metric} vs solver cost')
        axes[1].set_title(f'{metric} vs time (model step)')
        axes[0].legend(fontsize=8)
        fig.suptitle(
            f"accuracy vs cost ({self.data.get('solver') or 'solver'}; n = frames "
            'evaluated per point)',
            fontsize=9,
        )
        fig.tight_layout()
        path = osp.join(self.out_dir, 'accuracy_vs_cost.png')
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def plot_sap(self) -> str | None:
        """Streaming AP and sAP@50 against the frame rate: one colour per budget M, one line
        style per kind (streamed, pipelined, cold, full, deadline); the full solve's offline AP
        dotted."""
        rt = self.data.get('realtime')
        if not rt or not rt.get('settings'):
            return None
        plt = self._pyplot()
        from matplotlib.ticker import NullFormatter

        budgets = sorted({int(n.split('@')[1].split('|')[0]) for n in rt['settings'] if '@' in n})
        colours = {m: plt.get_cmap('tab10')(k % 10) for k, m in enumerate(budgets)}

        def style(name: str) -> dict:
            if name == 'deadline':
                return dict(fmt='-s', color='red', lw=2.0)
            if name == 'full' or '@' not in name:
                return dict(fmt='-*', color='black', lw=1.2)
            colour = colours[int(name.split('@')[1].split('|')[0])]
            if name.endswith('|pipelined'):
                return dict(fmt='-.d', color=colour, lw=1.0)
            return dict(fmt='-o' if name.startswith('stream') else '--^', color=colour, lw=1.0)

        fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
        for ax, key, label in zip(axes, ('sAP', 'sAP_50'), ('sAP', 'sAP@50')):
            for name, res in rt['settings'].items():
                pts = [(f, res['fps'].get(f'{f:g}')) for f in rt['fps']]
                pts = [(f, r[key]) for f, r in pts if r]
                if pts:
                    st = style(name)
                    ax.plot(*zip(*pts), st.pop('fmt'), ms=4, label=name, **st)
            full = rt['settings'].get('full', {}).get('offline')
            if full:
                ax.axhline(full[key], color='gray', ls=':', lw=1.0, label='full, offline')
            ax.set_xscale('log')
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks(rt['fps'])
            ax.set_xticklabels([f'{f:g}' for f in rt['fps']])
            ax.set_xlabel('frame rate (fps)')
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=7, ncol=2, loc='upper right')
        fig.suptitle(
            f"streaming AP vs frame rate (eta {rt['eta']:g}, latency {rt['latency']}; solid: "
            'streamed, dash-dot: pipelined, dashed: cold start)',
            fontsize=9,
        )
        fig.tight_layout()
        path = osp.join(self.out_dir, 'sap_vs_fps.png')
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def plot_curves(self) -> str | None:
        """Metric vs frame offset for the streamed settings (and the full solve as reference)."""
        curves = {
            n: self.curve_of(r['metrics'])
            for n, r in self.data['settings'].items()
            if n.startswith('stream') or n == 'full'
        }
        curves = {n: c for n, c in curves.items() if c is not None}
        if not curves:
            return None
        plt = self._pyplot()
        fig, ax = plt.subplots(figsize=(7, 4.5))
        labels: list[str] = []
        for name, (metric, xs, ys) in curves.items():
            labels = xs if len(xs) > len(labels) else labels
            keep = [i for i, y in enumerate(ys) if not math.isnan(y)]
            style = ':' if name == 'full' else '-'
            ax.plot(keep, [ys[i] for i in keep], style, marker='o', ms=3, label=name)
            ax.set_ylabel(metric)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_xlabel('frame offset from clip start')
        ax.set_title('accuracy by frame offset (streamed settings, full solve dotted)')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        path = osp.join(self.out_dir, 'curves.png')
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
