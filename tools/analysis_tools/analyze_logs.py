"""Plot training curves and compute training time from mmengine's scalar logs (matplotlib only).

The same two commands as mmdet's ``tools/analysis_tools/analyze_logs.py``, which needs seaborn;
this one needs matplotlib alone. It reads the JSON-lines scalar files that mmengine's
``LocalVisBackend`` writes (``<work_dir>/<timestamp>/vis_data/scalars.json``; the logger's
``vis_data/<timestamp>.json`` has the same lines): training lines carry ``loss``/``lr`` and
``step`` (the iteration), evaluation lines carry metrics named ``<prefix>/<name>`` and ``step``
(the epoch of an epoch-based run, the iteration of an iteration-based one).

Each LOG is a scalars file, a ``vis_data`` folder, a timestamp folder or a work dir (its latest
run).

Examples::

    python tools/analysis_tools/analyze_logs.py plot_curve work_dirs/vip --keys loss loss_depth \\
        --out loss.png
    python tools/analysis_tools/analyze_logs.py plot_curve A/ B/ --keys coco/bbox_mAP \\
        --legend baseline detectors --out map.png
    python tools/analysis_tools/analyze_logs.py cal_train_time work_dirs/vip
"""

from __future__ import annotations

import argparse
import glob
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402

from mmvideoeq.utils.cli import CLIError, cli_main  # noqa: E402


def find_scalars(path: str) -> str:
    """The scalars file of ``path`` (a file, a ``vis_data`` folder, a run or a work dir)."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise CLIError(f'log not found: {path!r}')
    for pattern in ('scalars.json', 'vis_data/scalars.json', '*/vis_data/scalars.json'):
        found = sorted(glob.glob(osp.join(path, pattern)))
        if found:
            return found[-1]  # timestamped run folders sort by time: the latest
    raise CLIError(f'{path!r} holds no vis_data/scalars.json (mmengine LocalVisBackend output)')


def load_scalars(path: str) -> dict[str, list[dict]]:
    """Split a scalars file into ``{'train': [...], 'val': [...]}`` records (one dict a line).

    A line with a key holding ``/`` is an evaluation; a line with ``loss``, ``lr`` or ``time``
    otherwise is a training step.
    """
    train, val = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise CLIError(f'{path}: line {number} is not JSON ({err.msg})') from None
            if any('/' in k for k in record):
                val.append(record)
            elif any(k in record for k in ('loss', 'lr', 'time')):
                train.append(record)
    if not train and not val:
        raise CLIError(f'{path} holds no training or evaluation scalars')
    return dict(train=train, val=val)


def series(logs: dict[str, list[dict]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of ``key`` (training or evaluation records, whichever hold it)."""
    records = logs['val'] if '/' in key else logs['train']
    pts = [(r['step'], r[key]) for r in records if key in r and 'step' in r]
    if not pts:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*pts)
    return np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)


def _label(key: str) -> str:
    """An axis title from a scalar key: ``coco/bbox_mAP_50`` -> ``bbox mAP 50 (coco)``."""
    prefix, _, name = key.rpartition('/')
    text = name.replace('_', ' ')
    return f'{text} ({prefix})' if prefix else text


def plot_curve(args) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    paths = [find_scalars(p) for p in args.logs]
    legends = args.legend or [osp.relpath(p) for p in paths]
    if len(legends) != len(paths):
        raise CLIError(f'--legend has {len(legends)} names for {len(paths)} logs')
    logs = [load_scalars(p) for p in paths]
    fig, axes = plt.subplots(
        len(args.keys), 1, figsize=(7, 2.6 * len(args.keys)), squeeze=False, dpi=args.dpi
    )
    for ax, key in zip(axes[:, 0], args.keys):
        drawn = 0
        for log, name in zip(logs, legends):
            steps, values = series(log, key)
            if not len(steps):
                continue
            if args.smooth > 1 and len(values) >= args.smooth:
                kernel = np.ones(args.smooth) / args.smooth
                values = np.convolve(values, kernel, mode='valid')
                steps = steps[args.smooth - 1 :]
            ax.plot(steps, values, marker='o' if '/' in key else None, ms=3, label=name)
            drawn += 1
        if not drawn:
            raise CLIError(f'no log holds the key {key!r}')
        ax.set_ylabel(_label(key))
        ax.set_xlabel('epoch' if '/' in key and _by_epoch(logs) else 'iteration')
        ax.grid(alpha=0.3)
        if len(logs) > 1:
            ax.legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    if args.out:
        fig.savefig(args.out)
        print(f'plot written to {args.out}')
    else:
        plt.show()
    plt.close(fig)


def _by_epoch(logs: list[dict]) -> bool:
    return any('epoch' in r for log in logs for r in log['train'])


def cal_train_time(args) -> None:
    """mmdet's rule: per epoch (one group for an iteration-based run), the first logged time is
    left out (start-up, data loader workers) unless ``--include-outliers``."""
    for path in (find_scalars(p) for p in args.logs):
        train = [r for r in load_scalars(path)['train'] if 'time' in r]
        epochs = sorted({r.get('epoch') for r in train}, key=lambda e: (e is None, e))
        groups = []
        for epoch in epochs:
            times = [r['time'] for r in train if r.get('epoch') == epoch]
            groups.append(times if args.include_outliers else times[1:])
        kept = [t for g in groups for t in g]
        if not kept:
            raise CLIError(f'{path}: too few training lines with "time"')
        print(f'-----Analyze train time of {path}-----')
        if len(groups) > 1 and epochs[0] is not None:
            per_epoch = [float(np.mean(g)) if g else float('nan') for g in groups]
            slow, fast = int(np.nanargmax(per_epoch)), int(np.nanargmin(per_epoch))
            print(f'slowest epoch {epochs[slow]}, average time is {per_epoch[slow]:.4f} s/iter')
            print(f'fastest epoch {epochs[fast]}, average time is {per_epoch[fast]:.4f} s/iter')
            print(f'time std over epochs is {np.nanstd(per_epoch):.4f}')
        print(f'average iter time: {np.mean(kept):.4f} s/iter over {len(kept)} logged iterations')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Analyze mmengine scalar logs')
    sub = parser.add_subparsers(dest='task', required=True)
    plot = sub.add_parser('plot_curve', help='plot scalars over iterations / epochs')
    plot.add_argument('logs', nargs='+', help='scalars files, vis_data folders or work dirs')
    plot.add_argument('--keys', nargs='+', default=['loss'], help='scalars to plot, one panel each')
    plot.add_argument('--legend', nargs='+', help='a name per log')
    plot.add_argument('--title', help='figure title')
    plot.add_argument('--smooth', type=int, default=1, help='moving-average window (iterations)')
    plot.add_argument('--dpi', type=int, default=100)
    plot.add_argument('--out', help='output image (default: show a window)')
    time = sub.add_parser('cal_train_time', help='training time per iteration (and per epoch)')
    time.add_argument('logs', nargs='+', help='scalars files, vis_data folders or work dirs')
    time.add_argument(
        '--include-outliers',
        action='store_true',
        help='count the first logged iteration of each epoch (start-up) too',
    )
    return parser.parse_args(argv)


@cli_main
def main():
    args = parse_args()
    if args.task == 'plot_curve':
        plot_curve(args)
    else:
        cal_train_time(args)


if __name__ == '__main__':
    main()
