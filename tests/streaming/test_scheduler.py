"""The deadline scheduler: decisions on a synthetic latency model, worked out by hand, and the
reference's dynamic schedule (``mtli/sAP`` ``det/srt_det.py --dynamic-schedule``) for one budget."""

from __future__ import annotations

import math

import pytest

from mmvideoeq.deq import Budget
from mmvideoeq.streaming import DeadlineBudget, build_budget
from mmvideoeq.streaming.realtime import simulate_realtime
from mmvideoeq.streaming.scheduler import ScheduledLatency

TABLE = {1: 30.0, 2: 45.0, 4: 75.0, 8: 135.0}


@pytest.mark.parametrize(
    'now, fps, expected',
    [
        # 10 fps: finishes .03 .045 .075 .135; frame 1 arrives at .1: 4 steps are the most that
        # end before it
        (0.0, 10, Budget.steps(4)),
        # taken at .05: .08 .095 end by .1, .125 .185 do not: 2 steps
        (0.05, 10, Budget.steps(2)),
        # taken at .075: nothing ends by .1; 1 step ends .105 (used at frame 2), and frame 1
        # started at .1 with 1 step ends .13, used at frame 2 as well: wait for it
        (0.075, 10, None),
        # 30 fps: only 1 step (.03 s < 1/30) meets the next arrival
        (0.0, 30, Budget.steps(1)),
    ],
)
def test_decisions_on_a_latency_table(now, fps, expected):
    assert DeadlineBudget(fps, latency_ms=TABLE).decide(now) == expected


def test_no_budget_fits_the_interval_takes_the_fastest():
    # 10 fps, 120 / 150 ms: both outputs are used at frame 2, but the 30 ms more would delay
    # every later frame the worker takes: 1 step
    assert DeadlineBudget(10, latency_ms={1: 120, 2: 150}).decide(0.0) == Budget.steps(1)


def test_schedule_with_waits_worked_by_hand():
    # 10 fps, 8 frames (the sequence ends at .8 s); 1 step takes 130 ms, 2 steps 160 ms: nothing
    # fits in a frame interval, so the fastest budget, or a wait:
    #   t=0:    frame 0 -> .13 (used at frame 2; frame 1 started at .1 -> .23, frame 3): 1 step
    #   t=.13:  frame 1 -> .26;  t=.26: frame 2 -> .39 (frame 4; frame 3 at .3 -> .43, frame 5)
    #   t=.39:  frame 3 -> .52 is used at frame 6, as frame 4 started at .4 (.53): wait
    #   t=.4:   frame 4 -> .53;  t=.53: frame 5 -> .66;  t=.66: frame 6 -> .79
    #   t=.79:  frame 7 -> .92 (frame 10), frame 8 at .8 -> .93 (frame 10 too): wait; the end
    lat = ScheduledLatency(DeadlineBudget(10, latency_ms={1: 130, 2: 160}), {1: 130, 2: 160})
    trace = simulate_realtime(8, 10, lat)
    assert lat.decisions == [[(0, 1), (1, 1), (2, 1), (3, None), (4, 1), (5, 1), (6, 1), (7, None)]]
    assert trace.input_index == [0, 1, 2, 4, 5, 6]
    assert trace.finish == pytest.approx([0.13, 0.26, 0.39, 0.53, 0.66, 0.79], abs=1e-12)
    assert lat.describe()['type'] == 'deadline'


@pytest.mark.parametrize('rtf', [1.33, 1.77, 2.21])
def test_one_budget_waits_as_the_reference_dynamic_schedule(rtf):
    """srt_det.py: with mean runtime rtf (in frame intervals) > 1 and the current frame's
    elapsed fraction r, wait iff rtf < floor(r + rtf)."""
    fps = 10
    for k in range(10):
        r = 0.05 + 0.1 * k
        ref_wait = rtf < math.floor(r + rtf)
        budget = DeadlineBudget(fps, latency_ms={3: rtf * 1000 / fps})
        assert (budget.decide((3 + r) / fps) is None) == ref_wait, (rtf, r)


def test_linear_cost_model_learns_and_plans():
    b = DeadlineBudget(20, min_iter=1, max_iter=8, init_iter=2, ema_decay=0.0)
    assert b.cost_ms(3) is None and b.decide(0.0) == Budget.steps(2)  # nothing measured yet
    b.update(None, 30.0, iters=2)
    b.update(None, 50.0, iters=4)  # fixed 10 ms, 10 ms per step
    assert b.cost_ms(3) == pytest.approx(40.0)
    # 50 ms interval: at t=0, 4 steps (50 ms) end exactly at frame 1's arrival
    assert b.decide(0.0) == Budget.steps(4)
    assert b.plan() == Budget.steps(4)
    # a table learns by an EMA of each M's measurements
    t = DeadlineBudget(10, latency_ms={'1': 30, '2': 45}, ema_decay=0.5)
    t.update(None, 50.0, iters=2)
    assert t.latency_ms == {1: 30.0, 2: 47.5}


def test_build_and_bad_arguments():
    b = build_budget(dict(type='DeadlineBudget', fps=30, latency_ms={'1': 30, '4': 60}))
    assert isinstance(b, DeadlineBudget) and b.choices == [1, 4]
    with pytest.raises(ValueError, match='not a number of steps'):
        DeadlineBudget(30, latency_ms={'one': 30})
    with pytest.raises(ValueError, match='must all have a latency'):
        DeadlineBudget(30, latency_ms={1: 30}, choices=[1, 2])
    with pytest.raises(ValueError, match='fps must be a positive'):
        DeadlineBudget(0)
    with pytest.raises(ValueError, match='no entry for the budgets'):
        ScheduledLatency(DeadlineBudget(30, latency_ms=TABLE), {1: 30.0})
