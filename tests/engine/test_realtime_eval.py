"""The sweep's real-time simulation (RealtimeSweep): sAP from fixed latency traces equals the
reference pairing (pair_stream) + pycocotools computed here by hand; replay and the deadline
scheduler use the frames the worker takes."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmvideoeq.engine.loops.realtime_eval import FrameLog, RealtimeSweep
from mmvideoeq.evaluation.functional import pair_stream
from mmvideoeq.streaming.realtime import LatencyTable

VIDEOS = {'a': 6, 'b': 4}
CAT = 7  # the category id of class index 0


def _box(video, t):
    x = 10.0 + 12.0 * t + (0 if video == 'a' else 100)  # moves 12 px a frame (48 px wide)
    return [x, 20.0, x + 48.0, 60.0]


def _gt():
    images, anns, k = [], [], 0
    for video, n in VIDEOS.items():
        for t in range(n):
            img_id = len(images) + 1
            images.append(dict(id=img_id, width=320, height=100, file_name=f'{video}/{t}.jpg'))
            x1, y1, x2, y2 = _box(video, t)
            k += 1
            anns.append(
                dict(
                    id=k,
                    image_id=img_id,
                    category_id=CAT,
                    bbox=[x1, y1, x2 - x1, y2 - y1],
                    area=(x2 - x1) * (y2 - y1),
                    iscrowd=0,
                )
            )
    coco = COCO()
    coco.dataset = dict(images=images, annotations=anns, categories=[dict(id=CAT, name='car')])
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _img_ids():
    ids, k = {}, 1
    for video, n in VIDEOS.items():
        ids[video] = list(range(k, k + n))
        k += n
    return ids


def _pred(video, t, shift=0.0):
    x1, y1, x2, y2 = _box(video, t)
    return (
        np.array([[x1 + shift, y1, x2 + shift, y2]]),
        np.array([0.9]),
        np.array([0]),
    )


def _logs(ms, shift=0.0):
    ids = _img_ids()
    return [
        FrameLog(v, t, ids[v][t], ms(v, t), _pred(v, t, shift))
        for v, n in VIDEOS.items()
        for t in range(n)
    ]


def _coco_ap(dets, img_ids):
    """pycocotools' COCOeval at mmdet's maxDets, as the sweep scores."""
    gt = _gt()
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(dets) if dets else None
        ev = COCOeval(gt, dt, 'bbox')
        ev.params.imgIds = img_ids
        ev.params.catIds = [CAT]
        ev.params.maxDets = [100, 300, 1000]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def _expected(input_of_output, finish, fps, eta=0.0, shift=0.0):
    """Pair each video's frames with the outputs (pair_stream) and score by hand."""
    ids = _img_ids()
    dets, counts = [], [0, 0, 0]
    for v, n in VIDEOS.items():
        pairing = pair_stream(finish[v], input_of_output[v], n, fps=fps, eta=eta)
        counts[0] += pairing.counts.in_time
        counts[1] += pairing.counts.miss
        counts[2] += pairing.counts.mismatch
        for t, j in enumerate(pairing.input_index):
            if j is None:
                continue
            x1, y1, x2, y2 = _box(v, j)
            dets.append(
                dict(
                    image_id=ids[v][t],
                    bbox=[x1 + shift, y1, x2 - x1, y2 - y1],
                    score=0.9,
                    category_id=CAT,
                )
            )
    return _coco_ap(dets, [i for v in VIDEOS for i in ids[v]]), counts


def test_fixed_trace_sap_equals_pairing_and_pycocotools():
    # 10 fps; video a: 150 ms per frame except frame 3 (40 ms); video b: 250 ms per frame.
    # a: frame 0 -> .15; takes 1 -> .30; takes 3 (arrived .3) -> .34; waits for 4 at .4 -> .55
    #    (>= .6? no: kept); takes 5 at .55 -> .70 >= .6: dropped
    # b: frame 0 -> .25; takes 2 -> .50 >= .4: dropped
    trace = {'a': [150, 150, 150, 40, 150, 150], 'b': [250] * 4}
    sweep = RealtimeSweep(fps=[10], latency='trace', scheduler=False)
    sweep.add(dict(name='cold@1', iters=1, warm=False), _logs(lambda v, t: trace[v][t]))
    out = sweep.run((_gt(), [CAT]))
    got = out['settings']['cold@1']['fps']['10']
    inputs = {'a': [0, 1, 3, 4], 'b': [0]}
    finish = {'a': [0.15, 0.30, 0.34, 0.55], 'b': [0.25]}
    assert got['traces']['a']['input_index'] == inputs['a']
    assert got['traces']['b']['input_index'] == inputs['b']
    assert got['traces']['a']['finish'] == pytest.approx(finish['a'], abs=1e-12)
    stats, (in_time, miss, mismatch) = _expected(inputs, finish, 10)
    assert got['sAP'] == pytest.approx(stats[0], abs=1e-12)
    assert got['sAP_50'] == pytest.approx(stats[1], abs=1e-12)
    assert got['counts'] == dict(num_frames=10, in_time=in_time, miss=miss, mismatch=mismatch)
    assert 0 < got['sAP'] < out['settings']['cold@1']['offline']['sAP'] == pytest.approx(1.0)
    assert json.loads(json.dumps(out))  # JSON-serialisable as results.json records it


def test_latency_table_and_median_give_constant_workers(tmp_path):
    path = tmp_path / 'lat.json'
    LatencyTable(device='gpu', measured='by hand', latency_ms={'cold@1': 50.0}).save(path)
    sweep = RealtimeSweep(fps=[10], latency_table=str(path), scheduler=False)
    sweep.add(dict(name='cold@1', iters=1, warm=False), _logs(lambda v, t: 999.0))
    got = sweep.run((_gt(), [CAT]))['settings']['cold@1']['fps']['10']
    assert got['traces']['a']['input_index'] == list(range(6))  # 50 ms < 100 ms: every frame
    stats, _ = _expected(
        {v: list(range(n)) for v, n in VIDEOS.items()},
        {v: [0.1 * t + 0.05 for t in range(n)] for v, n in VIDEOS.items()},
        10,
    )
    assert got['sAP'] == pytest.approx(stats[0], abs=1e-12)
    sweep = RealtimeSweep(fps=[10], latency='median', scheduler=False)
    sweep.add(dict(name='cold@1', iters=1, warm=False), _logs(lambda v, t: 100.0 + t))
    assert sweep.constant_ms('cold@1') == 102.0  # median of 100..105, 100..103
    # 'auto': a fixed budget's cost is constant: its timing repeats plus the pre-processing
    fixed = dict(name='stream@1', iters=1, warm=True, policy=dict(budget=dict(type='FixedBudget')))
    sweep = RealtimeSweep(fps=[10], scheduler=False)
    logs = _logs(lambda v, t: 100.0 + t)
    for log in logs:
        log.pre_ms = 2.0
    sweep.add(fixed, logs)
    assert sweep.source('stream@1') == 'median'  # no timing repeats yet
    sweep.set_timing('stream@1', dict(median_ms=40.0))
    assert (sweep.source('stream@1'), sweep.constant_ms('stream@1')) == ('timing', 42.0)
    adaptive = dict(fixed, name='stream@4', policy=dict(budget=dict(type='AdaptiveBudget')))
    sweep.add(adaptive, logs)
    sweep.set_timing('stream@4', dict(median_ms=40.0))
    assert sweep.source('stream@4') == 'trace'  # its cost varies frame to frame
    with pytest.raises(KeyError, match="no entry 'full'"):
        RealtimeSweep(fps=[10], latency_table=str(path)).constant_ms('full')


def test_replay_and_deadline_scheduler():
    calls = []

    def replay(setting, plan):
        calls.append((setting['name'], {v: dict(p) for v, p in plan.items()}))
        shift = 3.0 if setting['name'] == 'deadline' else 0.0
        return {v: {j: _pred(v, j, shift) for j in p} for v, p in plan.items()}

    sweep = RealtimeSweep(fps=[10], latency='median')
    # stream@1: 30 ms, stream@4: 75 ms, both within a 100 ms interval
    sweep.add(dict(name='stream@1', iters=1, warm=True), _logs(lambda v, t: 30.0))
    sweep.add(dict(name='stream@4', iters=4, warm=True), _logs(lambda v, t: 75.0))
    out = sweep.run((_gt(), [CAT]), replay)
    assert [c[0] for c in calls] == ['stream@1', 'stream@4', 'deadline']
    assert calls[0][1]['a'] == {t: None for t in range(6)}  # every frame, its own budget
    # the scheduler gives every frame the 4 steps that still end before the next arrival
    assert calls[2][1]['a'] == {t: 4 for t in range(6)}
    d = out['settings']['deadline']['fps']['10']
    assert d['budgets'] == {'1': 0, '4': 10} and d['skipped_by_scheduler'] == 0
    # the replayed deadline predictions (shifted 3 px) are what is scored
    stats, _ = _expected(
        {v: list(range(n)) for v, n in VIDEOS.items()},
        {v: [0.1 * t + 0.075 for t in range(n)] for v, n in VIDEOS.items()},
        10,
        shift=3.0,
    )
    assert d['sAP'] == pytest.approx(stats[0], abs=1e-12)
    best = out['best_fixed_m']['10']
    assert best['setting'] in ('stream@1', 'stream@4') and out['best_fixed']['10'] == best
    assert d['beats_best_fixed_m'] == (d['sAP'] > best['sAP'])
    # a process without the ground truth (distributed) replays the same frames, scores nothing
    n = len(calls)
    assert sweep.run(None, replay) is None
    assert calls[n:] == calls[:n]
