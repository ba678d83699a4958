"""CocoInstanceStuffDataset refuses data that does not fit the pipeline, with clear errors."""

import json
import shutil

import pytest

import benchgen
from mmvideoeq.registry import DATASETS
from mmvideoeq.utils import register_all_modules

register_all_modules()

PIPELINE = [
    dict(type='mmdet.LoadImageFromFile'),
    dict(type='mmdet.LoadAnnotations', with_bbox=True, with_mask=True, with_seg=True),
    dict(type='mmdet.PackDetInputs'),
]


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco_errors')
    benchgen.generate_benchmark(root, preset='tiny', seed=0, formats=('coco',))
    return root / 'coco'


def _build(root, ann='annotations/instances_train2017.json', seg='stuffthingmaps/train2017/', **kw):
    prefix = dict(img='train2017/')
    if seg is not None:
        prefix['seg'] = seg
    return DATASETS.build(
        dict(
            type='CocoInstanceStuffDataset',
            data_root=str(root) + '/',
            ann_file=ann,
            data_prefix=prefix,
            pipeline=kw.pop('pipeline', PIPELINE),
            **kw,
        )
    )


def test_reads_the_bundled_part(coco_root):
    assert len(_build(coco_root)) == 4


def test_missing_masks_for_a_mask_head(coco_root, tmp_path):
    data = json.loads((coco_root / 'annotations' / 'instances_train2017.json').read_text())
    del data['annotations'][0]['segmentation']
    bad = coco_root / 'annotations' / 'instances_nomask.json'
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match='has no "segmentation".*with_mask=True'):
        _build(coco_root, ann='annotations/instances_nomask.json')
    # a box-only pipeline does not need them
    box_only = [dict(type='mmdet.LoadImageFromFile'), dict(type='mmdet.LoadAnnotations')]
    assert len(
        _build(coco_root, ann='annotations/instances_nomask.json', seg=None, pipeline=box_only)
    )


def test_missing_stuff_maps_for_htc(coco_root, tmp_path):
    with pytest.raises(FileNotFoundError, match='stuffthingmaps.*cascade-rcnn'):
        _build(coco_root, seg='no_such_folder/')
    with pytest.raises(ValueError, match=r"no data_prefix\['seg'\]"):
        _build(coco_root, seg=None)
    copy = tmp_path / 'coco'
    shutil.copytree(coco_root, copy)
    (copy / 'stuffthingmaps' / 'train2017' / '000000000002.png').unlink()
    with pytest.raises(FileNotFoundError, match='000000000002.png.*is missing'):
        _build(copy)
