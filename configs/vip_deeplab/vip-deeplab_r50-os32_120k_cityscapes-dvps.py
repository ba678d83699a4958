# ViP-DeepLab, ResNet-50 (OS 32), Cityscapes-DVPS. Anchors: thesis Table 7-I DVPQ 55.1 (WR-41 +
# Mapillary/pseudo-label pretraining, Cascade-ASPP, RFP); deeplab2 zoo R50-beta VPQ 52.82.
#   python tools/train.py configs/vip_deeplab/vip-deeplab_r50-os32_120k_cityscapes-dvps.py
_base_ = [
    '../_base_/models/vip-deeplab_r50-os32.py',
    '../_base_/datasets/cityscapes_dvps.py',
    '../_base_/vip_runtime.py',
    '../_base_/schedules/schedule_120k_vip.py',
]
# Sequence ids (VPQ / DVPQ over k > 1 frames) need the stitching memory carried from frame to
# frame: the streaming loop runs this per-frame model as one setting, 'stream' (metrics
# 'stream/dvps/...'). Validation during training stays per frame (fresh ids on every frame).
test_cfg = dict(type='StreamingTestLoop')
