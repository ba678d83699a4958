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
        # 10 fps: finishes .03 .045 .075 .135 are used at frames 1 1 1 2: the deadline is frame
        # 1's arrival; 4 steps are the most that meet it
        (0.0, 10, Budget.steps(4)),
        # taken at .05: .08 .095 -> 1, .125 .185 -> 2: 2 steps
        (0.05, 10, Budget.steps(2)),
        # taken at .075: everything is late (frame 2); frame 1 started at .1 with 1 step ends
        # .13 and is used at frame 2 as well: wait for it
        (0.075, 10, None),
        # 30 fps: only 1 step (.03 s < 1/30) meets the next arrival
        (0.0, 30, Budget.steps(1)),
    ],
)
def test_decisions_on_a_latency_table(now, fps, expected):
    assert DeadlineBudget(fps, latency_ms=TABLE).decide(now) == expected


def test_schedule_with_waits_worked_by_hand():
    # 10 fps, 8 frames (the sequence ends at .8 s); 1 step takes 130 ms, 2 steps 160 ms.
    #   t=0:    frame 0; 1 and 2 steps are both used at frame 2: 2 steps -> .16
    #   t=.16:  frame 1; 1 step -> .29 (frame 3), 2 steps -> .32 (4): 1 step
    #   t=.29:  frame 2; both land at frame 5, as does frame 3 started at .3: wait
    #   t=.3:   frame 3; .43 and .46 both frame 5: 2 steps -> .46
    #   t=.46:  frame 4; .59 (6) vs .62 (7): 1 step -> .59
    #   t=.59:  frame 5; both frame 8, as frame 6 at .6 (.73): wait
    #   t=.6:   frame 6; 2 steps -> .76;  t=.76: frame 7, 1 step -> .89 >= .8: dropped
    lat = ScheduledLatency(DeadlineBudget(10, latency_ms={1: 130, 2: 160}), {1: 130, 2: 160})
    trace = simulate_realtime(8, 10, lat)
    assert lat.decisions == [[(0, 2), (1, 1), (2, None), (3, 2), (4, 1), (5, None), (6, 2), (7, 1)]]
    assert trace.input_index == [0, 1, 3, 4, 6]
    assert trace.finish == pytest.approx([0.16, 0.29, 0.46, 0.59, 0.76], abs=1e-12)
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
