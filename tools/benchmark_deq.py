"""Benchmark the DEQ solvers and training modes on an MDEQ (plain PyTorch, no OpenMMLab import).

Measures, side by side in one run, on one ``MDEQNet`` and one input (batch 1):

1. inference: the time of one evaluation of ``f`` (the MDEQ layer with the input injection closed
   over), and the time per iteration of the Broyden, Anderson and fixed-point solvers run for
   exactly ``--iters`` iterations (``tol=0``); their ratio is the *solver overhead* (targets:
   Broyden <= 1.10, fixed point <= 1.02). Two estimates, from the same run:

   * *interleaved* (the one checked against the targets): every ``f`` call the solver makes is
     preceded by one reference evaluation of ``f`` on a fixed state, timed separately; the
     overhead of a solve is ``(solve time - reference time) / reference time``, i.e. the time of
     an iteration (its own ``f`` plus everything the solver does, cache effects included) over
     the time of an ``f`` measured a few milliseconds away. Load changes on the machine then hit
     both sides alike. A ``no solver`` row (``z = f(z)`` under the same timing) shows
     the estimate's own baseline. The reference goes *before* the solver's ``f`` so that the
     solver's work after ``f`` sees the cache as in an uninterrupted solve (``f``'s output just
     written, the previous iterate long evicted), and so that the solver's ``f`` and the
     calibration row's ``f`` both get an input the reference has evicted. The other order,
     the reference right *after* each ``f`` call, is also printed ("ref after"): it evicts
     ``f``'s output before the solver reads it (a cost no real solve has) and leaves the
     solver's next ``f`` a warmer input than the calibration row's, so it is biased against
     the solvers;
   * *blocks*: ``--iters`` evaluations of ``f`` in a row against a whole solve, alternated, as
     a cross-check (sensitive to load changes between blocks; ratio of medians and of minima).
2. training: forward + backward time of one step for the three StreamDEQ training modes of the
   thesis: implicit (``--train-iters`` Broyden iterations forward, the same number of adjoint
   Broyden iterations backward, both without early stop), UR (``--unroll`` weight-tied unrolled
   iterations) and SUR (stochastic unrolling with ``N ~ U{1..unroll}``; reported as its expected
   time, the mean of the UR times at ``N = floor(E[N])`` and ``ceil(E[N])``, since a step costs
   linearly in ``N``), with ratios to the implicit step.

Each timing is the median over ``--repeats`` repetitions after one warm-up; the variants are
alternated in every repetition so that load changes affect them alike.

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
NO_SOLVER = 'no solver'  # calibration row of the interleaved estimate: z = f(z), nothing else


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
            inter = {m: [] for m in (NO_SOLVER, *TARGETS)}
            inter_after = {m: [] for m in inter}
            for _ in range(args.repeats):
                for m in inter:
                    inter[m].append(
                        interleaved_solve(f, z0, z_mid, m, args.iters, device, ref_first=True)
                    )
                    inter_after[m].append(
                        interleaved_solve(f, z0, z_mid, m, args.iters, device, ref_first=False)
                    )
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    out = {'f_ms': 1e3 * med['f'], 'f_ms_min': 1e3 * low['f'], 'solvers': {}}
    for m in inter:
        ratios = sorted(r['overhead'] for r in inter[m])
        ratios_after = sorted(r['overhead'] for r in inter_after[m])
        out['solvers'][m] = dict(
            overhead=statistics.median(ratios),
            overhead_range=(ratios[0], ratios[-1]),
            overhead_ref_after=statistics.median(ratios_after),
            overhead_ref_after_range=(ratios_after[0], ratios_after[-1]),
            solver_ms_per_iter=statistics.median(r['solver_ms'] for r in inter[m]),
            f_ref_ms=statistics.median(r['f_ref_ms'] for r in inter[m]),
            block_ms_per_iter=1e3 * med[m] if m in med else None,
            block_overhead=med[m] / med['f'] if m in med else None,
            block_overhead_min=low[m] / low['f'] if m in low else None,
            target=TARGETS.get(m),
        )
    out['raw_s'] = times
    out['interleaved'] = inter
    out['interleaved_ref_after'] = inter_after
    return out


def interleaved_solve(
    f, z0, z_ref, method: str, iters: int, device, ref_first: bool = True
) -> dict:
    """One solve in which every ``f`` call is preceded (``ref_first``) or followed by a timed
    reference ``f(z_ref)``.

    ``method=NO_SOLVER`` runs ``z = f(z)`` with no solver at all (no statistics, no selection):
    its overhead is the estimator's own baseline (1 up to noise).

    Returns the overhead ``(t_solve - t_ref) / t_ref`` (``t_ref``: the reference evaluations,
    one per iteration) and its parts in ms per iteration: ``solver_ms`` is the time outside any
    ``f`` (the solver's own work), ``f_ref_ms`` the reference ``f``.
    """
    t_ref = [0.0]
    t_own = [0.0]
    n_eval = [0]

    def reference():
        t0 = time.perf_counter()
        f(z_ref)
        sync(device)
        t_ref[0] += time.perf_counter() - t0

    def f_timed(z):
        n_eval[0] += 1
        if ref_first:
            reference()
        t0 = time.perf_counter()
        out = f(z)
        sync(device)
        t_own[0] += time.perf_counter() - t0
        if not ref_first:
            reference()
        return out

    def plain():
        z = z0
        for _ in range(iters):
            z = f_timed(z)

    if method == NO_SOLVER:
        total = timed(plain, device)
    else:
        total = timed(lambda: solve(f_timed, z0, method=method, max_iter=iters, tol=0), device)
    iteration = total - t_ref[0]
    n = max(n_eval[0], 1)  # a Broyden budget of `iters` steps evaluates f iters + 1 times
    return dict(
        overhead=iteration / t_ref[0],
        solver_ms=1e3 * (iteration - t_own[0]) / n,
        f_ref_ms=1e3 * t_ref[0] / n,
        evaluations=n,
    )


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
        '"overhead" = iteration time / time of a reference f evaluated right before each of the '
        "solver's f calls (median over repeats, [min, max]); \"ref after\" = the same with the "
        'reference right after each f call (evicts f\'s output before the solver reads it); '
        '"solver ms" = time per iteration outside f; "blocks" = whole solves against blocks of '
        f'f (ratio of medians / of minima; f min {inf["f_ms_min"]:.2f} ms)'
    )
    print(
        f'{"solver":<12} {"overhead":>9} {"[min, max]":>15} {"ref after":>10} {"solver ms":>10} '
        f'{"f ref ms":>9} {"blocks":>7} {"b-min":>6} {"target":>8}'
    )
    for m, r in inf['solvers'].items():
        tgt = f'<={r["target"]:.2f}' if r['target'] else '-'
        ok = '' if r['target'] is None else ('  ok' if r['overhead'] <= r['target'] else '  MISS')
        lo, hi = r['overhead_range']
        blocks = (
            '-'.rjust(7) + ' ' + '-'.rjust(6)
            if r['block_overhead'] is None
            else f'{r["block_overhead"]:>7.3f} {r["block_overhead_min"]:>6.3f}'
        )
        print(
            f'{m:<12} {r["overhead"]:>9.3f} {f"[{lo:.3f}, {hi:.3f}]":>15} '
            f'{r["overhead_ref_after"]:>10.3f} {r["solver_ms_per_iter"]:>10.2f} '
            f'{r["f_ref_ms"]:>9.2f} {blocks} {tgt:>8}{ok}'
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
