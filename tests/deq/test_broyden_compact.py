"""Broyden's compact representation against the factored form it replaces, and the solvers'
reusable history buffers.

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
from mmvideoeq.deq.solvers import common


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
    assert next(iter(common._pool.values())).shape[1] == 20  # replaced by a larger one
    # returned states never alias the pooled buffer
    for z in (z_a, z_b, z_c):
        for pooled in common._pool.values():
            assert z[0].untyped_storage().data_ptr() != pooled.untyped_storage().data_ptr()
    common.release_workspace()
    assert not common._pool
