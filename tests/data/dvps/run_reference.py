"""Run ViP-DeepLab's reference ``eval_dvpq.py`` scripts on the fixtures; record what they print.

    python tests/data/dvps/run_reference.py --vip-deeplab /path/to/ViP-DeepLab \
        --out tests/data/dvps/reference_outputs.json

Run it with the interpreter of the reference environment (numpy 1.26.4, Pillow 9.5.0, six). The
reference code is not part of this repository: the script copies ``cityscapes-dvps/eval_dvpq.py``
and ``semkitti-dvps/eval_dvpq.py`` from the given checkout into a temporary folder and inserts,
at the end of their ``main()``, after the reference's own ``print``, one extra line that prints
the same quantities at full precision (``pq.mean()``, ``tpq.mean()``, ``spq.mean()`` and the
per-class ``iou/tp/fn/fp`` arrays as JSON, floats via ``repr``). Nothing else is changed. Each
(fixture, prediction folder, ``--eval_frames``, ``--depth_thres``) run is recorded with the
reference's printed line and the full-precision values.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXTRA = (
    "    print('FULL' + __import__('json').dumps(dict(pq=repr(float(pq.mean())), "
    'th=repr(float(tpq.mean())), st=repr(float(spq.mean())), '
    'iou=[repr(float(x)) for x in iou_per_class], tp=tp_per_class.tolist(), '
    'fn=fn_per_class.tolist(), fp=fp_per_class.tolist())))\n'
)
MARK = "\n\nif __name__ == '__main__':"

RUNS = [
    # (name, script, fixture, pan folder, windows, thresholds)
    ('cityscapes', 'cityscapes-dvps', 'cityscapes', 'pred_pan', (1, 2, 3, 4), (0, 0.5, 0.25, 0.1)),
    ('cityscapes_no18', 'cityscapes-dvps', 'cityscapes', 'pred_pan_no18', (1, 2), (0, 0.5)),
    ('semkitti', 'semkitti-dvps', 'semkitti', 'pred_pan', (1, 5, 10, 20), (0, 0.5, 0.25, 0.1)),
]


def patched_copy(src: Path, dst: Path) -> None:
    text = src.read_text()
    if text.count(MARK) != 1:
        raise SystemExit(f'{src}: unexpected layout, cannot insert the full-precision print')
    dst.write_text(text.replace(MARK, '\n' + EXTRA + MARK))


def run_one(script: Path, cwd: Path, pan: str, k: int, thres: float) -> dict:
    cmd = [
        sys.executable,
        str(script),
        '--pan_dir',
        pan,
        '--depth_dir',
        'pred_depth',
        '--eval_frames',
        str(k),
        '--depth_thres',
        str(thres),
    ]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True)
    lines = proc.stdout.strip().splitlines()
    full = json.loads(next(line for line in lines if line.startswith('FULL'))[4:])
    printed = next(line for line in lines if not line.startswith('FULL'))
    return dict(
        eval_frames=k,
        depth_thres=thres,
        printed=printed,
        full=full,
        command=' '.join(['python', script.name] + cmd[2:]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--vip-deeplab', required=True, type=Path)
    parser.add_argument('--out', type=Path, default=HERE / 'reference_outputs.json')
    args = parser.parse_args()
    import numpy
    import PIL

    record = dict(
        python=sys.version.split()[0], numpy=numpy.__version__, pillow=PIL.__version__, runs={}
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, folder, fixture, pan, windows, thresholds in RUNS:
            script = Path(tmp) / f'{folder}_eval_dvpq.py'
            if not script.exists():
                patched_copy(args.vip_deeplab / folder / 'eval_dvpq.py', script)
            record['runs'][name] = [
                run_one(script, HERE / fixture, pan, k, t) for k in windows for t in thresholds
            ]
            print(name, [r['printed'] for r in record['runs'][name]])
    args.out.write_text(json.dumps(record, indent=1) + '\n')


if __name__ == '__main__':
    main()
