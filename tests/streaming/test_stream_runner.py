"""Streaming runs of a toy contractive DEQ layer (see conftest.py) against hand-iterated values."""

import pytest
import torch

from mmvideoeq.streaming import (
    AdaptiveBudget,
    FixedBudget,
    ShotChangeDetector,
    StreamFrame,
    StreamPolicy,
    TimeBudget,
    run_stream,
)


def _close(a, b, atol=1e-6):
    return all(torch.allclose(u, v, atol=atol, rtol=0) for u, v in zip(a, b, strict=True))


def _strip(rec):
    return {k: v for k, v in rec.as_dict().items() if k not in ('ms', 'stream')}


def test_streaming_follows_eq_3_5(toy, clip):
    """z_0^[0] = 0 and z_t^[0] = z_{t-1}^[M], M = 2, checked against hand iteration."""
    frames = clip(1, 5)
    run = run_stream(
        toy.step, [('v', t, x) for t, x in enumerate(frames)], StreamPolicy(budget=FixedBudget(2))
    )
    z = None
    for t, x in enumerate(frames):
        z = toy.manual_iterate(x, z, 2)
        assert _close(run.outputs[t], z)
    assert [r.iters for r in run.records] == [2] * 5
    assert [r.reason for r in run.records] == ['new_video'] + [None] * 4
    assert [r.init for r in run.records] == ['zeros'] + ['warm'] * 4
    assert run.states['v'].frame_index == 4 and len(run.states['v'].history) == 5


def _policy(budget=None):
    return StreamPolicy(
        budget=budget or FixedBudget(2),
        shot_change=ShotChangeDetector(residual_ratio=3.0, input_diff=0.5),
    )


def test_two_videos_interleaved_equal_each_alone(toy, clip):
    a, b = clip(1, 6), clip(2, 6)
    alone_a = run_stream(toy.step, [('a', t, x) for t, x in enumerate(a)], _policy())
    alone_b = run_stream(toy.step, [('b', t, x) for t, x in enumerate(b)], _policy())
    mixed = []
    for t in range(6):
        mixed += [('a', t, a[t]), ('b', t, b[t])]
    both = run_stream(toy.step, mixed, _policy())
    for t in range(6):
        for alone, k in ((alone_a, 0), (alone_b, 1)):
            out = both.outputs[2 * t + k]
            assert all(torch.equal(u, v) for u, v in zip(out, alone.outputs[t], strict=True))
            assert _strip(both.records[2 * t + k]) == _strip(alone.records[t])
    # the two streams did influence nothing but themselves: different videos, different states
    assert not _close(both.states['a'].z, both.states['b'].z, atol=1e-2)


@pytest.mark.parametrize('budget', [FixedBudget(2), AdaptiveBudget(tol=1e-3, max_iter=6)])
def test_two_videos_batched_equal_each_alone(toy, clip, budget):
    """Batched via stack/split, with video b starting two frames later (cold + warm batch).

    With a tolerance the solver freezes each sample at its own stopping step, so the batched
    fixed points still equal the solo ones.
    """
    a, b = clip(1, 6), clip(2, 4)
    alone_a = run_stream(toy.step, [('a', t, x) for t, x in enumerate(a)], _policy(budget))
    alone_b = run_stream(toy.step, [('b', t, x) for t, x in enumerate(b)], _policy(budget))
    toy.calls.clear()
    steps = [[('a', t, a[t])] + ([('b', t - 2, b[t - 2])] if t >= 2 else []) for t in range(6)]
    both = run_stream(toy.step, steps, _policy(budget))
    assert [c[0] for c in toy.calls] == [1, 1, 2, 2, 2, 2]  # one shared solve per time step
    outs_a = [both.outputs[i] for i, r in enumerate(both.records) if r.video_id == 'a']
    outs_b = [both.outputs[i] for i, r in enumerate(both.records) if r.video_id == 'b']
    recs_b = [r for r in both.records if r.video_id == 'b']
    assert len(outs_a) == 6 and len(outs_b) == 4
    for t in range(6):
        assert _close(outs_a[t], alone_a.outputs[t])
    for t in range(4):
        assert _close(outs_b[t], alone_b.outputs[t])
        assert recs_b[t].reason == alone_b.records[t].reason
        assert recs_b[t].nstep == alone_b.records[t].nstep
    # batch of a warm and a cold stream: b's first frame still starts from zeros
    if isinstance(budget, FixedBudget):
        assert _close(outs_b[0], toy.manual_iterate(b[0], None, 2))


def test_reset_at_video_boundary_in_one_slot(toy, clip):
    a, b = clip(1, 3), clip(2, 3)
    frames = [StreamFrame(x, 'a', t, stream=0) for t, x in enumerate(a)]
    frames += [StreamFrame(x, 'b', t, stream=0) for t, x in enumerate(b)]
    run = run_stream(toy.step, frames, StreamPolicy(budget=FixedBudget(3)))
    assert list(run.states) == [0]
    assert [r.reset for r in run.records] == [True, False, False, True, False, False]
    assert run.records[3].reason == 'new_video' and run.records[3].offset == 0
    assert _close(run.outputs[3], toy.manual_iterate(b[0], None, 3))  # not warm from video a
    state = run.states[0]
    assert state.stream_id == 'b' and [r.video_id for r in state.history] == ['b'] * 3


def test_reference_init_is_a_full_solve_on_frame_0(toy, clip):
    frames = clip(3, 3)
    policy = StreamPolicy(budget=FixedBudget(1), init='reference', reference_iters=40)
    run = run_stream(toy.step, [('v', t, x) for t, x in enumerate(frames)], policy)
    z_ref = toy.manual_iterate(frames[0], None, 40)
    assert _close(run.outputs[0], z_ref)
    # 40 contractive steps reach the fixed point: one more step barely moves it
    assert _close(toy.f(z_ref, frames[0]), z_ref, atol=1e-5)
    assert [r.iters for r in run.records] == [40, 1, 1]
    assert run.records[0].init == 'reference'
    assert _close(run.outputs[1], toy.manual_iterate(frames[1], z_ref, 1))  # Eq. 3.4
    assert [c[1:] for c in toy.calls] == [(40, None), (1, None), (1, None)]


def test_one_iteration_per_frame_converges_on_a_repeated_frame(toy, clip):
    x = clip(4, 1)[0]
    z_star = toy.manual_iterate(x, None, 300)
    run = run_stream(
        toy.step, [('v', t, x) for t in range(60)], StreamPolicy(budget=FixedBudget(1))
    )
    err = [
        max((u - v).abs().max().item() for u, v in zip(out, z_star, strict=True))
        for out in run.outputs
    ]
    assert err[0] > 0.1  # one iteration from zeros is far from the fixed point
    assert err[-1] < 1e-5
    assert err[20] < err[5] < err[0]


def test_adaptive_budget_stops_early_on_static_video_and_spends_all_after_a_cut(toy):
    g = torch.Generator().manual_seed(5)
    x_a = torch.randn(1, 4, 8, 8, generator=g)
    x_b = -2.0 * x_a + torch.randn(1, 4, 8, 8, generator=g)  # a very different scene
    frames = [('v', t, x_a) for t in range(12)] + [('v', 12 + t, x_b) for t in range(6)]
    run = run_stream(toy.step, frames, StreamPolicy(budget=AdaptiveBudget(tol=1e-4, max_iter=8)))
    iters = [r.iters for r in run.records]
    assert iters[0] == 8  # cold start: residual 1 cannot drop below 1e-4 within 8 iterations
    assert max(iters[6:12]) <= 2  # static: the warm start is already converged
    assert iters[12] == 8  # the cut: full budget
    assert max(iters[-2:]) <= 2  # recovered
    assert all(r.final_rel < 1e-4 for r in run.records[6:12])


class _FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_time_budget_adapts_to_measured_iteration_cost(toy, clip):
    clock = _FakeClock()
    cost = {'fixed': 2.0, 'iter': 2.0}

    def timed_step(x, z0, max_iter, tol, payloads):
        out, z, stats = toy.step(x, z0, max_iter, tol, payloads)
        clock.now += (cost['fixed'] + cost['iter'] * stats.rel_trace.shape[1]) / 1000.0
        return out, z, stats

    frames = clip(6, 16)
    budget = TimeBudget(22.0, fixed_ms=2.0, min_iter=1, max_iter=20, init_iter=3, ema_decay=0.5)
    policy = StreamPolicy(budget=budget)
    steps = iter([('v', t, x) for t, x in enumerate(frames)])
    run = run_stream(timed_step, (next(steps) for _ in range(10)), policy, clock=clock)
    cost['iter'] = 4.0  # the machine gets slower
    run2 = run_stream(timed_step, steps, policy, states=run.states, clock=clock)
    planned = [r.max_iter for r in run.records + run2.records]
    # by hand: 3 before any measurement; 20 ms / 2 ms = 10; after the slow-down the EMA cost goes
    # 2 -> 3 -> 3.5 -> 3.75 ... so floor(20 / cost) = 6, 5, 5, ...
    assert planned == [3] + [10] * 10 + [6, 5, 5, 5, 5]
    assert [r.ms for r in run.records[:2]] == pytest.approx([8.0, 22.0])
    assert run2.records[0].reason is None  # continued the same stream


def test_run_stream_rejects_bad_input(toy, clip):
    x = clip(1, 1)[0]
    policy = StreamPolicy(budget=FixedBudget(1))
    with pytest.raises(ValueError, match='leading batch dimension of 1'):
        run_stream(toy.step, [('v', 0, x[0])], policy)
    with pytest.raises(ValueError, match='same stream'):
        run_stream(toy.step, [[('v', 0, x), ('v', 1, x)]], policy)
    with pytest.raises(ValueError, match='not greater than the previous frame_id 1'):
        run_stream(toy.step, [('v', 0, x), ('v', 1, x), ('v', 1, x)], policy)
    with pytest.raises(TypeError, match='must return a tuple'):
        run_stream(lambda x, z0, m, t, p: x, [('v', 0, x)], policy)


@pytest.mark.parametrize('response', ['continue', 'reset'])
def test_skipped_frame_is_recorded_and_the_stream_goes_on(toy, clip, response):
    """A frame that failed to load is recorded as skipped and not solved; the next frame starts
    from the last good state ('continue') or from zeros ('reset')."""
    frames = clip(1, 4)
    steps = [
        StreamFrame(x, 'v', t, skip='decode error' if t == 2 else None)
        for t, x in enumerate(frames)
    ]
    policy = StreamPolicy(budget=FixedBudget(2), skip_response=response)
    run = run_stream(toy.step, steps, policy)
    assert run.outputs[2] is None and run.records[2].skipped == 'decode error'
    assert [r.offset for r in run.records] == [0, 1, 2, 3]
    assert len(toy.calls) == 3
    z1 = toy.manual_iterate(frames[1], toy.manual_iterate(frames[0], None, 2), 2)
    start = z1 if response == 'continue' else None
    assert _close(run.outputs[3], toy.manual_iterate(frames[3], start, 2))
    assert run.records[3].reset == (response == 'reset')
    assert run.records[3].reason == (None if response == 'continue' else 'after_skip')


def test_frame_size_change_resets_the_stream(toy, clip):
    frames = clip(1, 3)
    big = torch.randn(1, 4, 16, 16)

    def step(x, z0, max_iter, tol, payloads):
        if z0 is not None and z0[0].shape[-1] * 1 != x.shape[-1]:
            raise AssertionError('a state of another size reached the model')
        zeros = [
            x.new_zeros(1, 4, *x.shape[-2:]),
            x.new_zeros(1, 4, x.shape[-2] // 2, x.shape[-1] // 2),
        ]
        z = toy_step_any(toy, x, zeros if z0 is None else z0, max_iter)
        return z, z, toy.last_stats

    def toy_step_any(toy, x, z0, m):
        from mmvideoeq.deq import solve

        z, toy.last_stats = solve(
            lambda z: toy.f(z, x), z0, method='fixed_point', max_iter=m, tol=None
        )
        return z

    run = run_stream(
        step,
        [('v', 0, frames[0]), ('v', 1, big), ('v', 2, big)],
        StreamPolicy(budget=FixedBudget(2)),
    )
    assert [r.reason for r in run.records] == ['new_video', 'size_change', None]
    assert [r.reset for r in run.records] == [True, True, False]


def test_diverged_frame_is_flagged_and_outliers_reported(toy, clip):
    frames = clip(2, 8)
    frames[6] = torch.full_like(frames[6], float('nan'))
    run = run_stream(
        toy.step, [('v', t, x) for t, x in enumerate(frames)], StreamPolicy(budget=FixedBudget(2))
    )
    assert [r.diverged for r in run.records] == [False] * 6 + [True, False]
    # the NaN frame's state is not carried: the next frame starts from frame 5's state
    z5 = None
    for x in frames[:6]:
        z5 = toy.manual_iterate(x, z5, 2)
    assert _close(run.outputs[7], toy.manual_iterate(frames[7], z5, 2))
    # a frame far from the video (residual 10x the usual) is reported as an outlier
    jump = clip(2, 8)
    jump[7] = jump[7] + 5.0
    run = run_stream(
        toy.step,
        [('v', t, x) for t, x in enumerate(jump)],
        StreamPolicy(budget=FixedBudget(1), outlier_factor=3.0),
    )
    assert [r.residual_outlier for r in run.records] == [False] * 7 + [True]


def test_bounded_history_and_cold_baseline(toy, clip):
    frames = clip(3, 6)
    policy = StreamPolicy(budget=FixedBudget(1), max_history=2)
    run = run_stream(toy.step, [('v', t, x) for t, x in enumerate(frames)], policy)
    assert [r.frame_id for r in run.states['v'].history] == [4, 5]
    assert len(run.records) == 6
    cold = run_stream(
        toy.step,
        [('v', t, x) for t, x in enumerate(frames)],
        StreamPolicy(budget=FixedBudget(1), warm=False),
    )
    for t, x in enumerate(frames):
        assert _close(cold.outputs[t], toy.manual_iterate(x, None, 1))
    assert [r.init for r in cold.records] == ['zeros'] * 6
    assert [r.offset for r in cold.records] == list(range(6))


def test_payloads_reach_the_step_function_in_batch_order(toy, clip):
    seen = []

    def step(x, z0, max_iter, tol, payloads):
        seen.append(list(payloads))
        return toy.step(x, z0, max_iter, tol)

    a, b = clip(1, 2), clip(2, 2)
    steps = [
        [StreamFrame(a[t], 'a', t, payload=f'a{t}'), StreamFrame(b[t], 'b', t, payload=f'b{t}')]
        for t in range(2)
    ]
    run_stream(step, steps, StreamPolicy(budget=FixedBudget(1)))
    assert seen == [['a0', 'b0'], ['a1', 'b1']]
