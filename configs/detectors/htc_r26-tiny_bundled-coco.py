# HTC baseline on the bundled COCO part (CPU-sized; docs/detectors.md says what was trained):
#   python tools/train.py configs/detectors/htc_r26-tiny_bundled-coco.py
# Evaluation: box and mask AP (mmdet CocoMetric, pycocotools) and panoptic quality of the
# instances combined with the semantic head's stuff (thesis Table 6-VI; CocoPanopticPQMetric with
# panopticapi's combination rules; its stuff-area limit, 64 x 64 for COCO's ~480 x 640 images, is
# scaled to the 128 x 192 images here).
_base_ = [
    '../_base_/models/htc_r26-tiny_fpn.py',
    '../_base_/datasets/bundled_coco.py',
    '../_base_/schedules/schedule_bundled_coco.py',
    '../_base_/default_runtime.py',
]
data_root = 'data/bundled/coco/'
val_evaluator = [
    dict(
        type='mmdet.CocoMetric',
        ann_file=data_root + 'annotations/instances_val2017.json',
        metric=['bbox', 'segm'],
    ),
    dict(
        type='CocoPanopticPQMetric',
        ann_file=data_root + 'annotations/panoptic_val2017.json',
        seg_prefix=data_root + 'annotations/panoptic_val2017/',
        stuff_area_limit=320,
    ),
]
test_evaluator = val_evaluator
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=4, max_keep_ckpts=1))
randomness = dict(seed=0)
