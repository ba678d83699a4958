"""Streaming pairing and streaming AP: hand-worked pairings and the reference's numbers.

Reference numbers (``tests/data/streaming_ap/reference_outputs.json``): github ``mtli/sAP``'s
``det/srt_det.py`` and ``det/streaming_eval.py`` run on the same fixtures (README beside them).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmvideoeq.evaluation.functional.streaming_ap import (
    annotation_sequences,
    coco_streaming_ap,
    realtime_streaming_ap,
)
from mmvideoeq.evaluation.functional.streaming_pairs import pair_stream, simulate_pairs
from mmvideoeq.streaming.record import SequenceRecord, load_record

DATA = Path(__file__).resolve().parents[1] / 'data' / 'streaming_ap'
REF = json.loads((DATA / 'reference_outputs.json').read_text())
ANN = json.loads((DATA / 'annotations.json').read_text())
DETS = json.loads((DATA / 'detections.json').read_text())
CASES = {c['name']: c for c in json.loads((DATA / 'simulation_cases.json').read_text())}
FRAMES = annotation_sequences(ANN)
NAMES = list(FRAMES)
HAND = load_record(DATA / 'record_hand.json')


def _counts(result):
    return dict(in_time=result.in_time, miss=result.miss, mismatch=result.mismatch)


def _ref_counts(ref):
    return {k: ref[k] for k in ('in_time', 'miss', 'mismatch')}


# the hand record's outputs (fps 10), worked by hand: frame i is evaluated at (i - eta) / 10
HAND_PAIRS = {
    # seq_a outputs (t, input): (-.05, 0) (0, 0) (.1, 1) (.1, 2) (.25, 2) (.3, 3) (.7, 6)
    # (.7, 5) (1.0, 9); seq_b: (.35, 1) (.6, 4) (.6, 5)
    0: dict(
        seq_a=[1, 3, 3, 5, 5, 5, 5, 7, 7, 7, 8, 8],  # ties: the last listed output wins
        seq_b=[None, None, None, None, 0, 0, 2],
        counts=dict(in_time=3, miss=4, mismatch=25),
    ),
    -1: dict(
        seq_a=[3, 3, 5, 5, 5, 5, 7, 7, 7, 8, 8, 8],
        seq_b=[None, None, None, 0, 0, 2, 2],
        counts=dict(in_time=3, miss=3, mismatch=14),
    ),
}


@pytest.mark.parametrize('eta', [0, -1])
def test_pairing_hand_worked(eta):
    total = dict(in_time=0, miss=0, mismatch=0)
    for name in NAMES:
        rec = HAND[name]
        pairing = pair_stream(rec.timestamps, rec.input_fidx, len(FRAMES[name]), fps=10, eta=eta)
        assert pairing.output_index == HAND_PAIRS[eta][name]
        assert pairing.input_index == [
            None if k is None else rec.input_fidx[k] for k in HAND_PAIRS[eta][name]
        ]
        for key, value in _counts(pairing.counts).items():
            total[key] += value
    assert total == HAND_PAIRS[eta]['counts']
    assert total == _ref_counts(REF['hand'][str(eta)])  # and the reference agrees


def test_pairing_edge_cases():
    # before the first frame, and exactly at a frame's time
    p = pair_stream([-1.0, 0.0], [0, 0], 2, fps=10)
    assert p.output_index == [1, 1] and p.counts.in_time == 1 and p.counts.mismatch == 1
    # eta 0: an output finishing exactly at frame 1's time pairs with frame 1; eta 0.5 not
    assert pair_stream([0.1], [1], 2, fps=10, eta=0).output_index == [None, 0]
    assert pair_stream([0.1], [1], 2, fps=10, eta=0.5).output_index == [None, None]
    # no output: all missed; more outputs than frames: only those finished in time matter
    p = pair_stream([], [], 3, fps=30)
    assert p.output_index == [None] * 3 and p.counts.as_dict() == dict(
        num_frames=3, in_time=0, miss=3, mismatch=0
    )
    p = pair_stream([0.0, 0.5, 5.0], [0, 1, 1], 2, fps=2)
    assert p.output_index == [0, 1] and p.counts.in_time == 2
    assert p.take(['f0', 'f1'], 'empty') == ['f0', 'f1']
    assert pair_stream([0.3], [0], 2, fps=10).take(['f0', 'f1'], 'empty') == ['empty', 'empty']


def test_pairing_bad_input():
    with pytest.raises(ValueError, match='output 1 .* is earlier than output 0'):
        pair_stream([0.2, 0.1], [0, 1], 3, fps=10)
    with pytest.raises(ValueError, match=r'input frame indices \[3\] are outside'):
        pair_stream([0.2], [3], 3, fps=10)
    with pytest.raises(ValueError, match='2 timestamps but 1 input frame'):
        pair_stream([0.1, 0.2], [0], 3, fps=10)
    with pytest.raises(ValueError, match='fps must be > 0'):
        pair_stream([], [], 3, fps=0)
    with pytest.raises(TypeError, match='eta must be a number'):
        pair_stream([], [], 3, fps=10, eta=None)


@pytest.mark.parametrize('eta', ['0', '-1', '0.5'])
def test_recorded_outputs_match_reference(eta):
    result = coco_streaming_ap(
        ANN, {s: (FRAMES[s], HAND[s]) for s in NAMES}, fps=10, eta=float(eta)
    )
    ref = REF['hand'][eta]
    assert result.stats == ref['stats']  # the same pycocotools run: equal to the last bit
    assert _counts(result.counts) == _ref_counts(ref)
    assert result.sap == ref['stats'][0] and result.sap50 == ref['stats'][1]
    assert result.counts.num_frames == 19
    assert set(result.per_sequence) == {'seq_a', 'seq_b'}


def _latency(case):
    lat = case['latency_ms']
    return [lat[s] for s in NAMES] if isinstance(lat, dict) else lat


def _predictions():
    return [[DETS[str(i)] for i in FRAMES[s]] for s in NAMES]


@pytest.mark.parametrize('name', sorted(CASES))
@pytest.mark.parametrize('eta', ['0', '-1'])
def test_simulated_streaming_ap_matches_reference(name, eta):
    case = CASES[name]
    result = realtime_streaming_ap(
        ANN, [FRAMES[s] for s in NAMES], _predictions(), _latency(case),
        fps=case['fps'], eta=float(eta), names=NAMES,
    )  # fmt: skip
    ref = REF['simulation'][name]
    assert result.stats == ref['eval'][eta]['stats']
    assert _counts(result.counts) == _ref_counts(ref['eval'][eta])
    for s in NAMES:
        assert result.traces[s].input_index == ref['sequences'][s]['input_fidx']
        assert result.traces[s].finish == ref['sequences'][s]['timestamps']
    out = result.as_dict()
    assert json.loads(json.dumps(out)) == out and out['sAP'] == result.sap
    assert out['traces']['seq_a']['input_index'] == ref['sequences']['seq_a']['input_fidx']


def _offline_ap(cat_ids=None):
    gt = COCO()
    gt.dataset = copy.deepcopy(ANN)
    gt.createIndex()
    dets = [
        dict(image_id=int(i), bbox=[b[0], b[1], b[2] - b[0], b[3] - b[1]], score=s,
             category_id=lab)
        for i, d in DETS.items()
        for b, s, lab in zip(d['bboxes'], d['scores'], d['labels'])
    ]  # fmt: skip
    ev = COCOeval(gt, gt.loadRes(dets), 'bbox')
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return list(ev.stats)


def test_zero_latency_gives_offline_ap():
    # a worker that takes no time processes every frame as it arrives: sAP = offline AP
    result = realtime_streaming_ap(
        ANN, [FRAMES[s] for s in NAMES], _predictions(), 0.0, fps=30, names=NAMES
    )
    assert result.counts.as_dict() == dict(num_frames=19, in_time=19, miss=0, mismatch=0)
    assert result.stats == _offline_ap()
    assert 0.3 < result.sap < 1  # the offline detector is decent; streaming at 30 fps is not
    slow = realtime_streaming_ap(
        ANN, [FRAMES[s] for s in NAMES], _predictions(), 1000 / 30, fps=30, names=NAMES
    )
    assert slow.sap < 0.1


def test_class_indices_with_cat_ids_and_tensors():
    import torch

    cat_ids = [2, 0, 1]  # label k is category cat_ids[k]
    to_label = {c: k for k, c in enumerate(cat_ids)}
    preds = [
        [
            dict(bboxes=torch.tensor(d['bboxes'], dtype=torch.float64).reshape(-1, 4),
                 scores=torch.tensor(d['scores'], dtype=torch.float64),
                 labels=torch.tensor([to_label[c] for c in d['labels']], dtype=torch.long))
            for d in video
        ]
        for video in _predictions()
    ]  # fmt: skip
    result = realtime_streaming_ap(
        ANN, [FRAMES[s] for s in NAMES], preds, 20.0, fps=10, eta=-1, cat_ids=cat_ids
    )
    ref = REF['simulation']['const20_fps10']['eval']['-1']
    assert result.stats == ref['stats'] and result.sap > 0.4
    assert set(result.traces) == {'0', '1'}


def test_no_detection_at_all_scores_zero():
    # the reference's loadRes([]) fails here; with ground truth present the AP is 0
    empty = [[dict(bboxes=np.zeros((0, 4)), scores=[], labels=[])] * len(FRAMES[s]) for s in NAMES]
    result = realtime_streaming_ap(ANN, [FRAMES[s] for s in NAMES], empty, 10.0, fps=10)
    assert result.sap == 0.0 and result.sap50 == 0.0


def test_generic_pairing_for_any_per_frame_metric():
    # 250 ms at 10 fps over 10 frames: outputs of frames 0, 2, 5 at .25, .5, .75
    [(trace, pairing)] = simulate_pairs([10], 250.0, fps=10, eta=0)
    assert trace.input_index == [0, 2, 5]
    frames = [f'pred{i}' for i in range(10)]
    assert (
        pairing.take(frames, 'empty')
        == ['empty'] * 3 + ['pred0'] * 2 + ['pred2'] * 3 + ['pred5'] * 2
    )
    # mismatch: (3 + 4) from frame 0, (3 + 4 + 5) from frame 2, (3 + 4) from frame 5
    assert pairing.counts.as_dict() == dict(num_frames=10, in_time=0, miss=3, mismatch=26)
    two = simulate_pairs([4, 2], [[10, 10, 10, 10], 500.0], fps=10)
    assert [t.input_index for t, _ in two] == [[0, 1, 2, 3], []]
    with pytest.raises(ValueError, match='latency has 1 entries for 2 sequences'):
        simulate_pairs([4, 2], [10.0], fps=10)


def test_simulation_input_checks():
    with pytest.raises(ValueError, match='video 1: 7 image ids but 6 predictions'):
        realtime_streaming_ap(
            ANN, [FRAMES[s] for s in NAMES], [_predictions()[0], _predictions()[1][:6]], 10.0,
            fps=10,
        )  # fmt: skip
    record = SequenceRecord()
    record.append(0.1, 20, np.zeros((0, 4)), [], [])
    bad = {'seq_a': (FRAMES['seq_a'], record)}
    with pytest.raises(ValueError, match=r"sequence 'seq_a': input frame indices \[20\]"):
        coco_streaming_ap(ANN, bad, fps=10)
    with pytest.raises(ValueError, match='max_dets must have 3 entries'):
        coco_streaming_ap(ANN, {}, fps=10, max_dets=(100,))


def test_annotation_sequences_checks():
    assert [len(v) for v in FRAMES.values()] == [12, 7]
    assert FRAMES['seq_b'][0] == 12
    with pytest.raises(ValueError, match='ann.json has no "sequences" list'):
        annotation_sequences(dict(images=[]), 'ann.json')
    with pytest.raises(ValueError, match='image 0 .* has sid 2'):
        annotation_sequences(dict(sequences=['a'], images=[dict(id=0, sid=2)]), 'ann.json')
    swapped = dict(sequences=['a'], images=[dict(id=0, sid=0, fid=1), dict(id=1, sid=0, fid=0)])
    with pytest.raises(ValueError, match='fid 0 after fid 1 in sequence'):
        annotation_sequences(swapped, 'ann.json')
    dup = dict(sequences=['a'], images=[dict(id=0, sid=0), dict(id=0, sid=0)])
    with pytest.raises(ValueError, match='image id 0 appears twice'):
        annotation_sequences(dup, 'ann.json')
