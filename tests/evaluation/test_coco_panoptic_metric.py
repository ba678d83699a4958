"""Thing/stuff combination (panopticapi's ``combine_semantic_and_instance_predictions.py``, run by
mmdet's ``HeuristicFusionHead``) and the COCO panoptic metric (panopticapi's ``pq_compute`` rules).

Expected values are worked out by hand from panopticapi's rules (comments give the arithmetic),
come from panopticapi itself (``tests/data/coco_panoptic/expected.json``, see the README there) or
follow from PQ's definition (Kirillov et al. 2019, Eq. 1) on predictions made from the ground truth.
"""

import importlib.util
import json
import os.path as osp
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData, PixelData

from mmvideoeq.evaluation.metrics.coco_panoptic_metric import (
    COCO_STUFF_TO_PANOPTIC,
    CocoPanopticPQMetric,
    combine_things_and_stuff,
)

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / 'shared' / 'data' / 'coco_panoptic'
DATA = ROOT / 'tests' / 'data' / 'coco_panoptic'


def _cases():
    spec = importlib.util.spec_from_file_location('make_expected', DATA / 'make_expected.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_combine_follows_panopticapi_rules():
    h, w = 4, 6
    masks = np.zeros((4, h, w), bool)
    masks[0, :2, :3] = True  # score 0.9, 6 px
    masks[1, 1:3, 2:4] = True  # score 0.8, 4 px, overlaps #0 on 1 px (25 % <= 50 %): kept, 3 px
    masks[2, :2, :2] = True  # score 0.7, 4 px, fully under #0 (100 % > 50 %): dropped
    masks[3, 3:, 4:] = True  # score 0.4 < 0.5: dropped
    stuff = np.zeros((h, w), np.int64)
    stuff[:, 4:] = 184  # 8 px, none taken by things: kept (limit 5)
    stuff[3, :4] = (
        149  # 4 px free of things... minus #1? #1 covers rows 1-2 only: 4 px < 5: dropped
    )
    seg, segments = combine_things_and_stuff(
        masks,
        np.array([0.9, 0.8, 0.7, 0.4]),
        np.array([1, 2, 3, 4]),
        stuff,
        stuff_area_limit=5,
    )
    assert segments == [(1, 1), (2, 1), (184, 0)]
    expected = np.zeros((h, w), np.int64)
    expected[:2, :3] = 1
    expected[1:3, 2:4][expected[1:3, 2:4] == 0] = 2
    expected[:, 4:] = 3
    np.testing.assert_array_equal(seg, expected)


def test_combine_equals_panopticapi():
    """Ties in score keep the listed order, an instance exactly half covered is kept, a stuff
    class left with fewer free pixels than the limit is void: as panopticapi's own run."""
    case = _cases().combine_case()
    expected = json.loads((DATA / 'expected.json').read_text())['combine']
    seg, segments = combine_things_and_stuff(
        case['masks'],
        case['scores'],
        case['categories'],
        case['stuff'],
        stuff_area_limit=case['stuff_area_limit'],
    )
    assert [list(s) for s in segments] == expected['segments']
    np.testing.assert_array_equal(seg, np.array(expected['segment_map']))


def test_combine_with_no_instance_and_no_stuff():
    seg, segments = combine_things_and_stuff(
        np.zeros((0, 4, 5), bool), np.zeros(0), np.zeros(0, np.int64), np.zeros((4, 5), np.int64)
    )
    assert segments == [] and not seg.any()


def test_stuff_table_covers_coco_panoptic():
    """Every COCO-stuff class maps to at most one panoptic stuff id; 91 - 12 removed = 79."""
    assert len(COCO_STUFF_TO_PANOPTIC) == 79
    assert set(COCO_STUFF_TO_PANOPTIC) <= set(range(91, 182))
    if not (SHARED / 'panoptic_coco_categories.json').is_file():
        pytest.skip('real COCO panoptic categories (../shared) not available')
    cats = json.loads((SHARED / 'panoptic_coco_categories.json').read_text())
    stuff = {c['id']: c['name'] for c in cats if not c['isthing']}
    assert set(COCO_STUFF_TO_PANOPTIC.values()) == set(stuff)  # all 53 panoptic stuff classes


def _write_gt(tmp_path, pan_ids, segments, categories):
    from PIL import Image

    rgb = np.stack([pan_ids % 256, pan_ids // 256 % 256, pan_ids // 65536], -1).astype(np.uint8)
    (tmp_path / 'pan').mkdir()
    Image.fromarray(rgb).save(tmp_path / 'pan' / '1.png')
    ann = dict(
        images=[dict(id=1, file_name='1.jpg', height=pan_ids.shape[0], width=pan_ids.shape[1])],
        annotations=[dict(image_id=1, file_name='1.png', segments_info=segments)],
        categories=categories,
    )
    (tmp_path / 'pan.json').write_text(json.dumps(ann))
    return str(tmp_path / 'pan.json'), str(tmp_path / 'pan')


def _sample(masks, scores, labels, sem):
    return dict(
        img_id=1,
        pred_instances=InstanceData(
            masks=torch.as_tensor(masks),
            scores=torch.as_tensor(scores),
            labels=torch.as_tensor(labels),
        ).to_dict(),
        pred_sem_seg=PixelData(sem_seg=torch.as_tensor(sem)[None]).to_dict(),
    )


def test_metric_on_a_hand_made_image(tmp_path):
    cats = [
        dict(id=1, name='person', isthing=1),
        dict(id=17, name='cat', isthing=1),
        dict(id=149, name='road', isthing=0),
        dict(id=187, name='sky-other-merged', isthing=0),
    ]
    gt = np.zeros((8, 8), np.int64)
    gt[:4] = 187000  # sky
    gt[4:] = 149000  # road
    gt[1:3, 1:3] = 1001  # person A (4 px)
    gt[5:7, 5:7] = 1002  # person B (4 px)
    gt[5:8, 0:3] = 17001  # cat (9 px)
    segs = [
        dict(id=i, category_id=i // 1000, iscrowd=0) for i in (187000, 149000, 1001, 1002, 17001)
    ]
    ann_file, prefix = _write_gt(tmp_path, gt, segs, cats)
    metric = CocoPanopticPQMetric(
        ann_file=ann_file, seg_prefix=prefix, stuff_map={5: 149, 7: 187}, stuff_area_limit=0
    )
    metric.dataset_meta = dict(classes=('person', 'cat'))
    # prediction: person A exact, person B missed, cat exact, plus a false person at the corner;
    # stuff labels 7 (sky) above, 5 (road) below
    masks = np.zeros((3, 8, 8), bool)
    masks[0] = gt == 1001
    masks[1] = gt == 17001
    masks[2, 0, 6:8] = True
    sem = np.where(np.arange(8)[:, None] < 4, 7, 5).repeat(8, 1)
    metric.process({}, [_sample(masks, [0.9, 0.9, 0.9], [0, 1, 0], sem)])
    res = metric.compute_metrics(metric.results)
    # person: TP A (IoU 1), FN B, FP corner -> PQ = 1 / (1 + 0.5 + 0.5) = 0.5
    # cat: exact -> 1.  sky: gt 32 - 4 (A) = 28 px; pred 32 - 4 (A) - 2 (corner) = 26 px, all
    # inside the gt: IoU 26/28.  road: gt 32 - 4 - 9 = 19; pred 32 - 9 = 23 (B's 4 px are road):
    # IoU 19/23.  All four classes count.
    expected = [0.5, 1.0, 26 / 28, 19 / 23]
    assert res['PQ'] == pytest.approx(np.mean(expected))
    assert res['PQ_th'] == pytest.approx(0.75)
    assert res['PQ_st'] == pytest.approx((26 / 28 + 19 / 23) / 2)


@pytest.mark.skipif(not SHARED.is_dir(), reason='no ../shared COCO panoptic sample')
def test_metric_on_real_coco_panoptic_ground_truth():
    """Predictions made from the real ground truth score PQ = SQ = RQ = 1; dropping one person
    leaves the person class at (n - 1) / (n - 1 + 1/2) (TP n - 1, FN 1, IoU 1)."""
    import mmcv

    data = json.loads((SHARED / 'panoptic_examples.json').read_text())
    cats = {c['id']: c for c in json.loads((SHARED / 'panoptic_coco_categories.json').read_text())}
    things = [c['name'] for c in cats.values() if c['isthing']]
    stuff_map = {c: c for c in cats if not cats[c]['isthing']}  # label = panoptic id here
    metric = CocoPanopticPQMetric(
        ann_file=str(SHARED / 'panoptic_examples.json'),
        seg_prefix=str(SHARED / 'panoptic_examples'),
        stuff_map=stuff_map,
        stuff_area_limit=0,
    )
    metric.dataset_meta = dict(classes=tuple(things))
    ann = data['annotations'][0]
    rgb = mmcv.imread(osp.join(SHARED, 'panoptic_examples', ann['file_name']), channel_order='rgb')
    ids = rgb[..., 0].astype(np.int64) + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    thing_segs = [s for s in ann['segments_info'] if cats[s['category_id']]['isthing']]
    sem = np.zeros(ids.shape, np.int64)
    for s in ann['segments_info']:
        if not cats[s['category_id']]['isthing']:
            sem[ids == s['id']] = s['category_id']
    kept = [s for s in thing_segs if not s.get('iscrowd')]  # nothing predicted on the crowds
    masks = np.stack([ids == s['id'] for s in kept])
    labels = [things.index(cats[s['category_id']]['name']) for s in kept]
    metric.process(
        {}, [dict(_sample(masks, [1.0] * len(kept), labels, sem), img_id=ann['image_id'])]
    )
    res = metric.compute_metrics(metric.results)
    assert (res['PQ'], res['SQ'], res['RQ']) == (1.0, 1.0, 1.0)
    persons = [i for i, s in enumerate(kept) if s['category_id'] == 1]
    assert len(persons) >= 2
    metric.results.clear()
    keep = [i for i in range(len(kept)) if i != persons[0]]
    sample = _sample(masks[keep], [1.0] * len(keep), [labels[i] for i in keep], sem)
    metric.process({}, [dict(sample, img_id=ann['image_id'])])
    res = metric.compute_metrics(metric.results)
    n_classes = len({s['category_id'] for s in ann['segments_info'] if not s.get('iscrowd')})
    n = len(persons)
    person_pq = (n - 1) / (n - 1 + 0.5)
    # the dropped person's pixels: no prediction covers them (stuff there is void in sem): no FP
    assert res['PQ'] == pytest.approx((n_classes - 1 + person_pq) / n_classes)


def test_metric_with_crowd_equals_panopticapi(tmp_path):
    """The ``same_class_crowd`` case through the metric: its things as instances (no overlap,
    equal scores), its stuff as semantic labels; PQ as panopticapi computed it."""
    cases = _cases()
    case = cases.case_same_class_crowd()
    expected = json.loads((DATA / 'expected.json').read_text())['same_class_crowd']
    ann_file, prefix = _write_gt(tmp_path, case['gt'], case['gt_segments'], cases.CATEGORIES)
    metric = CocoPanopticPQMetric(
        ann_file=ann_file, seg_prefix=prefix, stuff_map={5: 149, 7: 187}, stuff_area_limit=0
    )
    things = ('person', 'car', 'dog')
    metric.dataset_meta = dict(classes=things)
    label = {1: 0, 3: 1, 18: 2}
    inst = [s for s in case['pred_segments'] if s['category_id'] in label]
    masks = np.stack([case['pred'] == s['id'] for s in inst])
    sem = np.zeros(case['pred'].shape, np.int64)
    for s in case['pred_segments']:
        if s['category_id'] not in label:
            sem[case['pred'] == s['id']] = {149: 5, 187: 7}[s['category_id']]
    labels = [label[s['category_id']] for s in inst]
    metric.process({}, [_sample(masks, [1.0] * len(inst), labels, sem)])
    res = metric.compute_metrics(metric.results)
    for name, suffix in (('All', ''), ('Things', '_th'), ('Stuff', '_st')):
        for key in ('pq', 'sq', 'rq'):
            assert abs(res[key.upper() + suffix] - expected[name][key]) <= 1e-9
