"""Parity of the solvers with the reference implementations' conventions (StreamDEQ thesis Eq.
3.4/3.5, locuslab/mdeq ``lib/modules/broyden.py``).

``reference_broyden`` below is written from the equations of MDEQ's L-Broyden, independently of
``mmvideoeq.deq``: a dense inverse-Jacobian estimate ``B = -I + sum_i u_i v_i^T`` (rebuilt as a
``D x D`` matrix from the stored updates at every use, memory ``min(threshold, 27)`` with the
oldest slot overwritten), ``u = (dx - B dg) / (v^T dg)`` with ``v^T = dx^T B`` formed directly,
norms over the whole batch, ``eps`` absolute, the lowest-residual iterate (the initial one
included) returned, ``threshold`` steps after the initial evaluation, the no-progress break after
30 steps. It returns what the reference returns (``result``, ``nstep``, ``lowest_step``,
``trace``) plus the last iterate (what a streaming frame carries, Eq. 3.5).
"""

from __future__ import annotations

import pytest
import torch

from mmvideoeq.deq import Budget, solve
from mmvideoeq.deq.mdeq import MDEQNet, frozen_weight_norm
from mmvideoeq.deq.solvers.stats import Tracker
from mmvideoeq.deq.utils import StateLayout


def reference_broyden(g, x0: torch.Tensor, threshold: int, eps: float, memory: int = 27):
    """MDEQ's L-Broyden on a flat vector ``x0`` ``(D,)`` (batch 1), dense matrices."""
    dim = x0.numel()
    cap = min(threshold, memory)
    us: list = [None] * cap
    vs: list = [None] * cap

    def inv_jac() -> torch.Tensor:
        b = -torch.eye(dim, dtype=x0.dtype)
        for u, v in zip(us, vs):
            if u is not None:
                b = b + torch.outer(u, v)
        return b

    x, gx = x0.clone(), g(x0)
    nstep, lowest_step = 0, 0
    obj = float(gx.norm())
    trace, lowest, lowest_x = [obj], obj, x0.clone()
    update = -(inv_jac() @ gx)
    while obj >= eps and nstep < threshold:
        dx = update
        x = x + dx
        g_new = g(x)
        dg, gx = g_new - gx, g_new
        nstep += 1
        obj = float(gx.norm())
        trace.append(obj)
        if obj < lowest:
            lowest, lowest_x, lowest_step = obj, x.clone(), nstep
        if obj < eps:
            break
        if obj < 3 * eps and nstep > 30 and max(trace[-30:]) / min(trace[-30:]) < 1.3:
            break
        b = inv_jac()
        vt = dx @ b
        u = (dx - b @ dg) / (vt @ dg)
        vt, u = (
            vt.nan_to_num(nan=0.0, posinf=float('inf')),
            u.nan_to_num(nan=0.0, posinf=float('inf')),
        )
        us[(nstep - 1) % cap], vs[(nstep - 1) % cap] = u, vt
        update = -(inv_jac() @ gx)
    return dict(result=lowest_x, nstep=nstep, lowest_step=lowest_step, trace=trace, last=x)


def _tanh_map(dim: int = 8, seed: int = 0, scale: float = 0.9):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    w = w / torch.linalg.matrix_norm(w, 2) * scale
    c = torch.randn(dim, generator=gen, dtype=torch.float64)
    return lambda v: torch.tanh(w @ v + c)


@pytest.mark.parametrize('threshold, eps, memory', [(12, 1e-13, 27), (12, 1e-13, 3), (6, 1e-3, 27)])
def test_broyden_matches_reference_steps_lowest_and_result(threshold, eps, memory):
    f = _tanh_map()
    ref = reference_broyden(
        lambda v: f(v) - v, torch.zeros(8, dtype=torch.float64), threshold, eps, memory
    )
    z, stats = solve(
        lambda zs: [f(zs[0][0])[None]],
        [torch.zeros(1, 8, dtype=torch.float64)],
        method='broyden',
        max_iter=threshold,
        tol=eps,
        stop_mode='abs',
        memory=memory,
    )
    assert int(stats.nstep) == ref['nstep']
    assert int(stats.lowest_step) == int(stats.out_step) == ref['lowest_step']
    assert stats.n_eval == ref['nstep'] + 1
    torch.testing.assert_close(
        stats.abs_trace[0], torch.tensor(ref['trace'], dtype=torch.float64), rtol=1e-8, atol=1e-15
    )
    torch.testing.assert_close(z[0][0], ref['result'], rtol=1e-9, atol=1e-14)


def test_broyden_no_progress_break_after_30_steps():
    """A residual that stalls below 3 eps after more than 30 steps ends the solve (MDEQ's rule
    ``obj < 3 eps and nstep > 30 and max(trace[-30:]) / min(trace[-30:]) < 1.3``), applied here
    to a scripted residual sequence fed to the solvers' bookkeeping."""
    eps = 1e-8
    trace = [1.0, 0.5, 0.1, 1e-3] + [2.0e-8 if k % 2 else 2.2e-8 for k in range(60)]
    want = next(
        n
        for n in range(1, len(trace))
        if trace[n] < 3 * eps
        and n > 30
        and max(trace[n - 29 : n + 1]) / min(trace[n - 29 : n + 1]) < 1.3
    )
    x = [torch.zeros(1, 4, dtype=torch.float64)]
    tracker = Tracker(x, 60, eps, 'abs', True, 1e3, 'iterate', False, stall_window=30)
    for k, r in enumerate(trace):
        tracker.record(
            k, x, x, (torch.tensor([r], dtype=torch.float64), torch.ones(1, dtype=torch.float64))
        )
        if tracker.all_stopped():
            break
    _, _, stats = tracker.finish('broyden')
    assert want == 33
    assert int(stats.nstep) == want


def _tiny_net(seed: int = 0) -> MDEQNet:
    torch.manual_seed(seed)
    net = MDEQNet(
        arch='small',
        task='cls',
        num_channels=(4, 8),
        expansion=2,
        num_groups=2,
        num_classes=5,
        head_channels=(4, 8),
        final_chansize=16,
        deq_cfg=dict(solver='broyden', test_max_iter=8, tol=1e-5, stop_mode='rms'),
    )
    return net.eval()


def _layer_fn(net: MDEQNet, x: torch.Tensor):
    """The layer as a map on flat vectors (batch 1), plus the layout of the state."""
    inj = net.injection_features(x)
    layout = StateLayout(net.init_state(x))

    def f(v: torch.Tensor) -> torch.Tensor:
        return layout.pack(net.layer(layout.unpack(v[None]), inj))[0]

    return f, layout


def test_full_solve_gives_the_reference_logits():
    """Official settings (threshold 8, eps = 1e-5 sqrt(numel)): the head gets the lowest-residual
    iterate z_k itself, so the logits equal head(reference result) to 1e-4."""
    net = _tiny_net()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = net(x)
        f, layout = _layer_fn(net, x)
        with frozen_weight_norm(net.layer):
            v0 = torch.zeros(layout.dim)
            ref = reference_broyden(lambda v: f(v) - v, v0, 8, 1e-5 * layout.dim**0.5)
            ref_logits = net.cls_head(layout.unpack(ref['result'][None]))
        out = net.forward_features(x)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-4)
    assert int(out.stats.lowest_step) == ref['lowest_step']
    assert int(out.stats.nstep) == ref['nstep']


@pytest.mark.parametrize('solver, evals', [('broyden', 5), ('fixed_point', 4), ('anderson', 4)])
def test_streaming_budget_carries_z_M(solver, evals):
    """A 4-frame Eq. 3.5 chain with M = 4: every frame runs exactly M steps from the carried
    state, and the carried state is the M-th iterate z^[M] (never the lowest-residual one)."""
    net = _tiny_net()
    net.deq.solver = solver
    gen = torch.Generator().manual_seed(2)
    base = torch.randn(1, 3, 32, 32, generator=gen)
    frames = [base + 0.05 * t * torch.randn(1, 3, 32, 32, generator=gen) for t in range(4)]
    z = None
    with torch.no_grad():
        for x in frames:
            out = net.forward_features(x, z, Budget.steps(4))
            assert out.stats.n_eval == evals
            assert out.stats.nstep.tolist() == out.stats.out_step.tolist() == [4]
            f, layout = _layer_fn(net, x)
            v0 = layout.pack(z if z is not None else net.init_state(x))[0]
            with frozen_weight_norm(net.layer):
                if solver == 'broyden':
                    want = reference_broyden(lambda v: f(v) - v, v0, 4, 0.0)['last']
                elif solver == 'fixed_point':
                    want = v0
                    for _ in range(4):
                        want = f(want)
                else:
                    want = None
            if want is not None:
                torch.testing.assert_close(layout.pack(out.z)[0], want, rtol=1e-4, atol=1e-5)
            z = out.z


def test_broyden_small_budgets_are_quasi_newton_steps():
    """M = 2 Broyden steps are not two fixed-point steps: step 2 uses the rank-one update."""
    f = _tanh_map(seed=5)
    z0 = torch.zeros(8, dtype=torch.float64)
    ref = reference_broyden(lambda v: f(v) - v, z0, 2, 0.0)
    z, stats = solve(
        lambda zs: [f(zs[0][0])[None]],
        [z0[None]],
        method='broyden',
        max_iter=2,
        tol=None,
        return_lowest=False,
    )
    torch.testing.assert_close(z[0][0], ref['last'], rtol=1e-12, atol=1e-14)
    assert (z[0][0] - f(f(z0))).abs().max() > 1e-3
    assert stats.n_eval == 3
