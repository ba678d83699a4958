"""FLOPs per frame of a streaming model at each solver budget (mmdet's ``get_flops``, per budget).

mmdet's ``tools/analysis_tools/get_flops.py`` counts one forward of the configured model: for a
DEQ that is the full solve only, while a streamed frame costs the work outside the solver plus
``M`` solver steps. This tool runs the model as ``StreamingInferencer`` does, on a warm frame
(the second frame of a stream), and counts each budget ``M`` of ``--iters`` and the full solve.
The total is split, by a least-squares line through the budgets, into the cost of one solver step
(the backbone's ``f``: for RFP detectors, one recursion) and the cost outside the solver (input
injection, heads, post-processing).

Counting: PyTorch's ``torch.utils.flop_counter.FlopCounterMode``, which counts every matmul and
convolution the frame dispatches (whatever the Python control flow, so solver loops count as
run), as FLOPs = 2 x multiply-adds; mmdet's tool (mmengine's fvcore-style ``FlopAnalyzer``) reports
multiply-adds, the ``GMACs`` column. Element-wise operations, normalisation and sampling are not
counted. Counting runs on the CPU, where deformable convolutions (DetectoRS SAC) take the
plain-PyTorch path whose matmul is counted.

Example::

    python tools/analysis_tools/get_flops.py \\
        configs/streamdeq_vid/faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py --iters 1 2 4 8
"""

from __future__ import annotations

import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from mmvideoeq.utils.cli import CLIError, cli_main, require_file  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='FLOPs per frame at each streaming budget')
    p.add_argument('config', help='model config')
    p.add_argument('--checkpoint', help='weights (FLOPs do not depend on them; default: none)')
    p.add_argument(
        '--iters', type=int, nargs='+', default=[1, 2, 4, 8], help='solver budgets M per frame'
    )
    p.add_argument(
        '--shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help="input frame size (default: the test pipeline's resize scale, else the training "
        "pipeline's); the test pipeline resizes it as usual",
    )
    p.add_argument('--out', help='also write the table as JSON')
    return p.parse_args(argv)


def _scale(cfg: Config) -> tuple[int, int] | None:
    """``(h, w)`` of the first Resize/RandomResize of the test, else the training pipeline."""
    for split in ('test', 'train'):
        ds = cfg.get(f'{split}_dataloader', {}).get('dataset', {})
        while 'pipeline' not in ds and 'dataset' in ds:
            ds = ds['dataset']
        for t in ds.get('pipeline', []):
            if str(t.get('type', '')).split('.')[-1] in ('Resize', 'RandomResize') and 'scale' in t:
                w, h = t['scale']
                return int(h), int(w)
    return None


def count_flops(fn) -> int:
    """FLOPs (2 x multiply-adds of matmuls and convolutions) dispatched while ``fn()`` runs."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def frame_flops(config: Config, checkpoint: str | None, policy: dict, frame: np.ndarray) -> dict:
    """FLOPs of the second frame of a stream under ``policy`` (its first frame warms it up)."""
    from mmvideoeq.apis import StreamingInferencer

    infer = StreamingInferencer(config, checkpoint, policy=policy, allow_missing_weights=True)
    infer(frame)
    out = {}

    def second():
        out['pred'] = infer(frame)

    flops = count_flops(second)
    shape = out['pred'].metainfo.get('batch_input_shape') or out['pred'].metainfo.get('img_shape')
    return dict(flops=flops, input_shape=tuple(int(v) for v in shape[:2]))


def split_per_step(iters: list[int], flops: list[int]) -> tuple[float, float, float]:
    """Least-squares ``flops = outside + M * per_step``; returns (per_step, outside, max error)."""
    m = np.asarray(iters, dtype=np.float64)
    f = np.asarray(flops, dtype=np.float64)
    if len(set(iters)) < 2:
        return float('nan'), float('nan'), float('nan')
    per_step, outside = np.polyfit(m, f, 1)
    err = float(np.max(np.abs(f - (outside + per_step * m))) / max(f.max(), 1.0))
    return float(per_step), float(outside), err


def table(rows: list[dict]) -> str:
    lines = [f"{'setting':<12} {'GFLOPs/frame':>13} {'GMACs/frame':>12} {'vs full':>8}"]
    full = next((r['flops'] for r in rows if r['setting'] == 'full'), None)
    for r in rows:
        ratio = f"{r['flops'] / full:.2f}" if full else '-'
        lines.append(
            f"{r['setting']:<12} {r['flops'] / 1e9:>13.4f} {r['flops'] / 2e9:>12.4f} {ratio:>8}"
        )
    return '\n'.join(lines)


@cli_main
def main():
    args = parse_args()
    require_file(args.config, 'config file')
    require_file(args.checkpoint, 'checkpoint')
    if any(m < 1 for m in args.iters):
        raise CLIError(f'--iters must be positive, got {args.iters}')
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(args.config)
    shape = tuple(args.shape) if args.shape else _scale(cfg)
    if shape is None:
        raise CLIError('the config resizes nowhere: give the frame size with --shape H W')
    frame = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    torch.manual_seed(0)
    rows = []
    for m in sorted(set(args.iters)):
        policy = dict(budget=dict(type='FixedBudget', iters=m))
        rows.append(
            dict(setting=f'stream@{m}', iters=m, **frame_flops(cfg, args.checkpoint, policy, frame))
        )
    full_policy = dict(budget=dict(type='FullSolve'), warm=False)
    rows.append(dict(setting='full', **frame_flops(cfg, args.checkpoint, full_policy, frame)))
    per_step, outside, err = split_per_step(
        [r['iters'] for r in rows[:-1]], [r['flops'] for r in rows[:-1]]
    )
    h, w = rows[0]['input_shape']
    print(f'{osp.basename(args.config)}: {shape[1]}x{shape[0]} frames, model input {w}x{h}')
    print(table(rows))
    if per_step == per_step:  # not NaN
        print(
            f'one solver step: {per_step / 1e9:.4f} GFLOPs; outside the solver: '
            f'{outside / 1e9:.4f} GFLOPs (linear in M to {err:.1e} of the largest)'
        )
    if args.out:
        summary = dict(
            config=args.config,
            frame_shape=list(shape),
            input_shape=[h, w],
            rows=[{k: v for k, v in r.items() if k != 'input_shape'} for r in rows],
            per_step_flops=per_step,
            outside_flops=outside,
        )
        with open(args.out, 'w') as f:
            json.dump(summary, f, indent=2)


if __name__ == '__main__':
    main()
