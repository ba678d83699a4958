"""COCO panoptic PQ equals panopticapi's ``pq_compute`` with crowd regions.

``tests/data/coco_panoptic/expected.json`` holds what panopticapi's ``pq_compute_single_core``
and ``pq_average`` gave on the cases of ``tests/data/coco_panoptic/make_expected.py`` (README
there). Per-category TP / FP / FN must be equal, the IoU sums and PQ / SQ / RQ (All, Things,
Stuff) within 1e-9. The first case is also worked out by hand below.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from mmvideoeq.evaluation.functional import (
    PQStats,
    coco_pq_stats,
    pq_stats,
    pq_summary,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / 'tests' / 'data' / 'coco_panoptic'
EXPECTED = json.loads((DATA / 'expected.json').read_text())
SHARED = ROOT.parent / 'shared' / 'data' / 'coco_panoptic'


def _load_cases():
    spec = importlib.util.spec_from_file_location('make_expected', DATA / 'make_expected.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = _load_cases()


def _evaluate(cases, categories) -> tuple[PQStats, dict]:
    cat_ids = [c['id'] for c in categories]
    total = PQStats.zeros(len(cat_ids))
    for case in cases:
        total = total + coco_pq_stats(
            case['gt'],
            case['pred'],
            gt_segments=case['gt_segments'],
            pred_segments=case['pred_segments'],
            categories=cat_ids,
        )
    things = [i for i, c in enumerate(categories) if c['isthing']]
    return total, pq_summary(total, thing_ids=things, average='valid')


def _assert_equal_to_panopticapi(stats, summary, categories, expected):
    for i, cat in enumerate(categories):
        ref = expected['per_category'].get(str(cat['id']), dict(tp=0, fp=0, fn=0, iou=0.0))
        got = (int(stats.tp[i]), int(stats.fp[i]), int(stats.fn[i]))
        assert got == (ref['tp'], ref['fp'], ref['fn']), cat['name']
        assert stats.iou[i] == pytest.approx(ref['iou'], abs=1e-12), cat['name']
    for name, suffix in (('All', ''), ('Things', '_th'), ('Stuff', '_st')):
        for key in ('pq', 'sq', 'rq'):
            assert abs(summary[key.upper() + suffix] - expected[name][key]) <= 1e-9, (name, key)


@pytest.mark.parametrize('case', CASES.constructed_cases(), ids=lambda c: c['name'])
def test_constructed_cases_equal_panopticapi(case):
    stats, summary = _evaluate([case], CASES.CATEGORIES)
    _assert_equal_to_panopticapi(stats, summary, CASES.CATEGORIES, EXPECTED[case['name']])


@pytest.mark.skipif(not SHARED.is_dir(), reason='no ../shared COCO panoptic sample')
def test_real_coco_val2017_ground_truth_equals_panopticapi():
    cases, categories = CASES.real_cases(SHARED)
    assert sum(s['iscrowd'] for c in cases for s in c['gt_segments']) == 3  # 2 person, 1 horse
    stats, summary = _evaluate(cases, categories)
    _assert_equal_to_panopticapi(stats, summary, categories, EXPECTED['real'])


def test_crowd_rules_by_hand():
    """``same_class_crowd`` (see make_expected.py for the drawing), worked out by hand.

    person: A (6 px) and p1 (13 px: A + 7 crowd px): panopticapi keeps the crowd pixels in the
    union, IoU = 6 / (13 + 6 - 6) = 0.46 -> no match, A is a FN; p1 lies 7/13 > 1/2 on the
    person crowd and p2 10/10: neither is a FP.  car: p4 = car (IoU 1); p3 (6 px) lies 4/6 on the
    crowd of *another* category: a FP.  sky: gt 96 - 6 (A) - 24 (crowd) = 66 px, pred 96 - 13 -
    10 - 6 = 67 px, 64 shared -> 64 / 69.  road: gt 82, pred 84 of which 2 on VOID -> 82 / 82.
    """
    case = CASES.case_same_class_crowd()
    stats, summary = _evaluate([case], CASES.CATEGORIES)
    order = [c['name'] for c in CASES.CATEGORIES]  # person, car, dog, road, tree, sky
    assert stats.tp.tolist() == [0, 1, 0, 1, 0, 1]
    assert stats.fn.tolist() == [1, 0, 0, 0, 0, 0]
    assert stats.fp.tolist() == [0, 1, 0, 0, 0, 0]
    assert stats.iou[order.index('sky-other-merged')] == pytest.approx(64 / 69)
    assert summary['PQ_th'] == pytest.approx((0 + 1 / 1.5) / 2)
    assert summary['PQ'] == pytest.approx((0 + 1 / 1.5 + 1 + 64 / 69) / 4)


def test_deeplab2_convention_differs_where_crowd_is_void():
    """The id-map convention (crowd as void, every class) would match A and drop p3's FP: the
    COCO path must not take it."""
    case = CASES.case_same_class_crowd()
    cat_index = {c['id']: i for i, c in enumerate(CASES.CATEGORIES)}
    void = len(cat_index)

    def ids(seg_map, segments, crowd_void):
        lut = {0: void * 1000}
        for s in segments:  # crowd -> the void id, as the COCO metric used to map it
            crowd = crowd_void and s.get('iscrowd')
            lut[s['id']] = void * 1000 if crowd else cat_index[s['category_id']] * 1000 + s['id']
        return np.vectorize(lut.__getitem__)(seg_map)

    voided = pq_stats(
        ids(case['gt'], case['gt_segments'], True),
        ids(case['pred'], case['pred_segments'], False),
        num_classes=void,
        label_divisor=1000,
        ignore_label=void,
    )
    assert (voided.tp[0], voided.fp[1]) == (1, 0)  # person A matched, car p3 not a FP
    stats, _ = _evaluate([case], CASES.CATEGORIES)
    assert (stats.tp[0], stats.fp[1]) == (0, 1)


def test_bad_prediction_lists_are_refused():
    case = CASES.case_same_class_crowd()
    kw = dict(gt_segments=case['gt_segments'], categories=[c['id'] for c in CASES.CATEGORIES])
    with pytest.raises(ValueError, match=r'ids \[6\] are in the map but not in the list'):
        coco_pq_stats(case['gt'], case['pred'], pred_segments=case['pred_segments'][:-1], **kw)
    extra = case['pred_segments'] + [dict(id=9, category_id=1)]
    with pytest.raises(ValueError, match=r'segments \[9\] are listed but have no pixel'):
        coco_pq_stats(case['gt'], case['pred'], pred_segments=extra, **kw)
    unknown = [dict(s, category_id=2) if s['id'] == 6 else s for s in case['pred_segments']]
    with pytest.raises(ValueError, match=r'category ids \[2\] are not categories'):
        coco_pq_stats(case['gt'], case['pred'], pred_segments=unknown, **kw)
