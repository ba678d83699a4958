import pytest
import torch

from mmvideoeq.deq import solve
from mmvideoeq.streaming import StreamState, split_state, split_stats, stack_states


def _state(value: float) -> list[torch.Tensor]:
    return [torch.full((1, 2, 4, 4), value), torch.full((1, 3, 2, 2), value)]


def test_stream_state_defaults_are_cold_and_independent():
    a, b = StreamState('v'), StreamState('w')
    assert a.frame_index == -1 and a.z is None and a.is_cold and a.since_reset == -1
    a.history.append({'frame_id': 0})
    assert len(b.history) == 0  # no shared mutable default


def test_stack_then_split_roundtrip():
    z = stack_states([_state(1.0), StreamState('v', z=_state(2.0)), _state(3.0)])
    assert [t.shape for t in z] == [(3, 2, 4, 4), (3, 3, 2, 2)]
    assert z[0][:, 0, 0, 0].tolist() == [1.0, 2.0, 3.0]
    assert z[1][:, 2, 1, 1].tolist() == [1.0, 2.0, 3.0]
    parts = split_state(z, 3)
    assert len(parts) == 3
    for b, value in enumerate([1.0, 2.0, 3.0]):
        assert [t.shape for t in parts[b]] == [(1, 2, 4, 4), (1, 3, 2, 2)]
        assert all(torch.equal(t, u) for t, u in zip(parts[b], _state(value), strict=True))


def test_stack_fills_cold_states_with_zeros_like_a_warm_state():
    z = stack_states([None, _state(5.0), StreamState('cold')])
    assert z[0][:, 0, 0, 0].tolist() == [0.0, 5.0, 0.0]
    assert z[1].shape == (3, 3, 2, 2)
    assert z[1][0].abs().sum().item() == 0.0 and z[1][2].abs().sum().item() == 0.0


def test_stack_uses_zeros_like_fn_with_the_cold_position():
    seen = []

    def zeros_like_fn(i):
        seen.append(i)
        return _state(-1.0)  # a recognisable "zero" state

    z = stack_states([_state(4.0), None], zeros_like_fn=zeros_like_fn)
    assert seen == [1]
    assert z[0][:, 1, 2, 3].tolist() == [4.0, -1.0]


def test_stack_all_cold_without_zeros_like_fn_raises():
    with pytest.raises(ValueError, match='all states are cold'):
        stack_states([None, StreamState('a')])


def test_stack_rejects_bad_states():
    with pytest.raises(ValueError, match='batch size 1'):
        stack_states([[torch.zeros(2, 2, 4, 4)]])
    with pytest.raises(ValueError, match='equal frame sizes'):
        stack_states([[torch.zeros(1, 2, 4, 4)], [torch.zeros(1, 2, 8, 8)]])
    with pytest.raises(ValueError, match='same model'):
        stack_states([_state(1.0), _state(1.0)[:1]])
    with pytest.raises(ValueError, match='non-empty'):
        stack_states([])
    with pytest.raises(TypeError, match='must be a Tensor'):
        stack_states([[1.0]])


def test_split_state_rejects_wrong_batch():
    with pytest.raises(ValueError, match='batch size 3 but n=2'):
        split_state([torch.zeros(3, 1)], 2)
    with pytest.raises(ValueError, match='positive int'):
        split_state([torch.zeros(3, 1)], 0)


def test_split_stats_slices_every_per_sample_field():
    torch.manual_seed(0)
    w = torch.tensor([[0.5, 0.0], [0.0, 0.25]])
    x = torch.tensor([[1.0, -1.0], [2.0, 0.5]])
    z, stats = solve(
        lambda z: [z[0] @ w + x],
        [torch.zeros(2, 2)],
        method='fixed_point',
        max_iter=3,
        tol=None,
        return_lowest=False,
    )
    parts = split_stats(stats, 2)
    assert len(parts) == 2
    for b in range(2):
        assert torch.equal(parts[b].rel_trace, stats.rel_trace[b : b + 1])
        assert torch.equal(parts[b].nstep, stats.nstep[b : b + 1])
        assert parts[b].method == stats.method
        assert parts[b].n_eval == 3
    # at z0 = 0: f(0) = x, so the relative residual ||x - 0|| / ||x|| is 1 (up to the 1e-9 guard)
    assert float(parts[0].first_rel) == pytest.approx(1.0)
    # per-sample values come from the right sample (the two samples' residuals differ)
    assert stats.final_rel[0] != stats.final_rel[1]
    for b in range(2):
        assert float(parts[b].final_rel) == pytest.approx(float(stats.final_rel[b]))
    with pytest.raises(ValueError, match='batch size 2 but n=3'):
        split_stats(stats, 3)
    with pytest.raises(TypeError, match='SolverStats'):
        split_stats({'rel_trace': stats.rel_trace}, 2)


def test_a_single_stream_hands_its_stored_state_to_the_step_without_a_copy():
    from mmvideoeq.streaming import StepOutput, StreamPolicy, run_stream

    seen = []

    def step(x, z0, memory, budget, payloads):
        seen.append(z0)
        return StepOutput(None, [x.new_full((1, 4), 1.0 + len(seen))], memory, None)

    states: dict = {}
    policy = StreamPolicy(budget=dict(type='FixedBudget', iters=1))
    run_stream(step, [('v', 0, torch.zeros(1, 3, 2, 2))], policy, states=states)
    stored = states['v'].z
    run_stream(step, [('v', 1, torch.zeros(1, 3, 2, 2))], policy, states=states)
    assert seen[0] is None and all(a is b for a, b in zip(seen[1], stored, strict=True))


@pytest.mark.parametrize('method', ['broyden', 'fixed_point', 'anderson'])
@pytest.mark.parametrize('lowest', [True, False])
def test_single_reads_the_same_values_as_the_tensor_properties(method, lowest):
    torch.manual_seed(0)
    w = 0.3 * torch.randn(6, 6)
    _, stats = solve(
        lambda z: torch.tanh(z @ w + 1.0), torch.zeros(1, 6), method=method, max_iter=5,
        tol=1e-2, return_lowest=lowest,
    )  # fmt: skip
    first, final, nstep, diverged = stats.single()
    assert first == stats.first_rel.item() and final == stats.final_rel.item()
    assert nstep == stats.nstep.item() and diverged == bool(stats.diverged.item())
    batched = solve(lambda z: torch.tanh(z @ w), torch.zeros(2, 6), method=method, max_iter=3)[1]
    with pytest.raises(ValueError, match='split_stats'):
        batched.single()


def test_out_norm_is_the_returned_states_norm_and_the_policy_uses_it_only_for_that_state():
    from mmvideoeq.streaming.policy import _norm

    torch.manual_seed(0)
    z0 = [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)]
    out, stats = solve(lambda z: [0.5 * t + 1.0 for t in z], z0, method='fixed_point', max_iter=3)
    by_hand = [
        sum(float(t[b].double().square().sum()) for t in out) ** 0.5 for b in range(2)
    ]  # float64 reference, independent of the code under test
    assert stats.out_norm.tolist() == pytest.approx(by_hand, rel=1e-6)
    one = split_stats(stats, 2)[0]
    z = [t[0:1] for t in out]  # sample 0 shares the storage start of the batched state
    assert _norm(z, one) == pytest.approx(by_hand[0], rel=1e-6)
    other = [t.clone() + 1.0 for t in z]  # not the solver's state: read afresh
    other_by_hand = sum(float(t.double().square().sum()) for t in other) ** 0.5
    assert _norm(other, one) == pytest.approx(other_by_hand, rel=1e-6)
    assert _norm([t[1:2] for t in out], one) == pytest.approx(by_hand[1], rel=1e-6)  # not ptrs


def test_state_norm_accumulates_half_states_in_float32_and_flags_float32_overflow():
    from mmvideoeq.streaming.state import state_norm

    half = [torch.full((1, 4, 64, 64), 300.0, dtype=torch.float16)]  # squares overflow fp16
    assert state_norm(half) == pytest.approx(300.0 * 128.0)
    assert state_norm([torch.full((1, 4), 3e19)]) == float('inf')  # past float32's range
    assert state_norm([torch.full((1, 4), 3e19, dtype=torch.float64)]) == pytest.approx(6e19)


def test_a_state_past_float32s_range_is_diverged_and_the_stream_restarts_cold():
    from mmvideoeq.streaming import StepOutput, StreamPolicy, run_stream

    def step(x, z0, memory, budget, payloads):
        z = [x.new_full((1, 4), 3e19 if z0 is not None else 1.0)]
        return StepOutput(None, z, memory, None)

    run = run_stream(
        step,
        [('v', t, torch.zeros(1, 3, 2, 2)) for t in range(3)],
        StreamPolicy(budget=dict(type='FixedBudget', iters=1)),
    )
    assert [r.diverged for r in run.records] == [False, True, False]
    assert run.records[2].reset and run.records[2].reason == 'after_divergence'
