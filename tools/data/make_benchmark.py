"""Render the bundled benchmark (real photographs; ImageNet-VID / Cityscapes / KITTI / COCO ...).

Every part the project's bundled configs and shipped checkpoints read, in one command (``make
data``)::

    python tools/data/make_benchmark.py --all

which writes, under ``data/`` (``--data-root``), the folders of :data:`ALL_PARTS`. One folder,
one preset, chosen formats::

    python tools/data/make_benchmark.py --out data/bundled --preset small --seed 0 \
        --formats vid cityscapes
    python tools/data/make_benchmark.py --out data/bundled_large --preset large \
        --formats vid cityscapes kitti

Both add to what is there: a part already written with the same preset and seed (and all its
files) is kept, an absent one is written, a stale one (another preset or seed) or a partial one
(an interrupted run, files missing) is written again, each with a line saying so; when every part
is up to date nothing is written. ``--overwrite`` rewrites the named parts anyway.

See ``data/README.md`` for the layout written and the licences of the photographs. The generator
is the ``benchgen`` package (numpy, OpenCV and Pillow; no OpenMMLab import), installed beside
``mmvideoeq`` by ``tools/install.sh``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from benchgen import FORMATS, generate_benchmark, plan_benchmark

PRESETS = ('tiny', 'small', 'large')
#: ``--all``: (folder under the data root, preset, formats) of every bundled part the configs
#: read: ``configs/_base_/datasets/bundled_*.py`` (VID, Cityscapes, COCO; the ViP-DeepLab config
#: validates on the small Cityscapes-DVPS part and trains on the large one), plus the KITTI
#: layouts and SemKITTI-DVPS that ``tools/eval_dvps.py`` and the depth loaders read.
ALL_PARTS: Tuple[Tuple[str, str, Tuple[str, ...]], ...] = (
    ('bundled', 'small', ('vid', 'cityscapes', 'coco', 'kitti')),
    ('bundled_dvps', 'small', ('cityscapes_dvps', 'semkitti_dvps', 'kitti_depth')),
    ('bundled_dvps_large', 'large', ('cityscapes_dvps',)),
)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Render the bundled video benchmark from real photographs and write it in '
        'the ImageNet-VID (OpenMMLab CocoVID), Cityscapes, KITTI, COCO and DVPS layouts. Adds to '
        'an existing folder: parts already there (same preset and seed) are kept.'
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument('--out', help='output folder, e.g. data/bundled')
    where.add_argument(
        '--all',
        action='store_true',
        help='every bundled part the configs read, under --data-root: '
        + '; '.join(f'{d}/ ({p}: {" ".join(f)})' for d, p, f in ALL_PARTS),
    )
    parser.add_argument('--data-root', default='data', help='with --all: data folder (data)')
    parser.add_argument(
        '--preset',
        choices=PRESETS,
        help="'tiny' (tests), 'small' (CPU, default) or 'large' (GPU); not with --all",
    )
    parser.add_argument('--seed', type=int, default=0, help='non-negative seed (default 0)')
    parser.add_argument(
        '--formats',
        nargs='+',
        choices=FORMATS,
        help='formats to write (default: vid cityscapes); not with --all',
    )
    parser.add_argument(
        '--overwrite', action='store_true', help='rewrite the parts even when up to date'
    )
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f'--seed must be >= 0, got {args.seed}')
    if args.all and (args.preset or args.formats):
        parser.error('--all writes the presets and formats of every part: drop --preset/--formats')
    if not args.all and args.data_root != 'data':
        parser.error('--data-root goes with --all; give --out otherwise')
    return args


def summarize(out: Path, meta: dict, formats: Sequence[str]) -> List[str]:
    """Lines describing what was written: per format and split, videos, frames and files."""
    lines = []
    for fmt in formats:
        part = meta[fmt]
        root = out / part['root']
        n_files = sum(len(files) for _, _, files in os.walk(root))
        for split in ('train', 'val'):
            videos = part[split]
            frames = sum(v['num_frames'] for v in videos)
            cuts = sum(len(v['shot_changes']) for v in videos)
            lines.append(
                f'{fmt:<15} {split:<5} {len(videos):3d} videos {frames:5d} frames '
                f'{cuts:2d} shot changes  ({part["size"][0]}x{part["size"][1]})'
            )
        lines.append(f'{"":<15} {n_files} files under {root}')
    return lines


def build(out: Path, preset: str, seed: int, formats: Sequence[str], overwrite: bool) -> int:
    """Plan, print and write one folder; return the number of parts written."""
    plans = plan_benchmark(out, preset=preset, seed=seed, formats=formats, overwrite=overwrite)
    for plan in plans:
        what = {'keep': 'kept', 'build': 'writing', 'rebuild': 'rewriting'}[plan.action]
        print(f'{plan.path} ({plan.fmt}): {what}: {plan.reason}', flush=True)
    todo = [plan.fmt for plan in plans if plan.action != 'keep']
    if not todo:
        return 0
    start = time.perf_counter()
    meta = generate_benchmark(out, preset=preset, seed=seed, formats=formats, overwrite=overwrite)
    for line in summarize(out, meta, todo):
        print(line)
    print(f'{out}: {len(todo)} part(s) written in {time.perf_counter() - start:.1f} s')
    return len(todo)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.all:
        jobs = [(Path(args.data_root) / d, p, f) for d, p, f in ALL_PARTS]
    else:
        jobs = [(Path(args.out), args.preset or 'small', args.formats or ['vid', 'cityscapes'])]
    start = time.perf_counter()
    written = 0
    try:
        for out, preset, formats in jobs:
            written += build(out, preset, args.seed, formats, args.overwrite)
    except (ValueError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    total = sum(len(f) for _, _, f in jobs)
    if not written:
        print(f'nothing to do: all {total} part(s) up to date (seed {args.seed})')
    else:
        print(
            f'{written} of {total} part(s) written, {total - written} kept '
            f'(seed {args.seed}) in {time.perf_counter() - start:.1f} s'
        )
    return 0


if __name__ == '__main__':
    sys.exit(main())
