"""Gradient tests: implicit (IFT) vs. autograd through unrolled iterations, gradcheck, phantom
gradients, backprop through the solvers, and the Jacobian regulariser."""

from __future__ import annotations

import pytest
import torch

from mmvideoeq.deq import DEQSolver, implicit_layer, jac_frobenius_estimate, phantom_layer


def _params(problem):
    return problem.W.clone().requires_grad_(), problem.x.clone().requires_grad_()


def _unrolled_reference_grads(problem, weights, n_iter=200):
    """d loss / d (W, x) by autograd through ``n_iter`` plain iterations (contraction 0.5)."""
    w, x = [t.detach().clone().requires_grad_() for t in _params(problem)]
    z = torch.zeros_like(x)
    for _ in range(n_iter):
        z = torch.tanh(z @ w.T + x)
    (z * weights).sum().backward()
    return w.grad, x.grad


def _deq_grads(deq, problem, weights):
    w, x = _params(problem)
    z, stats, aux = deq(
        lambda s: [torch.tanh(s[0] @ w.T + x)], [torch.zeros_like(x)], training=True
    )
    (z[0] * weights).sum().backward()
    return w.grad, x.grad, stats, aux


@pytest.mark.parametrize('solver', ['broyden', 'anderson', 'fixed_point'])
def test_implicit_gradient_equals_unrolled_autograd(solver, tanh_problem):
    weights = torch.linspace(-1, 2, 6, dtype=torch.float64).expand(2, 6)
    ref_w, ref_x = _unrolled_reference_grads(tanh_problem, weights)
    deq = DEQSolver(
        solver=solver, train_max_iter=60, tol=None, grad='implicit', backward_max_iter=60
    )
    gw, gx, _, aux = _deq_grads(deq, tanh_problem, weights)
    torch.testing.assert_close(gw, ref_w, atol=1e-12, rtol=0)
    torch.testing.assert_close(gx, ref_x, atol=1e-12, rtol=0)
    back = aux['backward_stats']
    assert back.n_eval == (61 if solver == 'broyden' else 60) and back.method == solver
    assert (back.final_abs < 1e-12).all()


def test_implicit_layer_passes_gradcheck(make_tanh):
    problem = make_tanh(batch=2, dim=3)
    deq = DEQSolver(solver='broyden', train_max_iter=30, tol=None, backward_max_iter=30)

    def layer(w, x):
        z, _, _ = deq(lambda s: [torch.tanh(s[0] @ w.T + x)], [torch.zeros_like(x)], training=True)
        return z[0]

    w, x = _params(problem)
    assert torch.autograd.gradcheck(layer, (w, x), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_implicit_gradient_on_multiscale_state(linear_multiscale):
    # Linear map: z* = (I - A)^{-1} c, so d(sum(u * z*))/dc = (I - A)^{-T} u exactly.
    p = linear_multiscale
    c = p.c.clone().requires_grad_()
    u = torch.randn(
        2, p.A.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )

    def f(z):
        v = torch.cat([t.reshape(2, -1) for t in z], dim=1) @ p.A.T + c
        parts = torch.split(v, p.sizes, dim=1)
        return [q.reshape(2, *s) for q, s in zip(parts, p.shapes)]

    tight = dict(lam=1e-12)  # the reference's lam = 1e-4 stops short of 1e-10 accuracy
    deq = DEQSolver(
        solver='anderson',
        train_max_iter=50,
        tol=None,
        backward_max_iter=50,
        solver_kwargs=tight,
        backward_solver_kwargs=tight,
    )
    z, _, _ = deq(f, p.z0(), training=True)
    flat = torch.cat([t.reshape(2, -1) for t in z], dim=1)
    (flat * u).sum().backward()
    eye = torch.eye(p.A.shape[0], dtype=torch.float64)
    expected = torch.linalg.solve((eye - p.A).T, u.T).T
    torch.testing.assert_close(c.grad, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize('solver', ['broyden', 'anderson'])
def test_backprop_through_converged_solver_matches_implicit(solver, tanh_problem):
    weights = torch.linspace(-1, 2, 6, dtype=torch.float64).expand(2, 6)
    ref_w, ref_x = _unrolled_reference_grads(tanh_problem, weights)
    kwargs = dict(lam=1e-12) if solver == 'anderson' else {}
    deq = DEQSolver(solver=solver, train_max_iter=40, tol=None, grad='unroll', solver_kwargs=kwargs)
    gw, gx, _, aux = _deq_grads(deq, tanh_problem, weights)
    torch.testing.assert_close(gw, ref_w, atol=1e-10, rtol=0)
    torch.testing.assert_close(gx, ref_x, atol=1e-10, rtol=0)
    assert 'backward_stats' not in aux


def test_phantom_gradient_approaches_implicit_with_more_steps(tanh_problem):
    weights = torch.linspace(-1, 2, 6, dtype=torch.float64).expand(2, 6)
    ref = torch.cat([g.flatten() for g in _unrolled_reference_grads(tanh_problem, weights)])
    errors = []
    for steps in (1, 3, 10):
        deq = DEQSolver(
            train_max_iter=40, tol=None, grad='phantom', phantom_steps=steps, phantom_tau=0.8
        )
        gw, gx, _, _ = _deq_grads(deq, tanh_problem, weights)
        g = torch.cat([gw.flatten(), gx.flatten()])
        errors.append(float((g - ref).norm() / ref.norm()))
        assert torch.nn.functional.cosine_similarity(g, ref, dim=0) > 0.95
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-4  # (1 - tau (1 - 0.5))^10 = 0.6^10 ~ 6e-3 bound, far inside


def test_phantom_layer_value_and_damping(tanh_problem):
    z_star = [tanh_problem.reference()]
    start = [z_star[0] + 0.1]
    out, leaf, first = phantom_layer(tanh_problem.f, start, steps=2, tau=0.5)
    step1 = 0.5 * tanh_problem.f(start)[0] + 0.5 * start[0]
    step2 = 0.5 * tanh_problem.f([step1])[0] + 0.5 * step1
    torch.testing.assert_close(out[0], step2)
    torch.testing.assert_close(first[0], tanh_problem.f(start)[0])
    assert not leaf[0].requires_grad


def test_implicit_layer_forward_value_is_f_of_preimage(tanh_problem):
    z = [tanh_problem.reference() + 1e-3]
    out, leaf, fz = implicit_layer(tanh_problem.f, z, method='fixed_point', max_iter=5)
    torch.testing.assert_close(out[0], tanh_problem.f(z)[0], atol=0, rtol=0)
    assert leaf[0].requires_grad and fz[0].requires_grad


def test_jacobian_estimate_of_linear_map():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, generator=g, dtype=torch.float64).requires_grad_()
    z = [torch.randn(2, 3, generator=g, dtype=torch.float64).requires_grad_()]
    fz = [z[0] @ a.T + 1.0]
    torch.manual_seed(0)
    est = jac_frobenius_estimate(fz, z, n_vecs=4000)
    expected = (a.detach() ** 2).sum() / 3  # E||eps^T A||^2 / D = ||A||_F^2 / D
    assert abs(float(est.detach()) / float(expected) - 1) < 0.05
    est.backward()  # differentiable w.r.t. the layer weights
    torch.testing.assert_close(a.grad, 2 * a.detach() / 3, atol=0.1, rtol=0.1)


def test_jacobian_estimate_rejects_bad_input():
    z = [torch.zeros(2, 3)]
    with pytest.raises(ValueError, match='needs f\\(z\\) computed with autograd'):
        jac_frobenius_estimate([z[0] * 2], z)
    with pytest.raises(ValueError, match='n_vecs must be >= 1'):
        jac_frobenius_estimate([z[0]], z, n_vecs=0)
