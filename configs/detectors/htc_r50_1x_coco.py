# HTC, ResNet-50 + FPN, 12 epochs on COCO: the baseline of DetectoRS (thesis Table 6-II: 42.0
# box AP / 37.1 mask AP on val2017). Needs COCO-stuff stuffthingmaps for the semantic head.
_base_ = [
    '../_base_/models/htc_r50_fpn.py',
    '../_base_/datasets/coco_instance_stuff.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
