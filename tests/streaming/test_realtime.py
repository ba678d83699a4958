"""Real-time simulator and latency tables: hand-worked schedules and the reference's outputs.

The reference numbers (``tests/data/streaming_ap/reference_outputs.json``) are what github
``mtli/sAP``'s ``det/srt_det.py`` produced on the same latency traces (README beside them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmvideoeq.streaming.realtime import (
    FrameTiming,
    LatencyModel,
    LatencyTable,
    SequentialLatency,
    simulate_realtime,
)

DATA = Path(__file__).resolve().parents[1] / 'data' / 'streaming_ap'
REF = json.loads((DATA / 'reference_outputs.json').read_text())
CASES = {c['name']: c for c in json.loads((DATA / 'simulation_cases.json').read_text())}
LENGTHS = {'seq_a': 12, 'seq_b': 7}


def test_slow_worker_takes_the_latest_frame():
    # 250 ms at 10 fps: frame 0 ends at .25 (frames 1, 2 arrived: takes 2), ends at .5 (frame 5
    # arrives exactly then: taken), ends at .75 (takes 7), ends at 1.0 = end of the 10 frames:
    # dropped
    trace = simulate_realtime(10, 10, SequentialLatency(250))
    assert trace.input_index == [0, 2, 5]
    assert trace.start == [0.0, 0.25, 0.5]
    assert trace.finish == [0.25, 0.5, 0.75]
    assert trace.num_processed == 3


def test_fast_worker_waits_for_the_next_frame():
    trace = simulate_realtime(5, 10, SequentialLatency(20))
    assert trace.input_index == [0, 1, 2, 3, 4]
    assert trace.start == [0.0, 0.1, 0.2, 0.3, 0.4]  # i / fps: waited for each frame
    assert trace.finish == pytest.approx([0.02, 0.12, 0.22, 0.32, 0.42], abs=1e-15)


def test_frame_arriving_as_the_worker_frees_is_taken_and_last_output_dropped():
    trace = simulate_realtime(4, 10, SequentialLatency(100))
    assert trace.input_index == [0, 1, 2]  # frame 3's output would end at 0.4 = the end
    assert trace.finish[-1] < 0.4


def test_per_frame_trace_and_empty_sequence():
    # frame 0: 150 ms -> ends .15, takes frame 1 (30 ms) -> ends .18, waits for frame 2 at .2
    # (120 ms) -> ends .32, takes frame 3 (arrived at .3; 10 ms) -> ends .33
    trace = simulate_realtime(4, 10, SequentialLatency([150, 30, 120, 10]))
    assert trace.input_index == [0, 1, 2, 3]
    assert trace.start == pytest.approx([0.0, 0.15, 0.2, 0.32], abs=1e-15)
    assert trace.finish == pytest.approx([0.15, 0.18, 0.32, 0.33], abs=1e-15)
    assert simulate_realtime(0, 10, SequentialLatency(10)).input_index == []


@pytest.mark.parametrize('name', sorted(CASES))
def test_matches_reference_simulator(name):
    case = CASES[name]
    latency = case['latency_ms']
    if isinstance(latency, dict):
        model = SequentialLatency([latency[s] for s in LENGTHS], per_sequence=True)
    else:
        model = SequentialLatency(latency)
    for s, (seq, n) in enumerate(LENGTHS.items()):
        trace = simulate_realtime(n, case['fps'], model, sequence=s)
        ref = REF['simulation'][name]['sequences'][seq]
        assert trace.input_index == ref['input_fidx']
        assert trace.finish == ref['timestamps']  # exactly: same float arithmetic


def test_deterministic_given_the_trace():
    lat = [17.0, 95.5, 40.25, 130.0, 8.0, 66.6, 33.3, 120.0, 5.0, 50.0]
    a = simulate_realtime(10, 30, SequentialLatency(lat)).as_dict()
    b = simulate_realtime(10, 30, SequentialLatency(list(lat))).as_dict()
    assert a == b and json.loads(json.dumps(a)) == a
    assert a['latency'] == dict(type='sequential', name=None, latency_ms='per-frame')


class _Pipeline(LatencyModel):
    """A toy two-stage pipeline: accepts a frame every 50 ms, outputs 150 ms after it took it."""

    def __init__(self):
        self.begun = []

    def begin(self, sequence, num_frames):
        self.begun.append((sequence, num_frames))

    def schedule(self, frame_index, start):
        return FrameTiming(finish=start + 0.15, ready=start + 0.05)

    def describe(self):
        return dict(type='toy-pipeline')


def test_latency_model_hook_with_throughput_above_one_over_latency():
    model = _Pipeline()
    trace = simulate_realtime(5, 10, model, sequence=3)
    # every frame is taken when it arrives (ready 50 ms later, before the next frame); outputs
    # 150 ms later; frame 4's (0.55 s) is past the end (0.5 s)
    assert trace.input_index == [0, 1, 2, 3]
    assert trace.finish == pytest.approx([0.15, 0.25, 0.35, 0.45], abs=1e-15)
    assert model.begun == [(3, 5)] and trace.latency == dict(type='toy-pipeline')


def test_simulator_bad_input():
    with pytest.raises(ValueError, match='fps must be a finite frame rate > 0'):
        simulate_realtime(3, 0, SequentialLatency(10))
    with pytest.raises(TypeError, match='must be a LatencyModel'):
        simulate_realtime(3, 10, 33.0)
    with pytest.raises(ValueError, match=r'latency_ms\[1\] must be a finite latency >= 0'):
        SequentialLatency([10, -1])
    with pytest.raises(ValueError, match='has 2 entries but the sequence has 3 frames'):
        simulate_realtime(3, 10, SequentialLatency([10, 10]))
    with pytest.raises(ValueError, match='sequence 1 has none'):
        simulate_realtime(3, 10, SequentialLatency([10.0], per_sequence=True), sequence=1)

    class Backwards(_Pipeline):
        def schedule(self, frame_index, start):
            return FrameTiming(finish=start - 1, ready=start)

    with pytest.raises(ValueError, match='must not be earlier than the start'):
        simulate_realtime(3, 10, Backwards())


def test_latency_table_round_trip(tmp_path):
    table = LatencyTable(
        device='NVIDIA H100', measured='median of 50 frames', latency_ms={'m/stream@4': 12.5}
    )
    path = tmp_path / 'lat.json'
    table.save(path)
    loaded = LatencyTable.load(path)
    assert loaded == table and loaded.get('m/stream@4') == 12.5
    trace = simulate_realtime(3, 30, loaded.model('m/stream@4'))
    assert trace.input_index == [0, 1, 2] and trace.latency['name'] == 'm/stream@4 (NVIDIA H100)'
    with pytest.raises(KeyError, match=r"no entry 'm/full'; it has \['m/stream@4'\]"):
        loaded.get('m/full')


def test_latency_table_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.json does not exist'):
        LatencyTable.load(tmp_path / 'nope.json')
    bad = tmp_path / 'bad.json'
    bad.write_text('{"format": ')
    with pytest.raises(ValueError, match='bad.json is not valid JSON'):
        LatencyTable.load(bad)
    bad.write_text('{"latency_ms": {}}')
    with pytest.raises(ValueError, match='bad.json is not a latency table'):
        LatencyTable.load(bad)
    good = dict(format='mmvideoeq/latency_table', version=1, device='cpu', measured='x')
    bad.write_text(json.dumps(dict(good, latency_ms={'a': -3})))
    with pytest.raises(ValueError, match=r"bad.json: latency_ms\['a'\] must be a finite latency"):
        LatencyTable.load(bad)
    bad.write_text(json.dumps(dict(good, version=2, latency_ms={})))
    with pytest.raises(ValueError, match='bad.json has version 2'):
        LatencyTable.load(bad)
    bad.write_text(json.dumps(good))
    with pytest.raises(ValueError, match=r"bad.json lacks \['latency_ms'\]"):
        LatencyTable.load(bad)
