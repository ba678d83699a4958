"""Evaluate a prediction folder: DVPQ / VPQ / PQ, STQ / DSTQ and depth errors.

Examples::

    # Cityscapes-DVPS (ViP-DeepLab layout): DVPQ over k = 1..4 and lambda = 0.5, 0.25, 0.1
    python tools/analysis_tools/eval_dvps.py cityscapes_dvps \
        data/cityscapes-dvps/video_sequence/val --pan-dir PAN --depth-dir DEPTH --out results.json
    # SemKITTI-DVPS: PAN_DIR holds *cat.png / *ins.png
    python tools/analysis_tools/eval_dvps.py semkitti_dvps data/semkitti-dvps/video_sequence/val \
        --pan-dir PAN_DIR --depth-dir DEPTH_DIR
    # KITTI depth prediction, val selection
    python tools/analysis_tools/eval_dvps.py kitti_depth \
        data/kitti/depth_selection/val_selection_cropped/groundtruth_depth --depth-dir PRED_DIR

Prints one table per metric; ``--out`` writes everything (with the per-class TP/FN/FP/IoU sums of
every window and threshold) as JSON. PQ / VPQ / DVPQ average over all 19 classes as ViP-DeepLab's
``eval_dvpq.py`` scripts do (``--average all``: with Cityscapes-DVPS' epsilon 0 a class absent
from both ground truth and prediction makes the mean NaN); ``--average valid`` averages over the
classes present (deeplab2). Absent classes are named in a warning. Layouts and conventions:
``docs/dvps.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path

from mmvideoeq.apis.prediction_folders import FOLDER_FORMATS, evaluate_folders


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('format', choices=FOLDER_FORMATS)
    parser.add_argument(
        'gt_dir', help='ground-truth folder (video_sequence/val, groundtruth_depth)'
    )
    parser.add_argument('--pan-dir', help='panoptic prediction folder')
    parser.add_argument('--depth-dir', help='depth prediction folder (16-bit PNG, metres * 256)')
    parser.add_argument(
        '--metrics', nargs='+', default=['dvpq', 'stq', 'depth'], choices=['dvpq', 'stq', 'depth']
    )
    parser.add_argument('--eval-frames', type=int, nargs='+', help='DVPQ window lengths k')
    parser.add_argument(
        '--depth-thres',
        type=float,
        nargs='*',
        help='DVPQ depth thresholds lambda (none given: VPQ only)',
    )
    parser.add_argument(
        '--average',
        choices=['all', 'valid'],
        default='all',
        help='PQ class average: all classes as the reference scripts (default; a class absent '
        'from both sides gives NaN with Cityscapes-DVPS epsilon 0) or the classes present',
    )
    parser.add_argument('--offset-buckets', type=int, help='also report by frame offset')
    parser.add_argument('--out', help='write the results as JSON')
    return parser.parse_args(argv)


def _fmt(value) -> str:
    return 'nan' if isinstance(value, float) and math.isnan(value) else f'{value:.4f}'


def _check_out(path: str | None) -> str | None:
    """Why ``--out`` cannot be written (checked before the evaluation), or None."""
    if path is None:
        return None
    folder = Path(path).resolve().parent
    if Path(path).is_dir():
        return f'--out {path} is a folder; give a file name (e.g. {Path(path) / "results.json"})'
    if not folder.is_dir():
        return f'--out {path}: folder {folder} does not exist; create it first'
    if not os.access(folder, os.W_OK):
        return f'--out {path}: folder {folder} is not writable'
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    problem = _check_out(args.out)
    if problem:
        print(f'error: {problem}', file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', UserWarning)
            results = evaluate_folders(
                args.format, args.gt_dir, args.pan_dir, args.depth_dir,
                metrics=args.metrics, windows=args.eval_frames, thresholds=args.depth_thres,
                average=args.average, offset_buckets=args.offset_buckets,
            )  # fmt: skip
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    for warning in caught:
        print(f'warning: {warning.message}', file=sys.stderr)
    for name, values in results.items():
        if not isinstance(values, dict) or name.endswith('per_window'):
            continue
        print(f'[{name}]')
        for key, value in values.items():
            if isinstance(value, (int, float)):
                print(f'  {key:<28} {_fmt(value)}')
    print(f"{results['num_frames']} frames")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
