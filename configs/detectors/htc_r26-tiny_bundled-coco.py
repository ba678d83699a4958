# HTC baseline on the bundled COCO part (CPU-sized; see docs/detectors.md for what was trained):
#   python tools/train.py configs/detectors/htc_r26-tiny_bundled-coco.py
_base_ = [
    '../_base_/models/htc_r26-tiny_fpn.py',
    '../_base_/datasets/bundled_coco.py',
    '../_base_/schedules/schedule_bundled_coco.py',
    '../_base_/default_runtime.py',
]
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=4, max_keep_ckpts=1))
randomness = dict(seed=0)
