"""Tests of the fixed-point solvers (``mmvideoeq.deq.solve``): convergence, step counting and
returned state per method, per-sample statistics, divergence handling and input validation.

The step/return conventions under test are those of the references (locuslab/mdeq for Broyden,
torchdeq for fixed-point iteration and Anderson); ``test_reference_parity.py`` checks Broyden
against an independent dense implementation of the reference's equations.
"""

from __future__ import annotations

import pytest
import torch

from mmvideoeq.deq import SolverStats, solve
from mmvideoeq.deq.solvers import evaluations
from mmvideoeq.deq.solvers.anderson import _weights, _weights_host
from mmvideoeq.deq.solvers.common import residual_norms
from mmvideoeq.deq.solvers.stats import Tracker
from mmvideoeq.deq.utils import StateLayout

METHODS = ['fixed_point', 'anderson', 'broyden']
# Anderson's reference regularisation (lam = 1e-4, absolute) stops it short of 1e-10 residuals.
TIGHT = {'anderson': dict(lam=1e-12)}


@pytest.mark.parametrize('method', METHODS)
def test_converges_to_newton_reference(method, tanh_problem):
    z, stats = solve(
        tanh_problem.f,
        tanh_problem.z0(),
        method=method,
        max_iter=100,
        tol=1e-11,
        stop_mode='abs',
        **TIGHT.get(method, {}),
    )
    ref = tanh_problem.reference()
    assert isinstance(z, list) and len(z) == 1 and z[0].shape == (2, 6)
    torch.testing.assert_close(z[0], ref, atol=1e-10, rtol=0)
    assert (stats.final_abs < 1e-11).all()
    assert not stats.diverged.any()
    assert stats.method == method


@pytest.mark.parametrize('method', METHODS)
def test_multiscale_state_with_different_shapes(method, linear_multiscale):
    z, stats = solve(
        linear_multiscale.f,
        linear_multiscale.z0(),
        method=method,
        max_iter=200,
        tol=1e-12,
        stop_mode='rel',
        **TIGHT.get(method, {}),
    )
    ref = linear_multiscale.reference()
    assert [tuple(t.shape) for t in z] == [(2, 2, 3, 3), (2, 3, 2, 2)]
    assert all(t.is_contiguous() for t in z)
    for a, b in zip(z, ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    assert (stats.final_rel < 1e-12).all()


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('max_iter', [1, 2, 5])
def test_budget_is_exact_without_tol(method, max_iter, tanh_problem):
    """M steps: M evaluations of f (fixed point, Anderson), M + 1 for Broyden (the initial one
    and one per step, as MDEQ's threshold)."""
    n_eval = max_iter + 1 if method == 'broyden' else max_iter
    assert evaluations(method, max_iter) == n_eval
    for tol in (None, 0):
        tanh_problem.calls = 0
        _, stats = solve(
            tanh_problem.f,
            tanh_problem.z0(),
            method=method,
            max_iter=max_iter,
            tol=tol,
            return_lowest=False,
        )
        assert tanh_problem.calls == n_eval == stats.n_eval
        assert stats.abs_trace.shape == stats.rel_trace.shape == (2, n_eval)
        assert stats.nstep.tolist() == stats.out_step.tolist() == [max_iter, max_iter]


def test_fixed_point_returns_f_applied_m_times(tanh_problem):
    z = tanh_problem.z0()
    for _ in range(4):
        z = tanh_problem.f(z)
    out, stats = solve(
        tanh_problem.f,
        tanh_problem.z0(),
        method='fixed_point',
        max_iter=4,
        tol=None,
        return_lowest=False,
    )
    torch.testing.assert_close(out[0], z[0], atol=0, rtol=0)
    # The state at step 4 is described by the residual of its pre-image z^[3].
    torch.testing.assert_close(stats.final_abs, stats.abs_trace[:, 3])


@pytest.mark.parametrize('method', METHODS)
def test_first_step_is_one_layer_application(method, tanh_problem):
    """Step 1 is f(z0) for every method: Broyden's B_0 = -I, Anderson's plain first step."""
    z0 = [torch.full((2, 6), 0.3, dtype=torch.float64)]
    out, stats = solve(tanh_problem.f, z0, method=method, max_iter=1, tol=None, return_lowest=False)
    fz0 = torch.tanh(z0[0] @ tanh_problem.W.T + tanh_problem.x)
    # Broyden forms x_1 = x_0 + (f(x_0) - x_0): equal up to one rounding
    torch.testing.assert_close(out[0], fz0, atol=1e-15 if method == 'broyden' else 0, rtol=0)
    abs0 = (fz0 - z0[0]).norm(dim=1)
    torch.testing.assert_close(stats.abs_trace[:, 0], abs0)
    torch.testing.assert_close(stats.first_rel, abs0 / (fz0.norm(dim=1) + 1e-9))
    assert stats.out_step.tolist() == [1, 1]


def test_anderson_second_state_is_two_layer_applications(tanh_problem):
    out, _ = solve(
        tanh_problem.f,
        tanh_problem.z0(),
        method='anderson',
        max_iter=2,
        tol=None,
        return_lowest=False,
    )
    expected = tanh_problem.f(tanh_problem.f(tanh_problem.z0()))[0]
    torch.testing.assert_close(out[0], expected, atol=0, rtol=0)


def test_broyden_returns_the_iterate_its_statistics_describe(tanh_problem):
    """MDEQ's Broyden hands the lowest-residual iterate z_k itself to the head, not f(z_k)."""
    for return_lowest in (True, False):
        z, stats = solve(
            tanh_problem.f,
            tanh_problem.z0(),
            method='broyden',
            max_iter=4,
            tol=None,
            stop_mode='abs',
            return_lowest=return_lowest,
        )
        residual = (tanh_problem.f(z)[0] - z[0]).norm(dim=1)
        torch.testing.assert_close(residual, stats.final_abs, rtol=1e-12, atol=0)
        col = stats.out_step[:, None]
        torch.testing.assert_close(stats.abs_trace.gather(1, col)[:, 0], residual)


def test_broyden_lowest_includes_the_initial_state():
    """A start that is already better than every step is returned with step 0 (locuslab/mdeq
    initialises the lowest residual with the initial one); the last state is the budget's end."""

    def f(z):
        return [-3 * torch.tanh(z[0])]  # from 0.1 the first Broyden step overshoots

    z0 = [torch.full((1, 3), 0.1, dtype=torch.float64)]
    z, stats = solve(f, z0, method='broyden', max_iter=1, tol=None, stop_mode='abs')
    assert stats.abs_trace[0, 1] > stats.abs_trace[0, 0]
    assert stats.lowest_step.tolist() == [0] and stats.nstep.tolist() == [1]
    torch.testing.assert_close(z[0], z0[0], rtol=0, atol=0)
    z_last, last = solve(
        f, z0, method='broyden', max_iter=1, tol=None, stop_mode='abs', return_lowest=False
    )
    assert last.out_step.tolist() == [1]
    torch.testing.assert_close(z_last[0], f(z0)[0], rtol=0, atol=0)


@pytest.mark.parametrize('method', METHODS)
def test_per_sample_stopping_is_batch_invariant(method, tanh_problem, make_tanh):
    ref = tanh_problem.reference()
    z0 = [torch.stack([ref[0] + 1e-6, torch.zeros(6, dtype=torch.float64)])]  # warm, cold
    kw = dict(method=method, max_iter=60, tol=1e-9, stop_mode='abs', **TIGHT.get(method, {}))
    z, stats = solve(tanh_problem.f, z0, **kw)
    assert stats.nstep[0] < stats.nstep[1]
    assert stats.n_eval == evaluations(method, int(stats.nstep.max()))
    for b in range(2):
        single = make_tanh()
        single.x = single.x[b : b + 1]
        zb, sb = solve(single.f, [z0[0][b : b + 1]], **kw)
        torch.testing.assert_close(z[0][b : b + 1], zb[0], atol=1e-13, rtol=0)
        assert int(sb.nstep[0]) == int(stats.nstep[b])
        n = sb.n_eval
        torch.testing.assert_close(stats.abs_trace[b, :n], sb.abs_trace[0], atol=1e-13, rtol=0)


@pytest.mark.parametrize('method', METHODS)
def test_backprop_with_per_sample_stopping_matches_solo_solves(method, make_tanh):
    """Under autograd, samples that stop at different steps keep their own graph: the gradient
    of each sample equals that of solving it alone."""
    prob = make_tanh()
    ref = prob.reference()
    z0 = [torch.stack([ref[0] + 1e-6, torch.zeros(6, dtype=torch.float64)])]  # warm, cold
    weights = torch.linspace(-1, 2, 6, dtype=torch.float64)
    kw = dict(method=method, max_iter=60, tol=1e-9, stop_mode='abs', **TIGHT.get(method, {}))
    x = prob.x.clone().requires_grad_(True)
    prob.x = x
    z, stats = solve(prob.f, z0, **kw)
    assert stats.nstep[0] < stats.nstep[1]
    (grad,) = torch.autograd.grad((z[0] * weights).sum(), x)
    for b in range(2):
        single = make_tanh()
        xb = single.x[b : b + 1].clone().requires_grad_(True)
        single.x = xb
        zb, _ = solve(single.f, [z0[0][b : b + 1]], **kw)
        (gb,) = torch.autograd.grad((zb[0] * weights).sum(), xb)
        torch.testing.assert_close(grad[b : b + 1], gb, atol=1e-10, rtol=0)  # rounding only


@pytest.mark.parametrize('method', METHODS)
def test_warm_start_needs_fewer_steps(method, tanh_problem):
    ref = tanh_problem.reference()
    warm = [ref + 1e-3 * torch.ones_like(ref)]
    kw = dict(method=method, max_iter=100, tol=1e-10, stop_mode='abs', **TIGHT.get(method, {}))
    _, cold_stats = solve(tanh_problem.f, tanh_problem.z0(), **kw)
    _, warm_stats = solve(tanh_problem.f, warm, **kw)
    assert (warm_stats.nstep <= cold_stats.nstep).all() and (
        warm_stats.nstep < cold_stats.nstep
    ).any()
    assert (warm_stats.first_abs < cold_stats.first_abs).all()


def test_expanding_map_is_flagged_and_lowest_image_returned():
    def f(z):
        return [2 * z[0] + 1]  # z_k = 2^k - 1, residual 2^k: grows

    z0 = [torch.zeros(2, 3, dtype=torch.float64)]
    z, stats = solve(f, z0, method='fixed_point', max_iter=15, tol=None, stop_mode='abs')
    assert stats.diverged.all()
    assert stats.lowest_step.tolist() == stats.out_step.tolist() == [1, 1]
    assert stats.nstep.tolist() == [15, 15]
    torch.testing.assert_close(z[0], torch.ones(2, 3, dtype=torch.float64))
    z_last, stats_last = solve(
        f, z0, method='fixed_point', max_iter=15, tol=None, stop_mode='abs', return_lowest=False
    )
    torch.testing.assert_close(z_last[0], torch.full((2, 3), 2.0**15 - 1, dtype=torch.float64))
    assert stats_last.out_step.tolist() == [15, 15]
    assert stats_last.diverged.all()
    # The relative residual 2^k / (2^(k+1) - 1) decreases, so 'rel' picks the last image, but
    # the absolute residual still grew past the divergence factor.
    _, stats_rel = solve(f, z0, method='fixed_point', max_iter=15, tol=None, stop_mode='rel')
    assert stats_rel.out_step.tolist() == [15, 15] and stats_rel.diverged.all()


def test_short_growth_below_factor_is_not_divergence():
    def f(z):
        return [2 * z[0] + 1]

    _, stats = solve(f, [torch.zeros(1, 3)], method='fixed_point', max_iter=5, tol=None)
    assert not stats.diverged.any()  # 2^4 = 16 < divergence_factor (1e3)
    _, stats = solve(
        f, [torch.zeros(1, 3)], method='fixed_point', max_iter=5, tol=None, divergence_factor=10.0
    )
    assert stats.diverged.all()


def test_broyden_finds_root_of_non_contractive_map():
    def f(z):
        return [2 * z[0] + 1]  # fixed point -1, not reachable by iteration

    z, stats = solve(
        f,
        [torch.zeros(2, 3, dtype=torch.float64)],
        method='broyden',
        max_iter=20,
        tol=1e-12,
        stop_mode='abs',
    )
    torch.testing.assert_close(z[0], -torch.ones(2, 3, dtype=torch.float64), atol=1e-10, rtol=0)
    assert not stats.diverged.any()


@pytest.mark.parametrize('method', METHODS)
def test_nan_in_one_sample_is_never_returned(method, tanh_problem, make_tanh):
    def f(z):
        out = tanh_problem.f(z)[0].clone()
        if tanh_problem.calls >= 3:
            out[1] = float('nan')
        return [out]

    z, stats = solve(f, tanh_problem.z0(), method=method, max_iter=10, tol=None)
    assert torch.isfinite(z[0]).all()
    assert stats.diverged.tolist() == [False, True]
    assert not torch.isfinite(stats.abs_trace[1, 2:]).any()
    # Sample 1 stops at the third evaluation; the lowest-residual finite state is returned:
    # for the image methods f(f(z0)) (step 2), for Broyden the iterate x_1 = f(z0) (step 1).
    f1 = tanh_problem.f(tanh_problem.z0())
    if method == 'broyden':
        assert stats.nstep[1] == 2 and stats.out_step[1] == 1
        torch.testing.assert_close(z[0][1], f1[0][1], atol=1e-15, rtol=0)
    else:
        assert stats.nstep[1] == 3 and stats.out_step[1] == 2
        torch.testing.assert_close(z[0][1], tanh_problem.f(f1)[0][1], atol=1e-15, rtol=0)
    # Sample 0 is unaffected by its neighbour's blow-up.
    clean = make_tanh()
    z_clean, _ = solve(clean.f, clean.z0(), method=method, max_iter=10, tol=None)
    torch.testing.assert_close(z[0][0], z_clean[0][0], atol=1e-14, rtol=0)


@pytest.mark.parametrize('method', ['fixed_point', 'anderson'])
@pytest.mark.parametrize('tol', [None, 1e-12])
def test_nothing_after_a_non_finite_residual_is_returned(method, tol):
    """f recovers after a NaN (e.g. a layer that sanitises its input): the sample still stops at
    the NaN, so the returned state and its step refer to the same, earlier evaluation."""
    calls = [0]

    def f(z):
        calls[0] += 1
        if calls[0] == 3:
            return [z[0] * float('nan')]
        return [0.5 * z[0].nan_to_num(0.0) + 1.0]  # later residuals fall below the early ones

    for return_lowest in (True, False):
        calls[0] = 0
        z, stats = solve(
            f, [torch.zeros(1, 4)], method=method, max_iter=8, tol=tol, return_lowest=return_lowest
        )
        assert stats.nstep.tolist() == [3] and stats.out_step.tolist() == [2]
        assert stats.diverged.all()
        torch.testing.assert_close(z[0], torch.full((1, 4), 1.5))  # f(f(z0)), the 2nd image
        if tol is None:
            assert stats.n_eval == 8  # without a tol the budget is still spent exactly


@pytest.mark.parametrize('method', METHODS)
def test_nan_from_first_evaluation_returns_z0(method):
    def f(z):
        return [torch.full_like(z[0], float('nan'))]

    z0 = [torch.randn(2, 4)]
    z, stats = solve(f, z0, method=method, max_iter=5, tol=1e-3)
    torch.testing.assert_close(z[0], z0[0])
    assert stats.diverged.all()
    assert stats.out_step.tolist() == [0, 0]
    assert stats.n_eval == 1  # every sample stopped: nothing left to iterate
    assert torch.isinf(stats.abs_lowest).all()


def test_exact_start_is_not_flagged():
    def f(z):
        return [0.5 * z[0]]

    z, stats = solve(f, [torch.zeros(2, 3)], method='broyden', max_iter=4, tol=None)
    assert not stats.diverged.any()
    assert (z[0] == 0).all()
    assert stats.abs_trace.abs().max() == 0


def test_single_tensor_state(tanh_problem):
    def f(z):
        return torch.tanh(z @ tanh_problem.W.T + tanh_problem.x)

    z, stats = solve(
        f,
        torch.zeros(2, 6, dtype=torch.float64),
        method='broyden',
        max_iter=80,
        tol=1e-11,
        stop_mode='abs',
    )
    assert isinstance(z, torch.Tensor)
    torch.testing.assert_close(z, tanh_problem.reference(), atol=1e-10, rtol=0)
    assert isinstance(stats, SolverStats)


def test_residual_definitions(linear_multiscale):
    _, stats = solve(
        linear_multiscale.f, linear_multiscale.z0(), method='fixed_point', max_iter=3, tol=None
    )
    z1 = linear_multiscale.f(linear_multiscale.z0())
    z2 = linear_multiscale.f(z1)
    flat = [torch.cat([t.reshape(2, -1) for t in s], dim=1) for s in (z1, z2)]
    abs1 = (flat[1] - flat[0]).norm(dim=1)
    torch.testing.assert_close(stats.abs_trace[:, 1], abs1)
    torch.testing.assert_close(stats.rel_trace[:, 1], abs1 / (flat[1].norm(dim=1) + 1e-9))
    torch.testing.assert_close(stats.rel_lowest, stats.rel_trace.min(dim=1).values)
    # 'rms' is the absolute residual over sqrt(D) (MDEQ's eps = 1e-5 sqrt(numel) is tol=1e-5)
    d = flat[0].shape[1]
    _, rms = solve(
        linear_multiscale.f,
        linear_multiscale.z0(),
        method='fixed_point',
        max_iter=200,
        tol=1e-9,
        stop_mode='rms',
    )
    _, absolute = solve(
        linear_multiscale.f,
        linear_multiscale.z0(),
        method='fixed_point',
        max_iter=200,
        tol=1e-9 * d**0.5,
        stop_mode='abs',
    )
    assert torch.equal(rms.nstep, absolute.nstep)


def test_residual_norms_over_scales():
    gen = torch.Generator().manual_seed(1)
    shapes = [(2, 4, 4), (3, 2, 2), (5, 1, 1)]
    fx = [torch.randn(3, *s, generator=gen, dtype=torch.float64) for s in shapes]
    x = [torch.randn(3, *s, generator=gen, dtype=torch.float64) for s in shapes]
    layout = StateLayout(x)
    flat = torch.cat([a.reshape(3, -1) for a in fx], 1)
    want = flat - torch.cat([a.reshape(3, -1) for a in x], 1)
    for x_arg in (x, layout.pack(x)):
        res, fn = residual_norms(fx, x_arg, layout, torch.float64)
        torch.testing.assert_close(res, want.norm(dim=1), rtol=1e-14, atol=0)
        torch.testing.assert_close(fn, flat.norm(dim=1), rtol=1e-14, atol=0)


@pytest.mark.parametrize(
    'kwargs',
    [dict(memory=2), dict(memory=None), dict(line_search=True), dict(line_search=True, memory=3)],
)
def test_broyden_options_converge(kwargs, tanh_problem):
    z, stats = solve(
        tanh_problem.f,
        tanh_problem.z0(),
        method='broyden',
        max_iter=60,
        tol=1e-10,
        stop_mode='abs',
        **kwargs,
    )
    torch.testing.assert_close(z[0], tanh_problem.reference(), atol=1e-9, rtol=0)
    assert tanh_problem.calls == stats.n_eval


@pytest.mark.parametrize('memory', [None, 1, 3])
@pytest.mark.parametrize('tol', [None, 1e-6])
def test_broyden_without_autograd_matches_recorded_loop(memory, tol):
    """Without autograd the update storage is written in place; with it out of place: the same
    arithmetic."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(2, 4, 4), (3, 2, 2)]
    dims = [int(torch.Size(s).numel()) for s in shapes]
    mats = [0.6 * torch.randn(d, d, generator=gen, dtype=torch.float64) / d**0.5 for d in dims]
    inj = [torch.randn(3, *s, generator=gen, dtype=torch.float64) for s in shapes]

    def f(z):
        return [
            torch.tanh((t.reshape(3, -1) @ a).reshape(t.shape) + c) for t, a, c in zip(z, mats, inj)
        ]

    z0 = [torch.zeros(3, *s, dtype=torch.float64) for s in shapes]
    kw = dict(method='broyden', max_iter=12, tol=tol, stop_mode='abs', memory=memory)
    with torch.no_grad():
        z_fast, st_fast = solve(f, z0, **kw)
    z_rec, st_rec = solve(f, [t.clone().requires_grad_() for t in z0], **kw)
    assert z_rec[0].requires_grad and not z_fast[0].requires_grad
    for a, b in zip(z_fast, z_rec):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(st_fast.abs_trace, st_rec.abs_trace, rtol=1e-10, atol=1e-14)
    assert torch.equal(st_fast.nstep, st_rec.nstep)
    assert st_fast.n_eval == st_rec.n_eval


def test_broyden_line_search_halves_a_rejected_step():
    # g(z) = -3 tanh(z) - z from z0 = 2: the full first step z1 = f(z0) increases ||g||, so the
    # Armijo search evaluates the half step z0 + 0.5 g(z0) and accepts it as step 1.
    def f(z):
        return [-3 * torch.tanh(z[0])]

    z0 = [torch.full((2, 3), 2.0, dtype=torch.float64)]
    g0 = -3 * torch.tanh(torch.tensor(2.0, dtype=torch.float64)) - 2
    g1 = -3 * torch.tanh(2 + g0) - (2 + g0)
    half = 2 + 0.5 * g0
    g_half = -3 * torch.tanh(half) - half
    assert abs(g1) > abs(g0)  # the full step is rejected
    z, stats = solve(
        f,
        z0,
        method='broyden',
        max_iter=1,
        tol=None,
        stop_mode='abs',
        line_search=True,
        return_lowest=False,
    )
    expected = torch.stack([g0, g_half]).abs() * 3**0.5  # ||g|| over 3 equal entries
    torch.testing.assert_close(stats.abs_trace, expected.expand(2, 2))
    assert stats.n_eval == 3  # g(z0), the rejected full step, the accepted half step
    torch.testing.assert_close(z[0], torch.full((2, 3), float(half), dtype=torch.float64))
    z, stats = solve(
        f, z0, method='broyden', max_iter=30, tol=1e-12, stop_mode='abs', line_search=True
    )
    assert z[0].abs().max() < 1e-12


@pytest.mark.parametrize('kwargs', [dict(m=2), dict(beta=0.7), dict(lam=1e-8)])
def test_anderson_options_converge(kwargs, tanh_problem):
    z, _ = solve(
        tanh_problem.f,
        tanh_problem.z0(),
        method='anderson',
        max_iter=100,
        tol=1e-11,
        stop_mode='abs',
        **kwargs,
    )
    torch.testing.assert_close(z[0], tanh_problem.reference(), atol=1e-10, rtol=0)


def test_anderson_mixing_matches_a_direct_solution(tanh_problem):
    """Step 3 of Anderson (m >= 2, beta = 1) is alpha_0 F_0 + alpha_1 F_1 with the alpha that
    minimises ||alpha_0 G_0 + alpha_1 G_1||^2 + lam ||alpha||^2 subject to a sum of one,
    computed here in closed form for two residuals."""
    lam = 1e-3
    f = tanh_problem.f
    x0 = tanh_problem.z0()[0]
    f0 = f([x0])[0]
    x1 = f0
    f1 = f([x1])[0]
    g0, g1 = f0 - x0, f1 - x1
    # minimise (a g0 + (1-a) g1)^2 + lam (a^2 + (1-a)^2) over a
    d = g0 - g1
    a = -((g1 * d).sum(1) - lam) / ((d * d).sum(1) + 2 * lam)
    x2 = a[:, None] * f0 + (1 - a[:, None]) * f1
    out, _ = solve(f, [x0], method='anderson', max_iter=3, tol=None, return_lowest=False, lam=lam)
    torch.testing.assert_close(out[0], f([x2])[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize('weights', ['torch', 'numpy'])
def test_anderson_weights_and_singular_fallback(weights):
    """Both implementations of the mixing weights (torch on accelerators and under autograd,
    numpy on the CPU) solve ``(G G^T + lam I) w = 1`` and normalise; a singular or non-finite
    sample falls back to the latest image alone, the others are unaffected."""
    gen = torch.Generator().manual_seed(3)
    g = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
    g[1, 1] = g[1, 0]  # rank-deficient: singular without regularisation
    g[2, 0, 0] = float('nan')
    gram = g @ g.transpose(1, 2)
    for lam in (0.0, 1e-4):
        if weights == 'torch':
            alpha = _weights(gram, lam, 2)
        else:
            alpha = torch.from_numpy(_weights_host(gram.numpy(), lam, 2))
        for b in (0, 3):
            eye = torch.eye(3, dtype=gram.dtype)
            w = torch.linalg.solve(gram[b] + lam * eye, torch.ones(3, dtype=gram.dtype))
            torch.testing.assert_close(alpha[b], w / w.sum(), rtol=1e-12, atol=1e-14)
        fallback = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        torch.testing.assert_close(alpha[2], fallback, rtol=0, atol=0)
        if lam == 0.0:
            torch.testing.assert_close(alpha[1], fallback, rtol=0, atol=0)
        else:
            assert torch.isfinite(alpha[1]).all() and abs(float(alpha[1].sum()) - 1) < 1e-12


def test_float32_state_statistics_dtype(make_tanh):
    p = make_tanh()
    p.W, p.x = p.W.float(), p.x.float()
    z, stats = solve(p.f, [torch.zeros(2, 6)], method='broyden', max_iter=30, tol=1e-5)
    assert z[0].dtype == torch.float32
    assert stats.abs_trace.dtype == torch.float32 and stats.nstep.dtype == torch.long
    assert (stats.final_rel < 1e-5).all()


@pytest.mark.parametrize(
    'kwargs, exc, match',
    [
        (dict(method='newton'), ValueError, 'Unknown solver method'),
        (dict(stop_mode='max'), ValueError, 'stop_mode must be one of'),
        (dict(max_iter=0), ValueError, 'max_iter must be an int >= 1'),
        (dict(max_iter=2.5), TypeError, 'max_iter must be an int'),
        (dict(tol=-1e-3), ValueError, 'tol must be >= 0'),
        (dict(tol='1e-3'), TypeError, 'tol must be a number'),
        (dict(method='broyden', m=3), TypeError, r"Unexpected solver option\(s\) \['m'\]"),
        (dict(method='anderson', beta=1.5), ValueError, 'beta must be in'),
        (dict(method='broyden', memory=0), ValueError, 'memory must be an int >= 1'),
        (dict(divergence_factor=0.5), ValueError, 'divergence_factor must be > 1'),
    ],
)
def test_bad_arguments(kwargs, exc, match, tanh_problem):
    args = dict(method='fixed_point', max_iter=3, tol=1e-3)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        solve(tanh_problem.f, tanh_problem.z0(), **args)


def test_bad_states_and_outputs(tanh_problem):
    with pytest.raises(ValueError, match='empty list'):
        solve(tanh_problem.f, [], method='fixed_point')
    with pytest.raises(TypeError, match='must be a Tensor or a list/tuple'):
        solve(tanh_problem.f, 3.0, method='fixed_point')
    with pytest.raises(TypeError, match='floating-point'):
        solve(tanh_problem.f, [torch.zeros(2, 6, dtype=torch.long)], method='fixed_point')
    with pytest.raises(ValueError, match='batch size 3'):
        solve(lambda z: z, [torch.zeros(2, 4), torch.zeros(3, 4)], method='fixed_point')
    with pytest.raises(ValueError, match='NaN or inf'):
        solve(tanh_problem.f, [torch.full((2, 6), float('nan'))], method='fixed_point')
    with pytest.raises(ValueError, match='returned 2 tensors but the state has 1'):
        solve(lambda z: [z[0], z[0]], [torch.zeros(2, 4)], method='broyden')
    with pytest.raises(ValueError, match=r'has shape \(2, 5\) but the state has \(2, 4\)'):
        solve(lambda z: [torch.zeros(2, 5)], [torch.zeros(2, 4)], method='anderson')
    with pytest.raises(TypeError, match=r'f\(z\) must return a list/tuple'):
        solve(lambda z: z[0], [torch.zeros(2, 4)], method='fixed_point')
    with pytest.raises(TypeError, match='f must return a single tensor'):
        solve(lambda z: [z], torch.zeros(2, 4), method='fixed_point')


def test_tolerance_compares_in_the_statistics_dtype():
    """The per-sample decisions use the statistics dtype: a float32 residual equal to
    float32(tol) does not stop the solve even where float32(tol) < tol, as the comparison of a
    float32 tensor with ``tol`` (rounded to float32) decides."""
    tol = 1e-5
    r32 = float(torch.tensor(tol, dtype=torch.float32))
    assert r32 < tol and not bool(torch.tensor([r32]) < tol)
    x = [torch.zeros(1, 4)]
    tracker = Tracker(x, 5, tol, 'abs', True, 1e3, 'image', False)
    one = torch.ones(1)
    tracker.record(0, x, x, (torch.tensor([r32]), one))
    assert not tracker.all_stopped()
    tracker.record(1, x, x, (torch.tensor([r32 * 0.999]), one))
    assert tracker.all_stopped()
    _, _, stats = tracker.finish('fixed_point')
    assert stats.nstep.tolist() == [2] and stats.lowest_step.tolist() == [2]
