"""Per-frame latency of StreamDEQ streaming (M steps) vs the full solve, side by side.

Example:
    python tools/benchmark_streaming.py \
        configs/streamdeq_vid/faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py --iters 1 2 4 \
        --frames 20

On the same frames of the config's test set, in one run, it measures

* ``e``: the cost of one evaluation of ``f`` inside the solver (solver work per step included),
  from a solve of several steps on the frame's input injection;
* ``fixed``: every other per-frame cost, timed piece by piece: data pre-processing, the stem and
  input injection, the layer's weight normalisation as a streaming frame meets it (cached
  between frames while the weights are unchanged), the solver's set-up (a 1-step solve minus its
  evaluations) and the neck/heads/post-processing (``predict_from_feats``);
* the per-frame latency of streaming with M steps (``run_stream``: plan, solve, state update)
  and of the model's full solve, interleaved frame by frame, and the evaluations each spent;
* the state bookkeeping (everything of ``run_stream`` outside the model step) as a share of a
  streaming frame,

and prints the measured speed-up next to the ideal one, ``(fixed + n_full e) / (fixed + n_M e)``
with ``n`` the evaluations of ``f`` each frame spent (a Broyden budget of M steps costs M + 1).
When every per-frame cost is in ``fixed``, measured/ideal is close to 1. Random weights suffice
(the cost does not depend on them); ``--checkpoint`` loads trained ones.
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
from mmengine.runner import Runner  # noqa: E402

from mmvideoeq.deq import Budget, solve  # noqa: E402
from mmvideoeq.deq.mdeq import WNConv2d, frozen_weight_norm  # noqa: E402
from mmvideoeq.registry import MODELS  # noqa: E402
from mmvideoeq.streaming import StreamFrame, StreamPolicy, run_stream  # noqa: E402
from mmvideoeq.utils import register_all_modules  # noqa: E402
from mmvideoeq.utils.checkpoint import load_weights  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('--checkpoint', default=None)
    p.add_argument('--iters', type=int, nargs='+', default=[1, 2, 4])
    p.add_argument(
        '--full-iters',
        type=int,
        default=None,
        help='steps of the full-solve reference (from zeros every frame); default: the '
        "model's configured full solve",
    )
    p.add_argument(
        '--data-config',
        default=None,
        help="take the frames from this config's test set (e.g. the bundled benchmark for an "
        'MDEQ-XL model config)',
    )
    p.add_argument(
        '--no-wnorm-cache',
        action='store_true',
        help='recompute the weight-normalised weights at every solve (for comparison)',
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


def _wnorm_convs(net):
    return [m for m in net.layer.modules() if isinstance(m, WNConv2d)]


@torch.no_grad()
def fixed_costs(model, frames, device) -> dict:
    """Median per-frame costs besides the evaluations of f, timed piece by piece."""
    net = model.backbone.net
    pieces = {k: [] for k in ('pre', 'injection', 'wnorm', 'setup', 'heads', 'eval')}
    convs = _wnorm_convs(net)
    method = net.deq.solver
    for batch in frames:
        t, data = _timed(lambda b=batch: model.data_preprocessor(b, False), device)
        pieces['pre'].append(t)
        x, samples = data['inputs'], data['data_samples']
        t, inj = _timed(lambda: net.injection_features(x), device)
        pieces['injection'].append(t)
        pieces['wnorm'].append(_timed(lambda: [m.weight for m in convs], device)[0])
        with frozen_weight_norm(net.layer):
            f = lambda z: net.layer(z, inj)
            z0 = net.init_state(x)
            k = 6
            t_k, (_, st_k) = _timed(
                lambda: solve(f, z0, method=method, max_iter=k, tol=None), device
            )
            t_1, (_, st_1) = _timed(
                lambda: solve(f, z0, method=method, max_iter=1, tol=None), device
            )
        e = (t_k - t_1) / (st_k.n_eval - st_1.n_eval)
        pieces['eval'].append(e)
        pieces['setup'].append(max(t_1 - e * st_1.n_eval, 0.0))
        feats, _, _ = model.backbone.forward_stream(x, None, Budget.steps(1))
        t, _ = _timed(lambda: model.predict_from_feats(tuple(feats), list(samples)), device)
        pieces['heads'].append(t)
    return {k: statistics.median(v) for k, v in pieces.items()}


@torch.no_grad()
def measure(model, frames, iters, repeats, device, full_iters=None):
    costs = fixed_costs(model, frames, device)
    fixed = sum(v for k, v in costs.items() if k != 'eval')
    lat = {m: [] for m in [*iters, 'full']}
    per_repeat = {m: [] for m in [*iters, 'full']}  # mean ms/frame of each repeat
    evals = {m: [] for m in [*iters, 'full']}
    book = {m: [] for m in iters}

    step = model.stream_step
    if str(device).startswith('cuda'):  # time the step to its end on the GPU

        def step(*args):
            _sync(device)
            out = model.stream_step(*args)
            _sync(device)
            return out

    for _ in range(repeats):
        policies = {m: StreamPolicy(budget=dict(type='FixedBudget', iters=m)) for m in iters}
        full = (
            dict(type='FullSolve')
            if full_iters is None
            else dict(type='FixedBudget', iters=int(full_iters))
        )
        policies['full'] = StreamPolicy(budget=full, warm=False)
        states = {m: {} for m in policies}
        for fid, batch in enumerate(frames):
            for m, policy in policies.items():
                _sync(device)
                t0 = time.perf_counter()
                data = model.data_preprocessor(batch, False)
                frame = StreamFrame(data['inputs'], 'bench', fid, payload=data['data_samples'][0])
                t1 = time.perf_counter()
                run = run_stream(
                    step, [frame], policy, states=states[m], zeros_like_fn=model.stream_zero_state
                )
                t2 = time.perf_counter()
                lat[m].append((t2 - t0) * 1e3)
                evals[m].append(run.records[0].n_eval)
                if m != 'full':
                    book[m].append((t2 - t1) * 1e3 - run.records[0].ms)
        for m in policies:  # this repeat's mean over the frames
            per_repeat[m].append(statistics.mean(lat[m][-len(frames) :]))
    med = statistics.median
    res = dict(
        costs=costs,
        fixed_ms=fixed,
        eval_ms=costs['eval'],
        settings={},
        full_ms=med(lat['full']),
        full_range=[min(per_repeat['full']), max(per_repeat['full'])],
        full_evals=statistics.mean(evals['full']),
    )
    for m in iters:
        n_m = statistics.mean(evals[m])
        ideal = (fixed + res['full_evals'] * costs['eval']) / (fixed + n_m * costs['eval'])
        measured = res['full_ms'] / med(lat[m])
        res['settings'][m] = dict(
            ms=med(lat[m]),
            ms_range=[min(per_repeat[m]), max(per_repeat[m])],
            evals=n_m,
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
        load_weights(model, args.checkpoint)
    model = model.to(device).eval()
    if args.no_wnorm_cache:
        WNConv2d.cache_between_solves = False
    frames = load_frames(
        Config.fromfile(args.data_config) if args.data_config else cfg, args.frames
    )
    measure(model, frames[:2], args.iters, 1, device, args.full_iters)  # warm-up
    res = measure(model, frames, args.iters, args.repeats, device, args.full_iters)
    c = res['costs']
    print(
        f'device: {device} ({platform.processor() or platform.machine()}, '
        f'{torch.get_num_threads()} threads), frames: {len(frames)} x {args.repeats}, '
        f'torch {torch.__version__}, solver {model.backbone.net.deq.solver}, weight-norm '
        f"cache {'off' if args.no_wnorm_cache else 'on'}"
    )
    print(
        f"fixed cost per frame: {res['fixed_ms']:.2f} ms (pre-processing {c['pre']:.2f} + "
        f"stem/injection {c['injection']:.2f} + weight norm {c['wnorm']:.3f} + solver set-up "
        f"{c['setup']:.2f} + neck/heads/post {c['heads']:.2f}); one evaluation of f in the "
        f"solver: {res['eval_ms']:.2f} ms"
    )
    lo, hi = res['full_range']
    print(
        f"full solve: {res['full_ms']:.2f} ms/frame [per-repeat mean {lo:.2f}, {hi:.2f}], "
        f"{res['full_evals']:.1f} evaluations"
    )
    print(
        '| M | f evals | ms/frame (median [range of repeat means]) | measured speed-up '
        '| ideal speed-up | measured/ideal | bookkeeping % |'
    )
    print('|---|---|---|---|---|---|---|')
    for m, s in res['settings'].items():
        lo, hi = s['ms_range']
        print(
            f"| {m} | {s['evals']:.1f} | {s['ms']:.2f} [{lo:.2f}, {hi:.2f}] | "
            f"{s['speedup']:.2f} | {s['ideal']:.2f} | {s['ratio']:.3f} | "
            f"{s['bookkeeping_pct']:.2f} |"
        )
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == '__main__':
    main()
