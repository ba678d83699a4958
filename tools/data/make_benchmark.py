"""Render the bundled benchmark (real photographs; ImageNet-VID / Cityscapes / KITTI / COCO ...).

Example::

    python tools/data/make_benchmark.py --out data/bundled --preset small --seed 0
    python tools/data/make_benchmark.py --out data/bundled_large --preset large \
        --formats vid cityscapes kitti
    python tools/data/make_benchmark.py --out data/bundled --preset small --formats coco

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
from typing import List, Optional

from benchgen import FORMATS, generate_benchmark

PRESETS = ('tiny', 'small', 'large')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Render the bundled video benchmark from real photographs and write it in '
        'the ImageNet-VID (OpenMMLab CocoVID), Cityscapes and KITTI layouts.')
    parser.add_argument('--out', required=True, help='output folder, e.g. data/bundled')
    parser.add_argument('--preset', default='small', choices=PRESETS,
                        help="'tiny' (tests), 'small' (CPU, default) or 'large' (GPU)")
    parser.add_argument('--seed', type=int, default=0, help='non-negative seed (default 0)')
    parser.add_argument('--formats', nargs='+', default=['vid', 'cityscapes'], choices=FORMATS,
                        help='formats to write (default: vid cityscapes)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace a benchmark written before in --out')
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f'--seed must be >= 0, got {args.seed}')
    return args


def summarize(out: Path, meta: dict) -> List[str]:
    """Lines describing what was written: per format and split, videos, frames and files."""
    lines = []
    for fmt in meta['formats']:
        part = meta[fmt]
        root = out / part['root']
        n_files = sum(len(files) for _, _, files in os.walk(root))
        for split in ('train', 'val'):
            videos = part[split]
            frames = sum(v['num_frames'] for v in videos)
            cuts = sum(len(v['shot_changes']) for v in videos)
            lines.append(f'{fmt:<10} {split:<5} {len(videos):3d} videos {frames:5d} frames '
                         f'{cuts:2d} shot changes  ({part["size"][0]}x{part["size"][1]})')
        lines.append(f'{"":<10} {n_files} files under {root}')
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        meta = generate_benchmark(args.out, preset=args.preset, seed=args.seed,
                                        formats=tuple(args.formats), overwrite=args.overwrite)
    except (ValueError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    for line in summarize(Path(args.out), meta):
        print(line)
    print(f'preset {args.preset}, seed {args.seed}: written to {args.out} in {elapsed:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
