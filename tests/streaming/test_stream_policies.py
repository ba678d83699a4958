import pytest
import torch

from mmvideoeq.deq import solve
from mmvideoeq.streaming import (
    AdaptiveBudget,
    Budget,
    FixedBudget,
    StreamPolicy,
    StreamState,
    TimeBudget,
    build_budget,
)


def _stats(iters: int):
    """Real solver statistics of a 1-sample solve that ran ``iters`` iterations."""
    _, stats = solve(
        lambda z: [0.5 * z[0] + 1.0],
        [torch.zeros(1, 3)],
        method='fixed_point',
        max_iter=iters,
        tol=None,
    )
    return stats


# ----------------------------------------------------------------------------- budgets
def test_fixed_and_adaptive_budgets_plan_and_validate():
    b = FixedBudget(4)
    assert b.plan() == Budget(4, 0.0, 'last')
    b.iters = 2  # a controller may change it on the fly
    assert b.plan() == Budget.steps(2)
    with pytest.raises(ValueError, match='FixedBudget.iters must be an int >= 1'):
        FixedBudget(0)
    for bad in (2.5, True, None):
        with pytest.raises(TypeError, match='FixedBudget.iters must be an int'):
            FixedBudget(bad)
    a = AdaptiveBudget(1e-3, 12)
    assert a.plan() == Budget(12, 1e-3, 'last')
    with pytest.raises(ValueError, match='AdaptiveBudget.tol'):
        AdaptiveBudget(0.0, 12)
    with pytest.raises(ValueError, match='AdaptiveBudget.max_iter'):
        AdaptiveBudget(1e-3, 0)


def test_time_budget_with_known_fixed_cost():
    b = TimeBudget(22.0, fixed_ms=2.0, min_iter=1, max_iter=15, init_iter=3, ema_decay=0.5)
    assert b.plan() == Budget.steps(3)  # nothing measured yet
    b.update(_stats(3), 8.0)  # 2 + 3 * 2 ms -> 2 ms per iteration
    assert b.iter_ms_est == pytest.approx(2.0)
    assert b.plan() == Budget.steps(10)  # (22 - 2) / 2
    assert b.iterations_for(12.0) == 5
    assert b.iterations_for(3.0) == 1  # clamped to min_iter
    assert b.iterations_for(100.0) == 15  # clamped to max_iter
    # the iteration cost doubles: 2 + 10 * 4 = 42 ms; EMA 0.5 * 2 + 0.5 * 4 = 3 -> 20 / 3 -> 6
    b.update(_stats(10), 42.0)
    assert b.plan().max_iter == 6
    b.update(None, 2.0 + 6 * 4.0, iters=6)  # 3.5 ms -> floor(20 / 3.5) = 5
    assert b.plan().max_iter == 5
    for _ in range(30):
        b.update(None, 2.0 + 5 * 4.0, iters=5)
    assert b.iter_ms_est == pytest.approx(4.0, rel=1e-6)
    assert b.plan().max_iter == 5  # 20 / 4
    b.ms_per_frame = 42.0  # the controller grants more time
    assert b.plan().max_iter == 10


def test_time_budget_is_monotone_in_milliseconds():
    b = TimeBudget(10.0, fixed_ms=3.0, iter_ms=1.7, min_iter=2, max_iter=12)
    counts = [b.iterations_for(ms) for ms in [0.0, 1.0, 4.0, 6.5, 9.0, 13.0, 20.0, 25.0, 60.0]]
    assert counts == sorted(counts)
    # by hand: floor((ms - 3) / 1.7) clamped to [2, 12]
    assert counts == [2, 2, 2, 2, 3, 5, 10, 12, 12]


def test_time_budget_learns_the_fixed_cost_from_differing_iteration_counts():
    b = TimeBudget(22.0, min_iter=1, max_iter=30, ema_decay=0.0)
    b.update(None, 42.0, iters=20)  # true costs: fixed 2 ms, 2 ms per iteration
    assert b.fixed_ms_est == 0.0 and b.iter_ms_est == pytest.approx(2.1)  # all blamed on iters
    b.update(None, 22.0, iters=10)  # slope (42 - 22) / 10 = 2 -> intercept 2
    assert b.fixed_ms_est == pytest.approx(2.0)
    assert b.iter_ms_est == pytest.approx(2.0)
    assert b.plan().max_iter == 10
    b.update(None, 42.0, iters=10)  # iteration cost doubles at a constant count
    assert b.fixed_ms_est == pytest.approx(2.0)
    assert b.plan().max_iter == 5


def test_time_budget_validation():
    with pytest.raises(ValueError, match='ms_per_frame'):
        TimeBudget(0.0)
    with pytest.raises(ValueError, match='ms_per_frame'):
        TimeBudget(float('nan'))
    with pytest.raises(ValueError, match='must be >= min_iter'):
        TimeBudget(10.0, min_iter=5, max_iter=4)
    with pytest.raises(ValueError, match='init_iter'):
        TimeBudget(10.0, min_iter=2, max_iter=4, init_iter=9)
    with pytest.raises(ValueError, match='elapsed_ms'):
        TimeBudget(10.0).update(None, -1.0, iters=2)
    with pytest.raises(ValueError, match='needs stats or iters'):
        TimeBudget(10.0).update(None, 1.0)


def test_build_budget_from_config():
    assert build_budget(dict(type='FixedBudget', iters=3)).plan() == Budget.steps(3)
    assert build_budget(dict(type='AdaptiveBudget', tol=1e-2, max_iter=7)).plan() == Budget(7, 1e-2)
    assert isinstance(build_budget(dict(type='TimeBudget', ms_per_frame=30.0)), TimeBudget)
    with pytest.raises(ValueError, match='unknown budget type'):
        build_budget(dict(type='Nope'))
    with pytest.raises(TypeError, match='bad arguments for FixedBudget'):
        build_budget(dict(type='FixedBudget', M=3))
    with pytest.raises(TypeError, match='"type" key'):
        build_budget(3)


# ----------------------------------------------------------------------------- policy
def _frame():
    return torch.zeros(1, 3, 8, 8)


def _finish(policy, state, plan, iters=2):
    z = [torch.zeros(1, 3)]
    policy.end_frame(state, plan, z, None, _stats(iters), 1.0)
    return state


def test_begin_frame_requires_ids():
    policy = StreamPolicy(budget=FixedBudget(2))
    state = policy.init_state()
    with pytest.raises(ValueError, match='video_id is missing'):
        policy.begin_frame(state, _frame(), None, 0)
    with pytest.raises(ValueError, match='frame_id is missing'):
        policy.begin_frame(state, _frame(), 'v', None)
    with pytest.raises(TypeError, match='frame_id must be an int'):
        policy.begin_frame(state, _frame(), 'v', 1.5)
    with pytest.raises(TypeError, match='video_id must be a str or an int'):
        policy.begin_frame(state, _frame(), 1.5, 0)


def test_out_of_order_frames_raise_and_new_video_resets():
    policy = StreamPolicy(budget=FixedBudget(2))
    state = policy.init_state()
    plan = policy.begin_frame(state, _frame(), 'a', 0)
    assert (plan.reset, plan.reason, plan.init, plan.z0, plan.budget) == (
        True,
        'new_video',
        'zeros',
        None,
        Budget.steps(2),
    )
    state = _finish(policy, state, plan)
    gap = policy.begin_frame(state, _frame(), 'a', 5)  # a gap: the sequence restarts
    assert gap.reset and gap.reason == 'frame_gap' and gap.z0 is None and gap.memory is None
    state = _finish(policy, state, gap)
    with pytest.raises(
        ValueError, match=r"frame_id 5 of video 'a' is not greater than the " r'previous frame_id 5'
    ):
        policy.begin_frame(state, _frame(), 'a', 5)
    with pytest.raises(ValueError, match='increasing frame_id order'):
        policy.begin_frame(state, _frame(), 'a', 3)
    plan = policy.begin_frame(state, _frame(), 'b', 0)  # a new video restarts at any frame id
    assert plan.reset and plan.reason == 'new_video' and plan.z0 is None
    warm = policy.begin_frame(state, _frame(), 'a', 6)
    assert not warm.reset and warm.reason is None and warm.init == 'warm'
    assert warm.z0 is state.z


def test_end_frame_records_and_detaches():
    policy = StreamPolicy(budget=FixedBudget(3))
    state = policy.init_state()
    plan = policy.begin_frame(state, _frame(), 7, 10)
    z = [torch.ones(1, 3, requires_grad=True) * 2]
    rec = policy.end_frame(state, plan, z, 'mem', _stats(3), 4.5)
    assert rec is state.history[-1]
    assert state.stream_id == 7 and state.frame_index == 10 and state.num_frames == 1
    assert not state.z[0].requires_grad and state.z[0].tolist() == [[2.0, 2.0, 2.0]]
    assert state.memory == 'mem' and rec.solver == 'fixed_point' and rec.tol == 0.0
    assert (rec.video_id, rec.frame_id, rec.offset, rec.since_reset) == (7, 10, 0, 0)
    assert (rec.iters, rec.max_iter, rec.ms, rec.reset, rec.reason) == (
        3,
        3,
        4.5,
        True,
        'new_video',
    )
    # at z0 = 0, f(0) = 1: relative residual exactly 1
    assert rec.first_rel == pytest.approx(1.0)
    plan = policy.begin_frame(state, _frame(), 7, 11)
    assert plan.memory == 'mem'
    policy.end_frame(state, plan, [torch.zeros(1, 3)], 'mem2', _stats(3), 1.0)
    assert state.history[-1].offset == 1 and state.history[-1].since_reset == 1
    assert state.history[-1].init == 'warm'
    with pytest.raises(ValueError, match='pass each stream its own plan'):
        policy.end_frame(state, plan, [torch.zeros(1, 3)], None, _stats(3), 1.0)  # used twice
    plan = policy.begin_frame(state, _frame(), 7, 12)
    with pytest.raises(ValueError, match='split_state'):
        policy.end_frame(state, plan, [torch.zeros(2, 3)], None, _stats(3), 1.0)


def test_reference_plan_and_provided_init():
    policy = StreamPolicy(
        budget=FixedBudget(1), init='reference', reference_iters=26, reference_tol=1e-4
    )
    plan = policy.begin_frame(StreamState(), None, 'v', 0)
    assert (plan.init, plan.budget, plan.z0) == ('reference', Budget(26, 1e-4), None)
    seed = [torch.full((1, 3), 0.25)]
    policy = StreamPolicy(
        budget=FixedBudget(2),
        init='reference',
        init_z_fn=lambda vid: seed if vid == 'seeded' else None,
    )
    plan = policy.begin_frame(StreamState(), None, 'seeded', 0)
    assert (plan.reset, plan.init, plan.budget) == (True, 'provided', Budget.steps(2))
    assert torch.equal(plan.z0[0], seed[0])
    assert policy.begin_frame(StreamState(), None, 'other', 0).init == 'reference'


def test_policy_config_validation():
    policy = StreamPolicy.from_cfg(
        dict(
            budget=dict(type='FixedBudget', iters=4),
            init='zeros',
            shot_change=dict(residual_ratio=4.0),
        )
    )
    assert policy.budget.plan() == Budget.steps(4) and policy.shot_change.residual_ratio == 4.0
    with pytest.raises(ValueError, match='init must be one of'):
        StreamPolicy(budget=FixedBudget(1), init='ones')
    with pytest.raises(TypeError, match='bad stream policy config'):
        StreamPolicy.from_cfg(dict(budget=FixedBudget(1), iters=3))
    with pytest.raises(TypeError, match='missing 1 required keyword-only argument'):
        StreamPolicy.from_cfg(dict(init='zeros'))


def test_init_frame_with_negative_frame_id_is_not_a_new_video():
    """A shot-change init frame (frame_id -1) is followed by warm frames of the same clip."""
    import torch

    from mmvideoeq.deq import solve
    from mmvideoeq.streaming import StreamPolicy

    policy = StreamPolicy(
        budget=dict(type='FixedBudget', iters=1), init='reference', reference_iters=5
    )
    state = policy.init_state('clip')
    z = [torch.zeros(1, 2, 2, 2)]
    plan = policy.begin_frame(state, None, 'clip', -1)
    assert plan.reset and plan.init == 'reference' and plan.budget.max_iter == 5
    z, stats = solve(lambda v: [0.5 * v[0] + 1], z, method='fixed_point', max_iter=5, tol=None)
    policy.end_frame(state, plan, z, None, stats, 1.0)
    nxt = policy.begin_frame(state, None, 'clip', 0)
    assert not nxt.reset and nxt.init == 'warm' and nxt.budget.max_iter == 1
