"""Cases for COCO panoptic PQ with crowd regions, and panopticapi's numbers on them.

The cases (segment-id maps + ``segments_info`` lists) are built by the functions below, which
``tests/evaluation/test_coco_panoptic_parity.py`` imports; ``main`` runs panopticapi's
``pq_compute_single_core`` and ``PQStat.pq_average`` (cocodataset/panopticapi, not part of this
repository) on them and writes ``expected.json``. See README.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

#: Categories of the constructed cases (ids and names of COCO panoptic).
CATEGORIES = [
    dict(id=1, name='person', isthing=1),
    dict(id=3, name='car', isthing=1),
    dict(id=18, name='dog', isthing=1),
    dict(id=149, name='road', isthing=0),
    dict(id=184, name='tree-merged', isthing=0),
    dict(id=187, name='sky-other-merged', isthing=0),
]


def _segments(ids: np.ndarray, table: dict) -> list[dict]:
    """``segments_info`` of the ids in ``table`` (id -> (category, iscrowd)), areas counted."""
    out = []
    for seg_id, (cat, crowd) in table.items():
        out.append(dict(id=seg_id, category_id=cat, iscrowd=crowd, area=int((ids == seg_id).sum())))
    return out


def case_same_class_crowd() -> dict:
    """12 x 16: sky above, road below, a person, a person crowd, a car; see the test comments."""
    gt = np.zeros((12, 16), np.int64)
    gt[:6] = 10  # sky
    gt[6:] = 11  # road
    gt[1:3, 1:4] = 20  # person A: 6 px
    gt[1:5, 8:14] = 21  # person crowd: 24 px
    gt[8:11, 2:6] = 22  # car: 12 px
    gt[11, 14:] = 0  # VOID: 2 px
    pred = np.zeros_like(gt)
    pred[:6] = 1
    pred[6:] = 2
    pred[1:3, 1:4] = 3  # person p1 = A (6 px) ...
    pred[1, 8:14] = 3  # ... plus 6 crowd px; 1 more below
    pred[2, 8] = 3  # p1: 13 px, 7 of them on the crowd
    pred[3:5, 9:14] = 4  # person p2: 10 px, all on the crowd
    pred[2, 9:13] = 5  # car p3: 4 px on the crowd ...
    pred[5, 9:11] = 5  # ... and 2 on sky: 6 px, 4/6 on the (person) crowd
    pred[8:11, 2:6] = 6  # car p4 = car
    gt_table = {10: (187, 0), 11: (149, 0), 20: (1, 0), 21: (1, 1), 22: (3, 0)}
    pred_table = {1: (187, 0), 2: (149, 0), 3: (1, 0), 4: (1, 0), 5: (3, 0), 6: (3, 0)}
    return dict(
        name='same_class_crowd',
        gt=gt,
        gt_segments=_segments(gt, gt_table),
        pred=pred,
        pred_segments=[dict(id=k, category_id=v[0]) for k, v in pred_table.items()],
    )


def case_two_crowds() -> dict:
    """16 x 16: two person crowds (only the last listed counts), a car crowd, a dog, VOID."""
    gt = np.full((16, 16), 11, np.int64)  # road
    gt[:4] = 0  # VOID rows
    gt[4:8, 0:6] = 30  # person crowd #1: 24 px (listed first)
    gt[4:8, 10:16] = 31  # person crowd #2: 24 px (listed last: panopticapi's crowd of person)
    gt[9:13, 0:5] = 32  # car crowd: 20 px
    gt[9:13, 8:12] = 33  # dog: 16 px
    gt[14:16, 0:4] = 34  # person: 8 px
    pred = np.full_like(gt, 1)  # road everywhere ...
    pred[:4] = 0  # ... but VOID rows left empty
    pred[4:8, 0:6] = 2  # person on crowd #1 (not the listed-last one): a false positive
    pred[4:8, 10:16] = 3  # person on crowd #2: ignored
    pred[9:13, 0:5] = 4  # person on the car crowd: a false positive
    pred[2:4, 12:16] = 5  # car: 8 px on VOID ...
    pred[4, 6:10] = 5  # ... 4 on road: 8/12 on VOID, ignored
    pred[9:13, 8:12] = 6  # dog = dog ...
    pred[9:13, 12:14] = 6  # ... plus 8 road px: IoU 16/24
    pred[14:16, 0:4] = 7  # person = person
    gt_table = {11: (149, 0), 30: (1, 1), 31: (1, 1), 32: (3, 1), 33: (18, 0), 34: (1, 0)}
    pred_table = {1: 149, 2: 1, 3: 1, 4: 1, 5: 3, 6: 18, 7: 1}
    return dict(
        name='two_crowds',
        gt=gt,
        gt_segments=_segments(gt, gt_table),
        pred=pred,
        pred_segments=[dict(id=k, category_id=v) for k, v in pred_table.items()],
    )


def constructed_cases() -> list[dict]:
    """The constructed cases, each ``name``, ``gt``, ``gt_segments``, ``pred``,
    ``pred_segments``, evaluated alone with :data:`CATEGORIES`."""
    return [case_same_class_crowd(), case_two_crowds()]


def combine_case() -> dict:
    """Instances and a stuff map for panopticapi's combination: equal scores, overlaps, a
    below-threshold instance, a stuff class left too small, a fully covered instance."""
    h, w = 10, 12
    masks = np.zeros((6, h, w), bool)
    masks[0, 0:4, 0:5] = True  # 0.9, 20 px
    masks[1, 2:6, 3:8] = True  # 0.7, 20 px, 4 under #0: kept, 16 px
    masks[2, 2:6, 6:10] = True  # 0.7 (tie with #1, listed later), 16 px, 8 under #1: kept
    masks[3, 0:3, 0:3] = True  # 0.8, fully under #0: dropped
    masks[4, 7:10, 0:4] = True  # 0.3 < 0.5: dropped
    masks[5, 5:7, 7:11] = True  # 0.6, 8 px, 3 under #1/#2: kept, 5 px
    stuff = np.zeros((h, w), np.int64)
    stuff[:, 9:] = 187  # sky: 30 px, 8 + 2 taken by things
    stuff[6:, :9] = 149  # road: 36 px, 3 taken by #5
    stuff[0:2, 6:8] = 184  # tree: 4 px < 5: dropped (void)
    return dict(
        masks=masks,
        scores=np.array([0.9, 0.7, 0.7, 0.8, 0.3, 0.6]),
        categories=np.array([1, 3, 1, 18, 1, 3]),
        stuff=stuff,
        stuff_area_limit=5,
    )


def run_panopticapi_combine(case: dict, panopticapi_dir) -> dict:
    """panopticapi's ``combine_to_panoptic_single_core`` on :func:`combine_case` (default
    confidence 0.5 and overlap 0.5 applied as its ``combine_predictions`` does), with the
    segments renumbered 1.. in the order of its ``segments_info``."""
    from PIL import Image
    from pycocotools import mask as mask_util

    sys.path.insert(0, str(panopticapi_dir))
    from panopticapi.combine_semantic_and_instance_predictions import (
        combine_to_panoptic_single_core,
    )

    np.random.seed(0)  # panopticapi draws thing colours (ids) at random
    h, w = case['stuff'].shape
    insts = [
        dict(image_id=0, category_id=int(c), score=float(sc),
             segmentation=mask_util.encode(np.asfortranarray(m.astype(np.uint8))))
        for m, sc, c in zip(case['masks'], case['scores'], case['categories'])
        if sc >= 0.5
    ]  # fmt: skip
    insts = sorted(insts, key=lambda el: -el['score'])
    sems = [
        dict(image_id=0, category_id=int(c),
             segmentation=mask_util.encode(np.asfortranarray(case['stuff'] == c, np.uint8)))
        for c in np.unique(case['stuff']) if c != 0
    ]  # fmt: skip
    cats = {c['id']: dict(c, color=[c['id'], 0, 0]) for c in CATEGORIES}
    with tempfile.TemporaryDirectory() as tmp:
        anns = combine_to_panoptic_single_core(
            0, [0], {0: dict(id=0, height=h, width=w, file_name='0.jpg')}, {0: insts}, {0: sems},
            tmp, 0.5, case['stuff_area_limit'], cats,
        )  # fmt: skip
        ids = rgb2id(np.array(Image.open(Path(tmp, anns[0]['file_name']))))
    seg = np.zeros_like(ids)
    for k, s in enumerate(anns[0]['segments_info'], start=1):
        seg[ids == s['id']] = k
    thing = {c['id']: c['isthing'] for c in CATEGORIES}
    return dict(
        segment_map=seg.tolist(),
        segments=[[s['category_id'], thing[s['category_id']]] for s in anns[0]['segments_info']],
    )


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def real_cases(coco_panoptic_dir) -> tuple[list[dict], list[dict]]:
    """Predictions made from the two real COCO val2017 ground truths of panopticapi's sample data.

    Per image (seeded by its image id): stuff and non-crowd things copied with their categories,
    each thing shifted by up to 6 px (so IoUs vary and some fall below 0.5); then each crowd
    region is split in raster order into thirds: the first third is added to the first
    non-crowd segment of the crowd's category (or becomes a segment of it), the second third
    becomes a segment of the crowd's category, the last a segment of the next thing category.

    Args:
        coco_panoptic_dir: Folder with ``panoptic_examples.json``, ``panoptic_examples/`` and
            ``panoptic_coco_categories.json``.

    Returns:
        tuple: ``(cases, categories)``; cases as :func:`constructed_cases`, plus ``image_id``
        and ``file_name``.
    """
    from PIL import Image

    root = Path(coco_panoptic_dir)
    data = json.loads((root / 'panoptic_examples.json').read_text())
    categories = json.loads((root / 'panoptic_coco_categories.json').read_text())
    thing_ids = [c['id'] for c in categories if c['isthing']]
    cases = []
    for ann in data['annotations']:
        gt = rgb2id(np.array(Image.open(root / 'panoptic_examples' / ann['file_name'])))
        rng = np.random.default_rng(ann['image_id'])
        pred = np.zeros_like(gt)
        segs: list[dict] = []

        def add(mask, cat):
            segs.append(dict(id=len(segs) + 1, category_id=cat))
            pred[mask] = len(segs)
            return len(segs)

        infos = ann['segments_info']
        isthing = {c['id']: c['isthing'] for c in categories}
        for s in infos:  # stuff first, things painted over it
            if not isthing[s['category_id']]:
                add(gt == s['id'], s['category_id'])
        first_of = {}
        for s in infos:
            if isthing[s['category_id']] and not s['iscrowd']:
                dy, dx = rng.integers(-6, 7, size=2)
                mask = np.roll(gt == s['id'], (int(dy), int(dx)), axis=(0, 1))
                first_of.setdefault(s['category_id'], add(mask, s['category_id']))
        for s in infos:
            if not s['iscrowd']:
                continue
            ys, xs = np.nonzero(gt == s['id'])
            thirds = np.array_split(np.arange(len(ys)), 3)
            cat = s['category_id']
            other = thing_ids[(thing_ids.index(cat) + 1) % len(thing_ids)]
            target = first_of.get(cat)
            if target is None:
                target = add(np.zeros_like(gt, bool), cat)
            pred[ys[thirds[0]], xs[thirds[0]]] = target
            for part, c in ((thirds[1], cat), (thirds[2], other)):
                mask = np.zeros_like(gt, bool)
                mask[ys[part], xs[part]] = True
                add(mask, c)
        present = set(np.unique(pred).tolist())
        segs = [s for s in segs if s['id'] in present]  # segments painted over entirely
        cases.append(
            dict(
                name=f"real_{ann['image_id']}",
                image_id=ann['image_id'],
                file_name=ann['file_name'],
                gt=gt,
                gt_segments=infos,
                pred=pred,
                pred_segments=segs,
            )
        )
    return cases, categories


def _id2rgb(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)


def run_panopticapi(cases: list[dict], categories: list[dict], panopticapi_dir) -> dict:
    """panopticapi's statistics of ``cases`` evaluated together (one ``pq_compute`` run)."""
    from PIL import Image

    sys.path.insert(0, str(panopticapi_dir))
    from panopticapi.evaluation import pq_compute_single_core

    cats = {c['id']: c for c in categories}
    with tempfile.TemporaryDirectory() as tmp:
        gt_dir, pred_dir = Path(tmp, 'gt'), Path(tmp, 'pred')
        gt_dir.mkdir()
        pred_dir.mkdir()
        pairs = []
        for i, case in enumerate(cases):
            name = f'{i}.png'
            Image.fromarray(_id2rgb(case['gt'])).save(gt_dir / name)
            Image.fromarray(_id2rgb(case['pred'])).save(pred_dir / name)
            gt_ann = dict(image_id=i, file_name=name, segments_info=case['gt_segments'])
            pred_ann = dict(
                image_id=i, file_name=name, segments_info=[dict(s) for s in case['pred_segments']]
            )
            pairs.append((gt_ann, pred_ann))
        stat = pq_compute_single_core(0, pairs, str(gt_dir), str(pred_dir), cats)
    out = dict(per_category={})  # categories with any statistic; the others are all 0
    for cat_id in cats:
        s = stat[cat_id]
        if s.tp or s.fp or s.fn or s.iou:
            out['per_category'][str(cat_id)] = dict(iou=s.iou, tp=s.tp, fp=s.fp, fn=s.fn)
    for name, isthing in (('All', None), ('Things', True), ('Stuff', False)):
        res, _ = stat.pq_average(cats, isthing=isthing)
        out[name] = {k: float(v) for k, v in res.items()}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--panopticapi', required=True, help='panopticapi checkout')
    parser.add_argument('--coco-panoptic', help="panopticapi's sample_data folder (real cases)")
    parser.add_argument('--out', default=str(Path(__file__).with_name('expected.json')))
    args = parser.parse_args(argv)
    expected = {}
    for case in constructed_cases():
        expected[case['name']] = run_panopticapi([case], CATEGORIES, args.panopticapi)
    expected['combine'] = run_panopticapi_combine(combine_case(), args.panopticapi)
    if args.coco_panoptic:
        cases, categories = real_cases(args.coco_panoptic)
        expected['real'] = run_panopticapi(cases, categories, args.panopticapi)
    Path(args.out).write_text(json.dumps(expected, indent=1, sort_keys=True) + '\n')


if __name__ == '__main__':
    main()
