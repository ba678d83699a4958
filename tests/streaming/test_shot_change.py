import pytest
import torch

from mmvideoeq.streaming import FixedBudget, ShotChangeDetector, StreamPolicy, run_stream


def _close(a, b, atol=1e-6):
    return all(torch.allclose(u, v, atol=atol, rtol=0) for u, v in zip(a, b, strict=True))


def _scenes(seed=7):
    g = torch.Generator().manual_seed(seed)
    x_a = torch.randn(1, 4, 8, 8, generator=g)
    x_b = -2.0 * x_a + torch.randn(1, 4, 8, 8, generator=g)
    return x_a, x_b


def _cut_video(x_a, x_b, n_a=8, n_b=3):
    """A static shot of x_a, then a cut to a static shot of x_b (one video id)."""
    return [('v', t, x_a) for t in range(n_a)] + [('v', n_a + t, x_b) for t in range(n_b)]


# ----------------------------------------------------------------------------- detector unit
def test_detector_validation():
    with pytest.raises(ValueError, match='at least one signal'):
        ShotChangeDetector(residual_ratio=None, input_diff=None)
    with pytest.raises(ValueError, match='response must be one of'):
        ShotChangeDetector(response='restart')
    with pytest.raises(ValueError, match='residual_ratio must be > 1'):
        ShotChangeDetector(residual_ratio=0.5)
    with pytest.raises(ValueError, match='extra_iters'):
        ShotChangeDetector(extra_iters=0)
    with pytest.raises(ValueError, match='ema_decay'):
        ShotChangeDetector(ema_decay=1.0)


def test_input_signal_by_hand():
    det = ShotChangeDetector(residual_ratio=None, input_diff=1.5, thumb_size=4)
    a = det.thumbnail(torch.ones(1, 3, 16, 16))
    assert a.shape == (3, 4, 4)
    b = det.thumbnail(torch.full((3, 16, 16), 3.0))  # unbatched frames are accepted
    assert det.check_input(None, a) == (False, None)
    assert det.check_input(a, b) == (True, pytest.approx(2.0))
    half = torch.ones(1, 3, 16, 16)
    half[..., :8] = 2.0  # half of the pixels change by 1 -> mean abs difference 0.5
    assert det.check_input(a, det.thumbnail(half)) == (False, pytest.approx(0.5))


def test_residual_signal_by_hand():
    det = ShotChangeDetector(residual_ratio=3.0, warmup=3, min_residual=1e-3, ema_decay=0.5)
    assert det.check_residual(0.01, 3, 0.05) == (True, pytest.approx(5.0))
    assert det.check_residual(0.01, 3, 0.02) == (False, pytest.approx(2.0))
    assert det.check_residual(0.01, 2, 0.05) == (False, None)  # still warming up
    assert det.check_residual(1e-6, 5, 1e-4)[0] is False  # below min_residual
    avg, n = det.update_average(None, 0, 0.2)
    avg, n = det.update_average(avg, n, 0.1)
    assert (avg, n) == (pytest.approx(0.15), 2)


# ----------------------------------------------------------------------------- in a stream
def test_input_signal_reset_restarts_the_frame_from_zeros(toy):
    x_a, x_b = _scenes()
    policy = StreamPolicy(
        budget=FixedBudget(2),
        shot_change=dict(residual_ratio=None, input_diff=0.5, response='reset'),
    )
    run = run_stream(toy.step, _cut_video(x_a, x_b), policy)
    reasons = [r.reason for r in run.records]
    assert reasons == ['new_video'] + [None] * 7 + ['shot_change:input', None, None]
    cut = run.records[8]
    assert cut.reset and cut.init == 'zeros' and cut.since_reset == 0
    assert cut.offset == 8 and cut.input_score > 0.5
    assert run.records[7].input_score == pytest.approx(0.0)
    assert _close(run.outputs[8], toy.manual_iterate(x_b, None, 2))


def test_input_signal_extra_iters_keeps_the_warm_start(toy):
    x_a, x_b = _scenes()
    policy = StreamPolicy(
        budget=FixedBudget(2),
        shot_change=dict(
            residual_ratio=None, input_diff=0.5, response='extra_iters', extra_iters=3
        ),
    )
    run = run_stream(toy.step, _cut_video(x_a, x_b), policy)
    assert [r.iters for r in run.records] == [2] * 8 + [5, 2, 2]
    assert not run.records[8].reset and run.records[8].reason == 'shot_change:input'
    assert _close(run.outputs[8], toy.manual_iterate(x_b, run.outputs[7], 5))


def test_residual_jump_triggers_extra_iterations_on_that_frame(toy):
    x_a, x_b = _scenes()
    policy = StreamPolicy(
        budget=FixedBudget(2),
        shot_change=dict(residual_ratio=3.0, response='extra_iters', extra_iters=4),
    )
    toy.calls.clear()
    run = run_stream(toy.step, _cut_video(x_a, x_b), policy)
    reasons = [r.reason for r in run.records]
    assert reasons == ['new_video'] + [None] * 7 + ['shot_change:residual', None, None]
    cut = run.records[8]
    assert cut.iters == 6 and cut.max_iter == 6 and not cut.reset
    assert cut.first_rel > 3.0 * max(r.first_rel for r in run.records[4:8])
    # the follow-up continues from the first solve: 2 + 4 iterations from the previous state
    assert _close(run.outputs[8], toy.manual_iterate(x_b, run.outputs[7], 6))
    assert [c[1] for c in toy.calls] == [2] * 9 + [4, 2, 2]
    # the running residual average restarted at the change: only the 2 frames after it count
    assert run.states['v'].rel0_count == 2


def test_residual_jump_with_reset_response(toy):
    x_a, x_b = _scenes()
    policy = StreamPolicy(
        budget=FixedBudget(2), shot_change=dict(residual_ratio=3.0, response='reset')
    )
    run = run_stream(toy.step, _cut_video(x_a, x_b), policy)
    cut = run.records[8]
    assert cut.reset and cut.reason == 'shot_change:residual' and cut.iters == 4
    assert _close(run.outputs[8], toy.manual_iterate(x_b, None, 2))
    # after the reset the running average restarts: the unconverged next frames are no change
    assert [r.reason for r in run.records[9:]] == [None, None]


def test_residual_jump_with_no_response_is_only_recorded(toy):
    x_a, x_b = _scenes()
    policy = StreamPolicy(
        budget=FixedBudget(2), shot_change=dict(residual_ratio=3.0, response='none')
    )
    run = run_stream(toy.step, _cut_video(x_a, x_b), policy)
    assert run.records[8].reason == 'shot_change:residual'
    assert run.records[8].iters == 2 and run.records[8].residual_ratio > 3.0
    assert _close(run.outputs[8], toy.manual_iterate(x_b, run.outputs[7], 2))


def test_smooth_video_has_no_shot_change(toy, clip):
    policy = StreamPolicy(
        budget=FixedBudget(2),
        shot_change=dict(residual_ratio=3.0, input_diff=0.5, response='reset'),
    )
    run = run_stream(toy.step, [('v', t, x) for t, x in enumerate(clip(9, 20))], policy)
    assert [r.reason for r in run.records] == ['new_video'] + [None] * 19
