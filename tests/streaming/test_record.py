"""Streaming records: the live recorder, the JSON files, and one clear error per bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmvideoeq.streaming.record import StreamRecorder, load_record


class FakeClock:
    def __init__(self, times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0)


def _recorder():
    rec = StreamRecorder(clock=FakeClock([100.0, 100.25, 100.5, 200.0, 200.04]), meta=dict(fps=30))
    rec.start_sequence('a')  # first frame arrived at clock 100.0
    assert rec.add(0, [[0, 0, 10, 10]], [0.9], [1]) == 0.25
    rec.add(5, torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    rec.start_sequence('b')
    rec.add(0, np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([0.5]), np.array([2]), runtime=0.04)
    return rec


def test_recorder_timestamps_relative_to_the_sequence_start(tmp_path):
    rec = _recorder()
    a, b = rec.sequences['a'], rec.sequences['b']
    assert a.timestamps == [0.25, 0.5] and a.input_fidx == [0, 5]
    assert a.bboxes[1].shape == (0, 4) and a.labels[0].tolist() == [1]
    assert b.timestamps == pytest.approx([0.04]) and b.runtime == [0.04]
    rec.save(tmp_path / 'rec.json')
    rec.save_dir(tmp_path / 'dir')
    data = json.loads((tmp_path / 'rec.json').read_text())
    assert data['format'] == 'mmvideoeq/streaming_record' and data['meta'] == dict(fps=30)
    assert data['sequences']['a']['bboxes'] == [[[0.0, 0.0, 10.0, 10.0]], []]
    for loaded in (load_record(tmp_path / 'rec.json'), load_record(tmp_path / 'dir')):
        assert set(loaded) == {'a', 'b'}
        assert loaded['a'].to_json() == a.to_json() and loaded['b'].to_json() == b.to_json()
    assert list(load_record(tmp_path / 'dir', names=['b'])) == ['b']


def test_recorder_errors():
    rec = StreamRecorder(clock=FakeClock([0.0]))
    with pytest.raises(RuntimeError, match='add before start_sequence'):
        rec.add(0, [], [], [])
    rec.start_sequence('a', t0=0.0)
    rec.add(0, [], [], [], timestamp=0.5)
    with pytest.raises(ValueError, match="sequence 'a', output 1: timestamp 0.4 is earlier"):
        rec.add(1, [], [], [], timestamp=0.4)
    with pytest.raises(ValueError, match='output 1 scores: 1 values for 2 boxes'):
        rec.add(1, [[0, 0, 1, 1], [0, 0, 2, 2]], [0.3], [0, 0], timestamp=0.6)
    with pytest.raises(ValueError, match='labels must be integers'):
        rec.add(1, [[0, 0, 1, 1]], [0.3], [0.5], timestamp=0.6)
    with pytest.raises(ValueError, match="sequence 'a' was already recorded"):
        rec.start_sequence('a', t0=1.0)
    assert len(rec.sequences['a']) == 1  # nothing half-added


def _write(path, sequences, **extra):
    data = dict(format='mmvideoeq/streaming_record', version=1, sequences=sequences, **extra)
    path.write_text(json.dumps(data))
    return path


GOOD = dict(timestamps=[0.1], input_fidx=[0], bboxes=[[[0, 0, 1, 1]]], scores=[[0.5]], labels=[[0]])


@pytest.mark.parametrize(
    'seq, match',
    [
        ({k: v for k, v in GOOD.items() if k != 'labels'}, r"missing \['labels'\]"),
        (dict(GOOD, scores=[]), 'per-output lists differ in length'),
        (
            dict(
                GOOD,
                timestamps=[0.2, 0.1],
                input_fidx=[0, 1],
                bboxes=[[], []],
                scores=[[], []],
                labels=[[], []],
            ),
            'output 1: timestamp 0.1 is earlier',
        ),  # fmt: skip
        (dict(GOOD, bboxes=[[[0, 0, 1]]]), r'output 0 bboxes: boxes must be a list of \[x1'),
        (dict(GOOD, input_fidx=[-1]), 'input_fidx must be >= 0'),
        (dict(GOOD, input_fidx=[0.5]), 'input_fidx must be an integer'),
        (dict(GOOD, timestamps='0.1'), 'timestamps must be a list'),
        (dict(GOOD, scores=[['high']]), "output 0 scores: expected numbers, got \\['high'\\]"),
    ],
)
def test_load_record_names_file_sequence_and_output(tmp_path, seq, match):
    path = _write(tmp_path / 'r.json', dict(s1=seq))
    with pytest.raises(ValueError, match=match) as err:
        load_record(path)
    assert "r.json, sequence 's1'" in str(err.value)


def test_load_record_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='streaming record .*nope.json does not exist'):
        load_record(tmp_path / 'nope.json')
    bad = tmp_path / 'bad.json'
    bad.write_text('[1, 2')
    with pytest.raises(ValueError, match='bad.json is not valid JSON'):
        load_record(bad)
    bad.write_text('{"sequences": {}}')
    with pytest.raises(ValueError, match='bad.json is not a streaming record'):
        load_record(bad)
    _write(bad, [])
    with pytest.raises(ValueError, match='"sequences" must be an object'):
        load_record(bad)
    (tmp_path / 'd').mkdir()
    (tmp_path / 'd' / 'x.json').write_text(json.dumps(GOOD))
    with pytest.raises(FileNotFoundError, match=r"has no y.json \(the record of sequence 'y'\)"):
        load_record(tmp_path / 'd', names=['x', 'y'])
