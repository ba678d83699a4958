# ViP-DeepLab, ResNet-50 (OS 32), SemKITTI-DVPS. Anchors: thesis Table 7-I DVPQ 45.6; deeplab2
# zoo R50-beta VPQ 45.63.
_base_ = [
    '../_base_/models/vip-deeplab_r50-os32.py',
    '../_base_/datasets/semkitti_dvps.py',
    '../_base_/vip_runtime.py',
    '../_base_/schedules/schedule_120k_vip.py',
]
# Sequence ids (VPQ / DVPQ over k > 1 frames) need the stitching memory carried from frame to
# frame: the streaming loop runs this per-frame model as one setting, 'stream' (metrics
# 'stream/dvps/...'). Validation during training stays per frame (fresh ids on every frame).
test_cfg = dict(type='StreamingTestLoop')
model = dict(
    decode_head=dict(
        num_classes=19, thing_ids=tuple(range(8)), label_divisor=65536, ignore_label=255
    )
)
