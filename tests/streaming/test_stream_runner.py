"""Streaming runs of a toy contractive DEQ layer (see conftest.py) against hand-iterated values."""

import pytest
import torch

from mmvideoeq.deq import solve
from mmvideoeq.streaming import (
    AdaptiveBudget,
    FixedBudget,
    FullSolve,
    ShotChangeDetector,
    StepOutput,
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
    assert [c[1:] for c in toy.calls] == [(40, 0.0), (1, 0.0), (1, 0.0)]


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

    def timed_step(x, z0, memory, budget, payloads):
        out = toy.step(x, z0, memory, budget, payloads)
        clock.now += (cost['fixed'] + cost['iter'] * out.stats.rel_trace.shape[1]) / 1000.0
        return out

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
    with pytest.raises(TypeError, match='must return a StepOutput'):
        run_stream(lambda x, z0, m, b, p: x, [('v', 0, x)], policy)


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

    def step(x, z0, memory, budget, payloads):
        if z0 is not None and z0[0].shape[-1] * 1 != x.shape[-1]:
            raise AssertionError('a state of another size reached the model')
        zeros = [
            x.new_zeros(1, 4, *x.shape[-2:]),
            x.new_zeros(1, 4, x.shape[-2] // 2, x.shape[-1] // 2),
        ]
        z = toy_step_any(toy, x, zeros if z0 is None else z0, budget.max_iter)
        return StepOutput(z, z, list(memory), toy.last_stats)

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
    # the NaN frame's state is not carried: the stream restarts cold on the next frame
    assert _close(run.outputs[7], toy.manual_iterate(frames[7], None, 2))
    assert run.records[7].reset and run.records[7].reason == 'after_divergence'
    assert run.records[7].since_reset == 0
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

    def step(x, z0, memory, budget, payloads):
        seen.append(list(payloads))
        return toy.step(x, z0, memory, budget)

    a, b = clip(1, 2), clip(2, 2)
    steps = [
        [StreamFrame(a[t], 'a', t, payload=f'a{t}'), StreamFrame(b[t], 'b', t, payload=f'b{t}')]
        for t in range(2)
    ]
    run_stream(step, steps, StreamPolicy(budget=FixedBudget(1)))
    assert seen == [['a0', 'b0'], ['a1', 'b1']]


class _GrowingModel:
    """A recursion that does not contract: every frame scales the carried state by 1.19 (the
    behaviour of an untrained streamed RFP), with a memory that counts frames."""

    def stream_zero_state(self, x):
        return [x.new_zeros(1, 4)]

    def stream_step(self, x, z0, memory, budget, payloads):
        z = [x.new_ones(x.shape[0], 4)] if z0 is None else [1.19 * z0[0] + (z0[0] == 0)]
        stats = solve(lambda v: v, z, method='fixed_point', max_iter=1, tol=None)[1]
        return StepOutput([t.clone() for t in z], z, [(m or 0) + 1 for m in memory], stats)


def test_growing_state_is_flagged_from_the_first_bad_frame_and_restarted_cold():
    """Divergence is judged against the stream's own history (the state norm of its first
    frames), not the frame's own start: the first frame past norm_factor x the reference is
    flagged, the next restarts cold, and the model's memory is kept across the restart."""
    model = _GrowingModel()
    x = torch.zeros(1, 3, 4, 4)
    policy = StreamPolicy(budget=FixedBudget(1), norm_factor=4.0, norm_frames=3)
    run = run_stream(model.stream_step, [('v', t, x) for t in range(20)], policy)
    norms = [r.state_norm for r in run.records]
    # by hand: norm 2 * 1.19^k after a reset; reference = mean of the first three frames
    ref = 2 * (1 + 1.19 + 1.19**2) / 3
    first_bad = next(k for k in range(20) if 2 * 1.19**k > 4.0 * ref)
    assert norms[first_bad] == pytest.approx(2 * 1.19**first_bad)
    diverged = [r.diverged for r in run.records]
    assert diverged[:first_bad] == [False] * first_bad and diverged[first_bad]
    restart = run.records[first_bad + 1]
    assert restart.reset and restart.reason == 'after_divergence'
    assert restart.state_norm == pytest.approx(2.0)  # from zeros again
    assert run.states['v'].memory == 20  # the memory counted every frame: never reset
    # the same frames without the norm check are never flagged (the solver's own residual
    # check compares with the frame's own start, which grows with the state)
    off = run_stream(
        model.stream_step,
        [('v', t, x) for t in range(20)],
        StreamPolicy(budget=FixedBudget(1), norm_factor=None),
    )
    assert not any(r.diverged for r in off.records)


def test_a_gap_in_frame_ids_restarts_the_sequence(toy, clip):
    """A warm start never crosses a gap: frame 3 after frame 1 starts from zeros with a new
    memory, unless the gap is within frame_step or gap_response='continue'."""
    frames = clip(1, 4)
    ids = [0, 1, 3, 4]
    run = run_stream(
        toy.step, [('v', i, x) for i, x in zip(ids, frames)], StreamPolicy(budget=FixedBudget(2))
    )
    assert [r.reason for r in run.records] == ['new_video', None, 'frame_gap', None]
    assert _close(run.outputs[2], toy.manual_iterate(frames[2], None, 2))
    assert toy.memories == [[None], [1], [None], [1]]
    for kw in (dict(frame_step=2), dict(gap_response='continue')):
        toy.memories.clear()
        run = run_stream(
            toy.step,
            [('v', i, x) for i, x in zip(ids, frames)],
            StreamPolicy(budget=FixedBudget(2), **kw),
        )
        assert [r.reason for r in run.records] == ['new_video', None, None, None]
        assert toy.memories == [[None], [1], [2], [3]]


def test_memory_is_carried_in_cold_settings_and_dropped_at_sequence_boundaries(toy, clip):
    """The policy carries the model's memory frame to frame whatever happens to the solver
    state (cold baseline, full solve, divergence), and drops it where a sequence ends."""
    a, b = clip(1, 3), clip(2, 2)
    steps = [('a', t, x) for t, x in enumerate(a)] + [('b', t, x) for t, x in enumerate(b)]
    steps = [StreamFrame(x, v, t, stream=0) for v, t, x in steps]
    for policy in (
        StreamPolicy(budget=FixedBudget(1), warm=False),
        StreamPolicy(budget=FullSolve(), warm=False),
        StreamPolicy(budget=FixedBudget(1)),
    ):
        toy.memories.clear()
        run = run_stream(toy.step, steps, policy)
        assert toy.memories == [[None], [1], [2], [None], [1]]
        assert run.states[0].memory == 2
    # cold: every solve from zeros, the memory still carried
    cold = run_stream(toy.step, steps, StreamPolicy(budget=FixedBudget(1), warm=False))
    assert _close(cold.outputs[2], toy.manual_iterate(a[2], None, 1))
    # a size change and a shot-change reset end the sequence too
    toy.memories.clear()
    big = torch.randn(1, 4, 16, 16)

    def step(x, z0, memory, budget, payloads):
        toy.memories.append(list(memory))
        z = [x.new_zeros(1, 1)]
        stats = solve(lambda v: v, z, method='fixed_point', max_iter=1, tol=None)[1]
        return StepOutput(None, z, [(m or 0) + 1 for m in memory], stats)

    run_stream(
        step, [('v', 0, a[0]), ('v', 1, a[1]), ('v', 2, big)], StreamPolicy(budget=FixedBudget(1))
    )
    assert toy.memories == [[None], [1], [None]]


def test_a_follow_up_solve_gets_the_memory_from_before_the_frame(toy, clip):
    """A residual-jump shot change re-solves the frame: the follow-up starts from the memory
    the first solve started from, not from the first solve's result."""
    g = torch.Generator().manual_seed(5)
    x_a = torch.randn(1, 4, 8, 8, generator=g)
    x_b = -2.0 * x_a + torch.randn(1, 4, 8, 8, generator=g)
    frames = [('v', t, x_a) for t in range(8)] + [('v', 8, x_b)]
    policy = StreamPolicy(
        budget=FixedBudget(2),
        shot_change=ShotChangeDetector(residual_ratio=3.0, response='extra_iters', warmup=2),
    )
    run = run_stream(toy.step, frames, policy)
    assert run.records[8].reason == 'shot_change:residual'
    assert toy.memories[-2:] == [[8], [8]]  # first solve and follow-up of frame 8
    assert run.states['v'].memory == 9
