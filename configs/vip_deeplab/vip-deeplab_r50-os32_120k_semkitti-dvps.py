# ViP-DeepLab, ResNet-50 (OS 32), SemKITTI-DVPS. Anchors: thesis Table 7-I DVPQ 45.6; deeplab2
# zoo R50-beta VPQ 45.63.
_base_ = [
    '../_base_/models/vip-deeplab_r50-os32.py',
    '../_base_/datasets/semkitti_dvps.py',
    '../_base_/vip_runtime.py',
    '../_base_/schedules/schedule_120k_vip.py',
]
model = dict(
    decode_head=dict(
        num_classes=19, thing_ids=tuple(range(8)), label_divisor=65536, ignore_label=255
    )
)
