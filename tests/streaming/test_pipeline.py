"""Pipelined streaming: equal to the sequential stream, stages really overlap, the pipeline's
timing model on hand-worked schedules."""

from __future__ import annotations

import threading

import pytest
import torch

from mmvideoeq.deq import solve
from mmvideoeq.streaming import (
    PipelinedStream,
    PipelineLatency,
    StreamFrame,
    StreamPolicy,
    StreamStages,
    run_stream,
)
from mmvideoeq.streaming.realtime import SequentialLatency, simulate_realtime


def toy_stages(toy) -> StreamStages:
    """The toy model's step as stem (x + 0, the frame) / solve / heads (a copy per scale)."""

    def solve_fn(x, z0, memory, budget):
        z0 = toy.zeros(x) if z0 is None else z0
        z, stats = solve(
            lambda z: toy.f(z, x),
            z0,
            method='fixed_point',
            max_iter=30 if budget.is_full else budget.max_iter,
            tol=budget.tol,
            return_lowest=budget.select == 'lowest',
        )
        return list(z), z, [1 if m is None else m + 1 for m in memory], stats

    return StreamStages(
        stem=lambda x: x + 0.0,
        solve=solve_fn,
        heads=lambda feats, payloads: [t.clone() for t in feats],
    )


def _frames(videos=((0, 5), (1, 4)), skip=()):
    out = []
    for v, n in videos:
        g = torch.Generator().manual_seed(v)
        base, direction = torch.randn(2, 1, 4, 8, 8, generator=g)
        for t, x in enumerate(base + 0.05 * t * direction for t in range(n)):
            out.append(StreamFrame(x, f'v{v}', t, skip='broken' if (v, t) in skip else None))
    return out


def _policy(iters=2, **kw):
    return StreamPolicy(budget=dict(type='FixedBudget', iters=iters), **kw)


def _same_run(a, b):
    assert len(a.outputs) == len(b.outputs)
    for oa, ob in zip(a.outputs, b.outputs):
        if oa is None:
            assert ob is None
        else:
            assert all(torch.equal(x, y) for x, y in zip(oa, ob))
    keys = ('video_id', 'frame_id', 'iters', 'n_eval', 'init', 'reset', 'reason', 'skipped')
    for ra, rb in zip(a.records, b.records):
        assert all(getattr(ra, k, None) == getattr(rb, k, None) for k in keys)


@pytest.mark.parametrize(
    'groups',
    [
        (('preprocess', 'stem'), ('solve',), ('heads',)),
        (('preprocess',), ('stem',), ('solve',), ('heads',)),
        (('preprocess', 'stem', 'solve'), ('heads',)),
        (('preprocess', 'stem', 'solve', 'heads'),),
    ],
)
def test_pipeline_equals_sequential_stream(toy, groups):
    frames = _frames(skip={(0, 2)})
    seq = run_stream(toy.stream_step, frames, _policy(), zeros_like_fn=toy.zeros)
    pipe = PipelinedStream(toy_stages(toy), _policy(), groups=groups, zeros_like_fn=toy.zeros)
    run = pipe.run(frames)
    _same_run(seq, run)
    assert run.outputs[2] is None and run.records[2].skipped == 'broken'
    assert [r.reset for r in run.records] == [True, False, False, False, False] + [True] + [
        False
    ] * 3
    # the carried state is the sequential stream's
    for key in seq.states:
        assert all(torch.equal(a, b) for a, b in zip(seq.states[key].z, run.states[key].z))
    _same_run(seq, pipe.run_sequential(frames))
    assert len(run.stage_times[0]) == len(groups)


def test_pipeline_stages_run_concurrently(toy):
    """Frame 0's solve waits until frame 1's stem has started: only a pipeline gets through."""
    stem_of_1 = threading.Event()
    stages = toy_stages(toy)
    seen = []

    def stem(x):
        seen.append(len(seen))
        if len(seen) == 2:
            stem_of_1.set()
        return x + 0.0

    def solve_fn(s, z0, memory, budget):
        if not stem_of_1.is_set():
            assert stem_of_1.wait(timeout=20), 'the stem of frame 1 never ran during a solve'
        return stages.solve(s, z0, memory, budget)

    pipe = PipelinedStream(StreamStages(stem, solve_fn, stages.heads), _policy())
    run = pipe.run(_frames(videos=((0, 3),)))
    assert len(run.outputs) == 3 and stem_of_1.is_set()
    a, b = run.stage_times[0][1], run.stage_times[1][0]  # frame 0's solve, frame 1's stem
    assert b[0] < a[1]  # frame 1's stem started before frame 0's solve ended


def test_pipeline_fed_as_a_camera(toy):
    pipe = PipelinedStream(toy_stages(toy), _policy())
    run = pipe.run(_frames(((0, 3),)), interval=0.02)
    assert [a - run.arrivals[0] >= 0.02 * i - 1e-4 for i, a in enumerate(run.arrivals)] == [
        True
    ] * 3
    assert all(lat >= 0 for lat in run.latency_ms)
    with pytest.raises(ValueError, match='interval must be a positive'):
        pipe.run(_frames(((0, 1),)), interval=0)


def test_pipeline_errors_and_bad_input(toy):
    stages = toy_stages(toy)

    def bad_heads(feats, payloads):
        raise KeyError('no such head')

    pipe = PipelinedStream(StreamStages(stages.stem, stages.solve, bad_heads), _policy())
    with pytest.raises(RuntimeError, match=r"stage 2 \('heads',\) failed: KeyError"):
        pipe.run(_frames())
    with pytest.raises(ValueError, match='must group the pieces'):
        PipelinedStream(stages, _policy(), groups=(('stem', 'preprocess'), ('solve', 'heads')))
    with pytest.raises(ValueError, match='must group the pieces'):
        PipelinedStream(stages, _policy(), groups=(('preprocess', 'stem'), ('solve',)))
    with pytest.raises(TypeError, match='StreamStages'):
        PipelinedStream(toy.stream_step, _policy())
    frames = _frames(videos=((0, 2), (1, 2)))
    with pytest.raises(ValueError, match='one frame per time step'):
        PipelinedStream(stages, _policy()).run([frames[:2]])
    with pytest.raises(ValueError, match='leading batch dimension of 1'):
        PipelinedStream(stages, _policy()).run([StreamFrame(torch.zeros(2, 4, 8, 8), 'v', 0)])


def test_pipeline_restores_the_callers_intra_op_threads(toy):
    before = torch.get_num_threads()
    PipelinedStream(toy_stages(toy), _policy(), intra_op_threads=1).run(_frames(((0, 2),)))
    assert torch.get_num_threads() == before


def test_process_pipeline_equals_sequential_stream_and_hands_back_states_and_policy(toy):
    """One forked process per stage: the sequential stream's outputs, records and final states;
    the caller's states dict and policy are updated with the solve stage's."""
    frames = _frames(skip={(0, 2)})
    seq = run_stream(toy.stream_step, frames, _policy(), zeros_like_fn=toy.zeros)
    policy = StreamPolicy(budget=dict(type='TimeBudget', ms_per_frame=50.0, max_iter=4))
    states: dict = {}
    pipe = PipelinedStream(toy_stages(toy), _policy(), zeros_like_fn=toy.zeros, backend='process')
    run = pipe.run(frames, states=states)
    _same_run(seq, run)
    assert run.states is states and set(states) == set(seq.states)
    for key in seq.states:
        assert all(torch.equal(a, b) for a, b in zip(seq.states[key].z, states[key].z))
        assert states[key].memory == seq.states[key].memory
    # stage timestamps come from one clock: every frame's stages in order, frames overlapped
    for times in run.stage_times:
        assert all(a[1] <= b[0] for a, b in zip(times, times[1:]))
    # a time budget learns its per-iteration cost in the solve process; the caller's policy
    # object gets it back
    timed = PipelinedStream(toy_stages(toy), policy, zeros_like_fn=toy.zeros, backend='process')
    assert policy.budget.iter_ms_est is None
    timed.run(_frames(((0, 3),)))
    assert policy.budget.iter_ms_est is not None and policy.budget.iter_ms_est > 0


def test_process_pipeline_errors_name_the_stage_with_its_traceback(toy):
    stages = toy_stages(toy)

    def bad_heads(feats, payloads):
        raise KeyError('no such head')

    pipe = PipelinedStream(
        StreamStages(stages.stem, stages.solve, bad_heads), _policy(), backend='process'
    )
    with pytest.raises(RuntimeError, match=r"stage 2 \('heads',\) failed: KeyError") as err:
        pipe.run(_frames())
    assert 'bad_heads' in str(err.value)  # the traceback from the stage process
    assert isinstance(err.value.__cause__, KeyError)

    def dies(feats, payloads):
        import os

        os._exit(3)

    pipe = PipelinedStream(
        StreamStages(stages.stem, stages.solve, dies), _policy(), backend='process'
    )
    with pytest.raises(RuntimeError, match='died with exit code 3'):
        pipe.run(_frames(((0, 2),)))
    with pytest.raises(ValueError, match="backend must be 'thread' or 'process'"):
        PipelinedStream(stages, _policy(), backend='fork')
    with pytest.raises(ValueError, match='clock that all processes share'):
        PipelinedStream(stages, _policy(), backend='process', clock=lambda: 0.0)


def test_pipeline_latency_hand_worked_schedule():
    # 8 fps (a frame every 0.125 s), 8 frames (the sequence ends at 1.0 s); stages 62.5, 187.5,
    # 125 ms: latency 375 ms, a new frame every max = 187.5 ms.
    #   frame 0 at 0:      stages end .0625 .25 .375    -> output .375,  ready .1875
    #   frame 1 at .1875:  ends .25 .4375 .5625         -> output .5625, ready .375
    #   frame 3 at .375:   output .75, ready .5625;  frame 4 at .5625: output .9375, ready .75
    #   frame 6 at .75:    output 1.125 >= 1.0: dropped; frame 7 at .9375: dropped
    lat = PipelineLatency([62.5, 187.5, 125.0])
    trace = simulate_realtime(8, 8, lat)
    assert trace.input_index == [0, 1, 3, 4]
    assert trace.start == [0.0, 0.1875, 0.375, 0.5625]
    assert trace.finish == [0.375, 0.5625, 0.75, 0.9375]
    # the sequential worker with the same total latency answers half as many frames
    assert simulate_realtime(8, 8, SequentialLatency(375.0)).input_index == [0, 3]
    assert lat.describe() == dict(type='pipelined', name=None, stage_ms=[62.5, 187.5, 125.0])


def test_pipeline_latency_per_frame_stage_times_wait_for_a_busy_stage():
    # frame 0: stages 125, 187.5 ms -> ends .125, .3125; the next frame is taken when, with
    # frame 0's stage 0 time, it would reach stage 1 as that frees: .3125 - .125 = .1875.
    # frame 1 (stages 62.5, 125) reaches stage 1 at .25 and waits until .3125: output .4375;
    # ready = max(.25, .4375 - .0625) = .375. frame 2 (62.5, 62.5) at .375: .4375, .5.
    lat = PipelineLatency([[125.0, 62.5, 62.5, 62.5], [187.5, 125.0, 62.5, 62.5]])
    lat.begin(0, 4)
    t0 = lat.schedule(0, 0.0)
    assert (t0.finish, t0.ready) == (0.3125, 0.1875)
    t1 = lat.schedule(1, 0.1875)
    assert (t1.finish, t1.ready) == (0.4375, 0.375)
    t2 = lat.schedule(2, 0.375)
    assert (t2.finish, t2.ready) == (0.5, 0.4375)
    with pytest.raises(ValueError, match='trace of stage 0 has 4 entries'):
        lat.begin(0, 5)
    with pytest.raises(ValueError, match='finite latency'):
        PipelineLatency([10.0, -1.0])


def test_process_pickling_keeps_every_tensor_exactly():
    """Frames cross processes pickled by value; CPU tensors as numpy arrays where numpy holds
    their dtype, torch's own pickling otherwise."""
    import pickle

    from mmvideoeq.streaming.pipeline_process import _dumps

    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    leaf = torch.randn(3, requires_grad=True)
    obj = {
        'strided': base.t()[1:, ::2],  # a non-contiguous view
        'half': base.half(),
        'bf16': base.bfloat16(),
        'bool': base > 0,
        'long': torch.arange(5),
        'scalar': torch.tensor(2.5),
        'leaf': leaf,
        'nested': [(base[0], 'text', 3)],
    }
    back = pickle.loads(_dumps(obj))
    for key in ('strided', 'half', 'bf16', 'bool', 'long', 'scalar'):
        assert back[key].dtype == obj[key].dtype and torch.equal(back[key], obj[key]), key
    assert back['leaf'].requires_grad and torch.equal(back['leaf'].detach(), leaf.detach())
    assert torch.equal(back['nested'][0][0], base[0]) and back['nested'][0][1:] == ('text', 3)
