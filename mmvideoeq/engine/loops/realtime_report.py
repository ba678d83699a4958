"""The real-time section of a streaming report: its table, flat metrics and plot.

What :class:`~.streaming_report.StreamingReport` shows of ``results.json``'s ``realtime``
section (:meth:`~.realtime_eval.RealtimeSweep.run`), by task: streaming AP for detection,
streaming mIoU for segmentation, streaming DVPQ / PQ for depth-aware video panoptic
segmentation.
"""

from __future__ import annotations

import statistics
from typing import NamedTuple

__all__ = [
    'REALTIME_COLUMNS',
    'realtime_columns',
    'realtime_flat_metrics',
    'format_realtime_table',
    'realtime_figure',
]


class _Column(NamedTuple):
    key: str  # in a realtime result
    offline: str  # table title of the offline value
    streaming: str  # table title of the streaming value
    flat: str  # its name in the flat metrics (``<setting>/<flat>@<fps>fps``)
    axis: str  # y-axis title of the plot
    fmt: str  # number format


#: What the real-time section of each task shows: the primary value, then the second one.
REALTIME_COLUMNS = {
    'detection': (
        _Column('sAP', 'AP', 'sAP', 'sAP', 'sAP', '.4f'),
        _Column('sAP_50', 'AP@50', 'sAP@50', 'sAP_50', 'sAP@50', '.4f'),
    ),
    'segmentation': (
        _Column('mIoU', 'mIoU', 'smIoU', 'smIoU', 'streaming mIoU (%)', '.2f'),
        _Column('aAcc', 'aAcc', 'saAcc', 'saAcc', 'streaming pixel accuracy (%)', '.2f'),
    ),
    'panoptic': (
        _Column('DVPQ', 'DVPQ', 'sDVPQ', 'sDVPQ', 'streaming DVPQ (%)', '.2f'),
        _Column('PQ', 'PQ', 'sPQ', 'sPQ', 'streaming PQ (%)', '.2f'),
    ),
}
#: A panoptic column of another key (``VPQ`` without depth thresholds, or without k = 1).
_PANOPTIC_COLUMN = {
    'VPQ': _Column('VPQ', 'VPQ', 'sVPQ', 'sVPQ', 'streaming VPQ (%)', '.2f'),
}


def realtime_columns(rt: dict) -> tuple[_Column, _Column]:
    """The two columns a real-time section shows (by its ``task`` and scorer ``keys``)."""
    task = rt.get('task', 'detection')
    if task == 'panoptic':  # the scorer's keys: DVPQ or VPQ, then PQ or VPQ
        default = {c.key: c for c in REALTIME_COLUMNS['panoptic']}
        keys = rt.get('keys') or list(default)
        return tuple({**default, **_PANOPTIC_COLUMN}[k] for k in keys)
    return REALTIME_COLUMNS[task]


def realtime_flat_metrics(rt: dict) -> dict[str, float]:
    """``<setting>/<column>@<fps>fps`` of a real-time section (``sAP``, ``sAP_50``;
    segmentation ``smIoU``, ``saAcc``; DVPS ``sDVPQ``, ``sPQ``)."""
    flat = {}
    for name, res in (rt.get('settings') or {}).items():
        for fps, r in res['fps'].items():
            if r:
                for col in realtime_columns(rt):
                    flat[f'{name}/{col.flat}@{fps}fps'] = r[col.key]
    return flat


def format_realtime_table(rt: dict) -> str:
    """One row per setting: offline AP and AP@50 of the sAP scorer (segmentation: mIoU and
    aAcc; DVPS: DVPQ and PQ), ms per frame, then per frame rate sAP, sAP@50 (smIoU, saAcc;
    sDVPQ, sPQ) and in_time / miss / mismatch; then the best setting per rate."""
    c0, c1 = realtime_columns(rt)
    head = ['setting', c0.offline, c1.offline, 'ms/frame']
    for fps in rt['fps']:
        head += [f'{fps:g} fps: {c0.streaming}', c1.streaming, 'in time/miss/mismatch']
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
        row += [f'{off[c.key]:{c.fmt}}' for c in (c0, c1)] if off else ['-', '-']
        row.append(ms)
        for fps in rt['fps']:
            r = res['fps'].get(f'{fps:g}')
            n = r['counts'] if r else None
            row += (
                [f'{r[c.key]:{c.fmt}}' for c in (c0, c1)]
                + [f"{n['in_time']}/{n['miss']}/{n['mismatch']}"]
                if r
                else ['-'] * 3
            )
        rows.append(row)
    widths = [max(len(str(r[c])) for r in [head, *rows]) for c in range(len(head))]
    line = lambda r: '| ' + ' | '.join(str(x).ljust(w) for x, w in zip(r, widths)) + ' |'
    sep = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
    if 'max_dets' in rt:
        scoring = f"COCO maxDets {rt['max_dets']}; AP"
    elif rt.get('task') == 'panoptic':
        p = rt.get('protocol') or {}
        scoring = (
            f"DVPQMetric (windows k {p.get('windows')}, depth thresholds "
            f"{p.get('thresholds')}, average {p.get('average')!r}), a frame without output "
            f'answered by an empty prediction (void ids, depth 0); {c0.offline}'
        )
    else:
        scoring = 'mmseg mIoU, a frame without output scored as an empty map; mIoU'

    title = (
        f"real time: eta {rt['eta']:g}, latency {rt['latency']}, warm settings "
        f"{'replayed on the frames taken' if rt['replay'] else 'from the accuracy pass'}; "
        f'{scoring}: every frame answered by its own prediction'
    )
    notes = []
    k, name0 = c0.key, c0.streaming
    for fps, best in rt.get('best_fixed', {}).items():
        note = f"{fps} fps: best setting {best['setting']} ({name0} {best[k]:{c0.fmt}})"
        best_m = rt.get('best_fixed_m', {}).get(fps)
        if best_m:
            note += f"; best fixed M {best_m['setting']} ({name0} {best_m[k]:{c0.fmt}})"
        d = rt['settings'].get('deadline', {}).get('fps', {}).get(fps)
        if d and 'beats_best_fixed_m' in d:
            note += (
                f"; deadline scheduler {name0} {d[k]:{c0.fmt}} "
                f"({'beats' if d['beats_best_fixed_m'] else 'does not beat'} it; budgets "
                f"{d['budgets']}, {d['skipped_by_scheduler']} frames skipped)"
            )
        notes.append(note)
    return '\n'.join([title, line(head), sep, *map(line, rows), *notes])


def realtime_figure(rt: dict, plt) -> tuple | None:
    """``(figure, file name)``: the primary streaming value and the second one against the
    frame rate (``sap_vs_fps.png``: sAP and sAP@50; ``miou_vs_fps.png``: streaming mIoU and pixel
    accuracy; ``dvpq_vs_fps.png``: streaming DVPQ and PQ), one colour per budget M, one line
    style per kind (streamed, pipelined, cold, full, deadline); the full solve's offline value
    dotted. ``plt`` is ``matplotlib.pyplot``; ``None`` without settings."""
    if not rt or not rt.get('settings'):
        return None
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
    columns = realtime_columns(rt)
    for ax, key, label in zip(axes, [c.key for c in columns], [c.axis for c in columns]):
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
    task = rt.get('task', 'detection')
    what, file = {
        'segmentation': ('mIoU', 'miou_vs_fps.png'),
        'panoptic': (columns[0].offline, f'{columns[0].key.lower()}_vs_fps.png'),
    }.get(task, ('AP', 'sap_vs_fps.png'))
    fig.suptitle(
        f"streaming {what} vs frame rate (eta {rt['eta']:g}, "
        f"latency {rt['latency']}; solid: streamed, dash-dot: pipelined, dashed: cold start)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig, file
