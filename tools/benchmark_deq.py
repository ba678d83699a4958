"""Benchmark the DEQ solvers and training modes on an MDEQ (plain PyTorch, no OpenMMLab import).

Measures, side by side in one run, on one ``MDEQNet`` and one input (batch 1):

1. inference: the time of one evaluation of ``f`` (the MDEQ layer with the input injection closed
   over), and the time per iteration of the Broyden, Anderson and fixed-point solvers run for
   exactly ``--iters`` iterations (``tol=0``); their ratio is the *solver overhead* (targets:
   Broyden <= 1.10, fixed point <= 1.02);
2. training: forward + backward time of one step for the three StreamDEQ training modes of the
   thesis: implicit (``--train-iters`` Broyden iterations forward, the same number of adjoint
   Broyden iterations backward, both without early stop), UR (``--unroll`` weight-tied unrolled
   iterations) and SUR (stochastic unrolling with ``N ~ U{1..unroll}``; reported as its expected
   time, the mean of the UR times at ``N = floor(E[N])`` and ``ceil(E[N])``, since a step costs
   linearly in ``N``), with ratios to the implicit step.

Each timing is the median over ``--repeats`` repetitions after one warm-up (the inference table
also gives the ratio of the minima); the variants are interleaved in every repetition so that
load changes affect them alike.

Run from a checkout (``sys.path`` gets the repository root), e.g.:
    python tools/benchmark_deq.py --arch small --size 256 512 --device cpu --repeats 3
    python tools/benchmark_deq.py --device cuda --repeats 10 --json bench.json
"""

import argparse
import json
import math
import os.path as osp
import platform
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

from mmvideoeq.deq.core import DEQSolver  # noqa: E402
from mmvideoeq.deq.mdeq import MDEQNet, frozen_weight_norm  # noqa: E402
from mmvideoeq.deq.solvers import solve  # noqa: E402

TARGETS = {'broyden': 1.10, 'anderson': None, 'fixed_point': 1.02}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Benchmark DEQ solver overhead and training modes')
    p.add_argument('--arch', default='small', choices=['small', 'xl'])
    p.add_argument(
        '--task',
        default='cls',
        choices=['cls', 'seg'],
        help='which reference preset (dropout, BN momentum) to build',
    )
    p.add_argument('--size', type=int, nargs=2, default=(256, 512), metavar=('H', 'W'))
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--device', default='cpu')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--iters', type=int, default=26, help='solver iterations timed (inference)')
    p.add_argument('--train-iters', type=int, default=26, help='implicit: Broyden iterations')
    p.add_argument('--unroll', type=int, default=20, help='UR iterations; SUR draws U{1..N}')
    p.add_argument('--skip-train', action='store_true', help='only the inference part')
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', default=None, help='also write the results to this file')
    args = p.parse_args(argv)
    for name in ('batch', 'repeats', 'iters', 'train_iters', 'unroll'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1')
    if min(args.size) < 8:
        p.error('--size must be at least 8 x 8')
    return args


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def bench_inference(net: MDEQNet, x: torch.Tensor, args, device) -> dict:
    net.eval()
    with torch.no_grad():
        injection = net.injection_features(x)
        layer = net.layer

        def f(z):
            return layer(z, injection)

        with frozen_weight_norm(layer):
            # a realistic, non-zero state to evaluate f at
            z_mid, _ = solve(f, net.init_state(x), method='fixed_point', max_iter=3, tol=0)
            z0 = net.init_state(x)

            def run_f():
                for _ in range(args.iters):
                    f(z_mid)

            runs = {'f': run_f}
            for method in TARGETS:
                runs[method] = lambda m=method: solve(f, z0, method=m, max_iter=args.iters, tol=0)
            for fn in runs.values():  # warm-up
                fn()
            times = {k: [] for k in runs}
            for _ in range(args.repeats):
                for k, fn in runs.items():
                    times[k].append(timed(fn, device) / args.iters)
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    out = {'f_ms': 1e3 * med['f'], 'f_ms_min': 1e3 * low['f'], 'solvers': {}}
    for m in TARGETS:
        out['solvers'][m] = dict(
            ms_per_iter=1e3 * med[m],
            overhead=med[m] / med['f'],
            overhead_min=low[m] / low['f'],
            target=TARGETS[m],
        )
    out['raw_s'] = times
    return out


def bench_training(net: MDEQNet, x: torch.Tensor, args, device) -> dict:
    net.train()
    modes = {
        'implicit': DEQSolver(
            solver='broyden',
            train_mode='implicit',
            grad='implicit',
            train_max_iter=args.train_iters,
            train_tol=0,
            backward_max_iter=args.train_iters,
            backward_tol=0,
        ),
        'UR': DEQSolver(solver='fixed_point', train_mode='unroll', unroll_iters=args.unroll),
    }
    e_n = (1 + args.unroll) / 2  # E[N] for N ~ U{1..unroll}
    lo, hi = math.floor(e_n), math.ceil(e_n)
    modes[f'UR@{lo}'] = DEQSolver(solver='fixed_point', train_mode='unroll', unroll_iters=lo)
    if hi != lo:
        modes[f'UR@{hi}'] = DEQSolver(solver='fixed_point', train_mode='unroll', unroll_iters=hi)
    original = net.deq

    def step(solver):
        net.deq = solver
        net.zero_grad(set_to_none=True)
        feats = net.forward_features(x).features
        loss = sum(t.float().pow(2).mean() for t in feats)
        loss.backward()

    try:
        for s in modes.values():  # warm-up
            step(s)
        times = {k: [] for k in modes}
        for _ in range(args.repeats):
            for k, s in modes.items():
                times[k].append(timed(lambda s=s: step(s), device))
    finally:
        net.deq = original
    med = {k: statistics.median(v) for k, v in times.items()}
    sur = (med[f'UR@{lo}'] + med[f'UR@{hi}']) / 2
    res = {
        'implicit_s': med['implicit'],
        'UR_s': med['UR'],
        'SUR_expected_s': sur,
        'UR_over_implicit': med['UR'] / med['implicit'],
        'SUR_over_implicit': sur / med['implicit'],
        'SUR_expected_iters': e_n,
        'raw_s': times,
    }
    return res


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    net = MDEQNet(arch=args.arch, task=args.task, with_head=False).to(device)
    x = torch.randn(args.batch, 3, *args.size, device=device)
    shapes = [tuple(t.shape[1:]) for t in net.init_state(x)]
    env = dict(
        device=str(device),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(),
        gpu=torch.cuda.get_device_name(device) if device.type == 'cuda' else None,
    )
    print(
        f'MDEQ-{args.arch} ({args.task} preset), input {args.batch}x3x{args.size[0]}x'
        f'{args.size[1]}, state {shapes}'
    )
    print(
        f'device {env["device"]} ({env["gpu"] or env["cpu"]}), torch {env["torch"]}, '
        f'{env["threads"]} threads, median of {args.repeats} repeats'
    )

    inf = bench_inference(net, x, args, device)
    print(
        f'\n[inference] f: {inf["f_ms"]:.2f} ms per evaluation; solvers run {args.iters} '
        f'iterations (tol=0)'
    )
    print(
        f'(f min over repeats: {inf["f_ms_min"]:.2f} ms; "overhead" = ratio of medians, '
        f'"min" = ratio of minima, less sensitive to other load)'
    )
    print(f'{"solver":<12} {"ms/iter":>9} {"overhead":>9} {"min":>7} {"target":>8}')
    for m, r in inf['solvers'].items():
        tgt = f'<={r["target"]:.2f}' if r['target'] else '-'
        ok = '' if r['target'] is None else ('  ok' if r['overhead'] <= r['target'] else '  MISS')
        print(
            f'{m:<12} {r["ms_per_iter"]:>9.2f} {r["overhead"]:>9.3f} {r["overhead_min"]:>7.3f} '
            f'{tgt:>8}{ok}'
        )
    result = dict(args=vars(args), env=env, state_shapes=shapes, inference=inf)

    if not args.skip_train:
        tr = bench_training(net, x, args, device)
        print(
            f'\n[training step, forward + backward] implicit = {args.train_iters} Broyden + '
            f'{args.train_iters} adjoint Broyden iterations; UR = {args.unroll} unrolls; '
            f'SUR = expected (E[N] = {tr["SUR_expected_iters"]:.1f})'
        )
        print(f'{"mode":<10} {"s/step":>8} {"vs implicit":>12}')
        print(f'{"implicit":<10} {tr["implicit_s"]:>8.3f} {1.0:>12.2f}')
        print(f'{"UR":<10} {tr["UR_s"]:>8.3f} {tr["UR_over_implicit"]:>12.2f}')
        print(f'{"SUR":<10} {tr["SUR_expected_s"]:>8.3f} {tr["SUR_over_implicit"]:>12.2f}')
        result['training'] = tr
    if args.json:
        with open(args.json, 'w') as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == '__main__':
    main()
