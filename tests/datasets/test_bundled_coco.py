"""The bundled benchmark's COCO part, checked with the reference readers and tables.

pycocotools decodes the instance masks and compares them with the rendered instance maps; the
stuffthingmaps and panoptic PNGs are decoded here and compared with the rendered semantic maps
through COCO's own id tables (mmdet's COCO class list; panopticapi's categories file when
``../shared`` beside the repository has it; COCO-stuff ids written out below from the
COCO-stuff label list).
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

import benchgen
from benchgen.classes import CLASSES, TO_COCO
from mmvideoeq.class_names import COCO_CATEGORY_IDS, COCO_CLASSES

SHARED = (
    Path(__file__).resolve().parents[2].parent
    / 'shared'
    / 'data'
    / 'coco_panoptic'
    / 'panoptic_coco_categories.json'
)
# COCO-stuff ids of the stuff classes used (cocostuff labels.txt: 92 banner ... 182 wood)
COCOSTUFF_IDS = {
    'building-other': 96,
    'grass': 124,
    'pavement': 140,
    'road': 149,
    'sky-other': 157,
    'tree': 169,
}


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp('bundled_coco')
    meta = benchgen.generate_benchmark(root, preset='tiny', seed=0, formats=('coco',))
    return root / 'coco', meta


def test_class_tables_match_coco():
    from mmdet.datasets import CocoDataset

    assert COCO_CLASSES == tuple(CocoDataset.METAINFO['classes'])
    for name, label in TO_COCO.items():
        if label is None:
            continue
        if label.isthing:
            assert COCO_CATEGORY_IDS[label.name] == label.id == label.panoptic_id
        else:
            assert COCOSTUFF_IDS[label.name] == label.id
    if not SHARED.is_file():
        pytest.skip('no ../shared panoptic categories file')
    cats = {c['id']: c for c in json.loads(SHARED.read_text())}
    things = [c for c in cats.values() if c['isthing']]
    assert [(c['id'], c['name']) for c in things] == [
        (COCO_CATEGORY_IDS[n], n) for n in COCO_CLASSES
    ]
    for label in filter(None, TO_COCO.values()):
        assert cats[label.panoptic_id]['name'] == label.panoptic_name
        assert cats[label.panoptic_id]['isthing'] == int(label.isthing)


def _render(split, index):
    return benchgen.render_benchmark_video('coco', split, index, preset='tiny', seed=0)


@pytest.mark.parametrize('split', ['train', 'val'])
def test_instances_masks_and_maps_match_the_render(bench, split):
    root, meta = bench
    coco = COCO(str(root / 'annotations' / f'instances_{split}2017.json'))
    pan = json.loads((root / 'annotations' / f'panoptic_{split}2017.json').read_text())
    pan_by_image = {a['image_id']: a for a in pan['annotations']}
    min_area = benchgen.get_preset('tiny').coco.min_area
    for index, entry in enumerate(meta['coco'][split]):
        video = _render(split, index)
        semantic, instance = video.semantic[0], video.instance[0]
        img = coco.imgs[entry['id']]
        assert (img['height'], img['width']) == semantic.shape
        # instances: one per object with >= min_area visible pixels, mask = its visible pixels
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[entry['id']]))
        ids, counts = np.unique(instance[instance > 0], return_counts=True)
        visible = {int(t) for t, c in zip(ids, counts) if c >= min_area}
        assert len(anns) == len(visible)
        for ann in anns:
            mask = mask_utils.decode(coco.annToRLE(ann)).astype(bool)
            tracks = np.unique(instance[mask])
            assert len(tracks) == 1 and np.array_equal(mask, instance == tracks[0])
            assert ann['area'] == mask.sum()
            assert ann['category_id'] == TO_COCO[video.track_classes[int(tracks[0])]].id
        # stuffthingmaps: COCO-stuff id - 1 of every labelled pixel, 255 unlabeled
        stm = np.array(
            Image.open(root / 'stuffthingmaps' / f'{split}2017' / f'{entry["id"]:012d}.png')
        )
        for cls in np.unique(semantic):
            label = TO_COCO[CLASSES[cls]]
            assert np.all(stm[semantic == cls] == (255 if label is None else label.id - 1))
        # panoptic: rgb2id, one segment per annotated object, stuff per class, void elsewhere
        ann = pan_by_image[entry['id']]
        rgb = np.array(
            Image.open(root / 'annotations' / f'panoptic_{split}2017' / ann['file_name'])
        )
        pid = rgb[..., 0].astype(np.int64) + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        segs = {s['id']: s for s in ann['segments_info']}
        assert set(np.unique(pid)) - {0} == set(segs)
        for sid, seg in segs.items():
            assert seg['area'] == (pid == sid).sum()
            classes = {CLASSES[c] for c in np.unique(semantic[pid == sid])}
            assert {TO_COCO[c].panoptic_id for c in classes} == {seg['category_id']}
        things = [s for s in segs.values() if s['category_id'] < 92]
        assert len(things) == len(anns)


def test_coco_part_trains_a_mmdet_dataset(bench):
    """mmdet's loading pipeline reads masks and stuff maps of the bundled part."""
    from mmvideoeq.registry import DATASETS
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    root, _ = bench
    ds = DATASETS.build(
        dict(
            type='CocoInstanceStuffDataset',
            data_root=str(root) + '/',
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/', seg='stuffthingmaps/train2017/'),
            filter_cfg=dict(filter_empty_gt=True),
            pipeline=[
                dict(type='mmdet.LoadImageFromFile'),
                dict(type='mmdet.LoadAnnotations', with_bbox=True, with_mask=True, with_seg=True),
                dict(type='mmdet.PackDetInputs'),
            ],
        )
    )
    sample = ds[0]['data_samples']
    assert len(sample.gt_instances) > 0
    assert sample.gt_instances.masks.masks.any(axis=(1, 2)).all()
    assert sample.gt_sem_seg.sem_seg.shape[-2:] == sample.gt_instances.masks.masks.shape[-2:]
