"""Benchmark the DEQ solvers and training modes on an MDEQ (plain PyTorch, no OpenMMLab import).

Measures, side by side in one run, on one ``MDEQNet`` and one input (batch 1):

1. inference: the time of one evaluation of ``f`` (the MDEQ layer with the input injection closed
   over), and the time per evaluation of the Broyden, Anderson and fixed-point solvers run for
   exactly ``--iters`` steps (``tol=0``); their ratio is the *solver overhead* (targets:
   Broyden <= 1.05, Anderson <= 1.03, fixed point <= 1.01). Two estimates, from the same run:

   * *interleaved* (the one checked against the targets): every ``f`` call the solver makes is
     preceded by one reference evaluation of ``f`` on a fixed state, timed separately; the
     overhead of a solve is ``(solve time - reference time) / reference time``, i.e. the time of
     an evaluation (its own ``f`` plus everything the solver does, cache effects included) over
     the time of an ``f`` measured a few milliseconds away. Load changes on the machine then hit
     both sides alike. A ``no solver`` row (``z = f(z)`` under the same timing) shows
     the estimate's own baseline. The reference goes *before* the solver's ``f`` so that the
     solver's work after ``f`` sees the cache as in an uninterrupted solve (``f``'s output just
     written, the previous iterate long evicted), and so that the solver's ``f`` and the
     calibration row's ``f`` both get an input the reference has evicted. The other order,
     the reference right *after* each ``f`` call, is also printed for this package's solvers
     ("ref after"): it evicts ``f``'s output before the solver reads it (a cost no real solve
     has) and leaves the solver's next ``f`` a warmer input than the calibration row's, so it
     is biased against the solvers;
   * *blocks*: ``--iters`` evaluations of ``f`` in a row against a whole solve, as a cross-check
     (sensitive to load changes between blocks).

   ``--peers`` adds other implementations run on the same ``f`` under the interleaved timing:
   ``torchdeq`` (``pip install torchdeq``; its ``broyden_solver``, ``anderson_solver`` and
   ``fixed_point_iter`` on the packed ``(B, D)`` state, tolerance 0) and ``mdeq`` (the
   ``broyden`` function of a locuslab/mdeq checkout given by ``--mdeq-repo``, loaded from
   ``lib/modules/broyden.py``; ``eps=0``, ``threshold=--iters``; it needs ``scipy`` and
   ``termcolor``). Their state is packed before and unpacked after every ``f`` (one copy of the
   state per evaluation, counted as their overhead).
2. training: forward + backward time of one step for the three StreamDEQ training modes of the
   thesis: implicit (``--train-iters`` Broyden iterations forward, the same number of adjoint
   Broyden iterations backward, both without early stop), UR (``--unroll`` weight-tied unrolled
   iterations) and SUR (stochastic unrolling with ``N ~ U{1..unroll}``; reported as its expected
   time, the mean of the UR times at ``N = floor(E[N])`` and ``ceil(E[N])``, since a step costs
   linearly in ``N``), with ratios to the implicit step and the forward / backward split.

Every row gives the median over ``--repeats`` repetitions after one warm-up and the range
``[min, max]``; within a repetition every setting runs once, so that load changes on the machine
affect all settings alike. Ratios (overheads, ``vs implicit``) are formed per repetition.

Run from a checkout (``sys.path`` gets the repository root), e.g.:
    python tools/benchmark_deq.py --arch small --size 256 512 --repeats 7 --threads 1 --skip-train
    python tools/benchmark_deq.py --device cuda --repeats 10 --json bench.json
"""

import argparse
import importlib.util
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
from mmvideoeq.deq.utils import StateLayout  # noqa: E402

TARGETS = {'broyden': 1.05, 'anderson': 1.03, 'fixed_point': 1.01}
NO_SOLVER = 'no solver'  # calibration row of the interleaved estimate: z = f(z), nothing else
PEERS = ('torchdeq', 'mdeq')


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
    p.add_argument('--iters', type=int, default=26, help='solver steps timed (inference)')
    p.add_argument('--train-iters', type=int, default=26, help='implicit: Broyden iterations')
    p.add_argument('--unroll', type=int, default=20, help='UR iterations; SUR draws U{1..N}')
    p.add_argument('--skip-train', action='store_true', help='only the inference part')
    p.add_argument('--skip-inference', action='store_true', help='only the training part')
    p.add_argument(
        '--peers', nargs='+', default=(), choices=PEERS, help='also time these implementations'
    )
    p.add_argument('--mdeq-repo', default=None, help='locuslab/mdeq checkout (--peers mdeq)')
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', default=None, help='also write the results to this file')
    args = p.parse_args(argv)
    for name in ('batch', 'repeats', 'iters', 'train_iters', 'unroll'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1')
    if min(args.size) < 8:
        p.error('--size must be at least 8 x 8')
    if 'mdeq' in args.peers:
        path = (
            None if args.mdeq_repo is None else osp.join(args.mdeq_repo, 'lib/modules/broyden.py')
        )
        if path is None or not osp.isfile(path):
            p.error(
                '--peers mdeq needs --mdeq-repo pointing to a locuslab/mdeq checkout '
                f'(lib/modules/broyden.py not found under {args.mdeq_repo!r})'
            )
    if 'torchdeq' in args.peers and importlib.util.find_spec('torchdeq') is None:
        p.error('--peers torchdeq needs the torchdeq package (pip install torchdeq)')
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


def summary(values) -> dict:
    """Median and range of a list of numbers."""
    v = sorted(values)
    return dict(median=statistics.median(v), min=v[0], max=v[-1])


def fmt(s: dict, digits: int = 3) -> str:
    """``median [min, max]``."""
    return f'{s["median"]:.{digits}f} [{s["min"]:.{digits}f}, {s["max"]:.{digits}f}]'


def peer_solvers(args, layout: StateLayout) -> dict:
    """Peer solve functions ``(f_packed, x0_packed, iters) -> None`` by row name."""
    runs = {}
    if 'torchdeq' in args.peers:
        from torchdeq.solver import anderson_solver, broyden_solver, fixed_point_iter

        kw = dict(tol=0.0, stop_mode='abs')
        runs['torchdeq broyden'] = lambda fp, x0, n: broyden_solver(fp, x0, max_iter=n, **kw)
        runs['torchdeq anderson'] = lambda fp, x0, n: anderson_solver(fp, x0, max_iter=n, **kw)
        runs['torchdeq fixed_point'] = lambda fp, x0, n: fixed_point_iter(fp, x0, max_iter=n, **kw)
    if 'mdeq' in args.peers:
        path = osp.join(args.mdeq_repo, 'lib/modules/broyden.py')
        spec = importlib.util.spec_from_file_location('locuslab_mdeq_broyden', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        def mdeq_broyden(fp, x0, n):
            # the reference's layout: (B, D, 1) and g(x) = f(x) - x, eps 0 runs `threshold` steps
            module.broyden(lambda v: fp(v[..., 0])[..., None] - v, x0[..., None], n, 0.0)

        runs['mdeq broyden'] = mdeq_broyden
    return runs


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
            layout = StateLayout(z0)
            peers = peer_solvers(args, layout)

            def run_f():
                for _ in range(args.iters):
                    f(z_mid)

            blocks = {'f': run_f}
            for method in TARGETS:
                blocks[method] = lambda m=method: solve(f, z0, method=m, max_iter=args.iters, tol=0)
            inter_runs = [(m, True) for m in (NO_SOLVER, *TARGETS)]
            inter_runs += [(m, False) for m in (NO_SOLVER, *TARGETS)]
            inter_runs += [(m, True) for m in peers]
            for fn in blocks.values():  # warm-up
                fn()
            for m in peers:
                interleaved_solve(f, z0, z_mid, m, args.iters, device, True, peers, layout)
            block_t = {k: [] for k in blocks}
            inter = {m: [] for m, _ in inter_runs}
            inter_after = {m: [] for m in (NO_SOLVER, *TARGETS)}
            for _ in range(args.repeats):
                for k, fn in blocks.items():
                    block_t[k].append(timed(fn, device) / args.iters)
                for m, first in inter_runs:
                    r = interleaved_solve(f, z0, z_mid, m, args.iters, device, first, peers, layout)
                    (inter if first else inter_after)[m].append(r)
    out = {'f_ms': summary([1e3 * t for t in block_t['f']]), 'solvers': {}}
    for m in inter:
        rows = inter[m]
        res = dict(
            overhead=summary([r['overhead'] for r in rows]),
            solver_ms=summary([r['solver_ms'] for r in rows]),
            f_ref_ms=summary([r['f_ref_ms'] for r in rows]),
            evaluations=rows[0]['evaluations'],
            target=TARGETS.get(m),
        )
        if m in inter_after:
            res['overhead_ref_after'] = summary([r['overhead'] for r in inter_after[m]])
        if m in blocks:
            # ms per evaluation of f: a Broyden budget of `iters` steps evaluates f iters + 1 times
            res['block_overhead'] = summary(
                [
                    t / tf * args.iters / res['evaluations']
                    for t, tf in zip(block_t[m], block_t['f'])
                ]
            )
        out['solvers'][m] = res
    out['raw'] = dict(blocks_s=block_t, interleaved=inter, interleaved_ref_after=inter_after)
    return out


def interleaved_solve(
    f, z0, z_ref, method: str, iters: int, device, ref_first: bool = True, peers=None, layout=None
) -> dict:
    """One solve in which every ``f`` call is preceded (``ref_first``) or followed by a timed
    reference ``f(z_ref)``.

    ``method=NO_SOLVER`` runs ``z = f(z)`` with no solver at all (no statistics, no selection):
    its overhead is the estimator's own baseline (1 up to noise). A method in ``peers`` (see
    :func:`peer_solvers`) runs on the packed state.

    Returns the overhead ``(t_solve - t_ref) / t_ref`` (``t_ref``: the reference evaluations,
    one per evaluation of the solver) and its parts in ms per evaluation: ``solver_ms`` is the
    time outside any ``f`` (the solver's own work), ``f_ref_ms`` the reference ``f``.
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
    elif peers and method in peers:

        def f_packed(v):
            return layout.pack(f_timed(layout.unpack(v)))

        x0 = layout.pack(z0).clone()
        total = timed(lambda: peers[method](f_packed, x0, iters), device)
    else:
        total = timed(lambda: solve(f_timed, z0, method=method, max_iter=iters, tol=0), device)
    iteration = total - t_ref[0]
    n = max(n_eval[0], 1)
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

    def step(solver) -> tuple[float, float]:
        net.deq = solver
        net.zero_grad(set_to_none=True)
        sync(device)
        t0 = time.perf_counter()
        feats = net.forward_features(x).features
        loss = sum(t.float().pow(2).mean() for t in feats)
        sync(device)
        t1 = time.perf_counter()
        loss.backward()
        sync(device)
        return t1 - t0, time.perf_counter() - t1

    try:
        for s in modes.values():  # warm-up
            step(s)
        fwd = {k: [] for k in modes}
        bwd = {k: [] for k in modes}
        for _ in range(args.repeats):
            for k, s in modes.items():
                a, b = step(s)
                fwd[k].append(a)
                bwd[k].append(b)
    finally:
        net.deq = original
    tot = {k: [a + b for a, b in zip(fwd[k], bwd[k])] for k in modes}
    tot['SUR'] = [(a + b) / 2 for a, b in zip(tot[f'UR@{lo}'], tot[f'UR@{hi}'])]
    fwd['SUR'] = [(a + b) / 2 for a, b in zip(fwd[f'UR@{lo}'], fwd[f'UR@{hi}'])]
    bwd['SUR'] = [(a + b) / 2 for a, b in zip(bwd[f'UR@{lo}'], bwd[f'UR@{hi}'])]
    res = {'SUR_expected_iters': e_n, 'modes': {}}
    for k in tot:
        res['modes'][k] = dict(
            step_s=summary(tot[k]),
            forward_s=summary(fwd[k]),
            backward_s=summary(bwd[k]),
            vs_implicit=summary([t / ti for t, ti in zip(tot[k], tot['implicit'])]),
        )
    res['raw_s'] = dict(forward=fwd, backward=bwd)
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
        f'{env["threads"]} threads; median [min, max] of {args.repeats} interleaved repeats'
    )
    result = dict(args=vars(args), env=env, state_shapes=shapes)

    if not args.skip_inference:
        inf = bench_inference(net, x, args, device)
        print(
            f'\n[inference] f: {fmt(inf["f_ms"], 2)} ms per evaluation; solvers run {args.iters} '
            f'steps (tol=0)'
        )
        print(
            '"overhead" = time per evaluation / time of a reference f evaluated right before each '
            'of the solver\'s f calls; "ref after" = the same with the reference right after '
            'each f call; "solver ms" = time per evaluation outside f; "blocks" = whole solves '
            'against blocks of f'
        )
        print(
            f'{"solver":<21} {"evals":>5} {"overhead":>24} {"ref after":>24} '
            f'{"solver ms":>21} {"blocks":>24} {"target":>6}'
        )
        for m, r in inf['solvers'].items():
            tgt = f'<={r["target"]:.2f}' if r['target'] else '-'
            ok = ''
            if r['target'] is not None:
                ok = '  ok' if r['overhead']['median'] <= r['target'] else '  MISS'
            after = fmt(r['overhead_ref_after']) if 'overhead_ref_after' in r else '-'
            blocks = fmt(r['block_overhead']) if 'block_overhead' in r else '-'
            print(
                f'{m:<21} {r["evaluations"]:>5} {fmt(r["overhead"]):>24} {after:>24} '
                f'{fmt(r["solver_ms"], 2):>21} {blocks:>24} {tgt:>6}{ok}'
            )
        result['inference'] = inf

    if not args.skip_train:
        tr = bench_training(net, x, args, device)
        print(
            f'\n[training step, forward + backward] implicit = {args.train_iters} Broyden + '
            f'{args.train_iters} adjoint Broyden iterations; UR = {args.unroll} unrolls; '
            f'SUR = expected (E[N] = {tr["SUR_expected_iters"]:.1f})'
        )
        print(
            f'{"mode":<10} {"s/step":>24} {"forward s":>24} {"backward s":>24} '
            f'{"vs implicit":>24}'
        )
        for k, r in tr['modes'].items():
            print(
                f'{k:<10} {fmt(r["step_s"]):>24} {fmt(r["forward_s"]):>24} '
                f'{fmt(r["backward_s"]):>24} {fmt(r["vs_implicit"]):>24}'
            )
        result['training'] = tr
    if args.json:
        with open(args.json, 'w') as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == '__main__':
    main()
