"""CUDA consistency check of the plain-PyTorch layers (DEQ solvers, MDEQ, streaming), no mm* needed.

Example (on a GPU machine):
    python tools/check_cuda.py --device cuda

For each solver it solves the same tiny MDEQ fixed point on the CPU (float64) and on the device
(float64), and compares the returned iterates, the iteration counts and the residual traces; then
it streams a short synthetic video through ``run_stream`` on both and compares the per-frame fixed
points. Exits non-zero on any mismatch.
"""

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

from mmvideoeq.deq import Budget, MDEQNet, solve  # noqa: E402
from mmvideoeq.streaming import StreamFrame, StreamPolicy, run_stream  # noqa: E402


def build(device):
    torch.manual_seed(0)
    net = MDEQNet(
        arch='small',
        num_channels=(4, 8, 16),
        num_blocks=(1, 1, 1),
        expansion=2,
        num_groups=2,
        with_head=False,
    )
    return net.double().to(device).eval()


def solve_case(net, x, method, tol):
    with torch.no_grad():
        inj = net.injection_features(x)
        f = lambda z: net.layer(z, inj)
        z, stats = solve(f, net.init_state(x), method=method, max_iter=12, tol=tol)
    return [t.cpu() for t in z], stats


def stream_case(net, frames, device):
    def step(x, z0, max_iter, tol, payloads):
        out = net.forward_features(x, z0, Budget(max_iter, tol or 0.0))
        return out.features, out.z, out.stats

    policy = StreamPolicy(budget=dict(type='FixedBudget', iters=2))
    items = [StreamFrame(x.to(device), 'v', t) for t, x in enumerate(frames)]
    with torch.no_grad():
        run = run_stream(step, items, policy)
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cuda')
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print('CUDA is not available here')
        return 2
    cpu, dev = build('cpu'), build(device)
    dev.load_state_dict(cpu.state_dict())
    x = torch.randn(2, 3, 32, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ok = True
    for method in ('fixed_point', 'anderson', 'broyden'):
        for tol in (None, 1e-4):
            zc, sc = solve_case(cpu, x, method, tol)
            zd, sd = solve_case(dev, x.to(device), method, tol)
            err = max((a - b).abs().max().item() for a, b in zip(zc, zd))
            same_n = torch.equal(sc.nstep.cpu(), sd.nstep.cpu())
            tr = (sc.rel_trace.cpu() - sd.rel_trace.cpu()).abs().max().item()
            good = err < 1e-8 and same_n and tr < 1e-8
            ok &= good
            print(
                f'{method:12s} tol={tol}: max |z_cpu - z_{device.type}| = {err:.2e}, '
                f'nstep cpu {sc.nstep.tolist()} / {device.type} {sd.nstep.cpu().tolist()}, '
                f'rel trace diff {tr:.2e}, diverged {sd.diverged.cpu().tolist()} '
                f"{'OK' if good else 'MISMATCH'}"
            )
    g = torch.Generator().manual_seed(2)
    base = torch.randn(1, 3, 32, 48, dtype=torch.float64, generator=g)
    frames = [base + 0.02 * t for t in range(5)]
    rc, rd = stream_case(cpu, frames, 'cpu'), stream_case(dev, frames, device)
    zc = rc.states['v'].z
    zd = rd.states['v'].z
    err = max((a - b.cpu()).abs().max().item() for a, b in zip(zc, zd))
    good = err < 1e-8
    ok &= good
    print(
        f"streaming 5 frames x 2 iterations: last fixed point cpu vs {device.type} "
        f"{err:.2e} {'OK' if good else 'MISMATCH'}"
    )
    print('ALL OK' if ok else 'MISMATCHES FOUND')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
