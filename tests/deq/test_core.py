"""Tests of ``DEQSolver``: evaluation budgets and overrides, training modes (implicit, UR, SUR),
Jacobian regularisation and argument validation."""

from __future__ import annotations

import pytest
import torch

from mmvideoeq.deq import Budget, DEQSolver


def test_eval_uses_test_budget_and_call_overrides(tanh_problem):
    deq = DEQSolver(solver='broyden', test_max_iter=7, tol=1e-2, train_max_iter=3)
    z, stats, aux = deq(tanh_problem.f, tanh_problem.z0(), training=False)
    assert aux == {} and not z[0].requires_grad
    assert stats.n_eval < 8 and (stats.final_rel < 1e-2).all()  # stopped by tol
    tanh_problem.calls = 0
    _, stats, _ = deq(tanh_problem.f, tanh_problem.z0(), training=False, budget=Budget(7))
    assert tanh_problem.calls == 8 == stats.n_eval  # tol=0: 7 Broyden steps + initial eval
    tanh_problem.calls = 0
    _, stats, _ = deq(tanh_problem.f, tanh_problem.z0(), training=False, budget=Budget(2))
    assert tanh_problem.calls == 3 and stats.nstep.tolist() == [2, 2]
    # The override applies to that call only.
    tanh_problem.calls = 0
    deq(tanh_problem.f, tanh_problem.z0(), training=False, budget=Budget(7))
    assert tanh_problem.calls == 8
    tanh_problem.calls = 0
    deq(tanh_problem.f, tanh_problem.z0(), training=False)  # the configured solve again
    assert tanh_problem.calls < 8


def test_return_lowest_override_is_per_call():
    """A streaming call (return_lowest=False) carries the budget's last state even where an
    earlier one had a lower residual; the configured full solve returns the lowest."""
    f = lambda z: [-3 * torch.tanh(z[0])]  # noqa: E731 - from 0.1 the first step overshoots
    z0 = [torch.full((1, 3), 0.1, dtype=torch.float64)]
    deq = DEQSolver(solver='broyden', test_max_iter=1, tol=None, stop_mode='abs')
    full, st_full, _ = deq(f, z0, training=False)
    last, st_last, _ = deq(f, z0, training=False, budget=Budget(1, 0.0, 'last'))
    assert st_full.out_step.tolist() == [0] and st_last.out_step.tolist() == [1]
    torch.testing.assert_close(full[0], z0[0], rtol=0, atol=0)
    torch.testing.assert_close(last[0], f(z0)[0], rtol=0, atol=0)


def test_eval_runs_without_graph_even_with_grad_enabled(tanh_problem):
    w = tanh_problem.W.clone().requires_grad_()
    deq = DEQSolver(solver='anderson', test_max_iter=5)
    z, _, _ = deq(
        lambda s: [torch.tanh(s[0] @ w.T + tanh_problem.x)], tanh_problem.z0(), training=False
    )
    assert z[0].grad_fn is None


def test_implicit_training_matches_eval_value_and_costs_one_extra_eval(tanh_problem):
    deq = DEQSolver(solver='broyden', train_max_iter=6, test_max_iter=6, tol=None)
    w = tanh_problem.W.clone().requires_grad_()

    def f(s):
        tanh_problem.calls += 1
        return [torch.tanh(s[0] @ w.T + tanh_problem.x)]

    z_train, stats, _ = deq(f, tanh_problem.z0(), training=True)
    # 6 Broyden steps (7 evaluations) + the re-evaluation with autograd at the fixed point
    assert tanh_problem.calls == 7 + 1 and stats.n_eval == 7
    assert z_train[0].requires_grad
    # Evaluation hands the iterate z_k to the head; training re-evaluates f(z_k) with autograd
    # (as MDEQ: ``new_z1 = func(z1.requires_grad_())``).
    z_eval, _, _ = deq(f, tanh_problem.z0(), training=False)
    with torch.no_grad():
        torch.testing.assert_close(z_train[0].detach(), f(z_eval)[0], atol=0, rtol=0)


def test_unroll_mode_is_n_weight_tied_iterations_with_autograd(tanh_problem):
    n = 4
    deq = DEQSolver(solver='broyden', train_mode='unroll', unroll_iters=n)
    w, x = tanh_problem.W.clone().requires_grad_(), tanh_problem.x

    def f(s):
        tanh_problem.calls += 1
        return [torch.tanh(s[0] @ w.T + x)]

    z, stats, aux = deq(f, tanh_problem.z0(), training=True)
    assert tanh_problem.calls == n and aux['unroll_iters'] == n
    assert stats.method == 'fixed_point' and stats.n_eval == n
    z[0].sum().backward()
    w_ref = tanh_problem.W.clone().requires_grad_()
    z_ref = torch.zeros_like(x)
    for _ in range(n):
        z_ref = torch.tanh(z_ref @ w_ref.T + x)
    torch.testing.assert_close(z[0], z_ref, atol=0, rtol=0)
    z_ref.sum().backward()
    torch.testing.assert_close(w.grad, w_ref.grad, atol=1e-15, rtol=0)


def test_unroll_mode_call_override_sets_iterations(tanh_problem):
    deq = DEQSolver(train_mode='unroll', unroll_iters=20)
    _, stats, aux = deq(tanh_problem.f, tanh_problem.z0(), training=True, budget=Budget(3))
    assert tanh_problem.calls == 3 and aux['unroll_iters'] == 3 and stats.n_eval == 3


def test_stochastic_unroll_draws_cover_range_and_are_seeded(tanh_problem):
    deq = DEQSolver(train_mode='stochastic_unroll', unroll_max=6, seed=123)
    draws = []
    for _ in range(120):
        tanh_problem.calls = 0
        _, stats, aux = deq(tanh_problem.f, tanh_problem.z0(), training=True)
        assert tanh_problem.calls == aux['unroll_iters'] == stats.n_eval
        draws.append(aux['unroll_iters'])
    assert set(draws) == set(range(1, 7))
    counts = torch.bincount(torch.tensor(draws), minlength=7)[1:]
    assert counts.min() >= 8  # ~20 expected per value for a uniform draw
    again = DEQSolver(train_mode='stochastic_unroll', unroll_max=6, seed=123)
    assert [again.draw_unroll_iters() for _ in range(120)] == draws
    other = DEQSolver(train_mode='stochastic_unroll', unroll_max=6, seed=124)
    assert [other.draw_unroll_iters() for _ in range(120)] != draws


def test_stochastic_unroll_eval_uses_solver_budget(tanh_problem):
    deq = DEQSolver(
        solver='fixed_point',
        train_mode='stochastic_unroll',
        unroll_max=20,
        test_max_iter=5,
        tol=None,
        seed=0,
    )
    _, stats, aux = deq(tanh_problem.f, tanh_problem.z0(), training=False)
    assert stats.n_eval == 5 and aux == {}


@pytest.mark.parametrize(
    'cfg',
    [
        dict(grad='implicit'),
        dict(grad='phantom'),
        dict(grad='unroll'),
        dict(train_mode='unroll'),
        dict(train_mode='stochastic_unroll', seed=0),
    ],
)
def test_jacobian_regulariser_in_training_only(cfg, tanh_problem):
    w = tanh_problem.W.clone().requires_grad_()

    def f(s):
        return [torch.tanh(s[0] @ w.T + tanh_problem.x)]

    deq = DEQSolver(train_max_iter=10, tol=None, jac_reg_weight=2.0, **cfg)
    torch.manual_seed(0)
    z, _, aux = deq(f, tanh_problem.z0(), training=True)
    loss = aux['jac_loss']
    assert loss.dim() == 0 and float(loss.detach()) > 0
    (z[0].sum() + loss).backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()
    _, _, aux_eval = deq(f, tanh_problem.z0(), training=False)
    assert 'jac_loss' not in aux_eval
    unweighted = DEQSolver(train_max_iter=10, tol=None, jac_reg_weight=1.0, **cfg)
    torch.manual_seed(0)
    _, _, aux1 = unweighted(f, tanh_problem.z0(), training=True)
    torch.testing.assert_close(loss, 2 * aux1['jac_loss'])


def test_training_without_grad_mode_builds_no_graph(tanh_problem):
    w = tanh_problem.W.clone().requires_grad_()
    deq = DEQSolver(train_max_iter=4, tol=None, jac_reg_weight=1.0)
    with torch.no_grad():
        z, stats, aux = deq(
            lambda s: [torch.tanh(s[0] @ w.T + tanh_problem.x)], tanh_problem.z0(), training=True
        )
    assert z[0].grad_fn is None and stats.n_eval == 5 and 'jac_loss' not in aux


def test_single_tensor_state_round_trip(tanh_problem):
    deq = DEQSolver(solver='broyden', test_max_iter=60, tol=1e-10, stop_mode='abs')
    z, _, _ = deq(
        lambda t: torch.tanh(t @ tanh_problem.W.T + tanh_problem.x),
        torch.zeros(2, 6, dtype=torch.float64),
        training=False,
    )
    assert isinstance(z, torch.Tensor)
    torch.testing.assert_close(z, tanh_problem.reference(), atol=1e-9, rtol=0)


def test_solver_kwargs_are_forwarded(tanh_problem):
    deq = DEQSolver(
        solver='broyden', test_max_iter=3, tol=None, solver_kwargs=dict(line_search=True)
    )
    f = lambda z: [-3 * torch.tanh(z[0])]  # noqa: E731 - first full step is rejected
    z0 = [torch.full((1, 2), 2.0, dtype=torch.float64)]
    _, with_ls, _ = deq(f, z0, training=False)
    _, without, _ = DEQSolver(solver='broyden', test_max_iter=3, tol=None)(f, z0, training=False)
    assert not torch.equal(with_ls.abs_trace[:, 1], without.abs_trace[:, 1])
    assert with_ls.n_eval > without.n_eval


@pytest.mark.parametrize(
    'kwargs, exc, match',
    [
        (dict(solver='newton'), ValueError, 'Unknown solver'),
        (dict(train_mode='sur'), ValueError, 'Unknown train_mode'),
        (dict(grad='ift'), ValueError, 'Unknown grad'),
        (dict(train_mode='unroll', grad='implicit'), ValueError, 'only applies to'),
        (dict(train_max_iter=0), ValueError, 'train_max_iter must be an int >= 1'),
        (dict(test_max_iter=1.5), TypeError, 'test_max_iter must be an int'),
        (dict(tol=-1.0), ValueError, 'tol must be >= 0'),
        (dict(phantom_tau=0.0), ValueError, 'phantom_tau must be in'),
        (dict(jac_reg_weight=-1.0), ValueError, 'jac_reg_weight must be >= 0'),
        (dict(unroll_max=0), ValueError, 'unroll_max must be an int >= 1'),
        (dict(backward_solver='lbfgs'), ValueError, 'Unknown backward_solver'),
        (dict(solver='anderson', solver_kwargs=dict(memory=3)), TypeError, 'Unexpected solver'),
        (dict(stop_mode='l2'), ValueError, 'stop_mode must be one of'),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DEQSolver(**kwargs)


def test_bad_call_arguments(tanh_problem):
    deq = DEQSolver()
    with pytest.raises(TypeError, match='training must be a bool'):
        deq(tanh_problem.f, tanh_problem.z0(), training=1)
    with pytest.raises(TypeError, match='training'):
        deq(tanh_problem.f, tanh_problem.z0())
    with pytest.raises(TypeError, match='budget must be a Budget'):
        deq(tanh_problem.f, tanh_problem.z0(), training=False, budget=4)
    with pytest.raises(ValueError, match='Budget.max_iter must be an int >= 1'):
        Budget(0)
    with pytest.raises(ValueError, match='Budget.tol must be >= 0'):
        Budget(3, -1.0)
    with pytest.raises(ValueError, match='Budget.select must be one of'):
        Budget(3, 0.0, 'first')
    with pytest.raises(ValueError, match='configured full solve'):
        Budget(None, 1e-3)
