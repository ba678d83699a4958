"""DVPQ equals ViP-DeepLab's reference eval_dvpq.py scripts, and each known trap is handled.

``tests/data/dvps/reference_outputs.json`` holds what the reference scripts printed on the
fixtures of ``tests/data/dvps`` in their environment (numpy 1.26.4, Pillow 9.5.0); the README
there gives the commands. Per-class TP/FN/FP must be equal and PQ / Thing / Stuff within 1e-9.
The trap tests use small cases whose expected values are worked out by hand in the comments.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmvideoeq.apis.prediction_folders import evaluate_folders
from mmvideoeq.class_names import CITYSCAPES_DVPS_CLASSES, SEMKITTI_DVPS_CLASSES
from mmvideoeq.datasets.dvps_io import read_depth_png
from mmvideoeq.evaluation.functional import (
    DVPQProtocol,
    dvpq_from_pairs,
    frame_pairs,
    pq_stats,
    pq_summary,
    window_starts,
)

DATA = Path(__file__).resolve().parents[1] / 'data' / 'dvps'
REF = json.loads((DATA / 'reference_outputs.json').read_text())
CASES = {
    # run name -> (format, fixture, panoptic folder, windows, thresholds)
    'cityscapes': ('cityscapes_dvps', 'cityscapes', 'pred_pan', (1, 2, 3, 4), (0.5, 0.25, 0.1)),
    'cityscapes_no18': ('cityscapes_dvps', 'cityscapes', 'pred_pan_no18', (1, 2), (0.5,)),
    'semkitti': ('semkitti_dvps', 'semkitti', 'pred_pan', (1, 5, 10, 20), (0.5, 0.25, 0.1)),
}


@pytest.fixture(scope='module')
def evaluated():
    out = {}
    for name, (fmt, fixture, pan, windows, thresholds) in CASES.items():
        root = DATA / fixture
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', UserWarning)
            out[name] = evaluate_folders(
                fmt, root / 'video_sequence' / 'val', root / pan, root / 'pred_depth',
                metrics=('dvpq',), windows=windows, thresholds=thresholds,
            )  # fmt: skip
        out[name]['warnings'] = [str(w.message) for w in caught]
    return out


@pytest.mark.parametrize('name', list(CASES))
def test_absent_classes_are_those_the_reference_counts_nothing_for(evaluated, name):
    """A class with TP + FN + FP = 0 in the reference's k = 1, T = 0 run is named in a warning."""
    run = next(r for r in REF['runs'][name] if (r['eval_frames'], r['depth_thres']) == (1, 0))
    full = run['full']
    empty = [
        c
        for c in range(19)
        if float(full['tp'][c]) + float(full['fn'][c]) + float(full['fp'][c]) == 0
    ]
    fmt = CASES[name][0]
    names = CITYSCAPES_DVPS_CLASSES if fmt == 'cityscapes_dvps' else SEMKITTI_DVPS_CLASSES
    absent = evaluated[name]['dvpq/absent_classes']
    assert absent == [names[c] for c in empty]
    if absent:  # the SemKITTI fixture: 4 classes, which count as 0 there (epsilon 1e-10)
        (message,) = evaluated[name]['warnings']
        assert ', '.join(absent) in message and 'count as 0 (epsilon 1e-10)' in message
    else:
        assert evaluated[name]['warnings'] == []


def _key(run: dict, suffix: str) -> str:
    k, t = run['eval_frames'], run['depth_thres']
    return f'VPQ_k{k}{suffix}' if t == 0 else f'DVPQ_k{k}_l{t:g}{suffix}'


def _same(ours: float, ref: str) -> bool:
    ref = float(ref)
    return (np.isnan(ours) and np.isnan(ref)) or abs(ours - ref) <= 1e-9


@pytest.mark.parametrize('name', list(CASES))
def test_matches_reference_scripts(evaluated, name):
    res = evaluated[name]
    assert REF['numpy'] == '1.26.4' and REF['pillow'] == '9.5.0'
    for run in REF['runs'][name]:
        cell = f"k{run['eval_frames']}" + (
            f"_l{run['depth_thres']:g}" if run['depth_thres'] else ''
        )
        stats = res['dvpq/per_window'][cell]
        full = run['full']
        for field in ('tp', 'fn', 'fp'):  # the scripts keep 20 slots and drop the 20th
            assert stats[field] == [int(v) for v in full[field][:19]], (cell, field)
        np.testing.assert_allclose(stats['iou'], [float(v) for v in full['iou'][:19]], atol=1e-12)
        for suffix, ref_key in (('', 'pq'), ('_th', 'th'), ('_st', 'st')):
            ours = res['dvpq'][_key(run, suffix)] / 100
            assert _same(ours, full[ref_key]), (cell, suffix, ours, full[ref_key])
        # and what the reference printed, at its precision
        digits = 2 if name.startswith('cityscapes') else 1
        printed = ' '.join(f'{res["dvpq"][_key(run, s)]:.{digits}f}' for s in ('', '_th', '_st'))
        assert printed == run['printed'], cell


def test_trap_environments_differ_where_documented(evaluated):
    """The numbers of the newer-library runs are not ours (README: the traps)."""
    pillow13 = json.loads((DATA / 'reference_outputs_pillow13.json').read_text())
    numpy2 = json.loads((DATA / 'reference_outputs_numpy2.json').read_text())
    for name in ('cityscapes', 'semkitti'):
        for run, ours in zip(pillow13['runs'][name], REF['runs'][name]):
            # uint16 wrap-around changes every depth cell, never a T = 0 cell
            assert (run['printed'] == ours['printed']) == (run['depth_thres'] == 0)
    for run, ours in zip(numpy2['runs']['semkitti'], REF['runs']['semkitti']):
        assert run['printed'] != ours['printed']  # the FP void rule is lost everywhere
    for run, ours in zip(numpy2['runs']['cityscapes'], REF['runs']['cityscapes']):
        assert run['printed'] == ours['printed']  # uint32 keys do not overflow


def test_trap_pillow_uint16_depth_is_signed(tmp_path):
    # One 2x2 frame, one stuff segment, predicted perfectly; depth under-estimated by 5 %
    # (PNG 950 vs 1000). |950 - 1000| / 1000 = 0.05 <= 0.1: no pixel is an outlier, so
    # DVPQ^1_0.1 of the class is 1. In uint16, 950 - 1000 wraps to 65486 (error 65.5: all void,
    # DVPQ 0), which is what the reference scripts do under Pillow >= 10.3.
    Image.fromarray(np.full((2, 2), 1000, np.uint16)).save(tmp_path / 'gt.png')
    Image.fromarray(np.full((2, 2), 950, np.uint16)).save(tmp_path / 'pred.png')
    gt_depth, pred_depth = (
        read_depth_png(tmp_path / 'gt.png'),
        read_depth_png(tmp_path / 'pred.png'),
    )
    protocol = DVPQProtocol(1, 1000, 32, (), (1,), thresholds=(0.1,), average='valid')
    frames = [frame_pairs(np.zeros((2, 2), int), np.zeros((2, 2), int), gt_depth, pred_depth,
                          thresholds=(0.1,), void_id=protocol.void_id)]  # fmt: skip
    assert dvpq_from_pairs(frames, ['a'], protocol)['DVPQ_k1_l0.1'] == 1.0


def test_trap_numpy2_void_rule_kept():
    # SemKITTI-style ids (divisor 65536, void 255). gt 4x4: class 8 stuff (13 px) and 3 void
    # pixels with instance 5 (id 255 * 65536 + 5, not the void id). pred: (8, 7) covers the 3
    # void pixels and 1 stuff pixel; (8, 0) the other 12.
    # class 8: (8,0)x(8,0): inter 12, union 13 + 12 - 12 = 13 -> TP, IoU 12/13.
    # (8,7) is unmatched, 3/4 of it on the ignored class: not an FP with ViP-DeepLab's rule
    # ('ignore_class', what numpy 1.26 runs), an FP with the void-id-only rule (and, through the
    # int32 overflow, with numpy 2): PQ_8 = (12/13) / (1 + 1/2) = 8/13.
    div = 65536
    gt = np.full((4, 4), 8 * div)
    gt[0, :3] = 255 * div + 5
    pred = np.full((4, 4), 8 * div)
    pred[0, :4] = 8 * div + 7
    kw = dict(num_classes=19, label_divisor=div, ignore_label=255)
    vip = pq_stats(gt, pred, fp_void='ignore_class', **kw)
    dl2 = pq_stats(gt, pred, fp_void='void_id', **kw)
    assert (vip.tp[8], vip.fp[8], dl2.tp[8], dl2.fp[8]) == (1, 0, 1, 1)
    assert pq_summary(vip)['per_class']['pq'][8] == pytest.approx(12 / 13, abs=1e-15)
    assert pq_summary(dl2)['per_class']['pq'][8] == pytest.approx(8 / 13, abs=1e-15)


def test_trap_epsilon_and_class_averaging():
    # 4x4, classes 0 and 1 of 3: gt class 1 on 2 pixels, all predicted as class 0.
    # class 0: gt 14 px, pred 16, inter 14 -> TP, IoU 14/16 = 0.875 (pred on class-1 pixels
    # is not void). class 1: FN 1, no TP. class 2: absent everywhere.
    gt = np.zeros((4, 4), int)
    gt[0, :2] = 1
    stats = pq_stats(gt, np.zeros((4, 4), int), num_classes=3, label_divisor=1, ignore_label=9)
    cityscapes = pq_summary(stats, average='all', epsilon=0.0)  # 0/0 in classes 1, 2: NaN
    semkitti = pq_summary(stats, average='all', epsilon=1e-10)  # (0.875 + 0 + 0) / 3
    deeplab2 = pq_summary(stats, average='valid')  # classes 0, 1 count: (0.875 + 0) / 2
    assert np.isnan(cityscapes['PQ'])
    assert semkitti['PQ'] == pytest.approx(0.875 / 3, abs=1e-9)
    assert deeplab2['PQ'] == pytest.approx(0.4375, abs=1e-15)


def _two_sequence_frames():
    # 2x4 frames: left half class 1 (a thing), right half class 0 (stuff).
    # sequence A: gt thing id 101, predicted 101; sequence B: gt 102, predicted 101.
    frames, seqs = [], []
    for seq, gt_id in (('A', 101), ('B', 102)):
        for _ in range(2):
            gt = np.zeros((2, 4), int)
            gt[:, :2] = gt_id
            pred = np.zeros((2, 4), int)
            pred[:, :2] = 101
            frames.append(frame_pairs(gt, pred, void_id=200))
            seqs.append(seq)
    return frames, seqs


@pytest.mark.parametrize('scope', ['sequence', 'global'])
def test_trap_global_windows(scope):
    # k = 2. 'sequence': windows (A0,A1), (B0,B1): both classes TP in each, PQ 1.
    # 'global' adds (A1,B0): class 0 TP; class 1: gt tubes 101 (4 px) and 102 (4 px) against
    # pred tube 101 (8 px): IoU 4/8 = 0.5 each, no match -> FN 2, FP 1. Class 1 then has
    # TP 2, IoU sum 2, FN 2, FP 1: PQ_1 = 2 / (2 + 1 + 0.5) = 4/7; PQ = (1 + 4/7) / 2.
    frames, seqs = _two_sequence_frames()
    assert window_starts(seqs, 2, scope) == ([0, 2] if scope == 'sequence' else [0, 1, 2])
    protocol = DVPQProtocol(2, 100, 9, (1,), (2,), thresholds=(), window_scope=scope)
    res = dvpq_from_pairs(frames, seqs, protocol)
    stats = res['stats'][2, None]
    if scope == 'sequence':
        assert stats.tp.tolist() == [2, 2] and res['VPQ'] == 1.0
    else:
        assert (stats.tp.tolist(), stats.fn.tolist(), stats.fp.tolist()) == ([3, 2], [0, 2], [0, 1])
        assert res['VPQ'] == pytest.approx((1 + 4 / 7) / 2, abs=1e-15)
        assert res['VPQ_th'] == pytest.approx(4 / 7, abs=1e-15)
