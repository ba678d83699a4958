"""Broyden's compact representation against the factored form it replaces, and the solvers'
reusable history and iterate buffers.

``factored_broyden`` below keeps the updates ``u_i`` and ``v_i`` as explicit vectors and applies
``B = -I + sum_i u_i v_i^T`` as a dense ``D x D`` matrix, with the equations of the module
docstring of ``mmvideoeq.deq.solvers.broyden``: ``dx = s d_k``, ``v^T = dx^T B_k``,
``u = (dx - B_k dg) / (v^T dg)`` (skipped when the denominator is zero or not finite), slot
``(k - 1) mod memory`` overwritten when the memory is full, ``d_{k+1} = -B_{k+1} g_{k+1}``, and
per-sample Armijo halving of the step. It runs one sample at a time.
"""

from __future__ import annotations

import pytest
import torch

from mmvideoeq.deq import solve
from mmvideoeq.deq.solvers import common, solve_with_preimage


def factored_broyden(f, x0, max_iter, memory, line_search=False, halvings=3, c1=1e-4):
    """Last iterate and residual trace of one sample ``x0`` ``(D,)``."""
    dim = x0.numel()
    cap = max(1, max_iter - 1 if memory is None else min(memory, max_iter - 1))
    us, vs = [None] * cap, [None] * cap

    def inv_jac():
        b = -torch.eye(dim, dtype=x0.dtype)
        for u, v in zip(us, vs):
            if u is not None:
                b = b + torch.outer(u, v)
        return b

    x, g = x0, f(x0) - x0
    trace = [float(g.norm())]
    d, n_upd = g, 0
    for step in range(1, max_iter + 1):
        s = 1.0
        x_new = x + d
        g_new = f(x_new) - x_new
        if line_search:
            for _ in range(halvings):
                if float(g_new.norm()) ** 2 <= (1 - c1 * s) * float(g.norm()) ** 2:
                    break
                s *= 0.5
                x_new = x + s * d
                g_new = f(x_new) - x_new
        trace.append(float(g_new.norm()))
        if step == max_iter:
            return x_new, trace
        b = inv_jac()
        dx, dg = s * d, g_new - g
        vt = dx @ b
        denom = vt @ dg
        ok = bool(torch.isfinite(denom)) and float(denom) != 0.0
        u = (dx - b @ dg) / denom if ok else torch.zeros_like(dx)
        us[n_upd % cap], vs[n_upd % cap] = u, vt
        n_upd += 1
        d = -(inv_jac() @ g_new)
        x, g = x_new, g_new
    raise AssertionError('unreachable')


def _problem(batch=3, dim=12, scale=1.6, seed=0):
    """A non-contractive tanh map (Broyden takes many steps; the memory wraps around)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    w = w / torch.linalg.matrix_norm(w, 2) * scale
    c = torch.randn(batch, dim, generator=gen, dtype=torch.float64)

    def f_one(b):
        return lambda v: torch.tanh(w @ v + c[b])

    def f(z):
        return [torch.tanh(z[0] @ w.T + c)]

    return f, f_one, [torch.zeros(batch, dim, dtype=torch.float64)]


@pytest.mark.parametrize(
    'memory, line_search', [(None, False), (3, False), (1, False), (27, True), (2, True)]
)
def test_compact_broyden_matches_factored_form(memory, line_search):
    """Every sample's last iterate and residual trace equal the factored form's, with and
    without the wrap-around of a memory smaller than the budget, and with line search (on a
    map where it halves steps)."""
    max_iter = 14
    f, f_one, z0 = _problem(scale=4.0 if line_search else 1.6)
    kw = dict(method='broyden', max_iter=max_iter, tol=None, return_lowest=False)
    z, stats = solve(f, z0, memory=memory, line_search=line_search, **kw)
    assert stats.nstep.tolist() == [max_iter] * 3
    assert (stats.n_eval > max_iter + 5) == line_search  # halvings took place
    for b in range(3):
        want, trace = factored_broyden(
            f_one(b), z0[0][b], max_iter, memory, line_search=line_search
        )
        torch.testing.assert_close(z[0][b], want, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(
            stats.abs_trace[b], torch.tensor(trace, dtype=torch.float64), rtol=1e-8, atol=1e-14
        )
    # the budget is long enough for Broyden to do real work: not a fixed-point iteration
    plain, _ = solve(f, z0, method='fixed_point', max_iter=max_iter, tol=None)
    assert (z[0] - plain[0]).abs().max() > 1e-3


def test_nested_solves_get_their_own_history():
    """A solve inside f (same batch, size and dtype) does not share the outer solve's buffer."""
    f, _, z0 = _problem(seed=1)
    g, _, _ = _problem(seed=2)
    kw = dict(method='broyden', max_iter=10, tol=None, return_lowest=False)
    want, _ = solve(f, z0, **kw)
    inner = []

    def f_nested(z):
        inner.append(solve(g, z0, **kw)[0][0])
        return f(z)

    got, _ = solve(f_nested, z0, **kw)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
    torch.testing.assert_close(inner[-1], solve(g, z0, **kw)[0][0], rtol=0, atol=0)


def test_history_buffers_are_pooled_on_cpu():
    f, _, z0 = _problem(seed=3)
    common.release_workspace()
    assert not common._pool
    z_a, _ = solve(f, z0, method='anderson', max_iter=8, tol=None)
    (buf,) = common._pool.values()
    z_b, _ = solve(f, z0, method='broyden', max_iter=6, tol=None)
    assert next(iter(common._pool.values())) is buf  # 6 rows fit into Anderson's 2 m = 12
    z_c, _ = solve(f, z0, method='broyden', max_iter=20, tol=None)
    assert next(iter(common._pool.values())).shape[1] == 21  # replaced by a larger one
    # returned states never alias the pooled buffer
    for z in (z_a, z_b, z_c):
        for pooled in common._pool.values():
            assert z[0].untyped_storage().data_ptr() != pooled.untyped_storage().data_ptr()
    common.release_workspace()
    assert not common._pool


def _switching_map(batch, dim=6, calls_contractive=3):
    """``0.5 z + c`` for the first ``calls_contractive`` evaluations, then ``z + 10 n c`` at the
    ``n``-th: the residual falls for a few steps and then grows whatever the solver does, so the
    lowest-residual state is an early one."""
    gen = torch.Generator().manual_seed(7)
    c = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    calls = [0]

    def f(z):
        calls[0] += 1
        if calls[0] <= calls_contractive:
            return [0.5 * z[0] + c]
        return [z[0] + 10.0 * calls[0] * c]

    return f, calls, c


@pytest.mark.parametrize('batch', [1, 2])
def test_reused_iterate_buffers_keep_the_lowest_early_iterate(batch):
    """Broyden writes its iterates into a few reused buffers: the lowest-residual iterate, an
    early one held by reference while many later steps run, comes back unchanged."""
    f, calls, _ = _switching_map(batch)
    z0 = [torch.zeros(batch, 6, dtype=torch.float64)]
    with torch.no_grad():
        z, stats = solve(f, z0, method='broyden', max_iter=12, tol=None, stop_mode='abs')
        lowest = stats.lowest_step.tolist()
        assert stats.nstep.tolist() == [12] * batch and all(1 <= j <= 3 for j in lowest)
        for b, j in enumerate(lowest):  # the same solve stopped at step j ends at x_j
            calls[0] = 0
            want, _ = solve(f, z0, method='broyden', max_iter=j, tol=None, return_lowest=False)
            torch.testing.assert_close(z[0][b], want[0][b], rtol=0, atol=0)


@pytest.mark.parametrize('batch', [1, 2])
def test_reused_iterate_buffers_keep_anderson_preimage(batch):
    """Anderson's mixed iterates share reused buffers too: the pre-image of the returned state
    (kept for the gradients) is still the iterate whose image was returned."""
    f, _, c = _switching_map(batch)
    z0 = [torch.zeros(batch, 6, dtype=torch.float64)]
    with torch.no_grad():
        z, pre, stats = solve_with_preimage(
            f, z0, method='anderson', max_iter=12, tol=None, stop_mode='abs', keep_preimage=True
        )
    # the lowest state is the image f(x_2) of the third (last contractive) evaluation, and x_2
    # is a mixed iterate (a reused buffer) that later steps must not have overwritten
    assert stats.lowest_step.tolist() == [3] * batch and stats.nstep.tolist() == [12] * batch
    torch.testing.assert_close(z[0], 0.5 * pre[0] + c, rtol=0, atol=0)


@pytest.mark.parametrize('m', [1, 3])
@pytest.mark.parametrize('returns_input', [False, True])
def test_anderson_iterates_in_residual_rows_match_separate_buffers(m, returns_input):
    """Without a kept pre-image Anderson forms each iterate in the residual row it turns into;
    with one it uses separate buffers: the same arithmetic, also for an f that sometimes
    returns its input unchanged (which must be recorded before the row is overwritten)."""
    f_tanh, _, z0 = _problem(seed=4)
    calls = [0]

    def f(z):
        calls[0] += 1
        return list(z) if returns_input and calls[0] % 3 == 0 else f_tanh(z)

    kw = dict(method='anderson', max_iter=10, tol=None, m=m)  # returns the lowest state
    with torch.no_grad():
        rows_z, _, rows_stats = solve_with_preimage(f, z0, **kw)
        calls[0] = 0
        sep_z, _, sep_stats = solve_with_preimage(f, z0, keep_preimage=True, **kw)
    if returns_input:  # an unchanged input has residual 0: the lowest, returned state
        assert (sep_stats.lowest_step % 3 == 0).all() and sep_z[0].abs().min() > 0
    assert torch.equal(rows_z[0], sep_z[0])
    assert torch.equal(rows_stats.abs_trace, sep_stats.abs_trace)
    assert torch.equal(rows_stats.rel_trace, sep_stats.rel_trace)
