"""Reports of the streaming sweep: ``results.json``, the log table and the plots.

``results.json`` holds, per setting, the metrics (as the evaluator returned them), the cost
(solver steps and evaluations of ``f`` per frame, ms per frame of the accuracy pass and of the
timing repeats), the counts of resets, skipped, diverged and residual-outlier frames, and the
list of skipped and diverged frames with their reasons. Plots:

* ``accuracy_vs_cost.png``: the first scalar metric (and PQ beside (D)VPQ) against evaluations
  of ``f`` per frame and against ms per frame, streamed vs cold vs full solve (colour and line),
  the budget M by marker;
* ``curves.png``: the first by-frame-offset curve (and PQ beside (D)VPQ), one panel per budget M:
  the streamed and cold-start settings in one colour (solid / dashed), the full solve dotted,
  with the metrics' bootstrap intervals over videos (``offset_curve_ci/...``) shaded;
* ``sap_vs_fps.png`` (with the real-time simulation of a detector): streaming AP of every setting
  against the frame rate, the full solve's offline AP beside it; ``miou_vs_fps.png`` (of a
  segmentor) the same for streaming mIoU and pixel accuracy, ``dvpq_vs_fps.png`` (DVPS) for
  streaming DVPQ and PQ.

With the real-time simulation, ``results.json`` has a ``realtime`` section
(:meth:`~.realtime_eval.RealtimeSweep.run`): its ``task`` (``detection``, ``segmentation``,
``panoptic``), per setting the offline AP (mIoU, DVPQ) of the streaming scorer, the latencies
used and, per frame rate, sAP and the COCO statistics (streaming mIoU, aAcc, mAcc; streaming
DVPQ, VPQ, PQ and the rest of ``DVPQMetric``'s keys), ``in_time``/``miss``/``mismatch``,
and per video the simulated trace (input frame, start and finish of every output);
the ``deadline`` setting adds its decisions; ``best_fixed`` names the best setting per rate,
``best_fixed_m`` the best ``stream@M`` (which the scheduler chooses among).

Axis titles are readable names of the metric keys (:data:`METRIC_LABELS`, the key's last part
with spaces as a fallback).
"""

from __future__ import annotations

import json
import math
import os
import os.path as osp
from typing import Any

from .realtime_report import format_realtime_table, realtime_figure, realtime_flat_metrics

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
        ``<setting>/sAP_50@<fps>fps`` (segmentation: ``smIoU``, ``saAcc``; DVPS: ``sDVPQ``,
        ``sPQ``) of the real-time simulation."""
        flat = {
            f'{name}/{k}': v
            for name, res in self.data['settings'].items()
            for k, v in res['metrics'].items()
            if isinstance(v, (int, float))
        }
        flat.update(realtime_flat_metrics(self.data.get('realtime') or {}))
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
        """The real-time section's table (:func:`~.realtime_report.format_realtime_table`)."""
        return format_realtime_table(self.data['realtime'])

    # ------------------------------------------------------------------ plots
    def plot_keys(self) -> list[str]:
        """Scalar metrics the cost plot shows: the primary one, and PQ beside (D)VPQ."""
        keys = self._keys()
        if not keys:
            return []
        return [keys[0], *[k for k in keys if k == _sibling(keys[0], 'PQ')]]

    @staticmethod
    def curves_of(metrics: dict) -> dict[str, tuple[list[str], list[float], list | None]]:
        """The by-frame-offset curves to plot: the first one, and PQ beside a (D)VPQ curve.

        Metrics report curves as ``<prefix>offset_curve/<name>``: a dict ``{offset label:
        value}`` or a list indexed by offset, and their bootstrap intervals as
        ``<prefix>offset_curve_ci/<name>`` (``{label: [lo, hi]}``); ``num_frames`` curves are
        not plotted. pycocotools' ``-1`` (no ground truth) of an mAP is a gap.

        Returns:
            dict: Metric key (``<prefix><name>``) -> (x labels, values, ``[(lo, hi)]`` or None).
        """
        names = [k for k in metrics if 'offset_curve/' in k and not k.endswith('num_frames')]
        names = names[:1] + [k for k in names[1:] if names and k == _sibling(names[0], 'PQ')]
        out = {}
        for k in names:
            v = metrics[k]
            labels = [str(x) for x in v] if isinstance(v, dict) else [str(i) for i in range(len(v))]
            raw = list(v.values()) if isinstance(v, dict) else list(v)
            gap = 'mAP' in k
            ys = [_value(y, gap) for y in raw]
            ci = metrics.get(k.replace('offset_curve/', 'offset_curve_ci/'))
            bands = None
            if isinstance(ci, dict):
                bands = [
                    (_value(ci[x][0], gap), _value(ci[x][1], gap)) if x in ci else (math.nan,) * 2
                    for x in labels
                ]
            out[k.replace('offset_curve/', '')] = (labels, ys, bands)
        return out

    def _pyplot(self):
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        return plt

    def _frames_note(self) -> str:
        frames = sorted({res['frames'] for res in self.data['settings'].values()})
        span = str(frames[0]) if len(frames) == 1 else f'{frames[0]}-{frames[-1]}'
        return f'n = {span} frames per point'

    def cost_figure(self):
        """The figure of :meth:`plot_cost` (None without a scalar metric)."""
        keys = self.plot_keys()
        if not keys:
            return None
        plt = self._pyplot()
        from matplotlib.lines import Line2D

        groups: dict[str, list] = {'stream': [], 'cold': [], 'full': []}
        for name, res in self.data['settings'].items():
            groups[_group(name)].append((name, res))
        budgets = sorted({_budget(n) for n in self.data['settings']} - {None})
        marker = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(budgets)}
        fig, axes = plt.subplots(
            len(keys), 2, figsize=(10, 3.4 * len(keys) + 1.1), squeeze=False, layout='constrained'
        )
        for row, key in zip(axes, keys):
            for ax, xkey in zip(row, ('evals', 'ms')):
                for group, entries in groups.items():
                    points = [(_cost(res, xkey), res['metrics'].get(key), n) for n, res in entries]
                    points = sorted(p for p in points if p[1] is not None)
                    if not points:
                        continue
                    color, style, _ = _GROUP_STYLE[group]
                    if group != 'full':
                        ax.plot([p[0] for p in points], [p[1] for p in points], style, color=color)
                    for x, y, name in points:
                        m = '*' if group == 'full' else marker.get(_budget(name), 'o')
                        ax.plot(x, y, m, color=color, ms=13 if group == 'full' else 7, mec='k')
                ax.grid(alpha=0.3)
                ax.set_ylabel(metric_label(key))
            ticks = sorted({_cost(r, 'evals') for r in self.data['settings'].values()})
            log = ticks[0] > 0  # a model without a solver streams at 0 evaluations
            if log:
                row[0].set_xscale('log', base=2)
            row[0].set_xlabel('evaluations of f per frame' + (' (log scale)' if log else ''))
            row[1].set_xlabel('ms per frame (model step)')
            row[0].set_xticks(ticks, [f'{t:g}' for t in ticks])
        handles = [
            Line2D(
                [],
                [],
                color=c,
                ls='' if g == 'full' else s,
                marker='*' if g == 'full' else None,
                ms=12,
                label=lab,
            )
            for g, (c, s, lab) in _GROUP_STYLE.items()
            if groups[g]
        ] + [
            Line2D([], [], ls='', marker=marker[m], color='0.6', mec='k', label=f'M = {m}')
            for m in budgets
        ]
        fig.legend(handles=handles, loc='outside lower center', ncol=min(len(handles), 7))
        fig.suptitle(
            f"accuracy vs cost ({self.data.get('solver') or 'solver'}; M = solver steps per "
            f'frame; {self._frames_note()})',
            fontsize=10,
        )
        return fig

    def plot_cost(self) -> str | None:
        """``accuracy_vs_cost.png``: the metric (and PQ beside (D)VPQ) against evaluations of
        ``f`` and ms per frame; streamed, cold and full solve told apart by colour and line, the
        budget M by marker (a legend, no labels that could collide)."""
        fig = self.cost_figure()
        return None if fig is None else self._save(fig, 'accuracy_vs_cost.png')

    def curves_figure(self):
        """The figure of :meth:`plot_curves` (None when no setting reports a curve)."""
        curves = {n: self.curves_of(r['metrics']) for n, r in self.data['settings'].items()}
        curves = {n: c for n, c in curves.items() if c}
        if not curves:
            return None
        keys = list(dict.fromkeys(k for c in curves.values() for k in c))
        budgets = sorted({_budget(n) for n in curves if _budget(n) is not None})
        columns = budgets or [None]
        plt = self._pyplot()
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        fig, axes = plt.subplots(
            len(keys),
            len(columns),
            figsize=(3.3 * len(columns) + 0.8, 2.9 * len(keys) + 1.2),
            squeeze=False,
            sharey='row',
            layout='constrained',
        )
        colors = {m: f'C{i % 10}' for i, m in enumerate(columns)}
        for r, key in enumerate(keys):
            for c, budget in enumerate(columns):
                ax = axes[r][c]
                for name, by_key in curves.items():
                    if key not in by_key or (name != 'full' and _budget(name) != budget):
                        continue
                    group = _group(name)
                    color = 'k' if group == 'full' else colors[budget]
                    _draw_curve(ax, *by_key[key], color, _GROUP_STYLE[group][1], group == 'cold')
                labels = max((c[key][0] for c in curves.values() if key in c), key=len)
                step = max(1, math.ceil(len(labels) / 10))
                ax.set_xticks(range(0, len(labels), step), labels[::step], fontsize=7)
                ax.grid(alpha=0.3)
                if r == 0:
                    ax.set_title(
                        'streamed' if budget is None else f"M = {budget} step{'s' * (budget > 1)}"
                    )
                if r == len(keys) - 1:
                    ax.set_xlabel('frame offset from clip start')
            axes[r][0].set_ylabel(metric_label(key))
        handles = [
            Line2D([], [], color='0.3', ls='-', label='streamed (warm start)'),
            Line2D([], [], color='0.3', ls='--', label='cold start, same M'),
            Line2D([], [], color='k', ls=':', label='full solve'),
            Patch(facecolor='0.5', alpha=0.25, label='95 % bootstrap interval over videos'),
        ]
        fig.legend(handles=handles, loc='outside lower center', ncol=4)
        counts = _frames_per_offset(self.data['settings'])
        fig.suptitle(
            'accuracy by frame offset: warm start vs cold start at the same budget'
            + (f' ({counts} frames per offset)' if counts else ''),
            fontsize=10,
        )
        return fig

    def plot_curves(self) -> str | None:
        """``curves.png``: metric vs frame offset, one panel per budget M (streamed solid,
        cold start dashed, same colour; full solve dotted in every panel), bootstrap intervals
        of the streamed and cold curves shaded (hatched for the cold start); a second row for
        PQ beside a (D)VPQ curve."""
        fig = self.curves_figure()
        return None if fig is None else self._save(fig, 'curves.png')

    def plot_sap(self) -> str | None:
        """The real-time section's plot (:func:`~.realtime_report.realtime_figure`):
        ``sap_vs_fps.png``, ``miou_vs_fps.png`` or ``dvpq_vs_fps.png``."""
        rt = self.data.get('realtime')
        if not rt or not rt.get('settings'):
            return None
        fig, name = realtime_figure(rt, self._pyplot())
        return self._save(fig, name)

    def _save(self, fig, name: str) -> str:
        path = osp.join(self.out_dir, name)
        fig.savefig(path, dpi=110)
        self._pyplot().close(fig)
        return path


#: Axis titles of metric names (the key's last part); unknown names fall back to the name.
METRIC_LABELS = {
    'bbox_mAP_50': 'box mAP@0.5',
    'bbox_mAP': 'box mAP@[0.5:0.95]',
    'bbox_mAP_75': 'box mAP@0.75',
    'mIoU': 'mIoU (%)',
    'mAcc': 'mean class accuracy (%)',
    'aAcc': 'pixel accuracy (%)',
    'mDice': 'mean Dice (%)',
    'mFscore': 'mean F-score (%)',
    'PQ': 'PQ (%)',
    'VPQ': 'VPQ (%, mean over windows k)',
    'DVPQ': 'DVPQ (%, mean over k and depth thresholds)',
    'STQ': 'STQ (%)',
    'DSTQ': 'DSTQ (%)',
    'silog': 'SILog (x100)',
    'abs_rel': 'AbsRel',
    'rmse': 'RMSE (m)',
    'mean_abs': 'mean |error|',
}
#: What a key prefix says about the protocol.
PREFIX_LABELS = {'vid': 'ImageNet-VID protocol', 'depth': 'depth'}


def metric_label(key: str) -> str:
    """A readable axis title for a metric key, e.g. ``vid/exact/bbox_mAP_50`` -> ``box
    mAP@0.5 (ImageNet-VID protocol)``, ``dvps/PQ`` -> ``PQ (%)``; unknown names are shown with
    spaces for underscores."""
    parts = key.split('/')
    name = parts[-1]
    label = METRIC_LABELS.get(name, name.replace('_', ' '))
    extra = [PREFIX_LABELS[parts[0]]] if len(parts) > 1 and parts[0] in PREFIX_LABELS else []
    extra += [p for p in parts[1:-1] if p in ('image', 'pixel')]  # depth reductions
    return label + (f" ({', '.join(extra)})" if extra else '')


_MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X', 'h')
#: colour, line style and legend text of each group of settings
_GROUP_STYLE = {
    'stream': ('C0', '-', 'streamed (warm start)'),
    'cold': ('C1', '--', 'cold start'),
    'full': ('k', ':', 'full solve'),
}


def _group(name: str) -> str:
    return 'full' if name == 'full' else name.split('@')[0] if '@' in name else 'stream'


def _budget(name: str) -> int | None:
    head, _, tail = name.partition('@')
    return int(tail) if head in ('stream', 'cold') and tail.isdigit() else None


def _sibling(key: str, name: str) -> str:
    """``key`` with its last part replaced by ``name`` when that part is (D)VPQ, else ''."""
    head, _, last = key.rpartition('/')
    return (f'{head}/{name}' if head else name) if last in ('DVPQ', 'VPQ') else ''


def _value(y, gap: bool) -> float:
    if y is None:
        return math.nan
    y = float(y)
    return math.nan if gap and y < 0 else y


def _cost(res: dict, xkey: str) -> float:
    if xkey == 'evals':
        return res['mean_evals']
    return res['timing']['median_ms'] if res.get('timing') else res['mean_ms']


def _draw_curve(ax, labels, ys, bands, color, style, hatched) -> None:
    xs = list(range(len(labels)))
    ax.plot(xs, ys, style, color=color, marker='o', ms=2.5, lw=1.4)
    if bands and style != ':':  # the full solve is the reference line: no band
        lo, hi = [b[0] for b in bands], [b[1] for b in bands]
        if hatched:
            ax.fill_between(xs, lo, hi, facecolor='none', edgecolor=color, hatch='////',
                            alpha=0.35, lw=0)  # fmt: skip
        else:
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2, lw=0)


def _frames_per_offset(settings: dict) -> str:
    counts = set()
    for res in settings.values():
        for k, v in res['metrics'].items():
            if k.endswith('offset_curve/num_frames') and isinstance(v, dict):
                counts |= set(v.values())
    if not counts:
        return ''
    return str(min(counts)) if len(counts) == 1 else f'{min(counts)}-{max(counts)}'
