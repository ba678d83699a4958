"""Per-frame latency of StreamDEQ streaming (M iterations) vs the full solve (N), side by side.

Example:
    python tools/benchmark_streaming.py \
        configs/streamdeq_vid/faster-rcnn_mdeq-tiny-sur8_24e_bundled-vid.py --iters 1 2 4 \
        --full-iters 8 --frames 20

On the same frames of the config's test set, in one run, it measures

* ``f``: the cost of one solver iteration (the solver alone, on the frame's input injection);
* ``fixed``: everything else of a frame, timed piece by piece: data pre-processing, the stem and
  input injection, the neck/heads/post-processing (``predict_from_feats``);
* the per-frame latency of streaming with M iterations (through ``StreamPolicy``: plan, solve,
  state update) and of the cold full solve with N iterations, interleaved frame by frame;
* the state bookkeeping (``begin_frame`` + ``end_frame``) as a share of a streaming frame,

and prints the measured speed-up next to the ideal one, ``(fixed + N f) / (fixed + M f)``.
Targets: measured >= 0.9 x ideal; bookkeeping < 2 % of a frame. Random weights suffice (the cost
does not depend on them); ``--checkpoint`` loads trained ones.
"""

import argparse
import json
import os.path as osp
import platform
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner, load_checkpoint  # noqa: E402

from mmvideoeq.deq import solve  # noqa: E402
from mmvideoeq.deq.mdeq import frozen_weight_norm  # noqa: E402
from mmvideoeq.registry import MODELS  # noqa: E402
from mmvideoeq.streaming import StreamPolicy  # noqa: E402
from mmvideoeq.utils import register_all_modules  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('--checkpoint', default=None)
    p.add_argument('--iters', type=int, nargs='+', default=[1, 2, 4])
    p.add_argument(
        '--full-iters',
        type=int,
        default=None,
        help='N of the full solve (default: the backbone test setting)',
    )
    p.add_argument('--frames', type=int, default=20, help='frames of the first test video')
    p.add_argument('--repeats', type=int, default=3, help='passes over the frames')
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=None, help='torch threads (CPU)')
    p.add_argument('--json', default=None, help='also write the numbers here')
    return p.parse_args(argv)


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3, out


def load_frames(cfg, n: int):
    """The first ``n`` frames (in order) of the first video of the test set, as data batches."""
    loader = Runner.build_dataloader(dict(cfg.test_dataloader, batch_size=1, num_workers=0))
    frames, vid = [], None
    for batch in loader:
        meta = batch['data_samples'][0].metainfo
        vid = meta['video_id'] if vid is None else vid
        if meta['video_id'] != vid or len(frames) >= n:
            break
        frames.append(batch)
    if not frames:
        raise ValueError('the test set is empty')
    return frames


@torch.no_grad()
def measure(model, frames, iters, full_iters, repeats, device):
    net = model.backbone.net
    pre, solve_ms, inj_ms, head_ms, f_ms = [], [], [], [], []
    prepped = []
    for batch in frames:  # the fixed cost, piece by piece, and one iteration's cost
        t, data = _timed(lambda b=batch: model.data_preprocessor(b, False), device)
        pre.append(t)
        x, samples = data['inputs'], data['data_samples']
        prepped.append((x, samples))
        t, inj = _timed(lambda: net.injection_features(x), device)
        inj_ms.append(t)
        with frozen_weight_norm(net.layer):
            f = lambda z: net.layer(z, inj)
            k = max(full_iters, 4)
            t, _ = _timed(
                lambda: solve(f, net.init_state(x), method=net.deq.solver, max_iter=k, tol=0.0),
                device,
            )
            solve_ms.append(t / k)
            z = net.init_state(x)
            t, _ = _timed(lambda: [f(z) for _ in range(k)], device)
            f_ms.append(t / k)
        feats, _, _ = model.backbone.forward_stream(x, None, max_iter=1, tol=0.0)
        t, _ = _timed(lambda: model.predict_from_feats(tuple(feats), list(samples)), device)
        head_ms.append(t)
    med = statistics.median
    fixed = med(pre) + med(inj_ms) + med(head_ms)
    per_iter = med(solve_ms)

    lat = {m: [] for m in iters}
    lat['full'] = []
    book = {m: [] for m in iters}
    for _ in range(repeats):
        policies = {m: StreamPolicy(budget=dict(type='FixedBudget', iters=m)) for m in iters}
        states = {m: policies[m].init_state('bench') for m in iters}
        for fid, batch in enumerate(frames):
            for m in iters:  # streaming: the whole per-frame path
                pol, st = policies[m], states[m]
                _sync(device)
                t0 = time.perf_counter()
                data = model.data_preprocessor(batch, False)
                tb0 = time.perf_counter()
                plan = pol.begin_frame(st, None, 'bench', fid)
                tb1 = time.perf_counter()
                preds, z, stats = model.stream_step(
                    data['inputs'], data['data_samples'], plan.z0, max_iter=plan.max_iter, tol=None
                )
                _sync(device)
                tb2 = time.perf_counter()
                states[m] = pol.end_frame(st, plan, z, stats, 1.0)
                t1 = time.perf_counter()
                lat[m].append((t1 - t0) * 1e3)
                book[m].append(((tb1 - tb0) + (t1 - tb2)) * 1e3)

            def full():
                data = model.data_preprocessor(batch, False)
                return model.stream_step(
                    data['inputs'], data['data_samples'], None, max_iter=full_iters, tol=None
                )

            lat['full'].append(_timed(full, device)[0])
    res = dict(
        fixed_ms=fixed,
        iter_ms=per_iter,
        f_ms=med(f_ms),
        pre_ms=med(pre),
        injection_ms=med(inj_ms),
        heads_ms=med(head_ms),
        full_iters=full_iters,
        full_ms=med(lat['full']),
        settings={},
    )
    for m in iters:
        measured = res['full_ms'] / med(lat[m])
        ideal = (fixed + full_iters * per_iter) / (fixed + m * per_iter)
        res['settings'][m] = dict(
            ms=med(lat[m]),
            speedup=measured,
            ideal=ideal,
            ratio=measured / ideal,
            bookkeeping_pct=100 * med(book[m]) / med(lat[m]),
        )
    return res


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    register_all_modules()
    cfg = Config.fromfile(args.config)
    device = torch.device(args.device)
    model = MODELS.build(cfg.model)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    model = model.to(device).eval()
    full_iters = args.full_iters or model.backbone.test_max_iter
    frames = load_frames(cfg, args.frames)
    measure(model, frames[:2], args.iters, full_iters, 1, device)  # warm-up
    res = measure(model, frames, args.iters, full_iters, args.repeats, device)
    print(
        f'device: {device} ({platform.processor() or platform.machine()}, '
        f'{torch.get_num_threads()} threads), frames: {len(frames)} x {args.repeats}, '
        f'torch {torch.__version__}'
    )
    print(
        f"fixed cost per frame: {res['fixed_ms']:.2f} ms (pre-processing "
        f"{res['pre_ms']:.2f} + stem/injection {res['injection_ms']:.2f} + neck/heads/post "
        f"{res['heads_ms']:.2f}); one iteration f: {res['iter_ms']:.2f} ms "
        f"(f alone {res['f_ms']:.2f} ms)"
    )
    print(f"full solve, N={full_iters}: {res['full_ms']:.2f} ms/frame")
    print(
        '| M | ms/frame | measured speed-up | ideal speed-up | measured/ideal (>= 0.90) '
        '| bookkeeping % (< 2) |'
    )
    print('|---|---|---|---|---|---|')
    for m, s in res['settings'].items():
        print(
            f"| {m} | {s['ms']:.2f} | {s['speedup']:.2f} | {s['ideal']:.2f} | "
            f"{s['ratio']:.3f} {'ok' if s['ratio'] >= 0.9 else 'MISSED'} | "
            f"{s['bookkeeping_pct']:.2f} {'ok' if s['bookkeeping_pct'] < 2 else 'MISSED'} |"
        )
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == '__main__':
    main()
