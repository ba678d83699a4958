"""Evaluate the recorded outputs of a real-time run: streaming AP (sAP) and association counts.

Examples::

    # a record file (StreamRecorder.save) against an Argoverse-HD-style annotation, 30 fps
    python tools/analysis_tools/eval_streaming_record.py \
        data/Argoverse-HD/annotations/val.json record.json --fps 30 --eta 0 --out sap.json
    # a directory of <sequence>.json records (the reference's one-file-per-sequence layout)
    python tools/analysis_tools/eval_streaming_record.py ANN record_dir/ --fps 30 --eta -1

Every ground-truth frame i is paired with the latest output finished by (i - eta) / fps and the
pairs are scored with COCO AP (the reference's ``streaming_eval.py``). Prints sAP, sAP@50 and
the in_time / miss / mismatch counts; ``--out`` writes them, with the other COCO statistics and
the counts per sequence, as JSON. Schema and conventions: ``docs/streaming.md``, "Streaming AP".
"""

from __future__ import annotations

import argparse
import json
import sys

from mmvideoeq.evaluation.functional.streaming_ap import evaluate_record


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('ann_file', help='Argoverse-HD-style COCO annotation (sequences, sid)')
    parser.add_argument('record', help='record JSON file, or a directory of <sequence>.json')
    parser.add_argument('--fps', type=float, default=30.0, help='frame rate (default 30)')
    parser.add_argument(
        '--eta', type=float, default=0.0, help='frame i is evaluated at (i - eta) / fps'
    )
    parser.add_argument(
        '--max-dets', type=int, nargs=3, default=[1, 10, 100], help='COCO maxDets (1 10 100)'
    )
    parser.add_argument('--out', help='write the results as JSON')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result = evaluate_record(
            args.ann_file, args.record, fps=args.fps, eta=args.eta, max_dets=args.max_dets
        )
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    out = result.as_dict()
    for key in ('sAP', 'sAP_50', 'sAP_75', 'sAP_s', 'sAP_m', 'sAP_l'):
        print(f'{key:<8} {out[key]:.4f}')
    c = result.counts
    print(
        f'{c.num_frames} frames at {args.fps:g} fps, eta {args.eta:g}: in_time {c.in_time}, '
        f'miss {c.miss}, mismatch {c.mismatch}'
    )
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
